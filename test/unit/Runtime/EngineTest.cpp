//===- EngineTest.cpp - Spec to cubin through the Engine, without a GPU ---===//

#include "RuntimeTestUtil.h"

#include "muse/Runtime/Cache.h"
#include "muse/Runtime/CudaDriver.h"
#include "muse/Runtime/Engine.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace muse::test {

int engineChildMain(const std::vector<std::string> &args) {
  if (args.size() != 2)
    return 3;
  Engine engine(cacheIn(args[1]));
  Status s;
  auto compiled = engine.compile(Spec{}, s);
  if (!compiled || compiled->cubin.compare(0, 4, "\x7f" "ELF") != 0)
    return 1;
  if (engine.compilations() == 1 && !compiled->fromDiskCache)
    return 10;
  return engine.compilations() == 0 && compiled->fromDiskCache ? 0 : 2;
}

namespace {

TEST(Engine, CompilesWithoutAGpu) {
  TempDir dir;
  Engine engine(cacheIn(dir.path()));
  Status s;
  auto compiled = engine.compile(Spec{}, s);
  ASSERT_TRUE(compiled) << s.message;
  EXPECT_EQ(compiled->cubin.compare(0, 4, "\x7f" "ELF"), 0);
  EXPECT_EQ(compiled->key.size(), 64u);
  EXPECT_FALSE(compiled->plan.launches.empty());
  for (const KernelLaunch &l : compiled->plan.launches)
    EXPECT_NE(compiled->cubin.find(l.kernel), std::string::npos) << l.kernel;
  EXPECT_NE(compiled->resourceUsage.find("registers"), std::string::npos)
      << compiled->resourceUsage;
  EXPECT_FALSE(compiled->fromDiskCache);
  // In-process map: the same spec again is the same object, no compile.
  EXPECT_EQ(engine.compile(Spec{}, s), compiled);
  EXPECT_EQ(engine.compilations(), 1);
  // Shapes are runtime arguments: any number of them, still one compile.
  for (int64_t n : {1, 1000, 65536, 1 << 20})
    EXPECT_GT(compiled->plan.workspaceBytes(Shape{2, 8, 8, n, n}), 0);
  EXPECT_EQ(engine.compilations(), 1);
}

TEST(Engine, SecondEngineLoadsFromDisk) {
  TempDir dir;
  std::string key, cubin;
  {
    Engine engine(cacheIn(dir.path()));
    Status s;
    auto c = engine.compile(Spec{}, s);
    ASSERT_TRUE(c) << s.message;
    key = c->key;
    cubin = c->cubin;
  }
  Engine engine(cacheIn(dir.path()));
  Status s;
  auto c = engine.compile(Spec{}, s);
  ASSERT_TRUE(c) << s.message;
  EXPECT_TRUE(c->fromDiskCache);
  EXPECT_EQ(engine.compilations(), 0);
  EXPECT_EQ(c->key, key);
  EXPECT_EQ(c->cubin, cubin);
  std::vector<CacheEntryInfo> entries;
  ASSERT_TRUE(engine.cache().list(entries).ok());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].specName, "muse");
  EXPECT_EQ(entries[0].arch, "sm_90");
}

TEST(Engine, SpecFieldsChangeTheKey) {
  TempDir dir;
  Engine engine(cacheIn(dir.path()));
  Status s;
  auto base = engine.compile(Spec{}, s);
  ASSERT_TRUE(base) << s.message;
  Spec clusters;
  clusters.queryClusters = 32;
  Spec arch;
  arch.arch = "sm_80";
  Spec renamed;
  renamed.name = "other_name";
  for (const Spec &spec : {clusters, arch, renamed}) {
    auto c = engine.compile(spec, s);
    ASSERT_TRUE(c) << s.message;
    EXPECT_NE(c->key, base->key) << canonicalSpec(spec);
  }
  EXPECT_EQ(engine.compilations(), 4);
}

TEST(Engine, EightProcessesCompileOnce) {
  TempDir dir;
  std::vector<int> codes = runChildren(8, {"engine", dir.path()});
  int compiled = 0, loaded = 0;
  for (int c : codes) {
    compiled += c == 10;
    loaded += c == 0;
  }
  EXPECT_EQ(compiled, 1);
  EXPECT_EQ(loaded, 7);
}

