#!/usr/bin/env bash
# Compiles ahead of time (NVRTC, no GPU needed) every MuSe kernel set that
# micro.py and time_attention.py use, into the kernel cache (MUSE_CACHE_DIR,
# else the default location), so the GPU run spends no time compiling.
# The configurations are those of micro.py (default spec, bf16, D=64, sm_90,
# order 0/1 x near 0/4 x C 32/64/128, acausal and causal with block_size 512
# and window_blocks 1) and time_attention.py (specs/causal_d64_order{0,1}.yaml
# with near_clusters 0 and 4).
# Usage: examples/pretrain/precompile.sh MUSE_GEN [ARCH]   (from the repository root)
set -euo pipefail
gen=${1:?usage: precompile.sh PATH/TO/muse-gen [ARCH]}
arch=${2:-sm_90}
root=$(cd "$(dirname "$0")/../.." && pwd)
for causal in false true; do
  for order in 0 1; do
    for near in 0 4; do
      for c in 32 64 128; do
        sets=(--set attention.causal=$causal --set multipole.order=$order
              --set multipole.near_clusters=$near --set clustering.query_clusters=$c
              --set clustering.key_clusters=$c --set clustering.kmeans_iters=3)
        if [ "$causal" = true ]; then
          sets+=(--set causal.block_size=512 --set causal.window_blocks=1)
        fi
        "$gen" build "$root/specs/default.yaml" --arch "$arch" "${sets[@]}"
      done
    done
  done
done
for spec in causal_d64_order0 causal_d64_order1; do
  for near in 0 4; do
    "$gen" build "$root/specs/$spec.yaml" --arch "$arch" --set multipole.near_clusters=$near
  done
done
