"""Records Q, K and V of one layer of a trained model (train.py --save), as the
attention sees them (after rotary positions, in the autocast dtype bf16), on
held-out windows of the validation split, for the accuracy micro-benchmark
(micro.py). The tensors are large; they go to a git-ignored folder and this
script regenerates them.

    python3 record_qkv.py --model work/runs/sdpa/model.pt --corpus work/corpus \\
        --out work/qkv --lengths 8192 16384 [--layer L] [--windows 2]

Writes OUT/qkv_<N>.pt = {"q", "k", "v": [windows, H, N, D] bf16, "layer",
"model_steps", "windows", "val_package"} per length, with the exact (SDPA) model.
"""

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from attention import SDPA_BACKENDS, sdpa_attention  # noqa: E402
from data import Corpus, val_windows  # noqa: E402
from model import GPT, ModelConfig  # noqa: E402


def load_model(path, device, attend):
    ckpt = torch.load(path, map_location="cpu")
    cfg = ModelConfig(**ckpt["config"])
    model = GPT(cfg, attend)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt.get("steps")


def record(model, layer, windows, device):
    """q, k, v of `layer` for every window (one forward each)."""
    got = []

    def capture(q, k, v):
        got.append((q.detach().clone(), k.detach().clone(), v.detach().clone()))

    attn = model.blocks[layer].attn
    attn.capture = capture
    try:
        with torch.no_grad(), torch.autocast(device_type=torch.device(device).type,
                                             dtype=torch.bfloat16):
            for i in range(windows.shape[0]):
                model(windows[i:i + 1, :-1].to(device))
    finally:
        attn.capture = None
    return [torch.cat([g[j] for g in got], dim=0) for j in range(3)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model.pt written by train.py --save")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384])
    p.add_argument("--layer", type=int, default=-1, help="default: the middle layer")
    p.add_argument("--windows", type=int, default=2, help="validation windows per length")
    p.add_argument("--sdpa-backend", choices=SDPA_BACKENDS, default="cudnn")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    model, steps = load_model(a.model, a.device, sdpa_attention(a.sdpa_backend))
    layer = a.layer if a.layer >= 0 else model.cfg.n_layers // 2
    if not 0 <= layer < model.cfg.n_layers:
        raise SystemExit("record_qkv: --layer %d is outside 0..%d" % (layer, model.cfg.n_layers - 1))
    corpus = Corpus(a.corpus)
    os.makedirs(a.out, exist_ok=True)
    for n in a.lengths:
        if n > model.cfg.max_context:
            raise SystemExit("record_qkv: length %d exceeds the model's context %d"
                             % (n, model.cfg.max_context))
        windows = val_windows(corpus.val, n, a.windows)
        q, k, v = record(model, layer, windows, a.device)
        path = os.path.join(a.out, "qkv_%d.pt" % n)
        torch.save({"q": q.cpu(), "k": k.cpu(), "v": v.cpu(), "layer": layer,
                    "model_steps": steps, "windows": a.windows,
                    "val_package": corpus.manifest["val_package"]}, path)
        print("record_qkv: layer %d, %s, q %s %s -> %s" % (layer, "N=%d" % n, tuple(q.shape),
                                                          q.dtype, path), flush=True)


if __name__ == "__main__":
    main()
