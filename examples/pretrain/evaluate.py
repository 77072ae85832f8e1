"""Validation loss of a trained model (train.py --save) with its attention
swapped at inference: exact (SDPA) against each MuSe configuration, on the
same held-out windows. It says how much MuSe costs a model that was trained
with exact attention, before any training with MuSe.

    PYTHONPATH=PREFIX/python python3 evaluate.py --model work/runs/sdpa/model.pt \\
        --corpus work/corpus --out results/swap_eval.json \\
        --muse causal_d64_order0.yaml causal_d64_order1.yaml:near_clusters=4
"""

import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from attention import SDPA_BACKENDS, muse_attention, parse_config, sdpa_attention  # noqa: E402
from data import Corpus, val_windows  # noqa: E402
from record_qkv import load_model  # noqa: E402
from train import evaluate  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--context", type=int, default=16384)
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--sdpa-backend", choices=SDPA_BACKENDS, default="cudnn")
    p.add_argument("--muse", nargs="*", default=["causal_d64_order0.yaml",
                                                  "causal_d64_order1.yaml",
                                                  "causal_d64_order0.yaml:near_clusters=4",
                                                  "causal_d64_order1.yaml:near_clusters=4"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    model, steps = load_model(a.model, a.device, sdpa_attention(a.sdpa_backend))
    val = val_windows(Corpus(a.corpus).val, a.context, a.windows)
    result = {"model_steps": steps, "context": a.context, "windows": a.windows,
              "sdpa_val_loss": evaluate(model, val, a.device, a.batch), "muse": []}
    print("sdpa/%s val loss %.4f" % (a.sdpa_backend, result["sdpa_val_loss"]), flush=True)
    for text in a.muse:
        spec, overrides = parse_config(text)
        entry = {"config": text}
        try:
            model.set_attention(muse_attention(spec, overrides))
            entry["val_loss"] = evaluate(model, val, a.device, a.batch)
            entry["relative_increase"] = entry["val_loss"] / result["sdpa_val_loss"] - 1
            print("muse %-45s val loss %.4f (%+.2f%%)" % (text, entry["val_loss"],
                                                          100 * entry["relative_increase"]),
                  flush=True)
        except Exception as e:  # report the config and go on with the others
            entry["error"] = "%s: %s" % (type(e).__name__, e)
            print("muse %-45s %s" % (text, entry["error"][:200]), flush=True)
        result["muse"].append(entry)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
