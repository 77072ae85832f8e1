//===- Sha256.h - SHA-256 (FIPS 180-4) for cache keys and checksums -------===//
//
// A small streaming implementation: the cache keys entries on a digest of
// everything that changes the compiled bytes and checks every entry's payload
// against a stored digest, so it must not depend on any other library.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_RUNTIME_SHA256_H
#define MUSE_RUNTIME_SHA256_H

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace muse {

class Sha256 {
public:
  using Digest = std::array<uint8_t, 32>;

  Sha256();
  void update(const void *data, size_t size);
  void update(const std::string &bytes) { update(bytes.data(), bytes.size()); }
  /// Appends the length (8 bytes, little-endian) and then the bytes, so that a
  /// sequence of fields hashes unambiguously ("ab","c" differs from "a","bc").
  void field(const std::string &bytes);
  /// Finishes the hash; the object must not be updated afterwards.
  Digest digest();
  std::string hexDigest();

  static std::string hex(const Digest &d);
  static std::string hashHex(const std::string &bytes);

private:
  void block(const uint8_t *p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t bufLen_ = 0;
  uint64_t totalBytes_ = 0;
};

} // namespace muse

#endif
