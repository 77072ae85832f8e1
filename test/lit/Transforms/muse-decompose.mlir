// RUN: muse-opt %s -muse-decompose -split-input-file | FileCheck %s

// Dipole with a near field: every stage, keys before queries.
#spec = #muse.spec<name = "dipole_near", query_clusters = 16, key_clusters = 8, order = 1, near_clusters = 2>
// CHECK-LABEL: func.func @dipole_near
// CHECK-SAME: (%[[Q:.*]]: tensor<?x?x?x64xbf16>, %[[K:.*]]: tensor<?x?x?x64xbf16>, %[[V:.*]]: tensor<?x?x?x64xbf16>)
func.func @dipole_near(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  // CHECK-NEXT: %[[KC:.*]], %[[KA:.*]] = muse.kmeans key #spec(%[[K]]) : tensor<?x?x?x64xbf16> -> tensor<?x8x64xf32>, tensor<?x?xi32>
  // CHECK-NEXT: %[[KP:.*]], %[[KO:.*]] = muse.cluster_sort key #spec(%[[KA]]) : tensor<?x?xi32> -> tensor<?x?xi32>, tensor<?x9xi32>
  // CHECK-NEXT: %[[QC:.*]], %[[QA:.*]] = muse.kmeans query #spec(%[[Q]]) : tensor<?x?x?x64xbf16> -> tensor<?x16x64xf32>, tensor<?x?xi32>
  // CHECK-NEXT: %[[QP:.*]], %[[QO:.*]] = muse.cluster_sort query #spec(%[[QA]]) : tensor<?x?xi32> -> tensor<?x?xi32>, tensor<?x17xi32>
  // CHECK-NEXT: %[[S:.*]] = muse.summarize #spec(%[[QC]], %[[K]], %[[V]], %[[KP]], %[[KO]]) : {{.*}} -> tensor<?x16x8x129xf32>
  // CHECK-NEXT: %[[N:.*]] = muse.select_near #spec(%[[S]]) : tensor<?x16x8x129xf32> -> tensor<?x16x2xi32>
  // CHECK-NEXT: %[[O0:.*]], %[[LSE:.*]] = muse.far_field #spec(%[[Q]], %[[K]], %[[V]], %[[QC]], %[[QP]], %[[QO]], %[[KP]], %[[KO]], %[[S]]) near(%[[N]])
  // CHECK-NEXT: %[[O:.*]] = muse.dipole #spec(%[[O0]], %[[LSE]], %[[Q]], %[[K]], %[[V]], %[[QC]], %[[QP]], %[[QO]], %[[KP]], %[[KO]], %[[S]]) near(%[[N]])
  // CHECK-NEXT: return %[[O]], %[[LSE]]
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

// -----

// Monopole without a near field: no select_near, no dipole.
#spec = #muse.spec<name = "monopole", head_dim = 128, value_dim = 64, dtype = f16, order = 0>
// CHECK-LABEL: func.func @monopole
func.func @monopole(%q: tensor<?x?x?x128xf16>, %k: tensor<?x?x?x128xf16>, %v: tensor<?x?x?x64xf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  // CHECK: muse.summarize{{.*}}-> tensor<?x64x64x193xf32>
  // CHECK-NOT: muse.select_near
  // CHECK: %[[O:.*]], %[[LSE:.*]] = muse.far_field #spec({{[^)]*}}) :
  // CHECK-NOT: muse.dipole
  // CHECK: return %[[O]], %[[LSE]]
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x128xf16>, tensor<?x?x?x128xf16>, tensor<?x?x?x64xf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}
