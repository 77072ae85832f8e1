// RUN: muse-opt %s -muse-decompose -split-input-file | FileCheck %s

// Causal dipole with a near field (S = 64, w = 2): the exact window, then the
// stages of one far-field level (run per level on segments by the plan): keys
// and L's queries clustered, R's queries assigned to L's non-empty centroids,
// stage 1 and 2 on those, the dipole, and the log-sum-exp merge.
#spec = #muse.spec<name = "causal_dipole_near", causal = true, query_clusters = 16, key_clusters = 8, order = 1, near_clusters = 2, block_size = 64, window_blocks = 2>
// CHECK-LABEL: func.func @causal_dipole_near
// CHECK-SAME: (%[[Q:.*]]: tensor<?x?x?x64xbf16>, %[[K:.*]]: tensor<?x?x?x64xbf16>, %[[V:.*]]: tensor<?x?x?x64xbf16>)
func.func @causal_dipole_near(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  // CHECK-NEXT: %[[WO:.*]], %[[WL:.*]] = muse.window #spec(%[[Q]], %[[K]], %[[V]]) : {{.*}} -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>)
  // CHECK-NEXT: %[[KC:.*]], %[[KA:.*]] = muse.kmeans key #spec(%[[K]]) : tensor<?x?x?x64xbf16> -> tensor<?x8x64xf32>, tensor<?x?xi32>
  // CHECK-NEXT: %[[KP:.*]], %[[KO:.*]] = muse.cluster_sort key #spec(%[[KA]]) : tensor<?x?xi32> -> tensor<?x?xi32>, tensor<?x9xi32>
  // CHECK-NEXT: %[[QC:.*]], %[[QA:.*]] = muse.kmeans query #spec(%[[Q]]) : tensor<?x?x?x64xbf16> -> tensor<?x16x64xf32>, tensor<?x?xi32>
  // CHECK-NEXT: muse.cluster_sort query #spec(%[[QA]]) : tensor<?x?xi32> -> tensor<?x?xi32>, tensor<?x17xi32>
  // CHECK-NEXT: %[[SP:.*]], %[[SO:.*]] = muse.assign_served #spec(%[[Q]], %[[QC]], %[[QA]]) : {{.*}} -> (tensor<?x?xi32>, tensor<?x17xi32>)
  // CHECK-NEXT: %[[S:.*]] = muse.summarize #spec(%[[QC]], %[[K]], %[[V]], %[[KP]], %[[KO]]) : {{.*}} -> tensor<?x16x8x129xf32>
  // CHECK-NEXT: %[[N:.*]] = muse.select_near #spec(%[[S]]) : tensor<?x16x8x129xf32> -> tensor<?x16x2xi32>
  // CHECK-NEXT: %[[FO:.*]], %[[FL:.*]] = muse.far_field #spec(%[[Q]], %[[K]], %[[V]], %[[QC]], %[[SP]], %[[SO]], %[[KP]], %[[KO]], %[[S]]) near(%[[N]])
  // CHECK-NEXT: %[[DO:.*]] = muse.dipole #spec(%[[FO]], %[[FL]], %[[Q]], %[[K]], %[[V]], %[[QC]], %[[SP]], %[[SO]], %[[KP]], %[[KO]], %[[S]]) near(%[[N]])
  // CHECK-NEXT: %[[O:.*]], %[[LSE:.*]] = muse.merge #spec(%[[WO]], %[[WL]], %[[DO]], %[[FL]])
  // CHECK-NEXT: return %[[O]], %[[LSE]]
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

// -----

// Causal monopole, no near field (S = 256, w = 1): no select_near, no dipole;
// the far field's own o is the level's partial.
#spec = #muse.spec<name = "causal_monopole", causal = true, order = 0, block_size = 256, window_blocks = 1>
// CHECK-LABEL: func.func @causal_monopole
func.func @causal_monopole(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  // CHECK: %[[WO:.*]], %[[WL:.*]] = muse.window
  // CHECK: muse.assign_served
  // CHECK-NOT: muse.select_near
  // CHECK: %[[FO:.*]], %[[FL:.*]] = muse.far_field
  // CHECK-NOT: muse.dipole
  // CHECK-NEXT: %[[O:.*]], %[[LSE:.*]] = muse.merge #spec(%[[WO]], %[[WL]], %[[FO]], %[[FL]])
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

// -----

// GQA and D = 128 (S = 16, w = 64): keys clustered per kv head, everything
// else as above.
#spec = #muse.spec<name = "causal_gqa_d128", causal = true, head_dim = 128, value_dim = 128, kv_heads_ratio = 4, query_clusters = 32, key_clusters = 16, block_size = 16, window_blocks = 64>
// CHECK-LABEL: func.func @causal_gqa_d128
func.func @causal_gqa_d128(%q: tensor<?x8x?x128xbf16>, %k: tensor<?x2x?x128xbf16>, %v: tensor<?x2x?x128xbf16>)
    -> (tensor<?x8x?x128xf32>, tensor<?x8x?xf32>) {
  // CHECK: muse.window {{.*}} -> (tensor<?x8x?x128xf32>, tensor<?x8x?xf32>)
  // CHECK: muse.kmeans key {{.*}} -> tensor<?x16x128xf32>, tensor<?x?xi32>
  // CHECK: muse.kmeans query {{.*}} -> tensor<?x32x128xf32>, tensor<?x?xi32>
  // CHECK: muse.assign_served {{.*}} -> (tensor<?x?xi32>, tensor<?x33xi32>)
  // CHECK: muse.summarize {{.*}} -> tensor<?x32x16x257xf32>
  // CHECK: muse.dipole
  // CHECK: muse.merge {{.*}} -> (tensor<?x8x?x128xf32>, tensor<?x8x?xf32>)
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x8x?x128xbf16>, tensor<?x2x?x128xbf16>, tensor<?x2x?x128xbf16> -> tensor<?x8x?x128xf32>, tensor<?x8x?xf32>
  return %o, %lse : tensor<?x8x?x128xf32>, tensor<?x8x?xf32>
}
