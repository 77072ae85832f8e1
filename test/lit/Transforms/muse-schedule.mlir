// RUN: muse-opt %s -muse-decompose -muse-schedule -split-input-file | FileCheck %s

// Defaults for head dim 64 on sm_90: 64x64 tiles, 128 threads, on every heavy op.
#spec = #muse.spec<name = "d64", order = 1>
// CHECK: #sched = #muse.schedule<block_q = 64, block_k = 64, threads = 128>
// CHECK-LABEL: func.func @d64
// CHECK: muse.kmeans key #spec({{.*}}) :
// CHECK: muse.summarize #spec({{.*}}) {schedule = #sched} :
// CHECK: muse.far_field #spec({{.*}}) {schedule = #sched} :
// CHECK: muse.dipole #spec({{.*}}) {schedule = #sched} :
func.func @d64(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

// -----

// Head dim 128 on sm_90: 256 threads, 32-key tiles.
#spec = #muse.spec<name = "d128", head_dim = 128, value_dim = 128, order = 0>
// CHECK: #sched = #muse.schedule<block_q = 64, block_k = 32, threads = 256>
// CHECK-LABEL: func.func @d128
// CHECK: muse.far_field #spec({{.*}}) {schedule = #sched} :
func.func @d128(%q: tensor<?x?x?x128xbf16>, %k: tensor<?x?x?x128xbf16>, %v: tensor<?x?x?x128xbf16>)
    -> (tensor<?x?x?x128xf32>, tensor<?x?x?xf32>) {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x128xbf16>, tensor<?x?x?x128xbf16>, tensor<?x?x?x128xbf16> -> tensor<?x?x?x128xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x128xf32>, tensor<?x?x?xf32>
}

// -----

// Head dim 128 on sm_80 keeps 128 threads.
#spec = #muse.spec<name = "d128_sm80", head_dim = 128, value_dim = 128, order = 0, arch = "sm_80">
// CHECK: #sched = #muse.schedule<block_q = 64, block_k = 32, threads = 128>
// CHECK-LABEL: func.func @d128_sm80
func.func @d128_sm80(%q: tensor<?x?x?x128xbf16>, %k: tensor<?x?x?x128xbf16>, %v: tensor<?x?x?x128xbf16>)
    -> (tensor<?x?x?x128xf32>, tensor<?x?x?xf32>) {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x128xbf16>, tensor<?x?x?x128xbf16>, tensor<?x?x?x128xbf16> -> tensor<?x?x?x128xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x128xf32>, tensor<?x?x?xf32>
}

// -----

// The spec's tiling overrides every default.
#spec = #muse.spec<name = "tuned", block_q = 32, block_k = 128, warps = 8>
// CHECK: #sched = #muse.schedule<block_q = 32, block_k = 128, threads = 256>
// CHECK-LABEL: func.func @tuned
func.func @tuned(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}
