"""CPU checks of the pretraining example (seconds, no GPU, no muse library):
the model's size, causality and rotary positions, the corpus builder, the
seeded data order, and a few training steps end to end with SDPA's math
backend. Skips what the installed torch/numpy cannot run.

    python3 -m unittest examples/pretrain/test_cpu.py   (from the repository root)
"""

import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import numpy as np
    import torch
except ImportError:  # the example needs both; nothing to check without them
    torch = None

HAS_SDPA_KERNEL = False
if torch is not None:
    try:
        from torch.nn.attention import sdpa_kernel  # noqa: F401  (torch >= 2.3)
        HAS_SDPA_KERNEL = True
    except ImportError:
        pass


def naive_causal(q, k, v):
    """Softmax attention written out, the reference for the model's checks."""
    n = q.shape[2]
    logits = q.float() @ k.float().transpose(-1, -2) * q.shape[-1] ** -0.5
    mask = torch.ones(n, n, dtype=torch.bool).triu(1)
    return torch.softmax(logits.masked_fill(mask, float("-inf")), -1).matmul(v.float()).to(q.dtype)


def tiny_config():
    from model import ModelConfig
    return ModelConfig(d_model=64, n_layers=2, n_heads=4, mlp_hidden=128, max_context=64)


@unittest.skipIf(torch is None, "needs torch and numpy")
class ModelTest(unittest.TestCase):
    def test_default_size_is_about_30m(self):
        from model import GPT, ModelConfig
        n = GPT(ModelConfig(max_context=16), naive_causal).num_parameters()
        self.assertTrue(25e6 < n < 35e6, n)

    def test_future_bytes_do_not_change_past_logits(self):
        from model import GPT
        torch.manual_seed(0)
        model = GPT(tiny_config(), naive_causal).eval()
        x = torch.randint(0, 256, (1, 48))
        y = x.clone()
        y[0, 30:] = (y[0, 30:] + 7) % 256
        with torch.no_grad():
            a, b = model(x), model(y)
        self.assertTrue(torch.equal(a[:, :30], b[:, :30]))
        self.assertFalse(torch.allclose(a[:, 30:], b[:, 30:]))

    def test_rotary_scores_depend_on_offset_only(self):
        from model import apply_rotary, rotary_tables
        cos, sin = rotary_tables(16, 64, 10000.0, "cpu")
        torch.manual_seed(1)
        q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)

        def score(i, j):
            qs = apply_rotary(q.expand(1, 1, 64, 16).float(), cos, sin)[0, 0, i]
            ks = apply_rotary(k.expand(1, 1, 64, 16).float(), cos, sin)[0, 0, j]
            return float(qs @ ks)

        self.assertAlmostEqual(score(10, 3), score(40, 33), places=4)
        self.assertNotAlmostEqual(score(10, 3), score(10, 9), places=3)
        x = torch.randn(1, 2, 64, 16)
        self.assertTrue(torch.allclose(apply_rotary(x, cos, sin).norm(dim=-1), x.norm(dim=-1),
                                       atol=1e-5))


@unittest.skipIf(torch is None, "needs torch and numpy")
class DataTest(unittest.TestCase):
    def test_corpus_holds_out_one_package_and_hashes_it(self):
        import corpus
        with tempfile.TemporaryDirectory() as d:
            site = os.path.join(d, "site")
            for name, files in (("alpha", {"__init__.py": b"a = 1\n", "m.py": b"x" * 40000}),
                                ("beta", {"__init__.py": b"", "sub/b.h": b"int b;"}),
                                ("gamma", {"__init__.py": b"g = 3\n", "blob.py": b"\0bin"})):
                for rel, data in files.items():
                    os.makedirs(os.path.dirname(os.path.join(site, name, rel)), exist_ok=True)
                    with open(os.path.join(site, name, rel), "wb") as f:
                        f.write(data)
            saved = corpus.site_dirs
            corpus.site_dirs = lambda: [site]
            try:
                m = corpus.build(os.path.join(d, "out"), "beta", 1 << 30, 0)
            finally:
                corpus.site_dirs = saved
            with open(os.path.join(d, "out", "val.bin"), "rb") as f:
                val = f.read()
            self.assertEqual(val, b"#### beta/__init__.py\n#### beta/sub/b.h\nint b;\n")
            self.assertEqual(m["val_bytes"], len(val))
            by_name = {e["package"]: e for e in m["packages"]}
            self.assertEqual(by_name["gamma"]["files"], 1)  # the NUL file is left out
            self.assertEqual(m["train_bytes"], by_name["alpha"]["bytes"] + by_name["gamma"]["bytes"])
            with self.assertRaises(SystemExit):
                corpus.site_dirs = lambda: [site]
                try:
                    corpus.build(os.path.join(d, "out2"), "missing", 1 << 30, 0)
                finally:
                    corpus.site_dirs = saved

    def test_batches_are_fixed_by_the_seed(self):
        from data import TrainBatches, val_windows
        data = (np.arange(1000) % 256).astype(np.uint8)
        a, b = TrainBatches(data, 32, 3, 7), TrainBatches(data, 32, 3, 7)
        for _ in range(3):
            x, y = a.next(), b.next()
            self.assertTrue(torch.equal(x, y))
            self.assertEqual(tuple(x.shape), (3, 33))
            self.assertTrue(torch.equal((x[:, 1:] - x[:, :-1]) % 256,
                                        torch.ones(3, 32, dtype=torch.int64)))
        w = val_windows(data, 32, 4)
        self.assertEqual(int(w[0, 0]), 0)
        self.assertEqual(int(w[-1, -1]), 999 % 256)


@unittest.skipIf(torch is None or not HAS_SDPA_KERNEL, "needs torch >= 2.3 (sdpa_kernel)")
class TrainTest(unittest.TestCase):
    def test_a_few_steps_log_and_save(self):
        import train
        with tempfile.TemporaryDirectory() as d:
            data = os.path.join(d, "corpus")
            os.makedirs(data)
            rng = np.random.default_rng(0)
            for name, n in (("train.bin", 4096), ("val.bin", 1024)):
                rng.integers(0, 256, n, dtype=np.uint8).tofile(os.path.join(data, name))
            with open(os.path.join(data, "manifest.json"), "w") as f:
                json.dump({"train_bytes": 4096, "val_bytes": 1024, "train_sha256": "-",
                           "val_sha256": "-", "val_package": "-"}, f)
            out = os.path.join(d, "run")
            train.main(["--corpus", data, "--out", out, "--device", "cpu", "--sdpa-backend",
                        "math", "--context", "32", "--batch", "2", "--steps", "4",
                        "--log-every", "2", "--val-every", "2", "--val-windows", "2",
                        "--d-model", "32", "--layers", "2", "--heads", "2", "--mlp-hidden",
                        "64", "--save"])
            with open(os.path.join(out, "log.jsonl")) as f:
                recs = [json.loads(line) for line in f]
            self.assertEqual([r["step"] for r in recs if "loss" in r], [2, 4])
            self.assertEqual([r["step"] for r in recs if "val_loss" in r], [2, 4])
            self.assertTrue(recs[-1]["done"])
            self.assertTrue(os.path.isfile(os.path.join(out, "model.pt")))


if __name__ == "__main__":
    unittest.main()
