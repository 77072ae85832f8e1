// RUN: not muse-opt %s -split-input-file 2>&1 | FileCheck %s

// A causal backward layer op is checked like an acausal one: dO must be in
// the spec's dtype (here bf16), not f32.
// CHECK: error: 'muse.attention_backward' op dout must be a rank-4 tensor of 'bf16' with last dim 64 (dL/do in dtype)
#spec2 = #muse.spec<name = "c", causal = true, block_size = 64, window_blocks = 1>
func.func @c_backward(%q: tensor<?x?x?x64xbf16>, %o: tensor<?x?x?x64xf32>, %lse: tensor<?x?x?xf32>) {
  %dq, %dk, %dv = muse.attention_backward #spec2(%q, %q, %q, %q, %lse, %o) : (tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?xf32>, tensor<?x?x?x64xf32>) -> (tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>)
  return
}

// -----

// o likewise: the forward's fp32 o is rounded to the dtype by the caller.
// CHECK: error: 'muse.attention_backward' op o must be a rank-4 tensor of 'bf16' with last dim 64 (the forward's output in dtype)
#spec3 = #muse.spec<name = "a">
func.func @a_backward(%q: tensor<?x?x?x64xbf16>, %o: tensor<?x?x?x64xf32>, %lse: tensor<?x?x?xf32>) {
  %dq, %dk, %dv = muse.attention_backward #spec3(%q, %q, %q, %o, %lse, %q) : (tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xf32>, tensor<?x?x?xf32>, tensor<?x?x?x64xbf16>) -> (tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>, tensor<?x?x?x64xf32>)
  return
}
