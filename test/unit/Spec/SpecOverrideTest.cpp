//===- SpecOverrideTest.cpp - section.field=value overrides ---------------===//

#include "SpecTestUtil.h"

using namespace muse;
using muse::test::errorsOf;

namespace {

Spec withOverrides(const std::string &text, const std::vector<std::string> &overrides) {
  SpecResult r = parseSpecWithOverrides(text, "t.yaml", overrides);
  EXPECT_TRUE(r.ok()) << (r.diagnostics.empty() ? "" : r.diagnostics[0].str());
  return r.ok() ? *r.spec : Spec();
}

} // namespace

TEST(SpecOverride, ReplacesAndAddsFieldsAndSections) {
  Spec s = withOverrides("clustering: {query_clusters: 64}\nattention: {head_dim: 64}\n",
                         {"clustering.query_clusters=32", "attention.causal=true",
                          "causal.window_blocks=4", "name=ovr", "attention.dtype=half",
                          "target.arch=sm_100", "attention.scale=0.5"});
  EXPECT_EQ(s.queryClusters, 32);
  EXPECT_TRUE(s.causal);
  EXPECT_EQ(s.windowBlocks, 4);
  EXPECT_EQ(s.name, "ovr");
  EXPECT_EQ(s.dtype, DType::F16);
  EXPECT_EQ(s.arch, "sm_100");
  EXPECT_DOUBLE_EQ(*s.scale, 0.5);
}

TEST(SpecOverride, EmptySectionAndLaterOverrideWins) {
  Spec s = withOverrides("tiling:\n", {"tiling.warps=2", "tiling.warps=8"});
  EXPECT_EQ(s.warps, 8);
}

TEST(SpecOverride, NoOverridesEqualsParseSpec) {
  const std::string text = "attention: {head_dim: 128}\n";
  EXPECT_EQ(withOverrides(text, {}), *parseSpec(text).spec);
}

TEST(SpecOverride, BadValueNamesTheOverride) {
  std::vector<std::string> errs = errorsOf("name: x\n", {"clustering.query_clusters=0"});
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0], "<override>: error: clustering.query_clusters: 0 is out of range; allowed: "
                     "an integer from 1 to 1024 (from override 'clustering.query_clusters=0')");
  errs = errorsOf("name: x\n", {"attention.causal=yes"});
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_NE(errs[0].find("'yes' is not a boolean; allowed: true or false (from override "
                         "'attention.causal=yes')"),
            std::string::npos)
      << errs[0];
  errs = errorsOf("name: x\n", {"attention.head_dim="});
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_NE(errs[0].find("attention.head_dim: no value given"), std::string::npos) << errs[0];
}

TEST(SpecOverride, UnknownOrMalformedOverride) {
  std::vector<std::string> errs = errorsOf("name: x\n", {"clustering.query_cluster=32"});
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_EQ(errs[0].rfind("<override>: error: clustering.query_cluster: override "
                          "'clustering.query_cluster=32': unknown field 'clustering.query_cluster'; "
                          "did you mean 'clustering.query_clusters'?",
                          0),
            0u)
      << errs[0];
  errs = errorsOf("name: x\n", {"query_clusters"});
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_NE(errs[0].find("override 'query_clusters' is not of the form section.field=value"),
            std::string::npos);
  errs = errorsOf("name: x\n", {"=3"});
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_NE(errs[0].find("is not of the form"), std::string::npos);
  errs = errorsOf("name: x\n", {"tiling.warps=[4"});
  ASSERT_EQ(errs.size(), 1u);
  EXPECT_NE(errs[0].find("override 'tiling.warps=[4': the value is not valid YAML"),
            std::string::npos);
}

TEST(SpecOverride, OverrideErrorsComeAfterDocumentErrors) {
  std::vector<std::string> errs =
      errorsOf("clustering: {kmeans_iters: 0}\n", {"bogus.field=1", "multipole.order=2"});
  ASSERT_EQ(errs.size(), 3u);
  EXPECT_EQ(errs[0].rfind("t.yaml:1:28: error: clustering.kmeans_iters", 0), 0u);
  EXPECT_NE(errs[1].find("unknown field 'bogus.field'"), std::string::npos) << errs[1];
  EXPECT_NE(errs[2].find("multipole.order: 2 is not supported"), std::string::npos) << errs[2];
}

TEST(SpecOverride, OverrideCanFixTheCausalCombination) {
  const std::string text = "causal: {block_size: 64}\n";
  EXPECT_FALSE(parseSpec(text).ok());
  Spec s = withOverrides(text, {"attention.causal=true"});
  EXPECT_TRUE(s.causal);
  EXPECT_EQ(s.blockSize, 64);
}
