//===- Cache.h - The on-disk kernel cache ---------------------------------===//
//
// Content-addressed: the key is a SHA-256 over everything that changes the
// compiled bytes (cacheKey below); sequence length, batch and head counts are
// runtime arguments and never part of it. Safe across processes and hosts:
//   - one lock file per key (flock with a timeout); a writer re-checks the
//     entry after taking the lock, so exactly one process compiles a key;
//   - entries are written to a temporary file in the same directory and
//     renamed into place, so readers (which take no lock) never see a torn one;
//   - every entry carries a SHA-256 of its header and payload, checked on
//     load; a corrupt or truncated entry counts as a miss and is replaced.
// Location: MUSE_CACHE_DIR, else $XDG_CACHE_HOME/muse, else ~/.cache/muse.
// MUSE_CACHE_DISABLE=1 turns it off. An unwritable directory warns once on
// stderr; hits are still read from it and misses compile uncached.
// MUSE_CACHE_MAX_BYTES bounds the entries' total size: after a store, the
// least recently used entries (by mtime; a hit touches it) are unlinked until
// the total fits, never the entry just stored nor one whose key lock another
// process holds. Readers see an unlinked entry as a miss.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_RUNTIME_CACHE_H
#define MUSE_RUNTIME_CACHE_H

#include "muse/Runtime/Engine.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace muse {

/// Bump when the entry format or the meaning of a key changes.
inline constexpr int kCacheAbiVersion = 1;

/// Everything that determines the compiled bytes of one spec.
struct CacheKeyInputs {
  std::string canonicalSpec;
  std::string cudaSource;
  std::string plan; // LaunchPlan::serialize()
  std::string arch; // "sm_90"
  std::string nvrtcVersion;
  std::vector<std::string> options; // NVRTC options, in order
  const std::vector<std::pair<std::string, std::string>> *templates = nullptr;
};

/// 64 hex digits; also covers kGeneratorVersion and kCacheAbiVersion.
std::string cacheKey(const CacheKeyInputs &in);

/// What one entry stores.
struct CacheEntry {
  std::string specName;
  std::string arch;
  std::string cubin;
  std::string plan; // LaunchPlan::serialize()
  std::string resourceUsage;
  int64_t created = 0; // unix seconds, set when stored
};

/// One file of the cache directory, for `muse-gen cache ls|verify`.
struct CacheEntryInfo {
  std::string key;
  std::string path;
  std::string specName;
  std::string arch;
  int64_t bytes = 0;
  int64_t created = 0;
  bool valid = true;    // header and (for verify) checksum check out
  std::string problem;  // why not, when !valid
};

struct CacheStats {
  int64_t hits = 0;      // loaded from disk
  int64_t misses = 0;    // not on disk (or corrupt) when first looked up
  int64_t compiles = 0;  // compute callbacks run
  int64_t stores = 0;    // entries written
  int64_t corrupt = 0;   // entries found corrupt and replaced
  int64_t uncached = 0;  // compiles that could not be stored
};

struct CacheConfig {
  std::string dir;      // empty when no location could be found
  bool disabled = false;
  double lockTimeoutSeconds = 600; // then compile without the lock (rename keeps it safe)
  int64_t maxBytes = 0; // bound on the entries' total size; 0: no limit
  /// Reads MUSE_CACHE_DIR, XDG_CACHE_HOME, HOME, MUSE_CACHE_DISABLE,
  /// MUSE_CACHE_LOCK_TIMEOUT (seconds) and MUSE_CACHE_MAX_BYTES (bytes, or
  /// with a K, M or G suffix; a malformed value warns once and means no limit).
  static CacheConfig fromEnvironment();
};

/// Parses "N", "NK", "NM" or "NG" (binary multiples, either case) into bytes.
bool parseByteSize(const std::string &text, int64_t &out);

class DiskCache {
public:
  explicit DiskCache(CacheConfig config);

  const CacheConfig &config() const { return config_; }
  bool enabled() const { return !config_.disabled && !config_.dir.empty(); }
  std::string entryPath(const std::string &key) const;

  using Compute = std::function<Status(CacheEntry &)>;
  /// Loads `key`, or runs `compute` (under the key's lock) and stores its
  /// result. `fromCache` says which happened. Only `compute`'s failures are
  /// errors: cache trouble degrades to compiling uncached.
  Status getOrCompute(const std::string &key, const Compute &compute, CacheEntry &out,
                      bool &fromCache);

  /// Every entry, from its header only (cheap).
  Status list(std::vector<CacheEntryInfo> &out) const;
  /// Every entry, fully read and checksummed.
  Status verify(std::vector<CacheEntryInfo> &out) const;
  /// Removes entries, locks and leftover temporary files; `removed` counts entries.
  Status clear(int64_t &removed) const;
  /// Unlinks least recently used entries (oldest mtime first) until the
  /// entries total at most `maxBytes`, skipping any whose key lock another
  /// process holds; `removed` counts entries.
  Status prune(int64_t maxBytes, int64_t &removed) const;
  /// Bytes of all files in the directory.
  int64_t totalBytes() const;

  CacheStats stats() const;

  /// The entry file format, exposed for tests.
  static std::string encode(const std::string &key, const CacheEntry &entry);
  static bool decode(const std::string &bytes, const std::string &key, CacheEntry &out,
                     std::string &problem);

private:
  bool load(const std::string &key, CacheEntry &out, bool &existed, std::string &problem) const;
  void warnUnwritable(const std::string &why);
  Status computeUncached(const Compute &compute, CacheEntry &out);
  Status evict(int64_t maxBytes, const std::string &keep, int64_t &removed) const;

  CacheConfig config_;
  std::atomic<int64_t> hits_{0}, misses_{0}, compiles_{0}, stores_{0}, corrupt_{0},
      uncached_{0};
};

} // namespace muse

#endif
