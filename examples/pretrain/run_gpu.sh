#!/usr/bin/env bash
# The whole exact-attention pipeline of the pretraining example on one GPU
# machine, from the repository root:
#   corpus -> train the exact (SDPA cuDNN) model -> record Q/K/V at 8k and 16k
#   -> MuSe accuracy micro-benchmark -> per-layer attention timing and the
#   predicted MuSe step time -> loss plot.
# Large files (corpus, weights, activations) stay in examples/pretrain/work/
# (git-ignored); the small results go to OUT: corpus_manifest.json,
# sdpa_config.json, sdpa_log.jsonl, micro.{json,md}, timing.json,
# swap_eval.json, loss.png, stages.txt.
# Usage: examples/pretrain/run_gpu.sh PREFIX OUT [FIT_MINUTES] [MAX_STEPS]
#   PREFIX: a muse install prefix (scripts/package.sh PREFIX)
#   FIT_MINUTES: training time of the exact run (default 2); MAX_STEPS: cap (default 2000)
# Kernels precompiled by precompile.sh into examples/pretrain/work/kernels are
# copied into a fresh cache first, when present.
set -uo pipefail
prefix=$(cd "${1:?usage: run_gpu.sh PREFIX OUT [FIT_MINUTES] [MAX_STEPS]}" && pwd)
out=${2:?usage: run_gpu.sh PREFIX OUT [FIT_MINUTES] [MAX_STEPS]}
fit=${3:-2}
max_steps=${4:-2000}
here=examples/pretrain
work=$here/work
mkdir -p "$out" "$work"
export PYTHONPATH="$prefix/python" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export MUSE_CACHE_DIR
MUSE_CACHE_DIR=$(mktemp -d)
if [ -d "$work/kernels" ]; then cp -r "$work/kernels/." "$MUSE_CACHE_DIR/"; fi
status=()
stage() {  # stage NAME COMMAND...: runs it, times it, remembers the outcome
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name: $*"
  "$@"
  local rc=$?
  status+=("$(printf '%-10s rc=%-3s %5ss' "$name" "$rc" "$((SECONDS - t0))")")
  return $rc
}

stage env python3 -c '
import site, sys, torch, numpy, matplotlib
print("python", sys.version.split()[0], "torch", torch.__version__, "numpy", numpy.__version__,
      "matplotlib", matplotlib.__version__, "gpu", torch.cuda.get_device_name(0))
print("site-packages", site.getsitepackages())'
du -sh $(python3 -c 'import site; print(" ".join(site.getsitepackages()))') 2>/dev/null

stage corpus python3 $here/corpus.py --out $work/corpus &&
  cp $work/corpus/manifest.json "$out/corpus_manifest.json"

stage train python3 $here/train.py --corpus $work/corpus --out $work/runs/sdpa \
  --attention sdpa --context 16384 --batch 4 --steps "$max_steps" --warmup 30 \
  --fit-minutes "$fit" --val-every 50 --log-every 10 --save
cp $work/runs/sdpa/log.jsonl "$out/sdpa_log.jsonl" 2>/dev/null
cp $work/runs/sdpa/config.json "$out/sdpa_config.json" 2>/dev/null

stage record python3 $here/record_qkv.py --model $work/runs/sdpa/model.pt --corpus $work/corpus \
  --out $work/qkv --lengths 8192 16384 --windows 2

stage micro python3 $here/micro.py --qkv $work/qkv --out "$out/micro"

stage timing python3 $here/time_attention.py --batch 4 --heads 8 --seq 16384 --layers 9 \
  --train-log $work/runs/sdpa/log.jsonl --out "$out/timing.json"

stage swap python3 $here/evaluate.py --model $work/runs/sdpa/model.pt --corpus $work/corpus \
  --out "$out/swap_eval.json"

stage plot python3 $here/plot.py --out "$out/loss.png" --title "exact attention (SDPA cuDNN), 16k" \
  "sdpa=$work/runs/sdpa"

echo "=== summary"
printf '%s\n' "${status[@]}" | tee "$out/stages.txt"
