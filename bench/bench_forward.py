#!/usr/bin/env python3
"""MuSe forward against PyTorch SDPA (cuDNN and flash backends) on the same inputs.

Acausal by default; --causal times causal MuSe (exact window + dyadic far field) against SDPA
with is_causal=True, and the error is taken against exact causal attention.

libmuse is called through its C ABI (include/muse/muse.h) with ctypes, on torch tensors' data
pointers and torch's current stream. For every sequence length the exact backends are timed
once; every MuSe configuration is timed on the same rotated input sets. Times are medians of
--reps timed runs (CUDA events) after warm-up. Accuracy is the relative squared error
||o - o_exact||^2 / ||o_exact||^2 on a subset of heads, exact attention computed in fp32 on the
GPU by query chunks. Prints a table last and writes JSON (--json).

Examples (the commands behind bench/results/):
  python3 bench/bench_forward.py --lib prefix/lib/libmuse.so --json out.json
  python3 bench/bench_forward.py --lib prefix/lib/libmuse.so --causal \
      --configs o0:64:64:0:512:1,o1:64:64:0:512:1 --json causal.json
A configuration is order:query_clusters:key_clusters:near_clusters, and for --causal also
:block_size:window_blocks (default 2048:1, the causal specs' defaults).
"""
import argparse
import ctypes
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


class Shape(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int64) for n in ("B", "H", "Hkv", "N", "M")]


I64x3 = ctypes.c_int64 * 3


class ForwardArgs(ctypes.Structure):
    _fields_ = [("shape", Shape),
                ("q", ctypes.c_void_p), ("q_stride", I64x3),
                ("k", ctypes.c_void_p), ("k_stride", I64x3),
                ("v", ctypes.c_void_p), ("v_stride", I64x3),
                ("o", ctypes.c_void_p), ("o_stride", I64x3),
                ("lse", ctypes.c_void_p),
                ("workspace", ctypes.c_void_p), ("workspace_bytes", ctypes.c_int64),
                ("query_assign", ctypes.c_void_p), ("key_assign", ctypes.c_void_p)]


class Muse:
    def __init__(self, path):
        self.lib = ctypes.CDLL(path)
        L = self.lib
        L.muse_last_error.restype = ctypes.c_char_p
        L.muse_engine_create.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        L.muse_attention_build_string.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                                  ctypes.POINTER(ctypes.c_void_p)]
        L.muse_attention_workspace_bytes.argtypes = [ctypes.c_void_p, ctypes.POINTER(Shape),
                                                     ctypes.POINTER(ctypes.c_int64)]
        L.muse_attention_forward.argtypes = [ctypes.c_void_p, ctypes.POINTER(ForwardArgs),
                                             ctypes.c_void_p]
        L.muse_attention_destroy.argtypes = [ctypes.c_void_p]
        self.engine = ctypes.c_void_p()
        self._check(L.muse_engine_create(ctypes.byref(self.engine)))

    def _check(self, status):
        if status != 0:
            raise RuntimeError("libmuse: " + self.lib.muse_last_error().decode())

    def build(self, yaml):
        att = ctypes.c_void_p()
        self._check(self.lib.muse_attention_build_string(self.engine, yaml.encode(), ctypes.byref(att)))
        return att

    def workspace_bytes(self, att, shape):
        n = ctypes.c_int64()
        self._check(self.lib.muse_attention_workspace_bytes(att, ctypes.byref(shape), ctypes.byref(n)))
        return n.value

    def forward(self, att, q, k, v, o, ws):
        B, H, N, D = q.shape
        Hkv, M = k.shape[1], k.shape[2]
        a = ForwardArgs()
        a.shape = Shape(B, H, Hkv, N, M)
        for name, t in (("q", q), ("k", k), ("v", v), ("o", o)):
            setattr(a, name, t.data_ptr())
            setattr(a, name + "_stride", I64x3(*t.stride()[:3]))
        a.lse = None
        a.workspace = ws.data_ptr()
        a.workspace_bytes = ws.numel()
        self._check(self.lib.muse_attention_forward(att, ctypes.byref(a),
                                                    ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)))


def spec_yaml(d, cfg, iters):
    order, cq, ck, near, block, window = cfg
    causal = block is not None
    y = (f"name: bench\n"
         f"attention: {{causal: {'true' if causal else 'false'}, head_dim: {d}, value_dim: {d}, dtype: bf16, scale: auto, kv_heads_ratio: 1}}\n"
         f"clustering: {{query_clusters: {cq}, key_clusters: {ck}, kmeans_iters: {iters}}}\n"
         f"multipole: {{order: {order}, near_clusters: {near}}}\n"
         f"target: {{arch: sm_90}}\n")
    if causal:
        y += f"causal: {{block_size: {block}, window_blocks: {window}}}\n"
    return y


