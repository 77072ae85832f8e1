// RUN: muse-opt %s -muse-lower | muse-translate --muse-to-cuda | FileCheck %s

// Monopole without a near field: no select_near, no dipole wrapper; bf16 input.
#spec = #muse.spec<name = "mono", head_dim = 128, value_dim = 128, order = 0>

// CHECK: using T = __nv_bfloat16;
// CHECK: static constexpr int ORDER = 0;
// CHECK: static constexpr int NEAR = 0;
// CHECK: static constexpr int THREADS = 256;
// CHECK-NOT: muse_select_near
// CHECK: muse_far_field
// CHECK-NOT: muse_dipole
func.func @mono(%q: tensor<?x?x?x128xbf16>, %k: tensor<?x?x?x128xbf16>, %v: tensor<?x?x?x128xbf16>)
    -> (tensor<?x?x?x128xf32>, tensor<?x?x?xf32>) {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x128xbf16>, tensor<?x?x?x128xbf16>, tensor<?x?x?x128xbf16> -> tensor<?x?x?x128xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x128xf32>, tensor<?x?x?xf32>
}
