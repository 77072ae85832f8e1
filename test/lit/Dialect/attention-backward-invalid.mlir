// RUN: not muse-opt %s 2>&1 | FileCheck %s

// The backward layer op needs an acausal spec.
// CHECK: error: 'muse.attention_backward' op needs an acausal spec; the causal backward is not lowered yet
#spec2 = #muse.spec<name = "c", causal = true, block_size = 64, window_blocks = 1>
func.func @c_backward(%q: tensor<?x?x?x64xbf16>, %o: tensor<?x?x?x64xf32>, %lse: tensor<?x?x?xf32>) {
  %dq, %dk, %dv = muse.attention_backward #spec2(%q, %q, %q, %o, %lse, %o) : (tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xf32>, tensor<?x?x?xf32>, tensor<?x?x?x64xf32>) -> (tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>)
  return
}
