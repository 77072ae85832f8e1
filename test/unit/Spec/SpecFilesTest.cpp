//===- SpecFilesTest.cpp - The example specs and reading files ------------===//

#include "SpecTestUtil.h"

#include <dirent.h>

#include <algorithm>

using namespace muse;

namespace {

std::vector<std::string> yamlFilesIn(const std::string &dir) {
  std::vector<std::string> out;
  if (DIR *d = opendir(dir.c_str())) {
    while (dirent *e = readdir(d)) {
      std::string name = e->d_name;
      if (name.size() > 5 && name.substr(name.size() - 5) == ".yaml")
        out.push_back(dir + "/" + name);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Spec load(const std::string &path) {
  SpecResult r = parseSpecFile(path);
  EXPECT_TRUE(r.ok()) << path << ": " << (r.ok() ? "" : r.diagnostics[0].str());
  return r.ok() ? *r.spec : Spec();
}

} // namespace

TEST(SpecFiles, EveryExampleSpecIsValid) {
  std::vector<std::string> files = yamlFilesIn(MUSE_SPECS_DIR);
  ASSERT_GE(files.size(), 10u);
  for (const std::string &f : files) {
    Spec s = load(f);
    // The name is the file's stem, so kernels and results say which spec made them.
    EXPECT_EQ(s.name + ".yaml", f.substr(f.rfind('/') + 1)) << f;
  }
}

TEST(SpecFiles, ExampleSpecsSayWhatTheyAre) {
  std::string dir = MUSE_SPECS_DIR;
  Spec d = load(dir + "/default.yaml");
  EXPECT_FALSE(d.causal);
  EXPECT_EQ(d.headDim, 64);
  EXPECT_EQ(d.dtype, DType::BF16);
  EXPECT_EQ(d.queryClusters, 64);
  EXPECT_EQ(d.keyClusters, 64);
  EXPECT_EQ(d.kmeansIters, 3);
  EXPECT_EQ(d.order, 1);
  EXPECT_EQ(load(dir + "/acausal_d64_order0.yaml").order, 0);
  EXPECT_EQ(load(dir + "/acausal_d64_order1.yaml").order, 1);
  Spec near = load(dir + "/acausal_d64_near4.yaml");
  EXPECT_EQ(near.order, 1);
  EXPECT_EQ(near.nearClusters, 4);
  Spec cq = load(dir + "/acausal_d64_cq16.yaml");
  EXPECT_EQ(cq.queryClusters, 16);
  EXPECT_EQ(cq.keyClusters, 64);
  Spec d128 = load(dir + "/acausal_d128.yaml");
  EXPECT_EQ(d128.headDim, 128);
  EXPECT_EQ(d128.valueDim, 128);
  Spec gqa = load(dir + "/acausal_f16_gqa4.yaml");
  EXPECT_EQ(gqa.dtype, DType::F16);
  EXPECT_EQ(gqa.kvHeadsRatio, 4);
  EXPECT_EQ(load(dir + "/acausal_f32.yaml").dtype, DType::F32);
  for (int order : {0, 1}) {
    Spec c = load(dir + "/causal_d64_order" + std::to_string(order) + ".yaml");
    EXPECT_TRUE(c.causal);
    EXPECT_EQ(c.order, order);
    EXPECT_EQ(c.blockSize, 2048);
    EXPECT_EQ(c.windowBlocks, 1);
  }
}

TEST(SpecFiles, CausalExamples) {
  std::string dir = MUSE_SPEC_TEST_DIR;
  Spec c = load(dir + "/causal_d64.yaml");
  EXPECT_TRUE(c.causal);
  EXPECT_EQ(c.blockSize, 256);
  EXPECT_EQ(c.windowBlocks, 1);
  Spec w = load(dir + "/causal_d128_window4.yaml");
  EXPECT_TRUE(w.causal);
  EXPECT_EQ(w.headDim, 128);
  EXPECT_EQ(w.blockSize, 128);
  EXPECT_EQ(w.windowBlocks, 4);
  EXPECT_EQ(w.kvHeadsRatio, 8);
}

TEST(SpecFiles, BadFileReportsEveryErrorWithThePath) {
  std::string path = std::string(MUSE_SPEC_TEST_DIR) + "/bad_spec.yaml";
  SpecResult r = parseSpecFile(path);
  ASSERT_EQ(r.diagnostics.size(), 3u);
  EXPECT_EQ(r.diagnostics[0].str(), path + ":4:19: error: clustering.query_clusters: 0 is out of "
                                           "range; allowed: an integer from 1 to 1024");
  EXPECT_EQ(r.diagnostics[1].str().rfind(path + ":5:3: error: clustering.kmeans_iter: unknown", 0),
            0u);
  EXPECT_EQ(r.diagnostics[2].str().rfind(path + ":7:1: error: causal: a causal section", 0), 0u);
}

TEST(SpecFiles, UnreadableFile) {
  SpecResult r = parseSpecFile("no/such/spec.yaml");
  ASSERT_EQ(r.diagnostics.size(), 1u);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.diagnostics[0].message,
            "cannot read 'no/such/spec.yaml': No such file or directory");
  SpecResult dir = parseSpecFile(MUSE_SPEC_TEST_DIR);
  ASSERT_EQ(dir.diagnostics.size(), 1u);
  EXPECT_NE(dir.diagnostics[0].message.find("Is a directory"), std::string::npos);
}
