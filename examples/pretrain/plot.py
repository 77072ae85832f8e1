"""Plots training and validation loss against step and against training time
(validation excluded) for one or more runs of train.py, from their logs.

    python3 plot.py --out results/loss.png work/runs/sdpa work/runs/muse

Each argument is a run folder (config.json + log.jsonl) or a log.jsonl path;
a run is labelled by its attention (config.json) unless NAME=PATH is given.
"""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def load_run(arg):
    label, _, path = arg.rpartition("=") if "=" in arg else ("", "", arg)
    log = os.path.join(path, "log.jsonl") if os.path.isdir(path) else path
    config_path = os.path.join(os.path.dirname(log), "config.json")
    config = {}
    if os.path.isfile(config_path):
        with open(config_path) as f:
            config = json.load(f)
    train, val = [], []
    with open(log) as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec:
                train.append(rec)
            elif "val_loss" in rec:
                val.append(rec)
    if not train:
        raise SystemExit("plot: no training records in %s" % log)
    if not label:
        label = config.get("attention") or os.path.basename(os.path.dirname(os.path.abspath(log)))
    return label, train, val


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders or log.jsonl files ([NAME=]PATH)")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--title", default="")
    a = p.parse_args(argv)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for i, arg in enumerate(a.runs):
        label, train, val = load_run(arg)
        color = "C%d" % i
        for ax, key in ((axes[0], "step"), (axes[1], "train_s")):
            ax.plot([r[key] for r in train], [r["loss"] for r in train], color=color, alpha=0.5,
                    linewidth=1, label="%s train" % label)
            if val:
                ax.plot([r[key] for r in val], [r["val_loss"] for r in val], color=color,
                        marker="o", linewidth=2, label="%s val" % label)
    axes[0].set_xlabel("step")
    axes[1].set_xlabel("training time (s, validation excluded)")
    axes[0].set_ylabel("loss (nats per byte)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if a.title:
        fig.suptitle(a.title)
    fig.tight_layout()
    out_dir = os.path.dirname(a.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print("plot: wrote %s" % a.out)


if __name__ == "__main__":
    main()
