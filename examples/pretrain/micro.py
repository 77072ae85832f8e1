"""MuSe's accuracy on real activations: the relative squared error
||o - o_exact||^2 / ||o_exact||^2 of muse.attention against exact softmax
attention (float64, on the same bf16 inputs), on the Q, K, V that
record_qkv.py recorded from a trained model, for every combination of
order 0/1, near_clusters 0/4 and C_q = C_k = 32/64/128, causal and acausal.

The causal runs use block_size 512 and window_blocks 1 unless told otherwise
(--block-size, --window-blocks): the values of specs/causal_d64_*.yaml when
results/micro.* were recorded; the specs now default to block_size 2048. As a floor, the same error of bf16 SDPA
(cuDNN) against float64 is reported too: no bf16 kernel can go below it.

    PYTHONPATH=PREFIX/python python3 micro.py --qkv work/qkv --out results/micro

Writes OUT.json (every configuration, per-head errors) and OUT.md (tables).
"""

import argparse
import itertools
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

ORDERS = (0, 1)
NEARS = (0, 4)
CLUSTERS = (32, 64, 128)
CHUNK = 2048  # query rows per float64 block of the reference


def exact_fp64(q, k, v, causal):
    """Softmax attention in float64 (scale 1/sqrt(D)), [B, H, N, Dv]."""
    q, k, v = q.double(), k.double(), v.double()
    scale = q.shape[-1] ** -0.5
    out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=torch.float64, device=q.device)
    n = q.shape[2]
    cols = torch.arange(k.shape[2], device=q.device)
    for s in range(0, n, CHUNK):
        e = min(n, s + CHUNK)
        logits = torch.matmul(q[:, :, s:e], k.transpose(-1, -2)) * scale
        if causal:
            rows = torch.arange(s, e, device=q.device)
            logits.masked_fill_(cols[None, :] > rows[:, None], float("-inf"))
        out[:, :, s:e] = torch.matmul(torch.softmax(logits, dim=-1), v)
    return out


def errors(o, ref):
    """Pooled and per-(window, head) relative squared errors."""
    diff = (o.double() - ref).pow(2).sum(dim=(2, 3))
    norm = ref.pow(2).sum(dim=(2, 3))
    per_head = (diff / norm).flatten().tolist()
    return {"rel_sq_err": (diff.sum() / norm.sum()).item(),
            "per_head_mean": sum(per_head) / len(per_head),
            "per_head_min": min(per_head), "per_head_max": max(per_head),
            "per_head": per_head}


def run_length(path, args, device):
    import muse
    data = torch.load(path, map_location="cpu")
    q, k, v = (data[x].to(device) for x in ("q", "k", "v"))
    n = q.shape[2]
    rows = []
    for causal in (False, True):
        ref = exact_fp64(q, k, v, causal)
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            row = {"N": n, "causal": causal, "method": "sdpa_cudnn_bf16"}
            row.update(errors(o, ref))
        except RuntimeError as e:
            row = {"N": n, "causal": causal, "method": "sdpa_cudnn_bf16", "error": str(e)}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "per_head"}), flush=True)
        for order, near, c in itertools.product(ORDERS, NEARS, CLUSTERS):
            kw = dict(order=order, near_clusters=near, query_clusters=c, key_clusters=c,
                      kmeans_iters=args.kmeans_iters)
            if causal:
                kw.update(block_size=args.block_size, window_blocks=args.window_blocks)
            row = {"N": n, "causal": causal, "method": "muse", "order": order,
                   "near_clusters": near, "clusters": c, "kmeans_iters": args.kmeans_iters}
            if causal:
                row.update(block_size=args.block_size, window_blocks=args.window_blocks)
            try:
                t0 = time.perf_counter()
                with torch.no_grad():
                    o = muse.attention(q, k, v, is_causal=causal, out_dtype=torch.float32, **kw)
                torch.cuda.synchronize(device)
                row["first_call_s"] = round(time.perf_counter() - t0, 3)
                row.update(errors(o, ref))
            except Exception as e:  # a config that cannot build is a row, not a stop
                row["error"] = "%s: %s" % (type(e).__name__, e)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "per_head"}), flush=True)
        del ref
    return rows, {"layer": data.get("layer"), "model_steps": data.get("model_steps"),
                  "windows": int(q.shape[0]), "heads": int(q.shape[1]), "N": n,
                  "head_dim": int(q.shape[3]), "dtype": str(q.dtype)}


def table(rows, n, causal):
    lines = ["| order | near | C=32 | C=64 | C=128 |", "|---|---|---|---|---|"]
    for order, near in itertools.product(ORDERS, NEARS):
        cells = []
        for c in CLUSTERS:
            r = [x for x in rows if x["N"] == n and x["causal"] == causal and x["method"] == "muse"
                 and x["order"] == order and x["near_clusters"] == near and x["clusters"] == c]
            cells.append("error" if not r or "error" in r[0] else "%.3f" % r[0]["rel_sq_err"])
        lines.append("| %d | %d | %s |" % (order, near, " | ".join(cells)))
    base = [x for x in rows if x["N"] == n and x["causal"] == causal
            and x["method"] == "sdpa_cudnn_bf16" and "error" not in x]
    if base:
        lines.append("")
        lines.append("bf16 SDPA (cuDNN) against float64 on the same inputs: %.2e"
                     % base[0]["rel_sq_err"])
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--qkv", required=True, help="folder of qkv_<N>.pt from record_qkv.py")
    p.add_argument("--out", required=True, help="output path without extension")
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--window-blocks", type=int, default=1)
    p.add_argument("--kmeans-iters", type=int, default=3)
    a = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("micro: needs a CUDA GPU (MuSe has GPU kernels only)")
    device = torch.device("cuda")
    files = sorted((f for f in os.listdir(a.qkv) if f.startswith("qkv_") and f.endswith(".pt")),
                   key=lambda f: int(f[4:-3]))
    if not files:
        raise SystemExit("micro: no qkv_<N>.pt in %s; run record_qkv.py first" % a.qkv)
    rows, sources = [], []
    for f in files:
        r, src = run_length(os.path.join(a.qkv, f), a, device)
        rows += r
        sources.append(src)
    out_dir = os.path.dirname(a.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    with open(a.out + ".json", "w") as fh:
        json.dump({"metric": "||o - o_exact||^2 / ||o_exact||^2, o_exact in float64",
                   "sources": sources, "gpu": torch.cuda.get_device_name(device),
                   "torch": torch.__version__, "rows": rows}, fh, indent=1)
    parts = []
    for src in sources:
        for causal in (False, True):
            kind = ("causal (block_size %d, window_blocks %d)" % (a.block_size, a.window_blocks)
                    if causal else "acausal")
            head = ("### N = %d, %s (layer %s, %d windows x %d heads, D = %d)"
                    % (src["N"], kind, src["layer"], src["windows"], src["heads"],
                       src["head_dim"]))
            parts.append(head + "\n\n" + table(rows, src["N"], causal))
    with open(a.out + ".md", "w") as fh:
        fh.write("Relative squared error of MuSe against exact attention (float64) on recorded "
                 "Q, K, V; C = query_clusters = key_clusters, kmeans_iters %d.\n\n"
                 % a.kmeans_iters + "\n\n".join(parts) + "\n")
    print(open(a.out + ".md").read())


if __name__ == "__main__":
    main()
