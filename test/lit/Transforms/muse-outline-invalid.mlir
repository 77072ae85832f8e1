// RUN: muse-opt %s -muse-outline -split-input-file -verify-diagnostics

#spec = #muse.spec<name = "raw">
func.func @raw(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  // expected-error @+1 {{must be decomposed before outlining (run muse-decompose first)}}
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

// -----

#spec = #muse.spec<name = "unscheduled", query_clusters = 8, key_clusters = 4>
func.func @unscheduled(%c: tensor<?x8x64xf32>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>, %p: tensor<?x?xi32>, %o: tensor<?x5xi32>) {
  // expected-error @+1 {{has no schedule (run muse-schedule before muse-outline)}}
  %s = muse.summarize #spec(%c, %k, %v, %p, %o) : (tensor<?x8x64xf32>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?xi32>, tensor<?x5xi32>) -> tensor<?x8x4x129xf32>
  return
}
