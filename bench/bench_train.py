#!/usr/bin/env python3
"""MuSe forward + backward against PyTorch SDPA (cuDNN and flash backends) on the same inputs.

What a training step pays for attention: o = attention(q, k, v), then dq, dk, dv from dO, all
bf16, through the PyTorch package (muse.attention and autograd, as a model calls it: the forward
keeps its workspace, the backward reads it, gradients come back in bf16). For every length the
exact backends are timed on the same rotated input sets as every MuSe configuration; times are
medians of --reps timed runs (CUDA events) after warm-up, split into the forward (with grad
enabled) and the rest. Peak memory is PyTorch's allocator peak above the inputs during one step.
The gradient error is ||g - g_cudnn||^2 / ||g_cudnn||^2 for g = dq, dk, dv (MuSe's own
approximation; cuDNN's bf16 gradients are the reference). A causal configuration whose backward
the library lacks gets the row "causal backward: unsupported by this build", never a number.

  python3 bench/bench_train.py --lib prefix/lib/libmuse.so --json train.json
A configuration is order:query_clusters:key_clusters:near_clusters as in bench_forward.py;
--causal-lengths are timed causal (--causal-block-size, default 2048, and --causal-window-blocks,
default 1: the causal specs' defaults) against SDPA is_causal.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_forward import time_ms  # noqa: E402  (median of CUDA-event timed runs)

UNSUPPORTED = "causal backward: unsupported by this build"


def load_muse(lib):
    """The muse package of this checkout, bound to the given libmuse."""
    os.environ["MUSE_LIBRARY"] = os.path.abspath(lib)
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
    import muse
    return muse


def step_fn(attend):
    """One training step's attention: forward, then the gradients of <o, dO>."""
    def step(q, k, v, do):
        o = attend(q, k, v)
        return torch.autograd.grad(o, (q, k, v), do)
    return step


def sdpa(backend, causal):
    def attend(q, k, v):
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return attend


def muse_attend(muse, cfg, causal, iters, block=2048, window=1):
    order, cq, ck, near = cfg
    kw = dict(order=order, query_clusters=cq, key_clusters=ck, near_clusters=near,
              kmeans_iters=iters)
    if causal:
        kw.update(block_size=block, window_blocks=window)

    def attend(q, k, v):
        return muse.attention(q, k, v, is_causal=causal, **kw)
    return attend


def peak_bytes(fn, args):
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn(*args)
    torch.cuda.synchronize()
    del out
    return torch.cuda.max_memory_allocated() - base


def rel_sq(a, b):
    a, b = a.double(), b.double()
    return ((a - b).pow(2).sum() / b.pow(2).sum()).item()


def profile(fn, args):
    """Per-kernel device time of one step (torch profiler over CUPTI)."""
    from torch.profiler import ProfilerActivity, profile as prof_
    fn(*args)
    torch.cuda.synchronize()
    with prof_(activities=[ProfilerActivity.CUDA]) as prof:
        fn(*args)
        torch.cuda.synchronize()
    per = {}
    for ev in prof.events():
        if ev.device_type.name == "CUDA":
            per[ev.name] = per.get(ev.name, 0.0) + ev.device_time_total / 1000.0
    return dict(sorted(per.items(), key=lambda kv: -kv[1])[:24])


