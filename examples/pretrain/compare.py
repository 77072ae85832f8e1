"""Compares two runs of train.py made with the same seed, data and steps: end-to-end training
throughput and validation loss at the same step, against the targets of the pretraining example
(MuSe at least 1.5x the exact run's tokens/s, validation loss within 1% of it: at most 1% above;
a lower loss meets it and is reported as it is).

    python3 compare.py --out results/compare.json work/runs/sdpa work/runs/muse

The first run is the baseline (exact attention), the second the candidate. Throughput is the
median of the logged tokens/s over the intervals after --skip-intervals (the first ones include
NVRTC compilation, allocator growth and cuDNN autotuning). Validation losses are compared at every
step both runs validated at; the verdict uses the last such step. Needs only the standard library.
"""

import argparse
import json
import os
import statistics
import sys

THROUGHPUT_TARGET = 1.5  # candidate tokens/s over baseline tokens/s
LOSS_TOLERANCE = 0.01    # how far the candidate's validation loss may lie above the baseline's


def load(path):
    """config (may be empty) and the train / validation records of one run."""
    log = os.path.join(path, "log.jsonl") if os.path.isdir(path) else path
    if not os.path.isfile(log):
        raise SystemExit("compare: no log at %s (a run folder holds log.jsonl)" % log)
    cfg_path = os.path.join(os.path.dirname(log), "config.json")
    config = {}
    if os.path.isfile(cfg_path):
        with open(cfg_path) as f:
            config = json.load(f)
    train, val, errors = [], [], []
    with open(log) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit("compare: %s line %d is not JSON: %s" % (log, n, e))
            if "error" in rec:
                errors.append(rec)
            elif "loss" in rec and "tokens_per_s" in rec:
                train.append(rec)
            elif "val_loss" in rec:
                val.append(rec)
    return {"path": log, "config": config, "train": train, "val": val, "errors": errors}


def same_setup(a, b):
    """The fields that must match for the comparison to mean anything, and any that differ."""
    keys = ("seed", "steps", "context", "batch", "lr", "warmup", "min_lr_ratio", "weight_decay")
    aa, ba = a["config"].get("args", {}), b["config"].get("args", {})
    diffs = {k: (aa.get(k), ba.get(k)) for k in keys if aa.get(k) != ba.get(k)}
    for key in ("train_sha256", "val_sha256"):
        ca = a["config"].get("corpus", {}).get(key)
        cb = b["config"].get("corpus", {}).get(key)
        if ca != cb:
            diffs["corpus " + key] = (ca, cb)
    return diffs


def throughput(run, skip):
    rates = [r["tokens_per_s"] for r in run["train"][skip:]]
    if not rates:
        raise SystemExit("compare: %s has no training interval after the first %d"
                         % (run["path"], skip))
    return statistics.median(rates)


def compare(base, cand, skip=1):
    base_tps, cand_tps = throughput(base, skip), throughput(cand, skip)
    bval = {r["step"]: r for r in base["val"]}
    rows = []
    for r in cand["val"]:
        if r["step"] in bval:
            b = bval[r["step"]]["val_loss"]
            row = {"step": r["step"], "baseline": b, "candidate": r["val_loss"],
                   "relative": (r["val_loss"] - b) / b}
            if "val_loss_exact" in r:
                row["candidate_exact_attention"] = r["val_loss_exact"]
            rows.append(row)
    result = {
        "baseline": base["path"], "candidate": cand["path"],
        "setup_differences": {k: list(v) for k, v in same_setup(base, cand).items()},
        "baseline_tokens_per_s": base_tps, "candidate_tokens_per_s": cand_tps,
        "throughput_ratio": cand_tps / base_tps,
        "baseline_train_s": base["train"][-1]["train_s"] if base["train"] else None,
        "candidate_train_s": cand["train"][-1]["train_s"] if cand["train"] else None,
        "val": rows,
        "errors": base["errors"] + cand["errors"],
    }
    last = rows[-1] if rows else None
    result["targets"] = {
        "throughput_ratio_min": THROUGHPUT_TARGET,
        "val_loss_relative_max": LOSS_TOLERANCE,
        "throughput_met": result["throughput_ratio"] >= THROUGHPUT_TARGET,
        "val_loss_met": bool(last) and last["relative"] <= LOSS_TOLERANCE,
        "at_step": last["step"] if last else None,
    }
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("baseline", help="run folder (or log.jsonl) of the exact run")
    p.add_argument("candidate", help="run folder (or log.jsonl) of the MuSe run")
    p.add_argument("--out", help="JSON path for the comparison")
    p.add_argument("--skip-intervals", type=int, default=1,
                   help="logged intervals left out of the throughput median (default 1)")
    a = p.parse_args(argv)
    result = compare(load(a.baseline), load(a.candidate), a.skip_intervals)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    t = result["targets"]
    print("throughput: baseline %.0f tok/s, candidate %.0f tok/s, ratio %.3f (target >= %.1f: %s)"
          % (result["baseline_tokens_per_s"], result["candidate_tokens_per_s"],
             result["throughput_ratio"], THROUGHPUT_TARGET, "met" if t["throughput_met"] else
             "not met"))
    for r in result["val"]:
        print("step %5d  val loss baseline %.4f  candidate %.4f  (%+.2f%%)"
              % (r["step"], r["baseline"], r["candidate"], 100 * r["relative"]))
    if not result["val"]:
        print("no common validation step")
    else:
        print("val loss at step %d: %s (target: at most %.0f%% above the baseline)"
              % (t["at_step"], "met" if t["val_loss_met"] else "not met", 100 * LOSS_TOLERANCE))
    if result["setup_differences"]:
        print("warning: the runs differ in %s" % json.dumps(result["setup_differences"]))
    for e in result["errors"]:
        print("error logged: %s" % json.dumps(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
