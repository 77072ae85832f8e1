// RUN: muse-opt %s -muse-lower | FileCheck %s

// A causal plan: the window once on the real shape, then the far-field stages
// with per-level views (k-means, sort, stage 1 on L's segment view; served
// assignment and stage 2 on R's), then the merge and the partition export per
// level. Buffers are sized for level 0, the level with the most segments
// (at most ceil(N/2S)): X elements per segment head -> ceil(X/2S) per position
// plus X; per-position buffers N + S.
#spec = #muse.spec<name = "causal_plan", causal = true, query_clusters = 16, key_clusters = 8, order = 1, block_size = 64, window_blocks = 2, kmeans_iters = 1>
func.func @causal_plan(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}
// CHECK-LABEL: muse.plan @causal_plan
// CHECK: muse.buffer @q_centroids : f32 heads query per_n 8 per_m 0 fixed 1024
// CHECK: muse.buffer @k_centroids : f32 heads key per_n 4 per_m 0 fixed 512
// CHECK: muse.buffer @q_assign : i32 heads query per_n 1 per_m 0 fixed 64
// CHECK: muse.buffer @summaries : f32 heads query per_n 129 per_m 0 fixed 16512
// CHECK: muse.buffer @dipole_kv : i32 heads key per_n 64 per_m 0 fixed 4096
// CHECK: muse.buffer @dipole_means : f32 heads key per_n 8 per_m 0 fixed 1024
// CHECK: muse.buffer @part_o : f32 heads query per_n 64 per_m 0 fixed 0
// CHECK: muse.buffer @run_lse : f32 heads query per_n 1 per_m 0 fixed 0
// CHECK: muse.buffer @served : i32 heads query per_n 1 per_m 0 fixed 64
// CHECK: muse.kernel @muse_causal_window = "muse::causal_window<MuseCfg>" threads 128
// CHECK: muse.kernel @muse_served_assign = "muse::served_assign<MuseCfg>" threads 256
// CHECK: muse.kernel @muse_served_sort = "muse::served_sort<MuseCfg>" threads 1024
// CHECK: muse.kernel @muse_causal_merge = "muse::causal_merge<MuseCfg>" threads 128
// CHECK: muse.kernel @muse_causal_export = "muse::causal_export<MuseCfg>" threads 256
// CHECK: muse.launch @muse_causal_window grid ("ceil(N/64)", "B*H", "1"){{$}}
// CHECK-NEXT: muse.launch @muse_kmeans_init_k grid ("2", "B*Hkv", "1") {view = "segment"}
// CHECK-NEXT: muse.launch @muse_kmeans_assign_k grid ("ceil(M/1024)", "B*Hkv", "1") {view = "segment"}
// CHECK-NEXT: muse.launch @muse_kmeans_update_k grid ("8", "B*Hkv", "1") {view = "segment"}
// CHECK-NEXT: muse.launch @muse_cluster_sort_k grid ("1", "B*Hkv", "1") {view = "segment"}
// CHECK-NEXT: muse.launch @muse_kmeans_init_q grid ("4", "B*H", "1") {view = "segment"}
// CHECK-NEXT: muse.launch @muse_kmeans_assign_q grid ("ceil(N/1024)", "B*H", "1") {view = "segment"}
// CHECK-NEXT: muse.launch @muse_kmeans_update_q grid ("16", "B*H", "1") {view = "segment"}
// CHECK-NEXT: muse.launch @muse_cluster_sort_q grid ("1", "B*H", "1") {view = "segment"}
// CHECK-NEXT: muse.launch @muse_served_assign grid ("ceil(N/1024)", "B*H", "1") {view = "served"}
// CHECK-NEXT: muse.launch @muse_served_sort grid ("1", "B*H", "1") {view = "served"}
// CHECK-NEXT: muse.launch @muse_summarize grid ("ceil(M/128)", "B*H", "1") {view = "segment"}
// CHECK-NEXT: muse.launch @muse_far_field grid ("16", "B*H", "1") {view = "served"}
// CHECK-NEXT: muse.launch @muse_dipole_prep grid ("8", "B*Hkv", "1") {view = "segment"}
// CHECK-NEXT: muse.launch @muse_dipole grid ("16", "B*H", "1") {view = "served"}
// CHECK-NEXT: muse.launch @muse_causal_merge grid ("ceil(N/128)", "B*H", "1") {view = "level"}
// CHECK-NEXT: muse.launch @muse_causal_export grid ("ceil(N/256)", "B*H", "1") {view = "level"}

