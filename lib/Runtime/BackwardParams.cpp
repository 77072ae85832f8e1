//===- BackwardParams.cpp - Backward arguments to MuseParams --------------===//
//
// A backward call sees the forward's buffers at the forward's offsets and its
// own scratch after them: the plan it is checked and bound against is the
// forward's buffers followed by the backward's, with the backward launches.
//
//===----------------------------------------------------------------------===//
#include "muse/Runtime/Params.h"

#include "muse/params.cuh"

#include "CausalLevels.h"

#include <tuple>

namespace muse {
namespace {

Status invalid(const std::string &msg) { return {StatusCode::InvalidArgument, msg}; }

/// Strides >= 0 and rows that do not overlap (rows are written by different
/// warps), for a gradient or dO of `width` elements per row.
Status checkGradient(const char *name, const int64_t stride[3], int64_t rows, int64_t width) {
  for (int i = 0; i < 3; ++i)
    if (stride[i] < 0)
      return invalid(std::string(name) + " stride " + std::to_string(i) + " is " +
                     std::to_string(stride[i]) + ": strides are in elements and must be >= 0");
  if (rows > 1 && stride[2] < width)
    return invalid(std::string(name) + " row stride is " + std::to_string(stride[2]) +
                   " but rows of " + std::to_string(width) +
                   " elements would overlap; it must be >= " + std::to_string(width));
  return Status::success();
}

} // namespace

Status fillBackwardParams(const Spec &spec, const LaunchPlan &plan, const BackwardArgs &a,
                          MuseParams &p) {
  if (!plan.hasBackward())
    return invalid("spec '" + spec.name + "' has no backward plan (compiled by an older muse?)");
  if (!a.dO || !a.dq || !a.dk || !a.dv)
    return invalid(std::string("null pointer for ") +
                   (!a.dO ? "dO" : !a.dq ? "dq" : !a.dk ? "dk" : "dv") +
                   ": dO, dq, dk and dv must be device pointers (dLse and lse may be null)");
  const Shape &s = a.shape;
  for (auto [name, stride, rows, width] :
       {std::tuple{"dO", a.dOStride, s.N, int64_t(spec.valueDim)},
        std::tuple{"dq", a.dqStride, s.N, int64_t(spec.headDim)},
        std::tuple{"dk", a.dkStride, s.M, int64_t(spec.headDim)},
        std::tuple{"dv", a.dvStride, s.M, int64_t(spec.valueDim)}})
    if (Status st = checkGradient(name, stride, rows, width); !st.ok())
      return st;

  // The forward's persistent buffers, then the backward's scratch, which
  // reuses the transient ones' bytes (LaunchPlan::isTransient).
  LaunchPlan combined;
  combined.buffers.assign(plan.buffers.begin(), plan.buffers.begin() + plan.firstTransient());
  combined.buffers.insert(combined.buffers.end(), plan.backwardBuffers.begin(),
                          plan.backwardBuffers.end());
  combined.launches = plan.backwardLaunches;
  ForwardArgs f;
  f.shape = s;
  f.q = a.q;
  f.k = a.k;
  f.v = a.v;
  // Checked as the forward's o (pointer, strides); bound below as o_in, in
  // the spec's dtype: the backward never writes o.
  f.o = const_cast<void *>(a.o);
  f.lse = const_cast<float *>(a.lse);
  for (int i = 0; i < 3; ++i) {
    f.qStride[i] = a.qStride[i];
    f.kStride[i] = a.kStride[i];
    f.vStride[i] = a.vStride[i];
    f.oStride[i] = a.oStride[i];
  }
  f.workspace = a.workspace;
  f.workspaceBytes = a.workspaceBytes;
  // Causal: the forward's saved partitions lie between its buffers and the
  // backward's scratch (CausalLevels.h causalSaveBytes).
  const int64_t save = spec.causal ? causalSaveBytes(s, spec.blockSize, spec.windowBlocks) : 0;
  const int64_t need = plan.backwardWorkspaceBytes(s) + save;
  if (a.workspace && a.workspaceBytes < need)
    return invalid("backward: workspace has " + std::to_string(a.workspaceBytes) +
                   " bytes; this call needs " + std::to_string(need) +
                   " (Attention::backwardWorkspaceBytes)");
  // Causal: the backward's scratch lies after the partition save area.
  if (Status st = fillParams(spec, combined, f, p, plan.firstTransient(), save); !st.ok()) {
    // fillParams names Attention::workspaceBytes; the backward needs more.
    const std::string from = "(Attention::workspaceBytes)";
    std::string msg = st.message;
    if (size_t at = msg.find(from); at != std::string::npos)
      msg.replace(at, from.size(), "(Attention::backwardWorkspaceBytes)");
    return {st.code, "backward: " + msg};
  }
  if (spec.causal)
    bindCausalSave(s, spec.blockSize, spec.windowBlocks, a.workspace, plan.persistentBytes(s), p);
  p.o = nullptr;
  p.o_in = a.o;
  p.dout = a.dO;
  p.dlse = a.dLse;
  p.do_sb = a.dOStride[0]; p.do_sh = a.dOStride[1]; p.do_sn = a.dOStride[2];
  if (a.gradType == OutputType::Input && spec.dtype != DType::F32) {
    // Gradients in the spec's dtype: the kernels accumulate into acc_dq,
    // acc_dk, acc_dv (contiguous; acc_dk, acc_dv null where backward_keys
    // writes dk, dv itself) and round each row once into the caller's.
    p.out_dq = a.dq;
    p.out_dk = a.dk;
    p.out_dv = a.dv;
    p.out_dq_sb = a.dqStride[0]; p.out_dq_sh = a.dqStride[1]; p.out_dq_sn = a.dqStride[2];
    p.out_dk_sb = a.dkStride[0]; p.out_dk_sh = a.dkStride[1]; p.out_dk_sm = a.dkStride[2];
    p.out_dv_sb = a.dvStride[0]; p.out_dv_sh = a.dvStride[1]; p.out_dv_sm = a.dvStride[2];
    const int64_t D = spec.headDim, Dv = spec.valueDim;
    p.dq = p.acc_dq;
    p.dk = p.acc_dk;
    p.dv = p.acc_dv;
    p.dq_sn = D;  p.dq_sh = s.N * D;  p.dq_sb = s.H * s.N * D;
    if (p.dk) {
      p.dk_sm = D;  p.dk_sh = s.M * D;  p.dk_sb = s.Hkv * s.M * D;
      p.dv_sm = Dv; p.dv_sh = s.M * Dv; p.dv_sb = s.Hkv * s.M * Dv;
    }
    return Status::success();
  }
  p.dq = static_cast<float *>(a.dq);
  p.dk = static_cast<float *>(a.dk);
  p.dv = static_cast<float *>(a.dv);
  p.dq_sb = a.dqStride[0]; p.dq_sh = a.dqStride[1]; p.dq_sn = a.dqStride[2];
  p.dk_sb = a.dkStride[0]; p.dk_sh = a.dkStride[1]; p.dk_sm = a.dkStride[2];
  p.dv_sb = a.dvStride[0]; p.dv_sh = a.dvStride[1]; p.dv_sm = a.dvStride[2];
  return Status::success();
}

} // namespace muse
