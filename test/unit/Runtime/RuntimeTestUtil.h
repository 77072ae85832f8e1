//===- RuntimeTestUtil.h - Temporary directories, environment, children ---===//
#ifndef MUSE_TEST_UNIT_RUNTIME_RUNTIMETESTUTIL_H
#define MUSE_TEST_UNIT_RUNTIME_RUNTIMETESTUTIL_H

#include "muse/Runtime/Cache.h"

#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace muse::test {

/// A fresh directory in the system temporary directory, removed with its contents.
class TempDir {
public:
  TempDir();
  ~TempDir();
  const std::string &path() const { return path_; }

private:
  std::string path_;
};

/// Sets (or unsets, with nullopt) an environment variable for one scope.
class ScopedEnv {
public:
  ScopedEnv(const char *name, std::optional<std::string> value);
  ~ScopedEnv();

private:
  std::string name_;
  std::optional<std::string> old_;
};

/// A cache in `dir`, enabled, with a short lock timeout.
CacheConfig cacheIn(const std::string &dir);

/// Runs this test binary `count` times at once with `args` (after the
/// "--child" marker); returns each child's exit code (-1 if it crashed).
std::vector<int> runChildren(int count, const std::vector<std::string> &args);

/// Child entry points, dispatched from main(): "--child <mode> ...".
int cacheChildMain(const std::vector<std::string> &args);

std::string readAll(const std::string &path);
void writeAll(const std::string &path, const std::string &bytes);

/// A small kernel that includes an in-memory header and cuda_bf16.h.
extern const char *kTinyKernel;
extern const char *kTinyHeader;

} // namespace muse::test

#endif
