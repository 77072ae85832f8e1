"""Byte windows from the corpus (corpus.py), in an order fixed by the seed.

Training batch s is the same for every run with the same seed, context and
batch size, whatever the attention: the offsets come from a numpy Generator
seeded once and advanced one batch per step. Validation uses fixed windows
spread evenly over val.bin.
"""

import json
import os

import numpy as np
import torch


class Corpus:
    def __init__(self, folder):
        self.folder = folder
        for name in ("train.bin", "val.bin", "manifest.json"):
            if not os.path.isfile(os.path.join(folder, name)):
                raise SystemExit("data: %s is missing in %s; build it with corpus.py --out %s"
                                 % (name, folder, folder))
        self.train = np.memmap(os.path.join(folder, "train.bin"), dtype=np.uint8, mode="r")
        self.val = np.memmap(os.path.join(folder, "val.bin"), dtype=np.uint8, mode="r")
        with open(os.path.join(folder, "manifest.json")) as f:
            self.manifest = json.load(f)

    def summary(self):
        m = self.manifest
        return {"train_bytes": int(m["train_bytes"]), "val_bytes": int(m["val_bytes"]),
                "train_sha256": m["train_sha256"], "val_sha256": m["val_sha256"],
                "val_package": m["val_package"]}


def _windows(data, offsets, length):
    """[len(offsets), length + 1] int64: inputs are [:, :-1], targets [:, 1:]."""
    return torch.from_numpy(np.stack([np.asarray(data[o:o + length + 1]) for o in offsets])
                            .astype(np.int64))


class TrainBatches:
    def __init__(self, data, context, batch, seed):
        if len(data) < context + 2:
            raise SystemExit("data: the training split (%d bytes) is shorter than one window "
                             "of %d" % (len(data), context + 1))
        self.data, self.context, self.batch = data, context, batch
        self.rng = np.random.default_rng(seed)

    def next(self):
        offsets = self.rng.integers(0, len(self.data) - self.context - 1, size=self.batch)
        return _windows(self.data, offsets, self.context)


def val_windows(data, context, count):
    """`count` windows evenly spaced over the validation split (the same for
    every run of one corpus and context)."""
    span = len(data) - context - 1
    if span < 0:
        raise SystemExit("data: the validation split (%d bytes) is shorter than one window of %d"
                         % (len(data), context + 1))
    offsets = [span * i // max(count - 1, 1) for i in range(count)]
    return _windows(data, offsets, context)
