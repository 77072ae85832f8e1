"""compare.py on hand-written logs (standard library only; runs in CI)."""

import io
import json
import os
import tempfile
import unittest
from contextlib import redirect_stdout

import compare


def write_run(folder, train, val, args=None, corpus="abc", extra=()):
    os.makedirs(folder)
    config = {"args": {"seed": 1, "steps": 40, "context": 16, "batch": 2, **(args or {})},
              "corpus": {"train_sha256": corpus, "val_sha256": "v"}}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(folder, "log.jsonl"), "w") as f:
        for step, tps in train:
            f.write(json.dumps({"step": step, "loss": 3.0, "tokens_per_s": tps,
                                "train_s": step / 10}) + "\n")
        for step, loss in val:
            f.write(json.dumps({"step": step, "val_loss": loss, "train_s": step / 10}) + "\n")
        for rec in extra:
            f.write(json.dumps(rec) + "\n")


class CompareTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.base = os.path.join(self.tmp.name, "sdpa")
        self.cand = os.path.join(self.tmp.name, "muse")

    def tearDown(self):
        self.tmp.cleanup()

    def test_ratio_skips_first_interval_and_uses_median(self):
        write_run(self.base, [(10, 1.0), (20, 100.0), (30, 100.0), (40, 300.0)], [(20, 2.0)])
        write_run(self.cand, [(10, 999.0), (20, 150.0), (30, 160.0), (40, 170.0)], [(20, 2.01)])
        r = compare.compare(compare.load(self.base), compare.load(self.cand))
        self.assertAlmostEqual(r["baseline_tokens_per_s"], 100.0)
        self.assertAlmostEqual(r["candidate_tokens_per_s"], 160.0)
        self.assertAlmostEqual(r["throughput_ratio"], 1.6)
        self.assertTrue(r["targets"]["throughput_met"])
        self.assertAlmostEqual(r["val"][0]["relative"], 0.005)
        self.assertTrue(r["targets"]["val_loss_met"])
        self.assertEqual(r["setup_differences"], {})

    def test_targets_missed_and_last_common_step_decides(self):
        write_run(self.base, [(10, 100.0), (20, 100.0)], [(10, 2.0), (20, 1.0), (30, 0.9)])
        write_run(self.cand, [(10, 100.0), (20, 120.0)], [(10, 2.0), (20, 1.02)])
        r = compare.compare(compare.load(self.base), compare.load(self.cand))
        self.assertFalse(r["targets"]["throughput_met"])
        self.assertEqual(r["targets"]["at_step"], 20)
        self.assertFalse(r["targets"]["val_loss_met"])  # +2% at step 20

    def test_lower_candidate_loss_meets_the_loss_target(self):
        write_run(self.base, [(10, 100.0), (20, 100.0)], [(20, 2.0)])
        write_run(self.cand, [(10, 100.0), (20, 100.0)], [(20, 1.9)])
        r = compare.compare(compare.load(self.base), compare.load(self.cand))
        self.assertAlmostEqual(r["val"][0]["relative"], -0.05)
        self.assertTrue(r["targets"]["val_loss_met"])

    def test_setup_differences_and_errors_reported(self):
        write_run(self.base, [(10, 1.0), (20, 1.0)], [], args={"seed": 1})
        write_run(self.cand, [(10, 1.0), (20, 1.0)], [], args={"seed": 2}, corpus="other",
                  extra=[{"step": 20, "error": "non-finite loss nan"}])
        out = io.StringIO()
        with redirect_stdout(out):
            compare.main([self.base, self.cand, "--out", os.path.join(self.tmp.name, "c.json")])
        text = out.getvalue()
        self.assertIn("no common validation step", text)
        self.assertIn("warning: the runs differ", text)
        self.assertIn("non-finite", text)
        with open(os.path.join(self.tmp.name, "c.json")) as f:
            saved = json.load(f)
        self.assertEqual(saved["setup_differences"]["seed"], [1, 2])
        self.assertIn("corpus train_sha256", saved["setup_differences"])
        self.assertFalse(saved["targets"]["val_loss_met"])

    def test_bad_input_names_the_problem(self):
        with self.assertRaises(SystemExit) as e:
            compare.load(os.path.join(self.tmp.name, "missing"))
        self.assertIn("no log", str(e.exception))
        os.makedirs(self.base)
        with open(os.path.join(self.base, "log.jsonl"), "w") as f:
            f.write("{not json\n")
        with self.assertRaises(SystemExit) as e:
            compare.load(self.base)
        self.assertIn("line 1 is not JSON", str(e.exception))
        write_run(self.cand, [(10, 1.0)], [])
        with self.assertRaises(SystemExit) as e:
            compare.throughput(compare.load(self.cand), 1)
        self.assertIn("no training interval", str(e.exception))


if __name__ == "__main__":
    unittest.main()
