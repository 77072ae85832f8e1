// RUN: muse-opt %s -split-input-file -verify-diagnostics

// expected-error @+1 {{head_dim = 96 is not supported; allowed: 64, 128}}
func.func private @f() attributes {s = #muse.spec<head_dim = 96>}

// -----

// expected-error @+1 {{value_dim = 32 is not supported; allowed: 64, 128}}
func.func private @f() attributes {s = #muse.spec<value_dim = 32>}

// -----

// expected-error @+1 {{dtype 'i8' is not supported; allowed: bf16, f16, f32}}
func.func private @f() attributes {s = #muse.spec<dtype = i8>}

// -----

// expected-error @+1 {{scale must be auto or a finite number > 0}}
func.func private @f() attributes {s = #muse.spec<scale = -1.0>}

// -----

// expected-error @+1 {{kv_heads_ratio = 0 must be >= 1}}
func.func private @f() attributes {s = #muse.spec<kv_heads_ratio = 0>}

// -----

// expected-error @+1 {{query_clusters = 0, key_clusters = 64: each must be in [1, 1024]}}
func.func private @f() attributes {s = #muse.spec<query_clusters = 0>}

// -----

// expected-error @+1 {{query_clusters = 64, key_clusters = 2048: each must be in [1, 1024]}}
func.func private @f() attributes {s = #muse.spec<key_clusters = 2048>}

// -----

// expected-error @+1 {{kmeans_iters = 0 must be >= 1}}
func.func private @f() attributes {s = #muse.spec<kmeans_iters = 0>}

// -----

// expected-error @+1 {{order = 2 is not supported; allowed: 0 (monopole), 1 (dipole)}}
func.func private @f() attributes {s = #muse.spec<order = 2>}

// -----

// expected-error @+1 {{near_clusters = 9 must be in [0, key_clusters = 8]}}
func.func private @f() attributes {s = #muse.spec<key_clusters = 8, near_clusters = 9>}

// -----

// expected-error @+1 {{block_size and window_blocks must be >= 1 (got 2048, 0)}}
func.func private @f() attributes {s = #muse.spec<window_blocks = 0>}

// -----

// expected-error @+1 {{block_q = 48, block_k = 0: each must be 0 (schedule chooses) or a power of two in [16, 256]}}
func.func private @f() attributes {s = #muse.spec<block_q = 48>}

// -----

// expected-error @+1 {{warps = 3 is not supported; allowed: 0 (schedule chooses), 1, 2, 4, 8, 16}}
func.func private @f() attributes {s = #muse.spec<warps = 3>}

// -----

// expected-error @+1 {{arch "sm_75" is not supported; allowed: sm_XY with XY >= 80}}
func.func private @f() attributes {s = #muse.spec<arch = "sm_75">}

// -----

// expected-error @+1 {{spec name must not be empty}}
func.func private @f() attributes {s = #muse.spec<name = "">}

// -----

// expected-error @+1 {{unknown spec field 'heads'; allowed: name, causal}}
func.func private @f() attributes {s = #muse.spec<heads = 8>}

// -----

// expected-error @+1 {{spec field 'order' given twice}}
func.func private @f() attributes {s = #muse.spec<order = 0, order = 1>}

// -----

// expected-error @+1 {{expected 'true' or 'false' for causal}}
func.func private @f() attributes {s = #muse.spec<causal = 1>}

// -----

// expected-error @+1 {{schedule threads = 96 must be a power of two in [32, 1024]}}
func.func private @f() attributes {s = #muse.schedule<block_q = 64, block_k = 64, threads = 96>}

// -----

// expected-error @+1 {{schedule block_q = 0, block_k = 64: each must be a power of two in [16, 256]}}
func.func private @f() attributes {s = #muse.schedule<block_q = 0, block_k = 64, threads = 128>}

// -----

// expected-error @+1 {{malformed dimension 'ceil(K/4)'}}
func.func private @f() attributes {s = #muse.dim<"ceil(K/4)">}

// -----

func.func @f(%q: tensor<?x?x?x128xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) {
  // expected-error @+1 {{q must be tensor<?x?x?x64xbf16> ([B, H, N, head_dim] of dtype), got 'tensor<?x?x?x128xbf16>'}}
  %o, %l = muse.attention #muse.spec<name = "t", query_clusters = 8, key_clusters = 4> (%q, %k, %v) : tensor<?x?x?x128xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return
}

// -----

func.func @f(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xf16>, %v: tensor<?x?x?x64xbf16>) {
  // expected-error @+1 {{k must be tensor<?x?x?x64xbf16> ([B, Hkv, M, head_dim] of dtype)}}
  %o, %l = muse.attention #muse.spec<name = "t", query_clusters = 8, key_clusters = 4> (%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return
}

// -----

func.func @f(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) {
  // expected-error @+1 {{o must be tensor<?x?x?x64xf32> ([B, H, N, value_dim] f32)}}
  %o, %l = muse.attention #muse.spec<name = "t", query_clusters = 8, key_clusters = 4> (%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xbf16>, tensor<?x?x?xf32>
  return
}

// -----

func.func @f(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) {
  // expected-error @+1 {{lse must be tensor<?x?x?xf32> ([B, H, N] f32)}}
  %o, %l = muse.attention #muse.spec<name = "t", query_clusters = 8, key_clusters = 4> (%q, %k, %v) : tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?xf32>
  return
}

// -----

func.func @f(%q: tensor<2x?x?x64xbf16>, %k: tensor<3x?x?x64xbf16>, %v: tensor<3x?x?x64xbf16>) {
  // expected-error @+1 {{batch of q and k differs: 2 vs 3}}
  %o, %l = muse.attention #muse.spec<name = "t", query_clusters = 8, key_clusters = 4> (%q, %k, %v) : tensor<2x?x?x64xbf16>, tensor<3x?x?x64xbf16>, tensor<3x?x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return
}

// -----

func.func @f(%q: tensor<?x6x?x64xbf16>, %k: tensor<?x4x?x64xbf16>, %v: tensor<?x4x?x64xbf16>) {
  // expected-error @+1 {{q has 6 heads, k has 4: with kv_heads_ratio = 2 q must have 8}}
  %o, %l = muse.attention #muse.spec<kv_heads_ratio = 2> (%q, %k, %v) : tensor<?x6x?x64xbf16>, tensor<?x4x?x64xbf16>, tensor<?x4x?x64xbf16> -> tensor<?x?x?x64xf32>, tensor<?x?x?xf32>
  return
}

// -----

func.func @f(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>) {
  // expected-error @+1 {{centroids must be tensor<?x4x64xf32> ([B*Hkv, key_clusters, head_dim] f32)}}
  %c, %a = muse.kmeans key #muse.spec<name = "t", query_clusters = 8, key_clusters = 4> (%k) : tensor<?x?x?x64xbf16> -> tensor<?x8x64xf32>, tensor<?x?xi32>
  return
}

// -----

func.func @f(%a: tensor<?x?xi32>) {
  // expected-error @+1 {{offsets must be tensor<?x9xi32> ([B*H, query_clusters + 1] i32)}}
  %p, %o = muse.cluster_sort query #muse.spec<name = "t", query_clusters = 8, key_clusters = 4> (%a) : tensor<?x?xi32> -> tensor<?x?xi32>, tensor<?x8xi32>
  return
}

// -----

func.func @f(%c: tensor<?x8x64xf32>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>, %p: tensor<?x?xi32>, %o: tensor<?x5xi32>) {
  // expected-error @+1 {{summaries must be tensor<?x8x4x129xf32> ([B*H, query_clusters, key_clusters, 1 + head_dim + value_dim] f32)}}
  %s = muse.summarize #muse.spec<name = "t", query_clusters = 8, key_clusters = 4> (%c, %k, %v, %p, %o) : (tensor<?x8x64xf32>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?xi32>, tensor<?x5xi32>) -> tensor<?x8x4x128xf32>
  return
}

// -----

func.func @f(%s: tensor<?x8x4x129xf32>) {
  // expected-error @+1 {{requires near_clusters > 0; the spec has near_clusters = 0}}
  %n = muse.select_near #muse.spec<name = "t", query_clusters = 8, key_clusters = 4> (%s) : tensor<?x8x4x129xf32> -> tensor<?x8x1xi32>
  return
}

// -----

func.func @f(%s: tensor<?x8x4x129xf32>) {
  // expected-error @+1 {{near must be tensor<?x8x2xi32> ([B*H, query_clusters, near_clusters] i32)}}
  %n = muse.select_near #muse.spec<name = "t", query_clusters = 8, key_clusters = 4, near_clusters = 2> (%s) : tensor<?x8x4x129xf32> -> tensor<?x8x3xi32>
  return
}

// -----

func.func @f(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>, %c: tensor<?x8x64xf32>, %qp: tensor<?x?xi32>, %qo: tensor<?x9xi32>, %kp: tensor<?x?xi32>, %ko: tensor<?x5xi32>, %s: tensor<?x8x4x129xf32>, %n: tensor<?x8x2xi32>, %o0: tensor<?x?x?x64xf32>, %l: tensor<?x?x?xf32>) {
  // expected-error @+1 {{needs a near operand: the spec has near_clusters = 2}}
  %o, %lse = muse.far_field #muse.spec<name = "t", query_clusters = 8, key_clusters = 4, near_clusters = 2> (%q, %k, %v, %c, %qp, %qo, %kp, %ko, %s) : (tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x8x64xf32>, tensor<?x?xi32>, tensor<?x9xi32>, tensor<?x?xi32>, tensor<?x5xi32>, tensor<?x8x4x129xf32>) -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>)
  return
}

// -----

func.func @f(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>, %c: tensor<?x8x64xf32>, %qp: tensor<?x?xi32>, %qo: tensor<?x9xi32>, %kp: tensor<?x?xi32>, %ko: tensor<?x5xi32>, %s: tensor<?x8x4x129xf32>, %n: tensor<?x8x2xi32>, %o0: tensor<?x?x?x64xf32>, %l: tensor<?x?x?xf32>) {
  // expected-error @+1 {{has a near operand but the spec has near_clusters = 0}}
  %o, %lse = muse.far_field #muse.spec<name = "t", query_clusters = 8, key_clusters = 4> (%q, %k, %v, %c, %qp, %qo, %kp, %ko, %s) near(%n) : (tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x8x64xf32>, tensor<?x?xi32>, tensor<?x9xi32>, tensor<?x?xi32>, tensor<?x5xi32>, tensor<?x8x4x129xf32>, tensor<?x8x2xi32>) -> (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>)
  return
}

// -----

func.func @f(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>, %c: tensor<?x8x64xf32>, %qp: tensor<?x?xi32>, %qo: tensor<?x9xi32>, %kp: tensor<?x?xi32>, %ko: tensor<?x5xi32>, %s: tensor<?x8x4x129xf32>, %n: tensor<?x8x2xi32>, %o0: tensor<?x?x?x64xf32>, %l: tensor<?x?x?xf32>) {
  // expected-error @+1 {{is the order-1 correction but the spec has order = 0}}
  %o = muse.dipole #muse.spec<name = "t", query_clusters = 8, key_clusters = 4, order = 0> (%o0, %l, %q, %k, %v, %c, %qp, %qo, %kp, %ko, %s) : (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x8x64xf32>, tensor<?x?xi32>, tensor<?x9xi32>, tensor<?x?xi32>, tensor<?x5xi32>, tensor<?x8x4x129xf32>) -> tensor<?x?x?x64xf32>
  return
}

// -----

func.func @f(%q: tensor<?x?x?x64xbf16>, %k: tensor<?x?x?x64xbf16>, %v: tensor<?x?x?x64xbf16>, %c: tensor<?x8x64xf32>, %qp: tensor<?x?xi32>, %qo: tensor<?x8xi32>, %kp: tensor<?x?xi32>, %ko: tensor<?x5xi32>, %s: tensor<?x8x4x129xf32>, %n: tensor<?x8x2xi32>, %o0: tensor<?x?x?x64xf32>, %l: tensor<?x?x?xf32>) {
  // expected-error @+1 {{q_offsets must be tensor<?x9xi32> ([B*H, query_clusters + 1] i32)}}
  %o = muse.dipole #muse.spec<name = "t", query_clusters = 8, key_clusters = 4> (%o0, %l, %q, %k, %v, %c, %qp, %qo, %kp, %ko, %s) : (tensor<?x?x?x64xf32>, tensor<?x?x?xf32>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x?x?x64xbf16>, tensor<?x8x64xf32>, tensor<?x?xi32>, tensor<?x8xi32>, tensor<?x?xi32>, tensor<?x5xi32>, tensor<?x8x4x129xf32>) -> tensor<?x?x?x64xf32>
  return
}

// -----

muse.plan @p #muse.spec<name = "p"> #muse.schedule<block_q = 64, block_k = 64, threads = 128> {
  // expected-error @+1 {{'workspace' is not a MuseParams workspace buffer; allowed: q_centroids}}
  muse.buffer @workspace : f32 heads query per_n 1 per_m 0 fixed 0
}

// -----

muse.plan @p #muse.spec<name = "p"> #muse.schedule<block_q = 64, block_k = 64, threads = 128> {
  // expected-error @+1 {{'q_perm' holds 'i32', not 'f32'}}
  muse.buffer @q_perm : f32 heads query per_n 1 per_m 0 fixed 0
}

// -----

muse.plan @p #muse.spec<name = "p"> #muse.schedule<block_q = 64, block_k = 64, threads = 128> {
  // expected-error @+1 {{'k_perm' is per key head}}
  muse.buffer @k_perm : i32 heads query per_n 0 per_m 1 fixed 0
}

// -----

muse.plan @p #muse.spec<name = "p"> #muse.schedule<block_q = 64, block_k = 64, threads = 128> {
  // expected-error @+1 {{threads = 2048 must be in [1, 1024]}}
  muse.kernel @k = "muse::summarize<MuseCfg>" threads 2048 shared 0 stage "s"
}

// -----

muse.plan @p #muse.spec<name = "p"> #muse.schedule<block_q = 64, block_k = 64, threads = 128> {
  // expected-error @+1 {{min_blocks = 17 must be >= 1 with min_blocks x threads <= 2048 (the threads one SM holds), got threads = 128}}
  muse.kernel @k = "muse::summarize<MuseCfg>" threads 128 min_blocks 17 shared 0 stage "s"
}

// -----

muse.plan @p #muse.spec<name = "p"> #muse.schedule<block_q = 64, block_k = 64, threads = 128> {
  // expected-error @+1 {{min_blocks = 0 must be >= 1}}
  muse.kernel @k = "muse::summarize<MuseCfg>" threads 128 min_blocks 0 shared 0 stage "s"
}

// -----

muse.plan @p #muse.spec<name = "p"> #muse.schedule<block_q = 64, block_k = 64, threads = 128> {
  // expected-error @+1 {{launches @missing, which is not a muse.kernel of this plan}}
  muse.launch @missing grid("1", "B*H", "1")
}

// -----

muse.plan @p #muse.spec<name = "p"> #muse.schedule<block_q = 64, block_k = 64, threads = 128> {
  // expected-error @+1 {{malformed dimension 'ceil(N/0)'}}
  muse.launch @k grid("ceil(N/0)", "B*H", "1")
}

// -----

muse.plan @p #muse.spec<name = "p"> #muse.schedule<block_q = 64, block_k = 64, threads = 128> {
  // expected-error @+1 {{is not allowed in a muse.plan (only muse.buffer, muse.kernel, muse.launch)}}
  func.func private @g()
}
