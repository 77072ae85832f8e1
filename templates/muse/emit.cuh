//===- emit.cuh - Outputs rounded to the input dtype -----------------------===//
//
// A caller may ask for o (forward) and dq, dk, dv (backward) in the input
// dtype T instead of fp32 (params.cuh, out_o ...). Several kernels add into
// the same output row (the causal window and every level; the far field and
// the dipole; the GQA heads of a group), so those outputs accumulate in fp32
// workspace buffers (acc_*) and are rounded once at the end, here. Where one
// kernel is known to write a row last it rounds the row itself and this
// kernel skips that output:
//   o        far_field, acausal order 0 (outputInFarField)
//   dk, dv   backward_keys, acausal order 0 without near field on the
//            tensor cores (keysWriteOutput), one head a kv group (GQA groups
//            add their heads into acc_dk, acc_dv)
//   dq       backward_centroid, acausal (every order)
// The plan launches emit_forward and emit_dkdv for every 16-bit spec and
// tells them whether it keeps the accumulator (kAcc*: Outline.cpp acc_o,
// Backward.cpp acc_dk and acc_dv); the static_asserts tie that choice to the
// predicates below, so the compiler and the kernels cannot drift apart.
// Without the accumulator the launch is one block that returns at once (the
// kernel's only work is that compile-time check); with it, a call that asked
// for fp32, or whose rows were written already, returns at once too.
// emit_dq runs in causal plans only.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_EMIT_CUH
#define MUSE_TEMPLATES_EMIT_CUH

#include "muse/backward_keys.cuh"
#include "muse/far_field.cuh"

namespace muse {

/// Block size of the emit kernels; each thread rounds 8 elements (the plans
/// size the grids with the same numbers: Passes.h kEmitThreads, kEmitPerBlock).
constexpr int kEmitThreads = 256;
constexpr int kEmitPerBlock = 8 * kEmitThreads;

/// Acausal order 0: far_field writes o in T itself (its tensor-core path).
template <class Cfg> constexpr bool outputInFarField = Cfg::ORDER == 0 && FarFieldMmaTiles<Cfg>::usable;

/// Acausal order 0 without near field on the tensor cores: backward_keys
/// writes dk, dv in T itself where each kv head serves one query head
/// (keysFar0Mma; an empty cluster has no rows).
template <class Cfg> constexpr bool keysWriteOutput = Cfg::ORDER == 0 && Cfg::NEAR == 0 && KeyMmaTiles<Cfg>::usable;

/// Piece `e` (8 elements) of head `head`'s rows x W accumulator (contiguous)
/// rounded into `out` at element offset outRow(row) + column.
template <class T, int W, class OutRow>
__device__ __forceinline__ void emitPiece(const float *acc, void *out, OutRow outRow, int head, long long rows,
                                          long long e) {
  static_assert(W % 8 == 0, "rows split into 8-element pieces");
  const long long row = e / (W / 8);
  if (row >= rows)
    return;
  const int col = int(e - row * (W / 8)) * 8;
  const float4 *src = reinterpret_cast<const float4 *>(acc + ((long long)head * rows + row) * W + col);
  const float4 a = src[0], b = src[1];
  const long long at = outRow(row) + col;
  T *dst = static_cast<T *>(out) + at;
  if ((reinterpret_cast<unsigned long long>(dst) & 15ull) == 0) {
    uint4 u;
    u.x = pack2<T>(a.x, a.y);
    u.y = pack2<T>(a.z, a.w);
    u.z = pack2<T>(b.x, b.y);
    u.w = pack2<T>(b.z, b.w);
    *reinterpret_cast<uint4 *>(dst) = u;
  } else {
    storeOutPair<T>(out, at, a.x, a.y);
    storeOutPair<T>(out, at + 2, a.z, a.w);
    storeOutPair<T>(out, at + 4, b.x, b.y);
    storeOutPair<T>(out, at + 6, b.z, b.w);
  }
}

/// Grid (ceil(N Dv / kEmitPerBlock), B*H), or (1, 1, 1) where the plan keeps
/// no acc_o: acc_o rounded into out_o, unless the caller asked for fp32
/// (out_o null) or far_field wrote it (acausal).
template <class Cfg, bool kAccO> __device__ void emit_forward(const MuseParams &p) {
  static_assert(TensorCoreType<typename Cfg::T>::value, "fp32 specs deliver fp32 outputs directly");
  static_assert(kAccO || outputInFarField<Cfg>, "the plan must keep acc_o where far_field cannot write o");
  if (!p.out_o || (!p.causal && outputInFarField<Cfg>))
    return;
  const HeadIndex hi(p, blockIdx.y);
  const long long e = (long long)blockIdx.x * kEmitThreads + threadIdx.x;
  emitPiece<typename Cfg::T, Cfg::DV>(p.o, p.out_o, [&](long long n) { return outORow(p, hi.b, hi.h, n); },
                                      blockIdx.y, p.N, e);
}

/// Causal plans, grid (ceil(N D / kEmitPerBlock), B*H): acc_dq rounded into
/// the caller's dq (acausal plans do not launch it: backward_centroid writes
/// every dq row last).
template <class Cfg> __device__ void emit_dq(const MuseParams &p) {
  static_assert(TensorCoreType<typename Cfg::T>::value, "fp32 specs deliver fp32 gradients directly");
  if (!p.out_dq)
    return;
  const HeadIndex hi(p, blockIdx.y);
  const long long e = (long long)blockIdx.x * kEmitThreads + threadIdx.x;
  emitPiece<typename Cfg::T, Cfg::D>(p.dq, p.out_dq, [&](long long n) { return outDqRow(p, hi.b, hi.h, n); },
                                     blockIdx.y, p.N, e);
}

/// Grid (ceil(M max(D, Dv) / kEmitPerBlock), B*Hkv), or (1, 1, 1) where the
/// plan keeps no acc_dk, acc_dv: those rounded into the caller's dk, dv,
/// unless backward_keys wrote them (acausal, one head a kv group).
template <class Cfg, bool kAccKV> __device__ void emit_dkdv(const MuseParams &p) {
  using T = typename Cfg::T;
  static_assert(TensorCoreType<T>::value, "fp32 specs deliver fp32 gradients directly");
  static_assert(kAccKV || keysWriteOutput<Cfg>, "the plan must keep acc_dk, acc_dv where backward_keys "
                                                "cannot write dk, dv");
  if (!p.out_dk || (!p.causal && keysWriteOutput<Cfg> && p.H == p.Hkv))
    return;
  const int kh = blockIdx.y;
  const long long e = (long long)blockIdx.x * kEmitThreads + threadIdx.x;
  emitPiece<T, Cfg::D>(p.dk, p.out_dk, [&](long long m) { return outDkRowOff(p, kh, m); }, kh, p.M, e);
  emitPiece<T, Cfg::DV>(p.dv, p.out_dv, [&](long long m) { return outDvRowOff(p, kh, m); }, kh, p.M, e);
}

} // namespace muse

#endif // MUSE_TEMPLATES_EMIT_CUH