def parse_configs(text, causal):
    """order:cq:ck:near[:block_size:window_blocks] -> tuples; block/window None when acausal."""
    configs = []
    for c in text.split(","):
        parts = c.split(":")
        if len(parts) not in (4, 6) or not parts[0].startswith("o"):
            raise SystemExit(f"bad --configs entry '{c}': expected order:query_clusters:key_clusters:"
                             f"near_clusters[:block_size:window_blocks], e.g. o0:64:64:0:512:1")
        if len(parts) == 6 and not causal:
            raise SystemExit(f"--configs entry '{c}' has block_size:window_blocks; add --causal")
        order, cq, ck, near = int(parts[0][1:]), int(parts[1]), int(parts[2]), int(parts[3])
        block, window = ((int(parts[4]), int(parts[5])) if len(parts) == 6 else (2048, 1)) if causal else (None, None)
        configs.append((order, cq, ck, near, block, window))
    return configs


def time_ms(fn, inputs, reps, warmup=3):
    for w in range(warmup):
        fn(*inputs[w % len(inputs)])
    torch.cuda.synchronize()
    times = []
    for r in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        args = inputs[r % len(inputs)]
        s.record()
        fn(*args)
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times), times


def exact_fp32(q, k, v, heads, causal=False, chunk=4096):
    """Exact attention of the first `heads` heads of batch 0, fp32 on the GPU by query chunks
    (causal: query n sees keys 0..n)."""
    qs, ks, vs = q[0, :heads].float(), k[0, :heads].float(), v[0, :heads].float()
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = torch.empty(heads, q.shape[2], v.shape[-1], device=q.device, dtype=torch.float32)
    for h in range(heads):
        for n0 in range(0, q.shape[2], chunk):
            n1 = min(n0 + chunk, q.shape[2])
            kend = n1 if causal else ks.shape[1]
            s = (qs[h, n0:n1] @ ks[h, :kend].T) * scale
            if causal:
                rows = torch.arange(n0, n1, device=q.device)[:, None]
                s.masked_fill_(torch.arange(kend, device=q.device)[None, :] > rows, float("-inf"))
            out[h, n0:n1] = torch.softmax(s, dim=-1) @ vs[h, :kend]
    return out


def rel_sq_err(o, ref):
    d = (o.double() - ref.double()).pow(2).sum()
    return (d / ref.double().pow(2).sum()).item()


