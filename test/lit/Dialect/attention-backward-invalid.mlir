// RUN: not muse-opt %s 2>&1 | FileCheck %s

// A causal backward layer op is checked like an acausal one: dO must be f32.
// CHECK: error: 'muse.attention_backward' op dout must be a rank-4 tensor of 'f32' with last dim 64 (dL/do)
#spec2 = #muse.spec<name = "c", causal = true, block_size = 64, window_blocks = 1>
func.func @c_backward(%q: tensor<?x?x?x64xbf16>, %o: tensor<?x?x?x64xf32>, %lse: tensor<?x?x?xf32>) {
  %dq, %dk, %dv = muse.attention_backward #spec2(%q, %q, %q, %o, %lse, %q) : (tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xf32>, tensor<?x?x?xf32>, tensor<?x?x?x64xbf16>) -> (tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>)
  return
}
