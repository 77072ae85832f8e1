// RUN: muse-opt %s -muse-decompose -muse-schedule -muse-outline | FileCheck %s

// The plan of templates/README.md: buffers in MuseParams order (near only with
// near_clusters > 0; dipole_kv and dipole_means for order 1 with 16-bit inputs; acc_o where o
// has more than one writer), one kernel per wrapper, launches keys first, k-means as
// init then (assign, update) x kmeans_iters, and last the rounding of o to the inputs' dtype.
#spec = #muse.spec<name = "small", query_clusters = 16, key_clusters = 8, kmeans_iters = 2, order = 1, near_clusters = 2>

// CHECK-NOT: func.func
// CHECK-LABEL: muse.plan @small #spec #sched {
// CHECK-NEXT: muse.buffer @q_centroids : f32 heads query per_n 0 per_m 0 fixed 1024
// CHECK-NEXT: muse.buffer @k_centroids : f32 heads key per_n 0 per_m 0 fixed 512
// CHECK-NEXT: muse.buffer @q_sums : f32 heads query per_n 0 per_m 0 fixed 1024
// CHECK-NEXT: muse.buffer @k_sums : f32 heads key per_n 0 per_m 0 fixed 512
// CHECK-NEXT: muse.buffer @q_counts : i32 heads query per_n 0 per_m 0 fixed 16
// CHECK-NEXT: muse.buffer @k_counts : i32 heads key per_n 0 per_m 0 fixed 8
// CHECK-NEXT: muse.buffer @q_assign : i32 heads query per_n 1 per_m 0 fixed 0
// CHECK-NEXT: muse.buffer @k_assign : i32 heads key per_n 0 per_m 1 fixed 0
// CHECK-NEXT: muse.buffer @q_offsets : i32 heads query per_n 0 per_m 0 fixed 17
// CHECK-NEXT: muse.buffer @k_offsets : i32 heads key per_n 0 per_m 0 fixed 9
// CHECK-NEXT: muse.buffer @q_perm : i32 heads query per_n 1 per_m 0 fixed 0
// CHECK-NEXT: muse.buffer @k_perm : i32 heads key per_n 0 per_m 1 fixed 0
// CHECK-NEXT: muse.buffer @summaries : f32 heads query per_n 0 per_m 0 fixed 16512
// CHECK-NEXT: muse.buffer @near : i32 heads query per_n 0 per_m 0 fixed 32
// CHECK-NEXT: muse.buffer @row_lse : f32 heads query per_n 1 per_m 0 fixed 0
// CHECK-NEXT: muse.buffer @dipole_kv : i32 heads key per_n 0 per_m 64 fixed 0
// CHECK-NEXT: muse.buffer @dipole_means : f32 heads key per_n 0 per_m 0 fixed 1024
// CHECK-NEXT: muse.buffer @acc_o : f32 heads query per_n 64 per_m 0 fixed 0
// CHECK-NEXT: muse.kernel @muse_kmeans_init_k = "muse::kmeans_init<MuseCfg, muse::Side::Key>" threads 256 shared 0 stage "k-means init (keys)"
// CHECK-NEXT: muse.kernel @muse_kmeans_assign_k = "muse::kmeans_assign<MuseCfg, muse::Side::Key>" threads 256
// CHECK-NEXT: muse.kernel @muse_kmeans_update_k = "muse::kmeans_update<MuseCfg, muse::Side::Key>" threads 64
// CHECK-NEXT: muse.kernel @muse_cluster_sort_k = "muse::cluster_sort<MuseCfg, muse::Side::Key>" threads 1024
// CHECK-NEXT: muse.kernel @muse_kmeans_init_q = "muse::kmeans_init<MuseCfg, muse::Side::Query>" threads 256
// CHECK-NEXT: muse.kernel @muse_kmeans_assign_q = "muse::kmeans_assign<MuseCfg, muse::Side::Query>" threads 256
// CHECK-NEXT: muse.kernel @muse_kmeans_update_q = "muse::kmeans_update<MuseCfg, muse::Side::Query>" threads 64
// CHECK-NEXT: muse.kernel @muse_cluster_sort_q = "muse::cluster_sort<MuseCfg, muse::Side::Query>" threads 1024
// CHECK-NEXT: muse.kernel @muse_summarize = "muse::summarize<MuseCfg>" threads 128
// CHECK-NEXT: muse.kernel @muse_select_near = "muse::select_near<MuseCfg>" threads 32
// CHECK-NEXT: muse.kernel @muse_far_field = "muse::far_field<MuseCfg>" threads 128
// CHECK-NEXT: muse.kernel @muse_dipole_prep = "muse::dipole_prep<MuseCfg>" threads 128
// CHECK-NEXT: muse.kernel @muse_dipole = "muse::dipole<MuseCfg>" threads 128
// CHECK-NEXT: muse.kernel @muse_emit_o = "muse::emit_forward<MuseCfg, true>" threads 256
// CHECK-NEXT: muse.launch @muse_kmeans_init_k grid ("2", "B*Hkv", "1")
// CHECK-NEXT: muse.launch @muse_kmeans_assign_k grid ("ceil(M/1024)", "B*Hkv", "1")
// CHECK-NEXT: muse.launch @muse_kmeans_update_k grid ("8", "B*Hkv", "1")
// CHECK-NEXT: muse.launch @muse_kmeans_assign_k grid ("ceil(M/1024)", "B*Hkv", "1")
// CHECK-NEXT: muse.launch @muse_kmeans_update_k grid ("8", "B*Hkv", "1")
// CHECK-NEXT: muse.launch @muse_cluster_sort_k grid ("1", "B*Hkv", "1")
// CHECK-NEXT: muse.launch @muse_kmeans_init_q grid ("4", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_kmeans_assign_q grid ("ceil(N/1024)", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_kmeans_update_q grid ("16", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_kmeans_assign_q grid ("ceil(N/1024)", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_kmeans_update_q grid ("16", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_cluster_sort_q grid ("1", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_summarize grid ("ceil(M/128)", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_select_near grid ("16", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_far_field grid ("16", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_dipole_prep grid ("8", "B*Hkv", "1")
// CHECK-NEXT: muse.launch @muse_dipole grid ("16", "B*H", "1")
// CHECK-NEXT: muse.launch @muse_emit_o grid ("ceil(N/32)", "B*H", "1")
// CHECK-NEXT: }
func.func @small(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

// A function without muse ops is left alone.
// CHECK-LABEL: func.func @other
func.func @other() {
  return
}