TEST(Engine, TruncatedEntryIsRebuilt) {
  TempDir dir;
  std::string path, cubin;
  {
    Engine engine(cacheIn(dir.path()));
    Status s;
    auto c = engine.compile(Spec{}, s);
    ASSERT_TRUE(c) << s.message;
    path = engine.cache().entryPath(c->key);
    cubin = c->cubin;
  }
  std::string bytes = readAll(path);
  writeAll(path, bytes.substr(0, bytes.size() - 1000));
  Engine engine(cacheIn(dir.path()));
  Status s;
  testing::internal::CaptureStderr();
  auto c = engine.compile(Spec{}, s);
  std::string err = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(c) << s.message;
  EXPECT_FALSE(c->fromDiskCache);
  EXPECT_EQ(engine.compilations(), 1);
  EXPECT_NE(err.find("damaged"), std::string::npos) << err;
  EXPECT_EQ(c->cubin, cubin);
  std::vector<CacheEntryInfo> entries;
  ASSERT_TRUE(engine.cache().verify(entries).ok());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_TRUE(entries[0].valid) << entries[0].problem;
}

TEST(Engine, DisabledByEnvironment) {
  TempDir dir;
  ScopedEnv d("MUSE_CACHE_DIR", dir.path() + "/cache");
  ScopedEnv e("MUSE_CACHE_DISABLE", "1");
  Engine engine;
  Status s;
  ASSERT_TRUE(engine.compile(Spec{}, s)) << s.message;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/cache"));
  EXPECT_FALSE(engine.cache().enabled());
}

TEST(Engine, UnwritableCacheStillCompiles) {
  TempDir dir;
  writeAll(dir.path() + "/file", "x");
  Engine engine(cacheIn(dir.path() + "/file/cache"));
  Status s;
  testing::internal::CaptureStderr();
  auto c = engine.compile(Spec{}, s);
  testing::internal::GetCapturedStderr();
  ASSERT_TRUE(c) << s.message;
  EXPECT_EQ(c->cubin.compare(0, 4, "\x7f" "ELF"), 0);
}

TEST(Engine, BuildWithoutAGpuIsNoDevice) {
  if (CudaDriver::get().available().ok())
    GTEST_SKIP() << "a GPU is present; the GPU tests cover build()";
  TempDir dir;
  Engine engine(cacheIn(dir.path()));
  Status s;
  auto att = engine.build(Spec{}, s);
  EXPECT_FALSE(att);
  EXPECT_EQ(s.code, StatusCode::NoDevice);
  EXPECT_NE(s.message.find(CudaDriver::get().available().message), std::string::npos)
      << s.message;
  EXPECT_NE(s.message.find("compiled for sm_90 and cached"), std::string::npos) << s.message;
  // The compile happened and is cached: `muse-gen build` works on CI.
  std::vector<CacheEntryInfo> entries;
  ASSERT_TRUE(engine.cache().list(entries).ok());
  EXPECT_EQ(entries.size(), 1u);
}

TEST(Engine, InvalidSpecsAreReported) {
  TempDir dir;
  Engine engine(cacheIn(dir.path()));
  Status s;
  EXPECT_FALSE(engine.buildFromString("attention: {head_dim: 63}\n", s));
  EXPECT_EQ(s.code, StatusCode::InvalidSpec);
  EXPECT_NE(s.message.find("head_dim"), std::string::npos) << s.message;
  EXPECT_FALSE(engine.buildFromFile(dir.path() + "/missing.yaml", s));
  EXPECT_EQ(s.code, StatusCode::InvalidSpec);
  EXPECT_NE(s.message.find("missing.yaml"), std::string::npos) << s.message;
  EXPECT_FALSE(engine.buildFromString("name: x\n", {"clustering.query_clusters=0"}, s));
  EXPECT_EQ(s.code, StatusCode::InvalidSpec);
  Spec bad;
  bad.kmeansIters = 0;
  EXPECT_FALSE(engine.compile(bad, s));
  EXPECT_EQ(s.code, StatusCode::InvalidSpec);
  EXPECT_EQ(engine.compilations(), 0);
}

TEST(Engine, Ptx) {
  TempDir dir;
  Engine engine(cacheIn(dir.path()));
  std::string ptx;
  Status s = engine.ptx(Spec{}, ptx);
  ASSERT_TRUE(s.ok()) << s.message;
  EXPECT_NE(ptx.find(".entry"), std::string::npos);
  EXPECT_NE(ptx.find(".target sm_90"), std::string::npos);
}

} // namespace
} // namespace muse::test
