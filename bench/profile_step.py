#!/usr/bin/env python3
"""One MuSe forward + backward step for an external profiler (Nsight Compute, Nsight Systems).

The step is bench_train.py's (muse.attention and autograd, bf16, B x H x N x D); it runs once to
compile and warm up, then --steps times between cudaProfilerStart and cudaProfilerStop, so that
`ncu --profile-from-start off` or `nsys --capture-range=cudaProfilerApi` sees only those steps:

  ncu --profile-from-start off -k regex:muse_backward_keys -c 3 --section SpeedOfLight \\
      python3 bench/profile_step.py --lib prefix/lib/libmuse.so --length 16384 --causal
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_train import load_muse, muse_attend, parse_configs, step_fn  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lib", required=True, help="libmuse.so")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--block-size", type=int, default=2048)
    ap.add_argument("--window-blocks", type=int, default=1)
    ap.add_argument("--config", default="o0:64:64:0",
                    help="order:query_clusters:key_clusters:near_clusters")
    ap.add_argument("--iters", type=int, default=3, help="k-means iterations")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--forward-only", action="store_true")
    args = ap.parse_args()
    muse = load_muse(args.lib)
    (cfg,) = parse_configs(args.config)
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(4321 + args.length)
    q, k, v, do = (torch.randn(args.batch, args.heads, args.length, args.dim, device=dev,
                               dtype=torch.bfloat16, generator=gen).requires_grad_(i < 3)
                   for i in range(4))
    attend = muse_attend(muse, cfg, args.causal, args.iters, args.block_size, args.window_blocks)
    step = (lambda q, k, v, do: attend(q, k, v)) if args.forward_only else step_fn(attend)
    step(q, k, v, do)
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    for _ in range(args.steps):
        step(q, k, v, do)
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    print("profiled %d step(s): N=%d%s %s" % (args.steps, args.length,
                                             " causal" if args.causal else "", args.config))


if __name__ == "__main__":
    main()
