#!/usr/bin/env bash
# Exact attention against MuSe in training, on one GPU machine, from the repository root:
#   corpus -> exact run (SDPA cuDNN) -> MuSe run with the same seed, data order and steps
#   -> compare.py (throughput ratio, validation loss at the same steps) -> loss plot.
# Small results go to OUT: cmp_{sdpa,muse}_log.jsonl, cmp_{sdpa,muse}_config.json, compare.json,
# compare_loss.png; everything large stays in examples/pretrain/work/ (git-ignored).
# Usage: examples/pretrain/compare_gpu.sh PREFIX OUT STEPS [MUSE_ARG...]
#   STEPS: training steps of both runs (the learning-rate schedule depends on it)
#   MUSE_ARG: extra train.py arguments of the MuSe run, default
#             --muse-spec causal_d64_order0.yaml
set -uo pipefail
usage="usage: compare_gpu.sh PREFIX OUT STEPS [MUSE_ARG...]"
prefix=$(cd "${1:?$usage}" && pwd)
out=${2:?$usage}
steps=${3:?$usage}
shift 3
muse_args=("$@")
[ ${#muse_args[@]} -eq 0 ] && muse_args=(--muse-spec causal_d64_order0.yaml)
here=examples/pretrain
work=$here/work
mkdir -p "$out" "$work"
export PYTHONPATH="$prefix/python" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export MUSE_CACHE_DIR="${MUSE_CACHE_DIR:-$(mktemp -d)}"
common=(--corpus $work/corpus --context 16384 --batch 4 --steps "$steps" --warmup 30
        --val-every 50 --log-every 10)

python3 $here/corpus.py --out $work/corpus || exit 1
rm -rf $work/runs/cmp-sdpa $work/runs/cmp-muse
python3 $here/train.py "${common[@]}" --out $work/runs/cmp-sdpa --attention sdpa
sdpa_rc=$?
python3 $here/train.py "${common[@]}" --out $work/runs/cmp-muse --attention muse --val-exact \
  "${muse_args[@]}"
muse_rc=$?
for run in sdpa muse; do
  cp $work/runs/cmp-$run/log.jsonl "$out/cmp_${run}_log.jsonl" 2>/dev/null
  cp $work/runs/cmp-$run/config.json "$out/cmp_${run}_config.json" 2>/dev/null
done
python3 $here/compare.py --out "$out/compare.json" $work/runs/cmp-sdpa $work/runs/cmp-muse
python3 $here/plot.py --out "$out/compare_loss.png" \
  --title "16k context, $steps steps: exact (SDPA cuDNN) vs MuSe" \
  "sdpa=$work/runs/cmp-sdpa" "muse=$work/runs/cmp-muse"
echo "train exit codes: sdpa $sdpa_rc, muse $muse_rc"
[ $sdpa_rc -eq 0 ] && [ $muse_rc -eq 0 ]
