// RUN: muse-opt %s -muse-lower -split-input-file | FileCheck %s

// The served queries' assignment follows the dtype (Outline.cpp): 16-bit
// inputs take k-means' tensor-core assign (kmeansAssignMma in served mode),
// which strides over 128-query chunks, so about 1024 queries a block; f32
// takes the exact kernel, one thread a query.

#spec = #muse.spec<name = "s", causal = true, block_size = 256, window_blocks = 1>
func.func @bf16(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// CHECK-LABEL: muse.plan @bf16
// CHECK: muse.kernel @muse_served_assign = "muse::served_assign<MuseCfg>" threads 256
// CHECK: muse.launch @muse_served_assign grid ("ceil(N/1024)", "B*H", "1") {view = "served"}

// -----

#spec = #muse.spec<name = "s", causal = true, block_size = 256, window_blocks = 1, dtype = f32>
func.func @f32(%q: tensor<?x?x?x64xf32>, %k: tensor<?x?x?x64xf32>, %v: tensor<?x?x?x64xf32>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// CHECK-LABEL: muse.plan @f32
// CHECK: muse.kernel @muse_served_assign = "muse::served_assign<MuseCfg>" threads 256
// CHECK: muse.launch @muse_served_assign grid ("ceil(N/256)", "B*H", "1") {view = "served"}
