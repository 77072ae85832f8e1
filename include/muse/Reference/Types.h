//===- Types.h - Shapes, configuration and results of the CPU reference ---===//
//
// The plain data the reference works on. Tensors are contiguous row-major
// std::vector<double>:
//   q [B, H, N, D]    k [B, Hkv, M, D]    v [B, Hkv, M, Dv]
//   o [B, H, N, Dv]   lse [B, H, N]
// Query head h uses kv head h / (H / Hkv) (GQA). Every entry point returns a
// RefStatus; nothing throws out of the library.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_REFERENCE_TYPES_H
#define MUSE_REFERENCE_TYPES_H

#include <cstdint>
#include <string>
#include <vector>

namespace muse::ref {

/// Result of every entry point: ok, or a message naming the problem and what
/// is allowed.
struct RefStatus {
  bool ok = true;
  std::string message;

  static RefStatus success() { return {}; }
  static RefStatus error(std::string msg) { return {false, std::move(msg)}; }
  explicit operator bool() const { return ok; }
};

struct RefShape {
  int64_t B = 1;   // batch
  int64_t H = 1;   // query heads
  int64_t Hkv = 1; // key/value heads, H % Hkv == 0
  int64_t N = 1;   // queries per head
  int64_t M = 1;   // keys per head (N == M when causal)
  int64_t D = 64;  // head dim of q and k
  int64_t Dv = 64; // value dim

  int64_t qSize() const { return B * H * N * D; }
  int64_t kSize() const { return B * Hkv * M * D; }
  int64_t vSize() const { return B * Hkv * M * Dv; }
  int64_t oSize() const { return B * H * N * Dv; }
  int64_t lseSize() const { return B * H * N; }
  /// kv head serving flat query head `bh` = b*H + h, as a flat b*Hkv + hk.
  int64_t kvHeadOf(int64_t bh) const {
    return (bh / H) * Hkv + (bh % H) / (H / Hkv);
  }
};

/// The knobs of ALGORITHM.md (names follow the spec's fields).
struct MuseConfig {
  bool causal = false;
  int queryClusters = 64; // C_q >= 1
  int keyClusters = 64;   // C_k >= 1
  int kmeansIters = 3;    // T >= 1
  int order = 1;          // 0 monopole, 1 dipole
  int nearClusters = 0;   // E, 0..keyClusters
  int blockSize = 256;    // S >= 1 (causal only)
  int windowBlocks = 1;   // w >= 1 (causal only)
  double scale = 0.0;     // <= 0: 1/sqrt(D)
};

struct ForwardResult {
  std::vector<double> o;   // [B, H, N, Dv]
  std::vector<double> lse; // [B, H, N], natural log
};

/// Gradients with respect to the unscaled inputs q, k, v.
struct Gradients {
  std::vector<double> dq; // [B, H, N, D]
  std::vector<double> dk; // [B, Hkv, M, D]
  std::vector<double> dv; // [B, Hkv, M, Dv]
};

/// Cluster assignments. Values are cluster indices; -1 marks "not applicable".
///
/// Acausal (levels == 0):
///   query [B*H][N]    cluster of every (scaled) query, in [0, C_q)
///   key   [B*Hkv][M]  cluster of every key, in [0, C_k)
///   served            empty
/// Causal (levels = number of dyadic far-field levels, N == M):
///   key    [levels][B*Hkv][N]  key cluster of position p inside the level's
///                              segment L that contains p, in [0, min(C_k,|L|))
///   query  [levels][B*H][N]    query cluster of position p inside its segment
///                              L (the k-means over L's queries), [0, min(C_q,|L|))
///   served [levels][B*H][N]    for a query t served at this level, its nearest
///                              centroid of the serving segment's query clusters
/// Entries of segments that serve no query, and of positions a level does not
/// serve, are -1 on output and ignored on input.
struct Partitions {
  int levels = 0;
  std::vector<int32_t> query;
  std::vector<int32_t> key;
  std::vector<int32_t> served;
};

struct MuseForwardResult {
  std::vector<double> o;   // [B, H, N, Dv]
  std::vector<double> lse; // [B, H, N]
  Partitions partitions;   // the partitions used (given or computed)
  /// Acausal only: means of the scaled queries of every query cluster,
  /// [B*H][C_q][D]; rows of empty clusters are 0. Empty when causal.
  std::vector<double> queryCentroids;
  /// Acausal only: members per query cluster, [B*H][C_q]. Empty when causal.
  std::vector<int64_t> queryCounts;
};

/// Deterministic Lloyd k-means (ALGORITHM.md §2) of n points of dimension dim.
struct KMeansResult {
  int effectiveClusters = 0;     // Ceff = min(C, n)
  std::vector<int32_t> assign;   // [n], in [0, Ceff)
  std::vector<double> centroids; // [C][dim]: the last update; an empty
                                 // cluster keeps its previous centroid,
                                 // clusters >= Ceff are 0
  std::vector<int64_t> counts;   // [C] members of the final partition
};

} // namespace muse::ref

#endif // MUSE_REFERENCE_TYPES_H
