// RUN: muse-opt %s -muse-derive-backward | FileCheck %s --check-prefix=DERIVE
// RUN: muse-opt %s -muse-derive-backward -muse-decompose-backward | FileCheck %s --check-prefix=DECOMP
// RUN: muse-opt %s -muse-lower | FileCheck %s --check-prefix=PLAN

// The acausal backward: a second function, three stages, a second plan (the
// key stage outlined as the pair sums, then the per-key-cluster kernel).
#spec = #muse.spec<name = "small", query_clusters = 16, key_clusters = 8, kmeans_iters = 2, order = 1, near_clusters = 2>

func.func @small(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

// DERIVE-LABEL: func.func @small(
// DERIVE: muse.attention
// DERIVE-LABEL: func.func @small_backward(%{{.*}}: tensor<?x?x?x64xbf16>, %{{.*}}: tensor<?x?x?x64xbf16>, %{{.*}}: tensor<?x?x?x64xbf16>, %{{.*}}: tensor<?x?x?x64xbf16>, %{{.*}}: tensor<?x?x?xf32>, %{{.*}}: tensor<?x?x?x64xbf16>) -> (tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>)
// DERIVE-NEXT: %{{.*}}, %{{.*}}, %{{.*}} = muse.attention_backward #spec(%arg0, %arg1, %arg2, %arg3, %arg4, %arg5)
// DERIVE-NEXT: return

// DECOMP-LABEL: func.func @small_backward(
// DECOMP-NEXT: %[[DX:.*]], %[[PG:.*]], %[[DR:.*]], %[[DELTA:.*]] = muse.backward_rows #spec(%arg0, %arg1, %arg2, %arg3, %arg4, %arg5)
// DECOMP-SAME: -> (tensor<?x?x?x64xf32>, tensor<?x?x16xf32>, tensor<?x?x64xf32>, tensor<?x?xf32>)
// DECOMP-NEXT: %[[DK:.*]], %[[DV:.*]], %[[DQBAR:.*]] = muse.backward_keys #spec(%arg0, %arg1, %arg2, %arg4, %arg5, %[[PG]], %[[DELTA]])
// DECOMP-SAME: -> (tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x16x8x64xf32>)
// DECOMP-NEXT: %[[DQ:.*]] = muse.backward_centroid #spec(%[[DX]], %[[DR]], %[[DQBAR]])
// DECOMP-NEXT: return %[[DQ]], %[[DK]], %[[DV]]

// PLAN-NOT: func.func
// PLAN: muse.plan @small #spec #sched {
// PLAN: muse.launch @muse_dipole grid
// PLAN-NEXT: muse.launch @muse_emit_o grid ("ceil(N/32)", "B*H", "1")
// PLAN-NEXT: }
// PLAN-NEXT: muse.plan @small_backward #spec #sched1 attributes {muse.pass = "backward"} {
// PLAN-NEXT: muse.buffer @bwd_pg : f32 heads query per_n 16 per_m 0 fixed 0
// PLAN-NEXT: muse.buffer @bwd_dr : f32 heads query per_n 64 per_m 0 fixed 0
// PLAN-NEXT: muse.buffer @bwd_delta : f32 heads query per_n 1 per_m 0 fixed 0
// PLAN-NEXT: muse.buffer @bwd_dqbar : f32 heads query per_n 0 per_m 0 fixed 8192
// PLAN-NEXT: muse.buffer @bwd_pairs : f32 heads query per_n 0 per_m 0 fixed 16512
// Gradients in the inputs' dtype: fp32 accumulators, and the last launch
// rounds dk, dv (order 1 with near clusters: backward_keys does not; the
// centroid kernel rounds dq itself).
// PLAN-NEXT: muse.buffer @acc_dq : f32 heads query per_n 64 per_m 0 fixed 0
// PLAN-NEXT: muse.buffer @acc_dk : f32 heads key per_n 0 per_m 64 fixed 0
// PLAN-NEXT: muse.buffer @acc_dv : f32 heads key per_n 0 per_m 64 fixed 0
// PLAN-NEXT: muse.kernel @muse_backward_rows = "muse::backward_rows<MuseCfg>" threads 128
// PLAN-NEXT: muse.kernel @muse_backward_pairs = "muse::backward_pairs<MuseCfg>" threads 256
// PLAN-NEXT: muse.kernel @muse_backward_keys = "muse::backward_keys<MuseCfg>" threads 128
// PLAN-NEXT: muse.kernel @muse_backward_centroid = "muse::backward_centroid<MuseCfg>" threads 64
// PLAN-NEXT: muse.kernel @muse_emit_dkdv = "muse::emit_dkdv<MuseCfg, true>" threads 256
// PLAN-NEXT: muse.launch @muse_backward_rows grid ("16", "B*H", "1")
// PLAN-NEXT: muse.launch @muse_backward_pairs grid ("16", "B*H", "1")
// PLAN-NEXT: muse.launch @muse_backward_keys grid ("8", "B*Hkv", "1")
// PLAN-NEXT: muse.launch @muse_backward_centroid grid ("16", "B*H", "1")
// PLAN-NEXT: muse.launch @muse_emit_dkdv grid ("ceil(M/32)", "B*Hkv", "1")
// PLAN-NEXT: }
