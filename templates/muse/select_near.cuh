//===- select_near.cuh - The near-field key clusters of each query cluster ===//
//
// Block (i, bh), one warp: the E key clusters of largest stage-1 ln-mass for
// query cluster i (ties to the lowest index, empty clusters never), written in
// ascending cluster order and padded with -1 when fewer are non-empty. A
// cluster is chosen when fewer than E clusters rank before it, so the choice
// is a pure function of the masses (no sorting network, deterministic).
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_SELECT_NEAR_CUH
#define MUSE_TEMPLATES_SELECT_NEAR_CUH

#include "muse/common.cuh"

namespace muse {

/// Grid (CQ, B*H), block 32.
template <class Cfg> __device__ void select_near(const MuseParams &p) {
  constexpr int CQ = Cfg::CQ, CK = Cfg::CK, E = Cfg::NEAR, F = 1 + Cfg::D + Cfg::DV;
  static_assert(E >= 1 && E <= CK, "select_near needs 1 <= near_clusters <= key_clusters");
  __shared__ float mass[CK];

  const int lane = threadIdx.x;
  const int i = blockIdx.x, bh = blockIdx.y;
  const float *row = p.summaries + ((long long)bh * CQ + i) * CK * F;
  for (int j = lane; j < CK; j += 32)
    mass[j] = row[(long long)j * F];
  __syncwarp();

  int *out = p.near + ((long long)bh * CQ + i) * E;
  int written = 0;
  for (int j0 = 0; j0 < CK; j0 += 32) {
    const int j = j0 + lane;
    bool chosen = false;
    if (j < CK) {
      const float mj = mass[j];
      if (mj > -kInf()) {
        int rank = 0;
        for (int t = 0; t < CK; ++t) {
          const float mt = mass[t];
          rank += (mt > mj || (mt == mj && t < j)) ? 1 : 0;
        }
        chosen = rank < E;
      }
    }
    const unsigned ballot = __ballot_sync(0xffffffffu, chosen);
    if (chosen)
      out[written + __popc(ballot & ((1u << lane) - 1u))] = j;
    written += __popc(ballot);
  }
  for (int e = written + lane; e < E; e += 32)
    out[e] = -1;
}

} // namespace muse

#endif // MUSE_TEMPLATES_SELECT_NEAR_CUH
