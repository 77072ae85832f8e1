"""Times one attention call at the training layer shape [B, H, N, D] (bf16,
causal) and predicts the MuSe run's step time from the exact run's log.

Measured with CUDA events (warm-up first, median of --reps) on random normal
inputs: SDPA (cuDNN) forward, SDPA forward+backward, and the MuSe forward of
each --muse config (SPEC or SPEC:field=value,field=value). The prediction:

    step_muse = step_sdpa - L * t_sdpa(fwd+bwd) + L * (t_muse(fwd) + t_muse(bwd))

where step_sdpa is the median step time of the exact run (its log.jsonl) and
L the number of layers. Until the causal MuSe backward exists, t_muse(bwd) is
unknown: the JSON gives the forward-only bound (t_muse(bwd) = 0) and the
estimate with MuSe's backward/forward ratio equal to exact attention's.

    PYTHONPATH=PREFIX/python python3 time_attention.py --batch 4 --heads 8 \\
        --seq 16384 --layers 9 --train-log work/runs/sdpa/log.jsonl --out results/timing.json
"""

import argparse
import json
import os
import statistics
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from attention import parse_config  # noqa: E402


def cuda_time(fn, warmup, reps):
    """Median milliseconds of fn() over reps, after warmup calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def step_time_from_log(path):
    """Median seconds per step over the logged intervals, the first (warm-up)
    interval left out when there are others."""
    per_step = []
    prev_train_s, prev_step = 0.0, 0
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec and "train_s" in rec:
                per_step.append((rec["train_s"] - prev_train_s) / (rec["step"] - prev_step))
                prev_train_s, prev_step = rec["train_s"], rec["step"]
    if not per_step:
        raise SystemExit("time_attention: no training records in %s" % path)
    return statistics.median(per_step[1:] if len(per_step) > 1 else per_step)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--seq", type=int, default=16384)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=9)
    p.add_argument("--muse", nargs="*", default=["causal_d64_order0.yaml",
                                                  "causal_d64_order1.yaml",
                                                  "causal_d64_order0.yaml:near_clusters=4",
                                                  "causal_d64_order1.yaml:near_clusters=4"])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--train-log", help="log.jsonl of the exact run, for the prediction")
    p.add_argument("--out", required=True, help="JSON output")
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("time_attention: needs a CUDA GPU")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    shape = (a.batch, a.heads, a.seq, a.head_dim)
    q, k, v = (torch.randn(shape, device=dev, dtype=torch.bfloat16) for _ in range(3))
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def sdpa_fwd():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    qg, kg, vg = (t.clone().requires_grad_(True) for t in (q, k, v))
    grad = torch.randn(shape, device=dev, dtype=torch.bfloat16)

    def sdpa_fwd_bwd():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            o = F.scaled_dot_product_attention(qg, kg, vg, is_causal=True)
        torch.autograd.grad(o, (qg, kg, vg), grad)

    result = {"shape": {"B": a.batch, "H": a.heads, "N": a.seq, "D": a.head_dim},
              "layers": a.layers, "gpu": torch.cuda.get_device_name(dev),
              "torch": torch.__version__, "reps": a.reps, "inputs": "random normal bf16",
              "sdpa_cudnn_fwd_ms": cuda_time(sdpa_fwd, a.warmup, a.reps),
              "sdpa_cudnn_fwd_bwd_ms": cuda_time(sdpa_fwd_bwd, a.warmup, a.reps), "muse": []}
    exact_bwd_ratio = result["sdpa_cudnn_fwd_bwd_ms"] / result["sdpa_cudnn_fwd_ms"] - 1
    step = step_time_from_log(a.train_log) if a.train_log else None
    if step is not None:
        result["sdpa_step_s"] = step
        result["non_attention_step_s"] = step - a.layers * result["sdpa_cudnn_fwd_bwd_ms"] / 1e3
    import muse
    for text in a.muse:
        spec, overrides = parse_config(text)
        entry = {"config": text}
        try:
            with torch.no_grad():
                ms = cuda_time(lambda: muse.attention(q, k, v, is_causal=True, spec=spec,
                                                      **overrides), a.warmup, a.reps)
            entry["fwd_ms"] = ms
            entry["speedup_fwd_vs_sdpa"] = result["sdpa_cudnn_fwd_ms"] / ms
            if step is not None:
                base = result["non_attention_step_s"]
                entry["predicted_step_s_fwd_only_bound"] = base + a.layers * ms / 1e3
                entry["predicted_step_s_exact_bwd_ratio"] = \
                    base + a.layers * ms * (1 + exact_bwd_ratio) / 1e3
                entry["predicted_speedup_exact_bwd_ratio"] = \
                    step / entry["predicted_step_s_exact_bwd_ratio"]
        except Exception as e:  # one config that fails is reported, the others still run
            entry["error"] = "%s: %s" % (type(e).__name__, e)
        result["muse"].append(entry)
        print(json.dumps(entry), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print("sdpa cudnn fwd %.2f ms, fwd+bwd %.2f ms%s" % (
        result["sdpa_cudnn_fwd_ms"], result["sdpa_cudnn_fwd_bwd_ms"],
        "; exact step %.3f s" % step if step is not None else ""))
    for e in result["muse"]:
        if "fwd_ms" in e:
            print("muse %-45s fwd %8.2f ms (%.2fx sdpa fwd)%s" % (
                e["config"], e["fwd_ms"], e["speedup_fwd_vs_sdpa"],
                "  predicted step %.3f s (%.2fx)" % (e["predicted_step_s_exact_bwd_ratio"],
                                                     e["predicted_speedup_exact_bwd_ratio"])
                if "predicted_step_s_exact_bwd_ratio" in e else ""))
        else:
            print("muse %-45s %s" % (e["config"], e["error"][:200]))


if __name__ == "__main__":
    main()
