#!/bin/bash
# On the GPU machine, from the repository root: bash bench/window/run.sh [variant names...]
# Builds window_bench.cu with nvcc for the templates' own tiles ("default") and for each named
# variant of variants.sh (all of them when none is named), in parallel, then runs each build.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
source "$here/variants.sh"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
names=("$@")
[ ${#names[@]} -eq 0 ] && names=($(for v in "${V[@]}"; do echo "${v%%|*}"; done))
build() { # name flags...
  local n=$1; shift
  "$nvcc" -O3 -std=c++17 -arch=sm_90 "$@" -I "$here/../../templates" "$here/window_bench.cu" -o "$out/$n" \
    > "$out/$n.log" 2>&1 || { echo "$n: build failed"; cat "$out/$n.log"; }
}
build default &
for v in "${V[@]}"; do
  n=${v%%|*}
  for want in "${names[@]}"; do [ "$want" = "$n" ] && build "$n" ${v#*|} & done
done
wait
for n in default "${names[@]}"; do
  [ -x "$out/$n" ] || continue
  echo "== $n"
  "$out/$n"
done
