//===- Cache.cpp - The on-disk kernel cache -------------------------------===//

#include "muse/Runtime/Cache.h"

#include "muse/Compiler/Compiler.h"
#include "muse/Runtime/Sha256.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace muse {
namespace {

constexpr const char *kMagic = "MUSE-CACHE-ENTRY 1\n";
constexpr const char *kEntrySuffix = ".entry";
constexpr const char *kLockSuffix = ".lock";

bool envFlag(const char *name) {
  const char *v = std::getenv(name);
  if (!v)
    return false;
  std::string s(v);
  for (char &c : s)
    c = char(std::tolower(static_cast<unsigned char>(c)));
  return !(s.empty() || s == "0" || s == "false" || s == "no" || s == "off");
}

std::string nonEmptyEnv(const char *name) {
  const char *v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

/// Header values are single lines; names come from user YAML.
std::string oneLine(std::string s) {
  for (char &c : s)
    if (c == '\n' || c == '\r')
      c = ' ';
  return s;
}

bool readFile(const std::string &path, std::string &out, std::string &problem) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    problem = std::strerror(errno);
    return false;
  }
  out.clear();
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      problem = std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0)
      break;
    out.append(buf, size_t(n));
  }
  ::close(fd);
  return true;
}

bool writeAll(int fd, const std::string &bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    done += size_t(n);
  }
  return true;
}

/// Parses the header lines ("field value") up to and including "sha256 ...".
/// Returns the offset of the payload, or 0 on a malformed header.
size_t parseHeader(const std::string &bytes, std::vector<std::pair<std::string, std::string>> &fields,
                   size_t &checksumLineStart, std::string &problem) {
  size_t magicLen = std::strlen(kMagic);
  if (bytes.compare(0, magicLen, kMagic) != 0) {
    problem = "not a muse cache entry (bad magic)";
    return 0;
  }
  size_t pos = magicLen;
  while (pos < bytes.size()) {
    size_t eol = bytes.find('\n', pos);
    if (eol == std::string::npos) {
      problem = "truncated header";
      return 0;
    }
    std::string line = bytes.substr(pos, eol - pos);
    size_t space = line.find(' ');
    std::string name = line.substr(0, space);
    std::string value = space == std::string::npos ? std::string() : line.substr(space + 1);
    fields.emplace_back(name, value);
    if (name == "sha256") {
      checksumLineStart = pos;
      return eol + 1;
    }
    pos = eol + 1;
  }
  problem = "truncated header";
  return 0;
}

const std::string *field(const std::vector<std::pair<std::string, std::string>> &fields,
                         const char *name) {
  for (const auto &f : fields)
    if (f.first == name)
      return &f.second;
  return nullptr;
}

bool parseSize(const std::string *text, int64_t &out) {
  if (!text || text->empty())
    return false;
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(text->c_str(), &end, 10);
  if (errno || *end || v < 0)
    return false;
  out = v;
  return true;
}

/// An exclusive flock on the key's lock file, released on destruction.
class KeyLock {
public:
  /// Returns false (with `why`) when the lock file cannot be created, which
  /// means the directory is not writable.
  bool acquire(const std::string &path, double timeoutSeconds, std::string &why) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      why = "cannot create " + path + ": " + std::strerror(errno);
      return false;
    }
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::duration<double>(timeoutSeconds);
    for (;;) {
      if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
        locked_ = true;
        return true;
      }
      if (errno == EINTR)
        continue;
      if (errno != EWOULDBLOCK) {
        // flock unsupported (some network file systems): carry on unlocked;
        // the atomic rename still keeps entries whole, at worst two
        // processes compile the same key.
        return true;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        std::fprintf(stderr,
                     "muse: warning: waited %.0f s for the cache lock %s; compiling without "
                     "it (set MUSE_CACHE_LOCK_TIMEOUT to wait longer)\n",
                     timeoutSeconds, path.c_str());
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~KeyLock() {
    if (fd_ >= 0) {
      if (locked_)
        ::flock(fd_, LOCK_UN);
      ::close(fd_);
    }
  }

private:
  int fd_ = -1;
  bool locked_ = false;
};

