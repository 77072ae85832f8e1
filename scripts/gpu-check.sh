#!/usr/bin/env bash
# Runs on the GPU machine from an installed prefix (scripts/package.sh): the GPU tests, then
# muse-gen verify on every spec. Logs go to $1 (default: the current directory); a table is last.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="$(dirname "$here")"
out="${1:-.}"
mkdir -p "$out"
export MUSE_CACHE_DIR="${MUSE_CACHE_DIR:-$(mktemp -d)}"

"$here/muse-gen" env | tee "$out/env.txt"
status=0
"$here/muse-gpu-tests" 2>&1 | tee "$out/gpu-tests.txt" || status=1
printf '\n%-28s %-8s %s\n' spec result "rel L2 vs reference / rel sq err vs exact" | tee "$out/verify.txt"
for spec in "$prefix"/share/muse/specs/*.yaml; do
  name=$(basename "$spec" .yaml)
  # Causal attention is self-attention (N = M); acausal specs also get N != M.
  if grep -Eq "causal: *true" "$spec"; then shape=(--seq 4000); else shape=(--seq 4000 --kv-seq 3001); fi
  if "$here/muse-gen" verify "$spec" --heads 4 "${shape[@]}" >"$out/verify-$name.txt" 2>&1; then r=PASS; else r=FAIL; status=1; fi
  if ! grep -Eq "causal: *true" "$spec"; then
    if "$here/muse-gen" verify "$spec" --backward --heads 4 --seq 1000 --kv-seq 777 >"$out/verify-bwd-$name.txt" 2>&1; then rb=PASS; else rb=FAIL; status=1; fi
    printf '%-28s %-8s %s\n' "$name (backward)" "$rb" "$(grep -E "rel L2" "$out/verify-bwd-$name.txt" | tr '\n' ' ' | cut -c1-150)" >> "$out/verify-bwd.txt"
  fi
  line=$(grep -E "rel L2|relative squared" "$out/verify-$name.txt" | tr '\n' ' ' | cut -c1-150)
  printf '%-28s %-8s %s\n' "$name" "$r" "$line" | tee -a "$out/verify.txt"
done
cat "$out/verify-bwd.txt" 2>/dev/null
exit $status