def stage_profile(muse, att, q, k, v, o, ws):
    """Per-kernel device time of one forward (torch profiler over CUPTI)."""
    from torch.profiler import ProfilerActivity, profile
    muse.forward(att, q, k, v, o, ws)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        muse.forward(att, q, k, v, o, ws)
        torch.cuda.synchronize()
    per = {}
    for ev in prof.events():
        if ev.device_type.name == "CUDA":
            per[ev.name] = per.get(ev.name, 0.0) + ev.device_time_total / 1000.0
    return dict(sorted(per.items(), key=lambda kv: -kv[1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--json", default="bench.json")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--lengths", default="4096,8192,16384,65536")
    ap.add_argument("--muse-only-lengths", default="131072")
    ap.add_argument("--dims", default="64")
    ap.add_argument("--configs", default="o1:64:64:0,o1:16:64:0,o0:64:64:0,o1:64:64:4,o0:64:64:4",
                    help="order:query_clusters:key_clusters:near_clusters, comma separated")
    ap.add_argument("--causal", action="store_true",
                    help="causal MuSe against SDPA is_causal=True; configs may add :block_size:window_blocks")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--err-heads", type=int, default=2)
    ap.add_argument("--profile-length", type=int, default=8192)
    ap.add_argument("--commit", default=os.environ.get("MUSE_COMMIT", "unknown"))
    ap.add_argument("--budget-s", type=float, default=400.0, help="skip what would start after this")
    args = ap.parse_args()
    t_start = time.time()

    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device("cuda")
    muse = Muse(args.lib)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        driver = "unknown"
    meta = {"gpu": torch.cuda.get_device_name(), "driver": driver, "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(), "commit": args.commit,
            "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
            "batch": args.batch, "heads": args.heads, "dtype": "bf16", "kmeans_iters": args.iters,
            "reps": args.reps, "causal": args.causal}
    configs = parse_configs(args.configs, args.causal)
    rows = []
    lengths = [int(x) for x in args.lengths.split(",") if x]
    muse_only = [int(x) for x in args.muse_only_lengths.split(",") if x]
    B, H = args.batch, args.heads
    for d in [int(x) for x in args.dims.split(",")]:
        atts = {cfg: muse.build(spec_yaml(d, cfg, args.iters)) for cfg in configs}
        for n in lengths + muse_only:
            if time.time() - t_start > args.budget_s:
                print(f"budget: skipping D={d} N={n}", flush=True)
                continue
            exact_too = n in lengths
            nsets = 3 if n <= 65536 else 2
            gen = torch.Generator(device=dev).manual_seed(1234 + n)
            inputs = [tuple(torch.randn(B, H, n, d, device=dev, dtype=torch.bfloat16, generator=gen)
                            for _ in range(3)) for _ in range(nsets)]
            base = {}
            ref = None
            if exact_too:
                for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
                    def run(q, k, v, backend=backend):
                        with sdpa_kernel([backend]):
                            return F.scaled_dot_product_attention(q, k, v, is_causal=args.causal)
                    try:
                        ms, _ = time_ms(run, inputs, args.reps if n <= 16384 else max(3, args.reps // 3))
                        base[name] = ms
                        rows.append({"D": d, "N": n, "method": "sdpa-" + name, "ms": ms})
                        print(f"D={d} N={n} sdpa-{name}: {ms:.3f} ms", flush=True)
                    except RuntimeError as e:
                        print(f"D={d} N={n} sdpa-{name}: failed: {e}", flush=True)
            q0, k0, v0 = inputs[0]
            ref = exact_fp32(q0, k0, v0, args.err_heads, causal=args.causal)
            for cfg, att in atts.items():
                order, cq, ck, near, block, window = cfg
                label = f"muse o{order} {cq}/{ck} near{near}"
                if block is not None:
                    label += f" S{block} w{window}"
                shape = Shape(B, H, H, n, n)
                wsb = muse.workspace_bytes(att, shape)
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
                ws = torch.empty(wsb, device=dev, dtype=torch.uint8)
                o = torch.empty(B, H, n, d, device=dev, dtype=torch.float32)
                fwd = lambda q, k, v: muse.forward(att, q, k, v, o, ws)
                t0 = time.time()
                fwd(*inputs[0])
                torch.cuda.synchronize()
                first = time.time() - t0
                reps = args.reps if first < 1.0 else 3
                ms, _ = time_ms(fwd, inputs, reps, warmup=2)
                peak = torch.cuda.max_memory_allocated() - before
                fwd(q0, k0, v0)
                torch.cuda.synchronize()
                err = rel_sq_err(o[0, :args.err_heads], ref)
                row = {"D": d, "N": n, "method": label, "order": order, "query_clusters": cq,
                       "key_clusters": ck, "near_clusters": near, "causal": args.causal,
                       "block_size": block, "window_blocks": window, "ms": ms,
                       "speedup_vs_cudnn": base["cudnn"] / ms if "cudnn" in base else None,
                       "speedup_vs_flash": base["flash"] / ms if "flash" in base else None,
                       "rel_sq_err_vs_exact": err, "workspace_bytes": wsb,
                       "peak_bytes_workspace_and_output": peak}
                if n == args.profile_length:
                    row["stages_ms"] = stage_profile(muse, att, q0, k0, v0, o, ws)
                rows.append(row)
                sp = f"{row['speedup_vs_cudnn']:.2f}x" if row["speedup_vs_cudnn"] else "-"
                print(f"D={d} N={n} {label}: {ms:.3f} ms ({sp} cuDNN) err {err:.3f}", flush=True)
                if "stages_ms" in row:
                    for k_, t_ in row["stages_ms"].items():
                        print(f"    {t_:8.3f} ms  {k_}", flush=True)
                del ws, o
            del inputs, ref
            torch.cuda.empty_cache()
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"\n{meta['gpu']}, driver {meta['driver']}, torch {meta['torch']}, commit {meta['commit']}")
    print(f"{'causal' if args.causal else 'acausal'}, B={B} H={H} bf16, k-means iters {args.iters}, median of >= {args.reps} runs (3 when slow)")
    print(f"{'D':>4} {'N':>7} {'method':<34} {'ms':>9} {'x cuDNN':>8} {'x flash':>8} {'rel sq err':>10}")
    for r in rows:
        sc = f"{r['speedup_vs_cudnn']:.2f}" if r.get("speedup_vs_cudnn") else "-"
        sf = f"{r['speedup_vs_flash']:.2f}" if r.get("speedup_vs_flash") else "-"
        er = f"{r['rel_sq_err_vs_exact']:.3f}" if "rel_sq_err_vs_exact" in r else "-"
        print(f"{r['D']:>4} {r['N']:>7} {r['method']:<34} {r['ms']:>9.3f} {sc:>8} {sf:>8} {er:>10}")


if __name__ == "__main__":
    main()
