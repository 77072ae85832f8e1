//===- SpecsCompileTest.cpp - Every spec in specs/ NVRTC-compiles ---------===//
//
// NVRTC needs no GPU, so CI proves that every example spec lowers and
// compiles to a cubin for its arch, with every kernel of its plan present.
//
//===----------------------------------------------------------------------===//

#include "RuntimeTestUtil.h"

#include "muse/Runtime/Engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

namespace muse::test {
namespace {

TEST(Specs, EveryExampleCompilesToACubin) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto &e : std::filesystem::directory_iterator(MUSE_SPECS_DIR, ec))
    if (e.path().extension() == ".yaml" || e.path().extension() == ".yml")
      files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty()) << "no specs found in " << MUSE_SPECS_DIR;
  TempDir dir;
  Engine engine(cacheIn(dir.path()));
  for (const std::string &file : files) {
    SCOPED_TRACE(file);
    SpecResult r = parseSpecFile(file);
    ASSERT_TRUE(r.ok()) << (r.diagnostics.empty() ? "" : r.diagnostics[0].str());
    Status s;
    auto c = engine.compile(*r.spec, s);
    ASSERT_TRUE(c) << s.message;
    EXPECT_EQ(c->cubin.compare(0, 4, "\x7f" "ELF"), 0);
    ASSERT_FALSE(c->plan.launches.empty());
    for (const KernelLaunch &l : c->plan.launches)
      EXPECT_NE(c->cubin.find(l.kernel), std::string::npos) << l.kernel;
  }
}

} // namespace
} // namespace muse::test
