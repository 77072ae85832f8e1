// RUN: muse-opt %s -muse-lower -split-input-file | FileCheck %s

// The causal window's backward tiles follow the dtype, the head dims and the
// block size (Backward.cpp windowRows / windowThreads): 16-bit inputs take the
// tensor-core kernels (backward_window_mma.cuh), min(128, S) queries a dq
// block and min(64, S) keys a dk/dv block (32 of either when D + Dv > 128),
// a warp per 16 rows; f32 the fp32 tiles, 32 rows (16 when D + Dv > 128) and
// 128 threads.

#spec = #muse.spec<name = "w", causal = true, block_size = 2048, window_blocks = 1>
func.func @bf16_d64(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// CHECK-LABEL: muse.plan @bf16_d64_backward
// CHECK: muse.kernel @muse_backward_window_dq = "muse::backward_window_dq<MuseCfg>" threads 256
// CHECK: muse.kernel @muse_backward_window_dkdv = "muse::backward_window_dkdv<MuseCfg>" threads 128
// CHECK: muse.launch @muse_backward_window_dq grid ("ceil(N/128)", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_backward_window_dkdv grid ("ceil(M/64)", "B*Hkv", "1")

// -----

#spec = #muse.spec<name = "w", causal = true, block_size = 16, window_blocks = 2, dtype = f16>
func.func @f16_s16(%q: tensor<?x?x?x64xf16>, %k: tensor<?x?x?x64xf16>, %v: tensor<?x?x?x64xf16>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xf16>, tensor<?x?x?x64xf16>, tensor<?x?x?x64xf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// CHECK-LABEL: muse.plan @f16_s16_backward
// CHECK: muse.kernel @muse_backward_window_dq = "muse::backward_window_dq<MuseCfg>" threads 32
// CHECK: muse.kernel @muse_backward_window_dkdv = "muse::backward_window_dkdv<MuseCfg>" threads 32
// CHECK: muse.launch @muse_backward_window_dq grid ("ceil(N/16)", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_backward_window_dkdv grid ("ceil(M/16)", "B*Hkv", "1")

// -----

#spec = #muse.spec<name = "w", causal = true, block_size = 256, window_blocks = 1, head_dim = 128, value_dim = 128, dtype = bf16>
func.func @bf16_d128(%q: tensor<?x?x?x128xbf16>, %k: tensor<?x?x?x128xbf16>, %v: tensor<?x?x?x128xbf16>) -> tensor<?x?x?x128xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x128xbf16>, tensor<?x?x?x128xbf16>, tensor<?x?x?x128xbf16> -> tensor<?x?x?x128xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x128xf32>
}
// CHECK-LABEL: muse.plan @bf16_d128_backward
// CHECK: muse.kernel @muse_backward_window_dq = "muse::backward_window_dq<MuseCfg>" threads 64
// CHECK: muse.launch @muse_backward_window_dq grid ("ceil(N/32)", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_backward_window_dkdv grid ("ceil(M/32)", "B*Hkv", "1")

// -----

#spec = #muse.spec<name = "w", causal = true, block_size = 256, window_blocks = 1, dtype = f32>
func.func @f32_d64(%q: tensor<?x?x?x64xf32>, %k: tensor<?x?x?x64xf32>, %v: tensor<?x?x?x64xf32>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// CHECK-LABEL: muse.plan @f32_d64_backward
// CHECK: muse.kernel @muse_backward_window_dq = "muse::backward_window_dq<MuseCfg>" threads 128
// CHECK: muse.launch @muse_backward_window_dq grid ("ceil(N/32)", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_backward_window_dkdv grid ("ceil(M/32)", "B*Hkv", "1")