def parse_configs(text):
    out = []
    for c in text.split(","):
        parts = c.split(":")
        if len(parts) != 4 or not parts[0].startswith("o"):
            raise SystemExit("bad --configs entry '%s': expected order:query_clusters:key_clusters:"
                             "near_clusters, e.g. o0:64:64:0" % c)
        out.append((int(parts[0][1:]), int(parts[1]), int(parts[2]), int(parts[3])))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", required=True, help="libmuse.so")
    ap.add_argument("--json", default="bench_train.json")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--lengths", default="4096,8192,16384", help="acausal lengths")
    ap.add_argument("--causal-lengths", default="16384")
    ap.add_argument("--causal-block-size", type=int, default=2048)
    ap.add_argument("--causal-window-blocks", type=int, default=1)
    ap.add_argument("--configs", default="o0:64:64:0")
    ap.add_argument("--iters", type=int, default=3, help="k-means iterations")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--profile-length", type=int, default=8192,
                    help="per-kernel times of one acausal MuSe step at this length (0: none)")
    ap.add_argument("--profile-causal-length", type=int, default=16384,
                    help="per-kernel times of one causal MuSe step at this length (0: none)")
    ap.add_argument("--commit", default=os.environ.get("MUSE_COMMIT", "unknown"))
    ap.add_argument("--budget-s", type=float, default=400.0,
                    help="skip the lengths that would start after this many seconds")
    args = ap.parse_args()
    t_start = time.time()
    muse = load_muse(args.lib)
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                 "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        driver = "unknown"
    meta = {"gpu": torch.cuda.get_device_name(), "driver": driver, "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(), "commit": args.commit,
            "libmuse": muse.env().get("library_version"),
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
            "batch": args.batch, "heads": args.heads, "head_dim": args.dim, "dtype": "bf16",
            "kmeans_iters": args.iters, "reps": args.reps,
            "timing": "median of reps after warm-up; forward with grad enabled + backward"}
    configs = parse_configs(args.configs)
    B, H, D = args.batch, args.heads, args.dim
    cases = [(int(n), False) for n in args.lengths.split(",") if n] + \
            [(int(n), True) for n in args.causal_lengths.split(",") if n]
    rows = []
    for n, causal in cases:
        if time.time() - t_start > args.budget_s:
            print("budget: skipping N=%d%s" % (n, " causal" if causal else ""), flush=True)
            continue
        gen = torch.Generator(device=dev).manual_seed(4321 + n)
        inputs = [tuple(torch.randn(B, H, n, D, device=dev, dtype=torch.bfloat16,
                                    generator=gen).requires_grad_(i < 3) for i in range(4))
                  for _ in range(2)]
        base, ref = {}, None
        for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION),
                              ("flash", SDPBackend.FLASH_ATTENTION)):
            attend = sdpa(backend, causal)
            step = step_fn(attend)
            try:
                total, _ = time_ms(step, inputs, args.reps)
                fwd, _ = time_ms(lambda q, k, v, do: attend(q, k, v), inputs, args.reps)
                peak = peak_bytes(step, inputs[0])
            except RuntimeError as e:
                print("N=%d sdpa-%s: failed: %s" % (n, name, e), flush=True)
                continue
            base[name] = total
            if ref is None:
                ref = step(*inputs[0])
            rows.append({"N": n, "causal": causal, "method": "sdpa-" + name, "ms": total,
                         "fwd_ms": fwd, "peak_bytes": peak})
            print("N=%d%s sdpa-%s: fwd+bwd %.3f ms (fwd %.3f) peak %.0f MiB"
                  % (n, " causal" if causal else "", name, total, fwd, peak / 2**20), flush=True)
        for cfg in configs:
            label = "muse o%d %d/%d near%d" % cfg + (
                " S%d w%d" % (args.causal_block_size, args.causal_window_blocks) if causal else "")
            attend = muse_attend(muse, cfg, causal, args.iters, args.causal_block_size,
                                 args.causal_window_blocks)
            step = step_fn(attend)
            row = {"N": n, "causal": causal, "method": label, "order": cfg[0],
                   "query_clusters": cfg[1], "key_clusters": cfg[2], "near_clusters": cfg[3]}
            try:
                grads = step(*inputs[0])  # compiles (or loads from the cache) first
                torch.cuda.synchronize()
            except muse.MuseError as e:
                if not (causal and "backward" in str(e)):
                    raise
                row["note"] = UNSUPPORTED
                rows.append(row)
                print("N=%d causal %s: %s (%s)" % (n, label, UNSUPPORTED, e), flush=True)
                continue
            total, _ = time_ms(step, inputs, args.reps)
            fwd_only = lambda q, k, v, do: attend(q, k, v)  # noqa: E731
            with torch.no_grad():
                infer, _ = time_ms(fwd_only, inputs, args.reps)
            fwd, _ = time_ms(fwd_only, inputs, args.reps)
            row.update(ms=total, fwd_ms=fwd, inference_fwd_ms=infer,
                       peak_bytes=peak_bytes(step, inputs[0]))
            for who in ("cudnn", "flash"):
                row["speedup_vs_" + who] = base[who] / total if who in base else None
            if ref is not None:
                row["grad_rel_sq_err_vs_sdpa"] = {g: rel_sq(a, b)
                                                  for g, a, b in zip("qkv", grads, ref)}
            if n == (args.profile_causal_length if causal else args.profile_length):
                row["kernels_ms"] = profile(step, inputs[0])
            rows.append(row)
            sp = "%.2fx" % row["speedup_vs_cudnn"] if row["speedup_vs_cudnn"] else "-"
            print("N=%d%s %s: fwd+bwd %.3f ms (fwd %.3f, inference fwd %.3f) %s cuDNN, peak "
                  "%.0f MiB" % (n, " causal" if causal else "", label, total, fwd, infer, sp,
                                row["peak_bytes"] / 2**20), flush=True)
            for k_, t_ in row.get("kernels_ms", {}).items():
                print("    %8.3f ms  %s" % (t_, k_), flush=True)
            del grads
        del inputs, ref
        torch.cuda.empty_cache()
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print("\n%s, driver %s, torch %s, cuDNN %s, commit %s" % (
        meta["gpu"], driver, meta["torch"], meta["cudnn"], meta["commit"]))
    print("fwd+bwd, B=%d H=%d D=%d bf16, k-means iters %d, median of %d runs" % (
        B, H, D, args.iters, args.reps))
    print("%7s %-7s %-28s %9s %9s %8s %8s %9s %s" % ("N", "mask", "method", "fwd+bwd", "fwd",
                                                   "x cuDNN", "x flash", "peak MiB",
                                                   "grad err q/k/v vs cuDNN"))
    for r in rows:
        mask = "causal" if r["causal"] else "-"
        if "note" in r:
            print("%7d %-7s %-28s %s" % (r["N"], mask, r["method"], r["note"]))
            continue
        sc = "%.2f" % r["speedup_vs_cudnn"] if r.get("speedup_vs_cudnn") else "-"
        sf = "%.2f" % r["speedup_vs_flash"] if r.get("speedup_vs_flash") else "-"
        err = r.get("grad_rel_sq_err_vs_sdpa")
        err = "/".join("%.3f" % err[g] for g in "qkv") if err else "-"
        print("%7d %-7s %-28s %9.3f %9.3f %8s %8s %9.0f %s" % (
            r["N"], mask, r["method"], r["ms"], r["fwd_ms"], sc, sf, r["peak_bytes"] / 2**20,
            err))


if __name__ == "__main__":
    main()
