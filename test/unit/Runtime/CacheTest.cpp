//===- CacheTest.cpp - The disk cache: hits, damage, locks, configuration -===//

#include "RuntimeTestUtil.h"

#include "muse/Runtime/Cache.h"
#include "muse/Runtime/Nvrtc.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace muse::test {

int engineChildMain(const std::vector<std::string> &args);

namespace {

const std::string kKey(64, 'a');

/// A compute callback that makes a real cubin and counts its calls.
struct TinyCompile {
  int calls = 0;
  Status operator()(CacheEntry &e) {
    ++calls;
    NvrtcRequest req;
    req.source = kTinyKernel;
    req.headers = {{"tiny/scale.cuh", kTinyHeader}};
    req.options = {"-arch=sm_90", "-std=c++17"};
    NvrtcOutput out;
    Status s = compileCuda(req, out);
    e.specName = "tiny";
    e.arch = "sm_90";
    e.cubin = out.cubin;
    e.plan = "plan text";
    e.resourceUsage = "ptxas info";
    return s;
  }
};

/// Cheap callback for the tests that only exercise the file handling.
struct FakePayload {
  int calls = 0;
  Status operator()(CacheEntry &e) {
    ++calls;
    e.specName = "fake";
    e.arch = "sm_90";
    e.cubin = std::string(5000, '\x7f') + "cubin";
    e.plan = "plan";
    e.resourceUsage = "";
    return Status::success();
  }
};

} // namespace

int cacheChildMain(const std::vector<std::string> &args) {
  if (args.size() == 2 && args[0] == "raw") {
    DiskCache cache(cacheIn(args[1]));
    TinyCompile compile;
    CacheEntry entry;
    bool fromCache = false;
    Status s = cache.getOrCompute(kKey, std::ref(compile), entry, fromCache);
    if (!s.ok() || entry.cubin.compare(0, 4, "\x7f" "ELF") != 0)
      return 1;
    return compile.calls == 1 && !fromCache ? 10 : (compile.calls == 0 && fromCache ? 0 : 2);
  }
  if (!args.empty() && args[0] == "engine")
    return engineChildMain(args);
  return 3;
}

TEST(Cache, MissThenHit) {
  TempDir dir;
  DiskCache cache(cacheIn(dir.path() + "/nested/cache"));
  TinyCompile compile;
  CacheEntry first, second;
  bool fromCache = true;
  ASSERT_TRUE(cache.getOrCompute(kKey, std::ref(compile), first, fromCache).ok());
  EXPECT_FALSE(fromCache);
  EXPECT_EQ(first.cubin.compare(0, 4, "\x7f" "ELF"), 0);
  ASSERT_TRUE(cache.getOrCompute(kKey, std::ref(compile), second, fromCache).ok());
  EXPECT_TRUE(fromCache);
  EXPECT_EQ(compile.calls, 1);
  EXPECT_EQ(second.cubin, first.cubin);
  EXPECT_EQ(second.plan, "plan text");
  EXPECT_EQ(second.resourceUsage, "ptxas info");
  EXPECT_EQ(second.specName, "tiny");
  CacheStats st = cache.stats();
  EXPECT_EQ(st.hits, 1);
  EXPECT_EQ(st.misses, 1);
  EXPECT_EQ(st.compiles, 1);
  EXPECT_EQ(st.stores, 1);
}

TEST(Cache, EightProcessesCompileOnce) {
  TempDir dir;
  std::vector<int> codes = runChildren(8, {"raw", dir.path()});
  int compiled = 0, loaded = 0;
  for (int c : codes) {
    compiled += c == 10;
    loaded += c == 0;
  }
  EXPECT_EQ(compiled, 1);
  EXPECT_EQ(loaded, 7);
  std::vector<CacheEntryInfo> entries;
  DiskCache cache(cacheIn(dir.path()));
  ASSERT_TRUE(cache.verify(entries).ok());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_TRUE(entries[0].valid) << entries[0].problem;
}