std::atomic<bool> gWarnedUnwritable{false};
std::atomic<bool> gWarnedMaxBytes{false};

} // namespace

std::string cacheKey(const CacheKeyInputs &in) {
  Sha256 h;
  h.field("muse-cache-key");
  h.field(kGeneratorVersion);
  h.field(std::to_string(kCacheAbiVersion));
  if (in.templates)
    for (const auto &t : *in.templates) {
      h.field(t.first);
      h.field(t.second);
    }
  h.field("spec");
  h.field(in.canonicalSpec);
  h.field(in.cudaSource);
  h.field(in.plan);
  h.field(in.arch);
  h.field(in.nvrtcVersion);
  for (const std::string &o : in.options)
    h.field(o);
  return h.hexDigest();
}

CacheConfig CacheConfig::fromEnvironment() {
  CacheConfig c;
  c.disabled = envFlag("MUSE_CACHE_DISABLE");
  if (std::string d = nonEmptyEnv("MUSE_CACHE_DIR"); !d.empty())
    c.dir = d;
  else if (std::string x = nonEmptyEnv("XDG_CACHE_HOME"); !x.empty() && x[0] == '/')
    c.dir = x + "/muse"; // the XDG spec says to ignore relative values
  else if (std::string home = nonEmptyEnv("HOME"); !home.empty())
    c.dir = home + "/.cache/muse";
  if (std::string t = nonEmptyEnv("MUSE_CACHE_LOCK_TIMEOUT"); !t.empty()) {
    char *end = nullptr;
    double v = std::strtod(t.c_str(), &end);
    if (end && !*end && v >= 0)
      c.lockTimeoutSeconds = v;
    else
      std::fprintf(stderr,
                   "muse: warning: MUSE_CACHE_LOCK_TIMEOUT=%s is not a number of seconds; "
                   "using %.0f\n",
                   t.c_str(), c.lockTimeoutSeconds);
  }
  if (std::string m = nonEmptyEnv("MUSE_CACHE_MAX_BYTES"); !m.empty()) {
    int64_t v = 0;
    if (parseByteSize(m, v))
      c.maxBytes = v;
    else if (!gWarnedMaxBytes.exchange(true))
      std::fprintf(stderr,
                   "muse: warning: MUSE_CACHE_MAX_BYTES=%s is not a size in bytes (N, or N with "
                   "a K, M or G suffix); the cache is not bounded\n",
                   m.c_str());
  }
  return c;
}

bool parseByteSize(const std::string &text, int64_t &out) {
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])))
    return false;
  char *end = nullptr;
  errno = 0;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno || v < 0)
    return false;
  int shift = 0;
  std::string suffix(end);
  if (suffix.size() == 1) {
    switch (std::toupper(static_cast<unsigned char>(suffix[0]))) {
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    default: return false;
    }
  } else if (!suffix.empty()) {
    return false;
  }
  if (v > (INT64_MAX >> shift))
    return false;
  out = int64_t(v) << shift;
  return true;
}

DiskCache::DiskCache(CacheConfig config) : config_(std::move(config)) {}

std::string DiskCache::entryPath(const std::string &key) const {
  return config_.dir + "/" + key + kEntrySuffix;
}

std::string DiskCache::encode(const std::string &key, const CacheEntry &e) {
  std::ostringstream head;
  head << kMagic << "key " << key << "\n"
       << "name " << oneLine(e.specName) << "\n"
       << "arch " << oneLine(e.arch) << "\n"
       << "created " << e.created << "\n"
       << "cubin " << e.cubin.size() << "\n"
       << "plan " << e.plan.size() << "\n"
       << "resources " << e.resourceUsage.size() << "\n";
  std::string header = head.str();
  std::string payload = e.cubin + e.plan + e.resourceUsage;
  Sha256 h;
  h.update(header);
  h.update(payload);
  return header + "sha256 " + h.hexDigest() + "\n" + payload;
}

