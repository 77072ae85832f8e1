// RUN: muse-opt %s -muse-derive-backward | FileCheck %s --check-prefix=DERIVE
// RUN: muse-opt %s -muse-lower | FileCheck %s --check-prefix=PLAN

// The causal backward: derived and decomposed like the acausal one, outlined
// into the window's exact backward (full view) and, per far-field level, the
// saved partition restored, centroids and summaries recomputed from it and the
// acausal backward stages on the level's segment / served views.
#spec = #muse.spec<name = "c", causal = true, block_size = 64, window_blocks = 1, near_clusters = 2>
func.func @c(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}

// DERIVE-LABEL: func.func @c_backward(
// DERIVE-NEXT: muse.attention_backward #spec

// PLAN: muse.plan @c_backward #spec #sched attributes {muse.pass = "backward"} {
// PLAN-NEXT: muse.buffer @bwd_pg : f32 heads query per_n 128 per_m 0 fixed 8192
// PLAN-NEXT: muse.buffer @bwd_dr : f32 heads query per_n 64 per_m 0 fixed 4096
// PLAN-NEXT: muse.buffer @bwd_delta : f32 heads query per_n 1 per_m 0 fixed 0
// PLAN-NEXT: muse.buffer @bwd_dqbar : f32 heads query per_n 2048 per_m 0 fixed 262144
// PLAN-NEXT: muse.buffer @bwd_pairs : f32 heads query per_n 4128 per_m 0 fixed 528384
// The window and every level add into dq, dk, dv: fp32 accumulators, rounded
// to the inputs' dtype by the last two launches (when asked for).
// PLAN-NEXT: muse.buffer @acc_dq : f32 heads query per_n 64 per_m 0 fixed 0
// PLAN-NEXT: muse.buffer @acc_dk : f32 heads key per_n 0 per_m 64 fixed 0
// PLAN-NEXT: muse.buffer @acc_dv : f32 heads key per_n 0 per_m 64 fixed 0
// PLAN: muse.launch @muse_backward_window_dq grid ("ceil(N/64)", "B*H", "1")
// PLAN-NEXT: muse.launch @muse_backward_window_dkdv grid ("ceil(M/64)", "B*Hkv", "1")
// PLAN-NEXT: muse.launch @muse_backward_restore grid ("ceil(N/256)", "B*H", "1") {view = "segment"}
// PLAN-NEXT: muse.launch @muse_backward_restore grid ("ceil(N/256)", "B*H", "1") {view = "served"}
// PLAN-NEXT: muse.launch @muse_backward_cluster_sort_q grid ("1", "B*H", "1") {view = "segment"}
// PLAN-NEXT: muse.launch @muse_backward_centroids grid ("64", "B*H", "1") {view = "segment"}
// PLAN-NEXT: muse.launch @muse_backward_cluster_sort_k grid ("1", "B*Hkv", "1") {view = "segment"}
// PLAN-NEXT: muse.launch @muse_backward_summarize grid ("64", "B*H", "1") {view = "segment"}
// PLAN-NEXT: muse.launch @muse_backward_select_near grid ("64", "B*H", "1") {view = "segment"}
// PLAN-NEXT: muse.launch @muse_backward_served_sort grid ("1", "B*H", "1") {view = "served"}
// PLAN-NEXT: muse.launch @muse_backward_rows grid ("64", "B*H", "1") {view = "served"}
// PLAN-NEXT: muse.launch @muse_backward_pairs grid ("64", "B*H", "1") {view = "served"}
// PLAN-NEXT: muse.launch @muse_backward_keys grid ("64", "B*Hkv", "1") {view = "served"}
// PLAN-NEXT: muse.launch @muse_backward_centroid grid ("64", "B*H", "1") {view = "served"}
// PLAN-NEXT: muse.launch @muse_backward_members grid ("ceil(N/4)", "B*H", "1") {view = "segment"}
// PLAN-NEXT: muse.launch @muse_emit_dq grid ("ceil(N/32)", "B*H", "1")
// PLAN-NEXT: muse.launch @muse_emit_dkdv grid ("ceil(M/32)", "B*Hkv", "1")
// PLAN-NEXT: }
