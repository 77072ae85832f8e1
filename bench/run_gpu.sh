#!/usr/bin/env bash
# On the GPU machine, from an installed prefix (scripts/package.sh): the GPU tests, then the
# forward benchmark at D = 64 (4k-64k against SDPA, 128k MuSe alone), D = 128 at 8k, and the
# causal forward (8k-64k against SDPA causal, 128k MuSe alone; block size / window choices at 16k).
# Usage: bench/run_gpu.sh PREFIX OUTDIR [COMMIT]. Logs and JSON go to OUTDIR; tables are last.
set -uo pipefail
prefix="$1"; out="$2"; commit="${3:-unknown}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$out"
export MUSE_CACHE_DIR="${MUSE_CACHE_DIR:-$(mktemp -d)}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > "$out/gpu.txt" 2>&1
"$prefix/bin/muse-gpu-tests" > "$out/gpu-tests.txt" 2>&1
tests=$?
python3 "$here/bench_forward.py" --lib "$prefix/lib/libmuse.so" --json "$out/bench-d64.json" \
  --commit "$commit" --budget-s 270 > "$out/bench-d64.txt" 2>&1
python3 "$here/bench_forward.py" --lib "$prefix/lib/libmuse.so" --json "$out/bench-d128.json" \
  --commit "$commit" --dims 128 --lengths 8192 --muse-only-lengths "" --profile-length 8192 \
  --configs o1:64:64:0,o0:64:64:0 --budget-s 60 > "$out/bench-d128.txt" 2>&1
python3 "$here/bench_forward.py" --lib "$prefix/lib/libmuse.so" --json "$out/bench-causal.json" \
  --commit "$commit" --causal --lengths 8192,16384,65536 --muse-only-lengths 131072 \
  --configs o0:64:64:0:2048:1,o1:64:64:0:2048:1 --reps 5 --profile-length 16384 --budget-s 240 \
  > "$out/bench-causal.txt" 2>&1
python3 "$here/bench_forward.py" --lib "$prefix/lib/libmuse.so" --json "$out/bench-causal-blocks.json" \
  --commit "$commit" --causal --lengths 16384 --muse-only-lengths "" --profile-length 0 \
  --configs o0:64:64:0:256:1,o0:64:64:0:512:1,o0:64:64:0:1024:1,o0:64:64:0:2048:1,o0:64:64:0:2048:2,o0:64:64:0:4096:1 \
  --reps 5 --budget-s 120 > "$out/bench-causal-blocks.txt" 2>&1
grep -E "^\[  (PASSED|FAILED)|FAILED  \]|tests ran" "$out/gpu-tests.txt" | tail -15
echo "gpu tests exit: $tests"
grep -E "^ +[0-9.]+ ms " "$out/bench-d64.txt" | head -40
tail -32 "$out/bench-d64.txt"
tail -6 "$out/bench-d128.txt"
tail -14 "$out/bench-causal.txt"
tail -9 "$out/bench-causal-blocks.txt"