bool DiskCache::decode(const std::string &bytes, const std::string &key, CacheEntry &out,
                       std::string &problem) {
  std::vector<std::pair<std::string, std::string>> fields;
  size_t checksumLine = 0;
  size_t payloadStart = parseHeader(bytes, fields, checksumLine, problem);
  if (!payloadStart)
    return false;
  const std::string *storedKey = field(fields, "key");
  if (!storedKey || *storedKey != key) {
    problem = "entry belongs to key " + (storedKey ? *storedKey : std::string("<none>"));
    return false;
  }
  int64_t cubin = 0, plan = 0, resources = 0, created = 0;
  if (!parseSize(field(fields, "cubin"), cubin) || !parseSize(field(fields, "plan"), plan) ||
      !parseSize(field(fields, "resources"), resources) ||
      !parseSize(field(fields, "created"), created)) {
    problem = "malformed header";
    return false;
  }
  uint64_t expected = uint64_t(cubin) + uint64_t(plan) + uint64_t(resources);
  if (bytes.size() - payloadStart != expected) {
    problem = "payload is " + std::to_string(bytes.size() - payloadStart) + " bytes, header says " +
              std::to_string(expected) + " (truncated or appended)";
    return false;
  }
  Sha256 h;
  h.update(bytes.data(), checksumLine);
  h.update(bytes.data() + payloadStart, bytes.size() - payloadStart);
  if (h.hexDigest() != *field(fields, "sha256")) {
    problem = "checksum mismatch";
    return false;
  }
  const std::string *name = field(fields, "name");
  const std::string *arch = field(fields, "arch");
  out.specName = name ? *name : "";
  out.arch = arch ? *arch : "";
  out.created = created;
  out.cubin = bytes.substr(payloadStart, size_t(cubin));
  out.plan = bytes.substr(payloadStart + size_t(cubin), size_t(plan));
  out.resourceUsage = bytes.substr(payloadStart + size_t(cubin + plan), size_t(resources));
  return true;
}

bool DiskCache::load(const std::string &key, CacheEntry &out, bool &existed,
                     std::string &problem) const {
  std::string bytes;
  existed = false;
  if (!readFile(entryPath(key), bytes, problem))
    return false;
  existed = true;
  return decode(bytes, key, out, problem);
}

void DiskCache::warnUnwritable(const std::string &why) {
  if (!gWarnedUnwritable.exchange(true))
    std::fprintf(stderr,
                 "muse: warning: the kernel cache directory %s is not writable (%s); kernels "
                 "are compiled without the disk cache. Set MUSE_CACHE_DIR to a writable "
                 "directory, or MUSE_CACHE_DISABLE=1 to turn the cache off.\n",
                 config_.dir.c_str(), why.c_str());
}

Status DiskCache::computeUncached(const Compute &compute, CacheEntry &out) {
  ++compiles_;
  ++uncached_;
  return compute(out);
}

Status DiskCache::getOrCompute(const std::string &key, const Compute &compute, CacheEntry &out,
                               bool &fromCache) {
  fromCache = false;
  if (!enabled())
    return computeUncached(compute, out);

  bool existed = false;
  std::string problem;
  if (load(key, out, existed, problem)) {
    ++hits_;
    fromCache = true;
    // Recently used: eviction goes by mtime. Best effort (read-only caches).
    ::utimensat(AT_FDCWD, entryPath(key).c_str(), nullptr, 0);
    return Status::success();
  }
  ++misses_;

  std::error_code ec;
  fs::create_directories(config_.dir, ec);
  if (ec) {
    warnUnwritable(ec.message());
    return computeUncached(compute, out);
  }
  KeyLock lock;
  std::string why;
  if (!lock.acquire(config_.dir + "/" + key + kLockSuffix, config_.lockTimeoutSeconds, why)) {
    warnUnwritable(why);
    return computeUncached(compute, out);
  }
  // Double-checked: another process may have stored it while we waited.
  if (load(key, out, existed, problem)) {
    ++hits_;
    fromCache = true;
    return Status::success();
  }
  if (existed) {
    ++corrupt_;
    std::fprintf(stderr, "muse: cache entry %s is damaged (%s); rebuilding it\n",
                 entryPath(key).c_str(), problem.c_str());
  }

  ++compiles_;
  if (Status s = compute(out); !s.ok())
    return s;
  out.created = int64_t(std::time(nullptr));

  static std::atomic<int> tmpCounter{0};
  std::string tmp = config_.dir + "/" + key + ".tmp." + std::to_string(::getpid()) + "." +
                    std::to_string(tmpCounter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    warnUnwritable("cannot create " + tmp + ": " + std::strerror(errno));
    ++uncached_;
    return Status::success();
  }
  bool written = writeAll(fd, encode(key, out)) && ::fsync(fd) == 0;
  written = (::close(fd) == 0) && written;
  if (!written || ::rename(tmp.c_str(), entryPath(key).c_str()) != 0) {
    warnUnwritable("cannot write " + entryPath(key) + ": " + std::strerror(errno));
    ::unlink(tmp.c_str());
    ++uncached_;
    return Status::success();
  }
  ++stores_;
  if (config_.maxBytes > 0) {
    int64_t removed = 0;
    evict(config_.maxBytes, key, removed); // best effort: a full cache is not an error
  }
  return Status::success();
}

