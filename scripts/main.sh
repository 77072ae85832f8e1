#!/usr/bin/env bash
# The main job: set-up, build, then muse-gen on the default spec: lowering, CUDA emission, NVRTC
# compilation into the cache and, where there is a GPU, the kernels checked against the CPU
# reference and exact attention.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
spec="${1:-$root/specs/default.yaml}"

bash "$root/scripts/build.sh"
gen="$build/bin/muse-gen"
"$gen" check "$spec"
lowered="$build/$(basename "$spec" .yaml).lowered.mlir"
"$gen" emit "$spec" --emit=lowered -o "$lowered"
echo "main: lowered IR in $lowered; its launch plan:"
grep -E "muse\.(kernel|launch)" "$lowered"
"$gen" build "$spec" --resource-usage
if "$gen" env --has-gpu >/dev/null 2>&1; then
  "$gen" verify "$spec"
else
  echo "main: no GPU on this machine; kernels compiled and cached, not run (muse-gen verify needs a GPU)"
fi
