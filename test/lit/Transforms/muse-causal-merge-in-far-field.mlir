// RUN: muse-opt %s -muse-lower -split-input-file | FileCheck %s

// Causal order 0 with 16-bit inputs: the far field's tensor-core kernel
// merges each level's partial into o and run_lse itself (far_field<Cfg, true>,
// Outline.cpp mergeInFarField), so the plan has no part_o buffer and no
// causal_merge launch; the partition export still runs per level. f32 (and
// order 1, muse-outline-causal.mlir) keep part_o and causal_merge.

#spec = #muse.spec<name = "m", causal = true, block_size = 256, window_blocks = 1, order = 0>
func.func @bf16_o0(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// CHECK-LABEL: muse.plan @bf16_o0 #spec
// CHECK-NOT: muse.buffer @part_o
// CHECK: muse.kernel @muse_far_field = "muse::far_field<MuseCfg, true>"
// CHECK-NOT: muse_causal_merge
// CHECK: muse.launch @muse_far_field grid ("64", "B*H", "1") {view = "served"}
// CHECK-NEXT: muse.launch @muse_causal_export grid ("ceil(N/256)", "B*H", "1") {view = "level"}
// CHECK-LABEL: muse.plan @bf16_o0_backward

// -----

#spec = #muse.spec<name = "m", causal = true, block_size = 256, window_blocks = 1, order = 0, dtype = f32>
func.func @f32_o0(%q: tensor<?x?x?x64xf32>, %k: tensor<?x?x?x64xf32>, %v: tensor<?x?x?x64xf32>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// CHECK-LABEL: muse.plan @f32_o0 #spec
// CHECK: muse.buffer @part_o : f32 heads query per_n 64
// CHECK: muse.kernel @muse_far_field = "muse::far_field<MuseCfg>"
// CHECK: muse.launch @muse_far_field grid ("64", "B*H", "1") {view = "served"}
// CHECK-NEXT: muse.launch @muse_causal_merge grid ("ceil(N/128)", "B*H", "1") {view = "level"}
