// RUN: muse-opt %s -muse-lower -split-input-file | FileCheck %s
// RUN: muse-opt %s -muse-lower -split-input-file | FileCheck %s --check-prefix=NONE
// RUN: muse-gen emit %muse_src/specs/causal_d64_order0.yaml --emit=cuda | FileCheck %s --check-prefix=CUDA

// Registers are capped (muse.kernel min_blocks, the second argument of the
// wrapper's __launch_bounds__) only where the H100 measured a gain: 16-bit
// inputs with D + Dv <= 128 on sm_90 and newer (Schedule.cpp
// kernelMinBlocks). far_field 4 blocks an SM (not with near clusters, where
// the cap would spill), the order-0 keys backward 3, the causal window 2 and
// its backward dk/dv 4 and dq 2. The order-0 backward on the tensor cores has
// no backward_pairs: backward_rows forms the pair sums (Backward.cpp fusedPairs).

#spec = #muse.spec<name = "c", causal = true, block_size = 2048, window_blocks = 1, order = 0>
func.func @bf16_causal_o0(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// CHECK-LABEL: muse.plan @bf16_causal_o0
// CHECK: muse.kernel @muse_causal_window = "muse::causal_window<MuseCfg>" threads 256 min_blocks 2 shared 0
// CHECK: muse.kernel @muse_far_field = "muse::far_field<MuseCfg, true>" threads 128 min_blocks 4 shared 0
// CHECK-LABEL: muse.plan @bf16_causal_o0_backward
// CHECK: muse.kernel @muse_backward_window_dq = "muse::backward_window_dq<MuseCfg>" threads 256 min_blocks 2 shared 0
// CHECK: muse.kernel @muse_backward_window_dkdv = "muse::backward_window_dkdv<MuseCfg>" threads 128 min_blocks 4 shared 0
// CHECK: muse.kernel @muse_backward_rows = "muse::backward_rows<MuseCfg, true>" threads 128 shared 0
// CHECK-NOT: muse_backward_pairs
// CHECK: muse.kernel @muse_backward_keys = "muse::backward_keys<MuseCfg>" threads 128 min_blocks 3 shared 0

// -----

// Order 1 keeps the keys backward uncapped (keysFar1, one warp a key).
#spec = #muse.spec<name = "a", order = 1>
func.func @bf16_o1(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// CHECK-LABEL: muse.plan @bf16_o1
// CHECK: muse.kernel @muse_far_field = "muse::far_field<MuseCfg>" threads 128 min_blocks 4 shared 0
// NONE-LABEL: muse.plan @bf16_o1_backward
// NONE-NOT: min_blocks
// NONE: muse.kernel @muse_backward_centroid

// -----

// f32 inputs, D 128 and near clusters: no cap anywhere.
#spec = #muse.spec<name = "f", causal = true, block_size = 256, window_blocks = 1, order = 0, dtype = f32>
func.func @f32_causal(%q: tensor<?x?x?x64xf32>, %k: tensor<?x?x?x64xf32>, %v: tensor<?x?x?x64xf32>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// NONE-LABEL: muse.plan @f32_causal
// NONE-NOT: min_blocks
// NONE: muse.kernel @muse_backward_members

// -----

#spec = #muse.spec<name = "w", head_dim = 128, value_dim = 128, order = 0>
func.func @bf16_d128(%q: tensor<?x?x?x128xbf16>, %k: tensor<?x?x?x128xbf16>, %v: tensor<?x?x?x128xbf16>) -> tensor<?x?x?x128xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x128xbf16>, tensor<?x?x?x128xbf16>, tensor<?x?x?x128xbf16> -> tensor<?x?x?x128xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x128xf32>
}
// NONE-LABEL: muse.plan @bf16_d128
// NONE-NOT: min_blocks
// NONE: muse.kernel @muse_backward_centroid

// -----

#spec = #muse.spec<name = "n", order = 1, near_clusters = 4>
func.func @bf16_near(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// NONE-LABEL: muse.plan @bf16_near
// NONE-NOT: min_blocks
// NONE: muse.kernel @muse_backward_centroid

// -----

// Before sm_90 (not measured there): no cap.
#spec = #muse.spec<name = "a8", causal = true, block_size = 2048, window_blocks = 1, order = 0, arch = "sm_80">
func.func @bf16_sm80(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// NONE-LABEL: muse.plan @bf16_sm80
// NONE-NOT: min_blocks
// NONE: muse.kernel @muse_backward_members

// The generated wrapper carries the cap as __launch_bounds__' second argument.
// CUDA: extern "C" __global__ void __launch_bounds__(256, 2) muse_causal_window(MuseParams p) {
// CUDA: extern "C" __global__ void __launch_bounds__(128, 4) muse_far_field(MuseParams p) {
// CUDA: extern "C" __global__ void __launch_bounds__(256, 2) muse_backward_window_dq(MuseParams p) {
