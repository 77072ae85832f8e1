// RUN: muse-opt %s -muse-lower | muse-translate --muse-to-plan | FileCheck %s --check-prefix=PLAN
// RUN: muse-opt %s -muse-lower | muse-translate --muse-to-plan | muse-translate --muse-plan-layout --shape=2,4,2,100,300 | FileCheck %s --check-prefix=LAYOUT

// The serialized LaunchPlan, and its workspace layout for B=2, H=4, Hkv=2,
// N=100, M=300 (8 query heads, 4 kv heads): each buffer 256-byte aligned.
#spec = #muse.spec<name = "plan", query_clusters = 4, key_clusters = 2, kmeans_iters = 1, order = 0, near_clusters = 1, kv_heads_ratio = 2>

// PLAN: muse-launch-plan 1
// PLAN-NEXT: buffer q_centroids heads=B*H perN=0 perM=0 fixed=256 elem=4
// PLAN-NEXT: buffer k_centroids heads=B*Hkv perN=0 perM=0 fixed=128 elem=4
// PLAN: buffer k_assign heads=B*Hkv perN=0 perM=1 fixed=0 elem=4
// PLAN: buffer summaries heads=B*H perN=0 perM=0 fixed=1032 elem=4
// PLAN-NEXT: buffer near heads=B*H perN=0 perM=0 fixed=4 elem=4
// PLAN-NEXT: buffer row_lse heads=B*H perN=1 perM=0 fixed=0 elem=4
// PLAN-NEXT: launch muse_kmeans_init_k grid=1,B*Hkv,1 block=256 shared=0 comment=k-means init (keys)
// PLAN-NEXT: launch muse_kmeans_assign_k grid=ceil(M/1024),B*Hkv,1 block=256 shared=0 comment=k-means assign (keys)
// PLAN: launch muse_far_field grid=4,B*H,1 block=128 shared=0 comment=stage 2: far field and exact near field
// Acausal order 0: far_field writes o (no acc_o); emit_o is one block that
// returns at once (its compile-time check ties the plan to the kernels).
// PLAN-NEXT: launch muse_emit_o grid=1,1,1 block=256 shared=0 comment=o rounded to the input dtype (when asked for)
// PLAN-NEXT: backward buffer bwd_dr heads=B*H perN=64 perM=0 fixed=0 elem=4
// PLAN-NEXT: backward buffer bwd_delta heads=B*H perN=1 perM=0 fixed=0 elem=4
// PLAN-NEXT: backward buffer bwd_dqbar heads=B*H perN=0 perM=0 fixed=512 elem=4
// PLAN-NEXT: backward buffer bwd_pairs heads=B*H perN=0 perM=0 fixed=1032 elem=4
// PLAN-NEXT: backward buffer acc_dq heads=B*H perN=64 perM=0 fixed=0 elem=4
// PLAN-NEXT: backward buffer acc_dk heads=B*Hkv perN=0 perM=64 fixed=0 elem=4
// PLAN-NEXT: backward buffer acc_dv heads=B*Hkv perN=0 perM=64 fixed=0 elem=4
// PLAN-NEXT: backward launch muse_backward_rows grid=4,B*H,1 block=128 shared=0 comment=backward stage 2: per query, far-field and near-field gradients; stage-1 pair sums
// PLAN-NEXT: backward launch muse_backward_keys grid=2,B*Hkv,1 block=128 shared=0 comment=backward stage 1 and near field: dk, dv per key cluster
// PLAN-NEXT: backward launch muse_backward_centroid grid=4,B*H,1 block=64 shared=0 comment=backward: centroid gradient spread to the members, dq
// PLAN-NEXT: backward launch muse_emit_dkdv grid=ceil(M/32),B*Hkv,1 block=256 shared=0 comment=dk, dv rounded to the input dtype (when asked for)
// PLAN-NEXT: end

// LAYOUT: q_centroids offset 0 bytes 8192
// LAYOUT-NEXT: k_centroids offset 8192 bytes 2048
// LAYOUT-NEXT: q_sums offset 10240 bytes 8192
// LAYOUT-NEXT: k_sums offset 18432 bytes 2048
// LAYOUT-NEXT: q_counts offset 20480 bytes 128
// LAYOUT-NEXT: k_counts offset 20736 bytes 32
// LAYOUT-NEXT: q_assign offset 20992 bytes 3200
// LAYOUT-NEXT: k_assign offset 24320 bytes 4800
// LAYOUT-NEXT: q_offsets offset 29184 bytes 160
// LAYOUT-NEXT: k_offsets offset 29440 bytes 48
// LAYOUT-NEXT: q_perm offset 29696 bytes 3200
// LAYOUT-NEXT: k_perm offset 33024 bytes 4800
// LAYOUT-NEXT: summaries offset 37888 bytes 33024
// LAYOUT-NEXT: near offset 70912 bytes 128
// LAYOUT-NEXT: row_lse offset 71168 bytes 3200
// LAYOUT-NEXT: workspace 74496
// LAYOUT-NEXT: launch muse_kmeans_init_k grid 1 4 1 block 256
// LAYOUT-NEXT: launch muse_kmeans_assign_k grid 1 4 1 block 256
// LAYOUT-NEXT: launch muse_kmeans_update_k grid 2 4 1 block 64
// LAYOUT-NEXT: launch muse_cluster_sort_k grid 1 4 1 block 1024
// LAYOUT-NEXT: launch muse_kmeans_init_q grid 1 8 1 block 256
// LAYOUT-NEXT: launch muse_kmeans_assign_q grid 1 8 1 block 256
// LAYOUT-NEXT: launch muse_kmeans_update_q grid 4 8 1 block 64
// LAYOUT-NEXT: launch muse_cluster_sort_q grid 1 8 1 block 1024
// LAYOUT-NEXT: launch muse_summarize grid 3 8 1 block 128
// LAYOUT-NEXT: launch muse_select_near grid 4 8 1 block 32
// LAYOUT-NEXT: launch muse_far_field grid 4 8 1 block 128
// LAYOUT-NEXT: launch muse_emit_o grid 1 1 1 block 256
// LAYOUT-EMPTY:
func.func @plan(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}