TEST(Cache, EncodeDecodeRoundTrip) {
  CacheEntry e;
  e.specName = "name\nwith newline";
  e.arch = "sm_90";
  e.cubin = std::string("\0\1\2binary", 9);
  e.plan = "p";
  e.resourceUsage = "r";
  e.created = 1234;
  std::string bytes = DiskCache::encode(kKey, e);
  CacheEntry d;
  std::string problem;
  ASSERT_TRUE(DiskCache::decode(bytes, kKey, d, problem)) << problem;
  EXPECT_EQ(d.specName, "name with newline");
  EXPECT_EQ(d.cubin, e.cubin);
  EXPECT_EQ(d.plan, "p");
  EXPECT_EQ(d.resourceUsage, "r");
  EXPECT_EQ(d.created, 1234);
  EXPECT_FALSE(DiskCache::decode(bytes, std::string(64, 'b'), d, problem));
  EXPECT_NE(problem.find("belongs to key"), std::string::npos);
}

TEST(Cache, DamagedEntriesAreRebuilt) {
  TempDir dir;
  DiskCache cache(cacheIn(dir.path()));
  FakePayload compute;
  CacheEntry e;
  bool fromCache = false;
  ASSERT_TRUE(cache.getOrCompute(kKey, std::ref(compute), e, fromCache).ok());
  std::string path = cache.entryPath(kKey);
  std::string good = readAll(path);

  struct Damage {
    const char *what;
    std::string bytes;
  };
  std::string flipped = good;
  flipped[flipped.size() - 100] ^= 1;
  std::vector<Damage> damages = {{"truncated", good.substr(0, good.size() / 2)},
                                 {"header only", good.substr(0, 40)},
                                 {"empty", ""},
                                 {"bit flip", flipped},
                                 {"appended", good + "x"}};
  int expectedCalls = 1;
  for (const Damage &d : damages) {
    writeAll(path, d.bytes);
    testing::internal::CaptureStderr();
    ASSERT_TRUE(cache.getOrCompute(kKey, std::ref(compute), e, fromCache).ok()) << d.what;
    std::string err = testing::internal::GetCapturedStderr();
    EXPECT_FALSE(fromCache) << d.what;
    EXPECT_EQ(compute.calls, ++expectedCalls) << d.what;
    EXPECT_NE(err.find("damaged"), std::string::npos) << d.what << ": " << err;
    CacheEntry stored;
    std::string problem;
    EXPECT_TRUE(DiskCache::decode(readAll(path), kKey, stored, problem)) << d.what << ": " << problem;
    CacheEntry again;
    ASSERT_TRUE(cache.getOrCompute(kKey, std::ref(compute), again, fromCache).ok());
    EXPECT_TRUE(fromCache) << d.what << ": the rebuilt entry must load";
    EXPECT_EQ(again.cubin, e.cubin);
  }
  EXPECT_EQ(cache.stats().corrupt, int64_t(damages.size()));
}

TEST(Cache, UnwritableDirectoryWarnsOnceAndStillWorks) {
  TempDir dir;
  // A path below a regular file can never be created, even by root.
  writeAll(dir.path() + "/file", "x");
  DiskCache cache(cacheIn(dir.path() + "/file/cache"));
  FakePayload compute;
  CacheEntry e;
  bool fromCache = true;
  testing::internal::CaptureStderr();
  ASSERT_TRUE(cache.getOrCompute(kKey, std::ref(compute), e, fromCache).ok());
  ASSERT_TRUE(cache.getOrCompute(std::string(64, 'c'), std::ref(compute), e, fromCache).ok());
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(fromCache);
  EXPECT_EQ(compute.calls, 2);
  EXPECT_EQ(e.cubin.substr(e.cubin.size() - 5), "cubin");
  // Whether this test or an earlier one triggered it, the warning appears at
  // most once per process and names the variable that fixes it.
  size_t first = err.find("not writable");
  if (first != std::string::npos) {
    EXPECT_NE(err.find("MUSE_CACHE_DIR"), std::string::npos);
    EXPECT_EQ(err.find("not writable", first + 1), std::string::npos) << err;
  }
  EXPECT_EQ(cache.stats().uncached, 2);
}

TEST(Cache, ReadOnlyDirectoryStillServesHits) {
  if (geteuid() == 0)
    GTEST_SKIP() << "root ignores directory permissions";
  TempDir dir;
  DiskCache cache(cacheIn(dir.path()));
  FakePayload compute;
  CacheEntry e;
  bool fromCache = false;
  ASSERT_TRUE(cache.getOrCompute(kKey, std::ref(compute), e, fromCache).ok());
  chmod(dir.path().c_str(), 0500);
  ASSERT_TRUE(cache.getOrCompute(kKey, std::ref(compute), e, fromCache).ok());
  EXPECT_TRUE(fromCache);
  testing::internal::CaptureStderr();
  ASSERT_TRUE(cache.getOrCompute(std::string(64, 'd'), std::ref(compute), e, fromCache).ok());
  testing::internal::GetCapturedStderr();
  EXPECT_FALSE(fromCache);
  EXPECT_EQ(compute.calls, 2);
}

