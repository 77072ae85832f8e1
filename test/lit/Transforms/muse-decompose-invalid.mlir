// RUN: muse-opt %s -muse-decompose -split-input-file -verify-diagnostics

#spec = #muse.spec<name = "causal", causal = true>
func.func @causal(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  // expected-error @+1 {{has a causal spec; muse-decompose lowers acausal attention only (causal: false) - causal lowering is not implemented yet}}
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}
