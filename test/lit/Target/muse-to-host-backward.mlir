// RUN: muse-opt %s -muse-lower | muse-translate --muse-to-host | FileCheck %s

// An acausal plan has a backward plan next to the forward: the launcher prints
// both. The backward's workspace is the forward's (same offsets, still holding
// what the forward wrote) followed by the backward's own buffers. Order 0 with
// 16-bit inputs: backward_rows forms the pair sums, so no bwd_pg and no
// backward_pairs launch (Backward.cpp fusedPairs).
#spec = #muse.spec<name = "host-bwd", query_clusters = 16, key_clusters = 8, kmeans_iters = 1, order = 0>

// CHECK-LABEL: size_t muse_host_bwd_workspace_bytes(long long B, long long H, long long Hkv, long long N, long long M) {
// CHECK-NOT: bwd_
// CHECK: return bytes;
// CHECK-LABEL: CUresult muse_host_bwd_launch(CUmodule module, CUstream stream, MuseParams p, CUdeviceptr workspace) {
// CHECK-NOT: p.bwd_
// CHECK-NOT: muse_backward_
// CHECK-NOT: for (int level
// CHECK: "muse_far_field"
// CHECK-NOT: muse_backward_
// CHECK: return CUDA_SUCCESS;
// CHECK-NEXT: }

// CHECK-LABEL: size_t muse_host_bwd_backward_workspace_bytes(long long B, long long H, long long Hkv, long long N, long long M) {
// CHECK-NEXT: size_t bytes = muse_host_bwd_workspace_bytes(B, H, Hkv, N, M);
// CHECK-NEXT: bytes += muse_align256(4ull * (B * H) * (64 * N)); // bwd_dr
// CHECK-NEXT: bytes += muse_align256(4ull * (B * H) * (N)); // bwd_delta
// CHECK-NEXT: bytes += muse_align256(4ull * (B * H) * (8192)); // bwd_dqbar
// CHECK-NEXT: bytes += muse_align256(4ull * (B * H) * (16512)); // bwd_pairs
// dq's fp32 accumulator; backward_keys writes dk, dv itself (no acc_dk, acc_dv).
// CHECK-NEXT: bytes += muse_align256(4ull * (B * H) * (64 * N)); // acc_dq
// CHECK-NEXT: return bytes;

// CHECK-LABEL: CUresult muse_host_bwd_backward(CUmodule module, CUstream stream, MuseParams p, CUdeviceptr workspace) {
// CHECK: size_t at = 0;
// CHECK-NEXT: // The forward's buffers.
// CHECK-NEXT: p.q_centroids = (decltype(p.q_centroids))(workspace + at);
// CHECK-NEXT: at += muse_align256(4ull * (B * H) * (1024));
// CHECK: p.row_lse = (decltype(p.row_lse))(workspace + at);
// CHECK-NEXT: at += muse_align256(4ull * (B * H) * (N));
// CHECK-NEXT: // The backward's own.
// CHECK-NEXT: p.bwd_dr = (decltype(p.bwd_dr))(workspace + at);
// CHECK-NEXT: at += muse_align256(4ull * (B * H) * (64 * N));
// CHECK-NEXT: p.bwd_delta = (decltype(p.bwd_delta))(workspace + at);
// CHECK-NEXT: at += muse_align256(4ull * (B * H) * (N));
// CHECK-NEXT: p.bwd_dqbar = (decltype(p.bwd_dqbar))(workspace + at);
// CHECK-NEXT: at += muse_align256(4ull * (B * H) * (8192));
// CHECK-NEXT: p.bwd_pairs = (decltype(p.bwd_pairs))(workspace + at);
// CHECK-NEXT: at += muse_align256(4ull * (B * H) * (16512));
// CHECK-NEXT: p.acc_dq = (decltype(p.acc_dq))(workspace + at);
// CHECK-NEXT: at += muse_align256(4ull * (B * H) * (64 * N));
// CHECK-NEXT: p.causal = 0;
// Gradients in the inputs' dtype when asked for: dq accumulates in acc_dq; dk, dv
// have no accumulator (backward_keys rounds them itself).
// CHECK-NEXT: // Outputs in the inputs' dtype when the caller set p.out_dq (see params.cuh).
// CHECK-NEXT: if (p.out_dq) {
// CHECK-NEXT: p.dq = p.acc_dq;
// CHECK-NEXT: p.dq_sn = 64;
// CHECK-NEXT: p.dq_sh = N * 64;
// CHECK-NEXT: p.dq_sb = H * N * 64;
// CHECK-NEXT: p.dk = 0;
// CHECK-NEXT: p.dk_sb = p.dk_sh = p.dk_sm = 0;
// CHECK-NEXT: p.dv = 0;
// CHECK-NEXT: p.dv_sb = p.dv_sh = p.dv_sm = 0;
// CHECK-NEXT: }
// The backward launches, in plan order; no forward kernel runs again.
// CHECK-NOT: muse_kmeans
// CHECK: // backward stage 2: per query, far-field and near-field gradients; stage-1 pair sums
// CHECK-NEXT: if ((r = cuModuleGetFunction(&f, module, "muse_backward_rows")) != CUDA_SUCCESS)
// CHECK-NEXT: return r;
// CHECK-NEXT: if ((r = cuLaunchKernel(f, (unsigned)(16), (unsigned)(B * H), (unsigned)(1), 128, 1, 1, 0, stream, args, NULL)) != CUDA_SUCCESS)
// CHECK-NOT: muse_backward_pairs
// CHECK: "muse_backward_keys"
// CHECK-NEXT: return r;
// CHECK-NEXT: cuLaunchKernel(f, (unsigned)(8), (unsigned)(B * Hkv), (unsigned)(1), 128, 1, 1, 0, stream, args, NULL)
// CHECK: "muse_backward_centroid"
// CHECK-NEXT: return r;
// CHECK-NEXT: cuLaunchKernel(f, (unsigned)(16), (unsigned)(B * H), (unsigned)(1), 64, 1, 1, 0, stream, args, NULL)
// No acc_dk, acc_dv: emit_dkdv is one block that returns at once.
// CHECK: "muse_emit_dkdv"
// CHECK-NEXT: return r;
// CHECK-NEXT: cuLaunchKernel(f, (unsigned)(1), (unsigned)(1), (unsigned)(1), 256, 1, 1, 0, stream, args, NULL)
// CHECK-NOT: cuModuleGetFunction
// CHECK: return CUDA_SUCCESS;
// CHECK-NEXT: }
func.func @host_bwd(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}