TEST(Cache, DisabledNeverTouchesTheDisk) {
  TempDir dir;
  CacheConfig config = cacheIn(dir.path() + "/c");
  config.disabled = true;
  DiskCache cache(config);
  FakePayload compute;
  CacheEntry e;
  bool fromCache = true;
  for (int i = 0; i < 2; ++i)
    ASSERT_TRUE(cache.getOrCompute(kKey, std::ref(compute), e, fromCache).ok());
  EXPECT_FALSE(fromCache);
  EXPECT_EQ(compute.calls, 2);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/c"));
}

TEST(Cache, ComputeFailureIsReturnedAndNothingStored) {
  TempDir dir;
  DiskCache cache(cacheIn(dir.path()));
  CacheEntry e;
  bool fromCache = false;
  Status s = cache.getOrCompute(
      kKey, [](CacheEntry &) { return Status{StatusCode::CompileError, "boom"}; }, e, fromCache);
  EXPECT_EQ(s.code, StatusCode::CompileError);
  EXPECT_EQ(s.message, "boom");
  EXPECT_FALSE(std::filesystem::exists(cache.entryPath(kKey)));
}

TEST(Cache, ListVerifyClear) {
  TempDir dir;
  DiskCache cache(cacheIn(dir.path()));
  FakePayload compute;
  CacheEntry e;
  bool fromCache = false;
  for (char c : {'1', '2', '3'})
    ASSERT_TRUE(cache.getOrCompute(std::string(64, c), std::ref(compute), e, fromCache).ok());
  std::vector<CacheEntryInfo> entries;
  ASSERT_TRUE(cache.list(entries).ok());
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].key, std::string(64, '1'));
  EXPECT_EQ(entries[0].specName, "fake");
  EXPECT_EQ(entries[0].arch, "sm_90");
  EXPECT_GT(entries[0].bytes, 5000);
  EXPECT_GT(entries[0].created, 0);
  EXPECT_GT(cache.totalBytes(), 15000);

  std::string second = cache.entryPath(std::string(64, '2'));
  std::string bytes = readAll(second);
  bytes[bytes.size() - 1] ^= 1;
  writeAll(second, bytes);
  ASSERT_TRUE(cache.verify(entries).ok());
  EXPECT_TRUE(entries[0].valid);
  EXPECT_FALSE(entries[1].valid);
  EXPECT_EQ(entries[1].problem, "checksum mismatch");
  EXPECT_TRUE(entries[2].valid);

  writeAll(dir.path() + "/unrelated.txt", "keep me");
  int64_t removed = 0;
  ASSERT_TRUE(cache.clear(removed).ok());
  EXPECT_EQ(removed, 3);
  ASSERT_TRUE(cache.list(entries).ok());
  EXPECT_TRUE(entries.empty());
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/unrelated.txt"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/" + std::string(64, '1') + ".lock"));
}

TEST(Cache, LocationFromEnvironment) {
  ScopedEnv a("MUSE_CACHE_DIR", "/somewhere/explicit");
  ScopedEnv b("XDG_CACHE_HOME", "/xdg");
  ScopedEnv c("HOME", "/home/someone");
  ScopedEnv d("MUSE_CACHE_DISABLE", std::nullopt);
  EXPECT_EQ(CacheConfig::fromEnvironment().dir, "/somewhere/explicit");
  EXPECT_FALSE(CacheConfig::fromEnvironment().disabled);
  {
    ScopedEnv e("MUSE_CACHE_DIR", std::nullopt);
    EXPECT_EQ(CacheConfig::fromEnvironment().dir, "/xdg/muse");
    ScopedEnv f("XDG_CACHE_HOME", "relative/ignored");
    EXPECT_EQ(CacheConfig::fromEnvironment().dir, "/home/someone/.cache/muse");
    ScopedEnv g("XDG_CACHE_HOME", "");
    EXPECT_EQ(CacheConfig::fromEnvironment().dir, "/home/someone/.cache/muse");
  }
  for (const char *on : {"1", "true", "YES"}) {
    ScopedEnv e("MUSE_CACHE_DISABLE", on);
    EXPECT_TRUE(CacheConfig::fromEnvironment().disabled) << on;
  }
  for (const char *off : {"0", "", "false", "off"}) {
    ScopedEnv e("MUSE_CACHE_DISABLE", off);
    EXPECT_FALSE(CacheConfig::fromEnvironment().disabled) << off;
  }
}