Status DiskCache::evict(int64_t maxBytes, const std::string &keep, int64_t &removed) const {
  removed = 0;
  if (config_.dir.empty())
    return {StatusCode::CacheError, "no cache directory: set MUSE_CACHE_DIR or HOME"};
  std::error_code ec;
  if (!fs::exists(config_.dir, ec))
    return Status::success();
  struct Candidate {
    std::string key;
    int64_t bytes;
    struct timespec mtime;
  };
  std::vector<Candidate> entries;
  int64_t total = 0;
  for (fs::directory_iterator it(config_.dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path &p = it->path();
    if (p.extension() != kEntrySuffix)
      continue;
    struct stat st;
    if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
      continue; // removed meanwhile
    entries.push_back({p.stem().string(), int64_t(st.st_size), st.st_mtim});
    total += int64_t(st.st_size);
  }
  if (ec)
    return {StatusCode::CacheError, "cannot list " + config_.dir + ": " + ec.message()};
  std::sort(entries.begin(), entries.end(), [](const Candidate &a, const Candidate &b) {
    if (a.mtime.tv_sec != b.mtime.tv_sec)
      return a.mtime.tv_sec < b.mtime.tv_sec;
    if (a.mtime.tv_nsec != b.mtime.tv_nsec)
      return a.mtime.tv_nsec < b.mtime.tv_nsec;
    return a.key < b.key;
  });
  for (const Candidate &c : entries) {
    if (total <= maxBytes)
      break;
    if (c.key == keep)
      continue;
    // A writer holding the key's lock may be about to (re)store it: leave it.
    // The lock file stays, since unlinking it would let two writers lock
    // different files for one key.
    std::string lockPath = config_.dir + "/" + c.key + kLockSuffix;
    int fd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    bool locked = false;
    if (fd >= 0) {
      int rc;
      do
        rc = ::flock(fd, LOCK_EX | LOCK_NB);
      while (rc != 0 && errno == EINTR);
      if (rc != 0 && errno == EWOULDBLOCK) {
        ::close(fd);
        continue;
      }
      locked = rc == 0;
    }
    // Readers take no lock: one that has the file open keeps reading it, a
    // later one sees a miss.
    std::string path = entryPath(c.key);
    bool gone = ::unlink(path.c_str()) == 0;
    int err = errno;
    if (fd >= 0) {
      if (locked)
        ::flock(fd, LOCK_UN);
      ::close(fd);
    }
    if (gone) {
      ++removed;
      total -= c.bytes;
    } else if (err != ENOENT) {
      return {StatusCode::CacheError, "cannot remove " + path + ": " + std::strerror(err)};
    } else {
      total -= c.bytes; // someone else removed it
    }
  }
  return Status::success();
}

Status DiskCache::prune(int64_t maxBytes, int64_t &removed) const {
  if (maxBytes < 0)
    return {StatusCode::CacheError, "a negative size limit"};
  return evict(maxBytes, std::string(), removed);
}

Status DiskCache::list(std::vector<CacheEntryInfo> &out) const {
  out.clear();
  if (config_.dir.empty())
    return {StatusCode::CacheError, "no cache directory: set MUSE_CACHE_DIR or HOME"};
  std::error_code ec;
  if (!fs::exists(config_.dir, ec))
    return Status::success();
  for (fs::directory_iterator it(config_.dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path &p = it->path();
    if (p.extension() != kEntrySuffix)
      continue;
    CacheEntryInfo info;
    info.path = p.string();
    info.key = p.stem().string();
    std::error_code sizeEc;
    info.bytes = int64_t(fs::file_size(p, sizeEc));
    std::string bytes, problem;
    // The header is small; read a prefix of the file for it.
    int fd = ::open(info.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      char buf[4096];
      ssize_t n = ::read(fd, buf, sizeof(buf));
      ::close(fd);
      if (n > 0)
        bytes.assign(buf, size_t(n));
    }
    std::vector<std::pair<std::string, std::string>> fields;
    size_t checksumLine = 0;
    if (!parseHeader(bytes, fields, checksumLine, problem)) {
      info.valid = false;
      info.problem = problem;
    } else {
      if (const std::string *v = field(fields, "name"))
        info.specName = *v;
      if (const std::string *v = field(fields, "arch"))
        info.arch = *v;
      parseSize(field(fields, "created"), info.created);
    }
    out.push_back(info);
  }
  if (ec)
    return {StatusCode::CacheError, "cannot list " + config_.dir + ": " + ec.message()};
  std::sort(out.begin(), out.end(),
            [](const CacheEntryInfo &a, const CacheEntryInfo &b) { return a.key < b.key; });
  return Status::success();
}

Status DiskCache::verify(std::vector<CacheEntryInfo> &out) const {
  if (Status s = list(out); !s.ok())
    return s;
  for (CacheEntryInfo &info : out) {
    std::string bytes, problem;
    CacheEntry entry;
    if (!readFile(info.path, bytes, problem) || !decode(bytes, info.key, entry, problem)) {
      info.valid = false;
      info.problem = problem;
    }
  }
  return Status::success();
}

Status DiskCache::clear(int64_t &removed) const {
  removed = 0;
  if (config_.dir.empty())
    return {StatusCode::CacheError, "no cache directory: set MUSE_CACHE_DIR or HOME"};
  std::error_code ec;
  if (!fs::exists(config_.dir, ec))
    return Status::success();
  std::vector<fs::path> victims;
  for (fs::directory_iterator it(config_.dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    bool entry = it->path().extension() == kEntrySuffix;
    // Only what this cache writes: <key>.entry, <key>.lock, <key>.tmp.<pid>.<n>.
    if (entry || it->path().extension() == kLockSuffix ||
        name.find(".tmp.") == 64)
      victims.push_back(it->path());
  }
  if (ec)
    return {StatusCode::CacheError, "cannot list " + config_.dir + ": " + ec.message()};
  for (const fs::path &p : victims) {
    std::error_code rmEc;
    if (fs::remove(p, rmEc) && p.extension() == kEntrySuffix)
      ++removed;
    if (rmEc)
      return {StatusCode::CacheError, "cannot remove " + p.string() + ": " + rmEc.message()};
  }
  return Status::success();
}

int64_t DiskCache::totalBytes() const {
  int64_t total = 0;
  std::error_code ec;
  if (config_.dir.empty() || !fs::exists(config_.dir, ec))
    return 0;
  for (fs::directory_iterator it(config_.dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code sizeEc;
    if (it->is_regular_file(sizeEc))
      total += int64_t(it->file_size(sizeEc));
  }
  return total;
}

CacheStats DiskCache::stats() const {
  CacheStats s;
  s.hits = hits_;
  s.misses = misses_;
  s.compiles = compiles_;
  s.stores = stores_;
  s.corrupt = corrupt_;
  s.uncached = uncached_;
  return s;
}

} // namespace muse
