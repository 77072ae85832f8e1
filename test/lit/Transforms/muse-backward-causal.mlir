// RUN: muse-opt %s -muse-derive-backward | FileCheck %s

// A causal layer gets no backward function (the causal backward is not lowered yet).
#spec = #muse.spec<name = "c", causal = true, block_size = 64, window_blocks = 1>
func.func @c(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) -> tensor<?x?x?x64xf32> {
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o : tensor<?x?x?x64xf32>
}
// CHECK-NOT: _backward
// CHECK-NOT: attention_backward