namespace {

/// Stores a FakePayload entry under a key of 64 `c`s; returns the key.
std::string storeFake(DiskCache &cache, char c) {
  FakePayload compute;
  CacheEntry e;
  bool fromCache = false;
  std::string key(64, c);
  EXPECT_TRUE(cache.getOrCompute(key, std::ref(compute), e, fromCache).ok());
  return key;
}

void setMtime(const std::string &path, time_t seconds) {
  struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

time_t mtimeOf(const std::string &path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_mtime : 0;
}

bool has(const DiskCache &cache, const std::string &key) {
  return std::filesystem::exists(cache.entryPath(key));
}

} // namespace

TEST(CacheLimit, EvictsLeastRecentlyUsedFirst) {
  TempDir dir;
  DiskCache unbounded(cacheIn(dir.path()));
  std::string k1 = storeFake(unbounded, '1'), k2 = storeFake(unbounded, '2'),
              k3 = storeFake(unbounded, '3');
  int64_t size = int64_t(std::filesystem::file_size(unbounded.entryPath(k1)));
  setMtime(unbounded.entryPath(k1), 3000); // most recent of the three
  setMtime(unbounded.entryPath(k2), 1000); // least recent
  setMtime(unbounded.entryPath(k3), 2000);

  CacheConfig config = cacheIn(dir.path());
  config.maxBytes = 2 * size + size / 2; // room for two entries
  DiskCache bounded(config);
  std::string k4 = storeFake(bounded, '4');
  EXPECT_FALSE(has(bounded, k2));
  EXPECT_FALSE(has(bounded, k3));
  EXPECT_TRUE(has(bounded, k1));
  EXPECT_TRUE(has(bounded, k4));
  // Lock files stay (unlinking one could give a key two locks).
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/" + k2 + ".lock"));

  // prune goes by the same order and counts what it removed.
  setMtime(bounded.entryPath(k4), 500);
  int64_t removed = -1;
  ASSERT_TRUE(bounded.prune(size, removed).ok());
  EXPECT_EQ(removed, 1);
  EXPECT_FALSE(has(bounded, k4));
  EXPECT_TRUE(has(bounded, k1));
  ASSERT_TRUE(bounded.prune(size, removed).ok());
  EXPECT_EQ(removed, 0);
  EXPECT_FALSE(bounded.prune(-1, removed).ok());
}

TEST(CacheLimit, TheJustStoredEntrySurvives) {
  TempDir dir;
  CacheConfig config = cacheIn(dir.path());
  config.maxBytes = 1; // smaller than any entry
  DiskCache cache(config);
  std::string k1 = storeFake(cache, '1');
  EXPECT_TRUE(has(cache, k1));
  std::string k2 = storeFake(cache, '2');
  EXPECT_TRUE(has(cache, k2));
  EXPECT_FALSE(has(cache, k1));
  std::vector<CacheEntryInfo> entries;
  ASSERT_TRUE(cache.verify(entries).ok());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_TRUE(entries[0].valid);
}

TEST(CacheLimit, AHeldLockProtectsItsEntry) {
  TempDir dir;
  DiskCache cache(cacheIn(dir.path()));
  std::string k1 = storeFake(cache, '1'), k2 = storeFake(cache, '2'), k3 = storeFake(cache, '3');
  setMtime(cache.entryPath(k1), 1000); // the oldest, but being rewritten
  setMtime(cache.entryPath(k2), 2000);
  setMtime(cache.entryPath(k3), 3000);
  // flock locks belong to the open file description, so this open conflicts
  // with the cache's own just as another process's would.
  int fd = open((dir.path() + "/" + k1 + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
  int64_t removed = 0;
  ASSERT_TRUE(cache.prune(0, removed).ok());
  EXPECT_EQ(removed, 2);
  EXPECT_TRUE(has(cache, k1));
  EXPECT_FALSE(has(cache, k2));
  EXPECT_FALSE(has(cache, k3));
  flock(fd, LOCK_UN);
  close(fd);
  ASSERT_TRUE(cache.prune(0, removed).ok());
  EXPECT_EQ(removed, 1);
  EXPECT_FALSE(has(cache, k1));
}

TEST(CacheLimit, MaxBytesFromEnvironment) {
  struct Good {
    const char *text;
    int64_t bytes;
  };
  for (Good g : {Good{"1234", 1234}, Good{"10K", 10240}, Good{"3m", 3 << 20},
                 Good{"2G", int64_t(2) << 30}, Good{"0", 0}}) {
    ScopedEnv e("MUSE_CACHE_MAX_BYTES", std::string(g.text));
    EXPECT_EQ(CacheConfig::fromEnvironment().maxBytes, g.bytes) << g.text;
  }
  {
    ScopedEnv e("MUSE_CACHE_MAX_BYTES", std::nullopt);
    EXPECT_EQ(CacheConfig::fromEnvironment().maxBytes, 0);
  }
  testing::internal::CaptureStderr();
  for (const char *bad : {"abc", "10X", "-5", "1.5G", "K", "10KB", " 10", "99999999999999999999"}) {
    ScopedEnv e("MUSE_CACHE_MAX_BYTES", std::string(bad));
    EXPECT_EQ(CacheConfig::fromEnvironment().maxBytes, 0) << bad;
  }
  std::string err = testing::internal::GetCapturedStderr();
  size_t first = err.find("MUSE_CACHE_MAX_BYTES=abc");
  EXPECT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("MUSE_CACHE_MAX_BYTES", first + 1), std::string::npos)
      << "warns once: " << err;
}

TEST(CacheLimit, AHitTouchesItsEntry) {
  TempDir dir;
  DiskCache cache(cacheIn(dir.path()));
  std::string k1 = storeFake(cache, '1');
  setMtime(cache.entryPath(k1), 1000);
  FakePayload compute;
  CacheEntry e;
  bool fromCache = false;
  ASSERT_TRUE(cache.getOrCompute(k1, std::ref(compute), e, fromCache).ok());
  EXPECT_TRUE(fromCache);
  EXPECT_EQ(compute.calls, 0);
  EXPECT_GE(mtimeOf(cache.entryPath(k1)), time(nullptr) - 60);
}

TEST(CacheKey, EveryInputMatters) {
  std::vector<std::pair<std::string, std::string>> templates = {{"muse/a.cuh", "A"}};
  CacheKeyInputs base;
  base.canonicalSpec = "spec";
  base.cudaSource = "src";
  base.plan = "plan";
  base.arch = "sm_90";
  base.nvrtcVersion = "13.0";
  base.options = {"-arch=sm_90", "-std=c++17"};
  base.templates = &templates;
  std::string key = cacheKey(base);
  EXPECT_EQ(key.size(), 64u);
  EXPECT_EQ(cacheKey(base), key);

  auto changed = [&](auto mutate) {
    CacheKeyInputs in = base;
    auto t = templates;
    in.templates = &t;
    mutate(in, t);
    return cacheKey(in);
  };
  using T = std::vector<std::pair<std::string, std::string>>;
  EXPECT_NE(changed([](CacheKeyInputs &in, T &) { in.canonicalSpec += " "; }), key);
  EXPECT_NE(changed([](CacheKeyInputs &in, T &) { in.cudaSource += " "; }), key);
  EXPECT_NE(changed([](CacheKeyInputs &in, T &) { in.plan += " "; }), key);
  EXPECT_NE(changed([](CacheKeyInputs &in, T &) { in.arch = "sm_80"; }), key);
  EXPECT_NE(changed([](CacheKeyInputs &in, T &) { in.nvrtcVersion = "13.1"; }), key);
  EXPECT_NE(changed([](CacheKeyInputs &in, T &) { in.options.push_back("-G"); }), key);
  EXPECT_NE(changed([](CacheKeyInputs &in, T &) { std::swap(in.options[0], in.options[1]); }),
            key);
  EXPECT_NE(changed([](CacheKeyInputs &, T &t) { t[0].second = "B"; }), key);
  EXPECT_NE(changed([](CacheKeyInputs &, T &t) { t[0].first = "muse/b.cuh"; }), key);
}

} // namespace muse::test
