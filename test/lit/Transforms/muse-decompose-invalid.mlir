// RUN: muse-opt %s -muse-decompose -split-input-file -verify-diagnostics

// Causal blocks must be powers of two: window tiles never straddle a block and
// far-field segments sit at dyadic block offsets.
#spec = #muse.spec<name = "causal_s24", causal = true, block_size = 24>
func.func @causal_s24(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  // expected-error @+1 {{causal lowering needs block_size to be a power of two from 16 to 4096, got 24}}
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

// -----

#spec = #muse.spec<name = "causal_s8", causal = true, block_size = 8>
func.func @causal_s8(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  // expected-error @+1 {{causal lowering needs block_size to be a power of two from 16 to 4096, got 8}}
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

// -----

#spec = #muse.spec<name = "causal_w65", causal = true, window_blocks = 65>
func.func @causal_w65(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>)
    -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>) {
  // expected-error @+1 {{causal lowering needs window_blocks from 1 to 64, got 65}}
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return %o, %lse : tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
}

// -----

// Causal MuSe is self-attention: as many keys as queries.
#spec = #muse.spec<name = "causal_nm", causal = true>
func.func @causal_nm(%q: tensor<2x4x100x64xbf16>, %k: tensor<2x4x90x64xbf16>, %v: tensor<2x4x90x64xbf16>)
    -> (tensor<2x4x100x64xf32>, tensor<2x4x100xf32>) {
  // expected-error @+1 {{is causal self-attention: q has 100 positions but k has 90; causal MuSe needs N == M}}
  %o, %lse = muse.attention #spec(%q, %k, %v) : tensor<2x4x100x64xbf16>, tensor<2x4x90x64xbf16>, tensor<2x4x90x64xbf16> -> tensor<2x4x100x64xf32>, tensor<2x4x100xf32>
  return %o, %lse : tensor<2x4x100x64xf32>, tensor<2x4x100xf32>
}
