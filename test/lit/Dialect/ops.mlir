// RUN: muse-opt %s | FileCheck %s
// RUN: muse-opt %s | muse-opt | FileCheck %s

// CHECK: #sched = #muse.schedule<block_q = 64, block_k = 64, threads = 128>
#spec = #muse.spec<name = "d64", head_dim = 64, value_dim = 64, dtype = bf16, query_clusters = 8, key_clusters = 4, near_clusters = 2, order = 1>

// CHECK: #spec = #muse.spec<name = "d64", causal = false, head_dim = 64, value_dim = 64, dtype = bf16, scale = auto, kv_heads_ratio = 1, query_clusters = 8, key_clusters = 4, kmeans_iters = 3, order = 1, near_clusters = 2, block_size = 2048, window_blocks = 1, block_q = 0, block_k = 0, warps = 0, arch = "sm_90">

// CHECK-LABEL: func.func @attention
func.func @attention(%q: tensor<2x8x?x64xbf16>, %k: tensor<2x8x?x64xbf16>, %v: tensor<2x8x?x64xbf16>)
    -> (tensor<2x8x?x64xf32>, tensor<2x8x?xf32>) {
  // CHECK: %[[O:.*]], %[[LSE:.*]] = muse.attention #spec(%{{.*}}, %{{.*}}, %{{.*}}) : tensor<2x8x?x64xbf16>, tensor<2x8x?x64xbf16>, tensor<2x8x?x64xbf16> -> tensor<2x8x?x64xf32>, tensor<2x8x?xf32>
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<2x8x?x64xbf16>, tensor<2x8x?x64xbf16>, tensor<2x8x?x64xbf16> -> tensor<2x8x?x64xf32>, tensor<2x8x?xf32>
  return %o, %lse : tensor<2x8x?x64xf32>, tensor<2x8x?xf32>
}

// CHECK-LABEL: func.func @stages
func.func @stages(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  // CHECK: muse.kmeans key #spec(%{{.*}}) : tensor<?x?x?x64xbf16> -> tensor<?x4x64xf32>, tensor<?x?xi32>
  %kc, %ka = muse.kmeans key #spec(%k) : tensor<?x?x?x64xbf16> -> tensor<?x4x64xf32>, tensor<?x?xi32>
  // CHECK: muse.cluster_sort key
  %kp, %ko = muse.cluster_sort key #spec(%ka) : tensor<?x?xi32> -> tensor<?x?xi32>, tensor<?x5xi32>
  // CHECK: muse.kmeans query
  %qc, %qa = muse.kmeans query #spec(%q) : tensor<?x?x?x64xbf16> -> tensor<?x8x64xf32>, tensor<?x?xi32>
  %qp, %qo = muse.cluster_sort query #spec(%qa) : tensor<?x?xi32> -> tensor<?x?xi32>, tensor<?x9xi32>
  // CHECK: muse.summarize #spec({{.*}}) {schedule = #sched} : {{.*}} -> tensor<?x8x4x129xf32>
  %s = muse.summarize #spec(%qc, %k, %v, %kp, %ko) {schedule = #muse.schedule<block_q = 64, block_k = 64, threads = 128>}
      : (tensor<?x8x64xf32>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?xi32>, tensor<?x5xi32>) -> tensor<?x8x4x129xf32>
  // CHECK: muse.select_near #spec({{.*}}) : tensor<?x8x4x129xf32> -> tensor<?x8x2xi32>
  %near = muse.select_near #spec(%s) : tensor<?x8x4x129xf32> -> tensor<?x8x2xi32>
  // CHECK: muse.far_field #spec({{.*}}) near(%{{.*}}) :
  %o0, %lse = muse.far_field #spec(%q, %k, %v, %qc, %qp, %qo, %kp, %ko, %s) near(%near)
      : (tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x8x64xf32>, tensor<?x?xi32>, tensor<?x9xi32>, tensor<?x?xi32>, tensor<?x5xi32>, tensor<?x8x4x129xf32>, tensor<?x8x2xi32>)
      -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>)
  // CHECK: muse.dipole #spec({{.*}}) near(%{{.*}}) :
  %o = muse.dipole #spec(%o0, %lse, %q, %k, %v, %qc, %qp, %qo, %kp, %ko, %s) near(%near)
      : (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x8x64xf32>, tensor<?x?xi32>, tensor<?x9xi32>, tensor<?x?xi32>, tensor<?x5xi32>, tensor<?x8x4x129xf32>, tensor<?x8x2xi32>)
      -> tensor<?x?x?x64xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

// CHECK-LABEL: muse.plan @plan #spec #sched {
muse.plan @plan #spec <block_q = 64, block_k = 64, threads = 128> {
  // CHECK-NEXT: muse.buffer @k_assign : i32 heads key per_n 0 per_m 1 fixed 0
  muse.buffer @k_assign : i32 heads key per_n 0 per_m 1 fixed 0
  // CHECK-NEXT: muse.kernel @muse_kmeans_assign_k = "muse::kmeans_assign<MuseCfg, muse::Side::Key>" threads 256 shared 0 stage "k-means assign (keys)"
  muse.kernel @muse_kmeans_assign_k = "muse::kmeans_assign<MuseCfg, muse::Side::Key>" threads 256 shared 0 stage "k-means assign (keys)"
  // CHECK-NEXT: muse.launch @muse_kmeans_assign_k grid ("ceil(M/256)", "B*Hkv", "1")
  muse.launch @muse_kmeans_assign_k grid ("ceil(M/256)", "B*Hkv", "1")
  // CHECK-NEXT: muse.launch @muse_kmeans_assign_k grid ("ceil(N/64)*2", "B*H*3", "7")
  muse.launch @muse_kmeans_assign_k grid ("ceil(N/64)*2", "B*H*3", "7")
}
