#!/usr/bin/env python3
"""sweep_test.py: launch/sweep.py's report parser on both report formats, and a real sweep under
mpirun over ranks 1 and 3 with tests/comm/fake_getp.sh standing in for `run` (CSV rows checked)."""
import csv
import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
spec = importlib.util.spec_from_file_location("sweep", os.path.join(ROOT, "launch", "sweep.py"))
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


class Parse(unittest.TestCase):
    def test_json_line_wins(self):
        text = ("getp: 3 prompts (9 prompt tokens) -> o\n"
                "getp: generated 10 tokens in 9.00 s of inference (1.1 tok/s output); load 0.1 s\n"
                'getp: {"prompts": 3, "generated_tokens": 10, "wall_s": 2.0, "tok_s": 5.0, '
                '"stage_busy_pct": [90, 80.5], "other": 1}\n')
        r = sweep.parse_getp_report(text)
        self.assertEqual(r, {"prompts": 3, "generated_tokens": 10, "wall_s": 2.0, "tok_s": 5.0,
                             "stage_busy_pct": [90.0, 80.5]})

    def test_human_lines(self):
        text = ("getp: 4 prompts (20 prompt tokens) -> o\n\rgetp: 4/4 prompts, 40.0 tok/s, ETA 0s\n"
                "getp: generated 64 tokens in 1.50 s of inference (42.7 tok/s output); load 0.1 s\n"
                "stage 0 busy 91.5% idle 8.5%\nstage 1 busy 80.0% idle 20.0%\n")
        r = sweep.parse_getp_report(text)
        self.assertEqual(r, {"prompts": 4, "generated_tokens": 64, "wall_s": 1.5, "tok_s": 42.7,
                             "stage_busy_pct": [91.5, 80.0]})

    def test_no_report(self):
        self.assertIsNone(sweep.parse_getp_report("run: error: model.bin: no such file\n"))


class Sweep(unittest.TestCase):
    def test_sweep_under_mpirun_writes_rows(self):
        with tempfile.TemporaryDirectory() as d:
            csv_path = os.path.join(d, "s.csv")
            env = dict(os.environ, FAKE_GETP_FORMAT="json")
            p = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "sweep.py"),
                                "--run", os.path.join(ROOT, "tests", "comm", "fake_getp.sh"),
                                "--model", "m.bin", "--prompts", "p.txt", "--ranks", "1,3",
                                "--micro-batches", "2", "--batch", "4", "--csv", csv_path],
                               capture_output=True, text=True, env=env, timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            rows = list(csv.DictReader(open(csv_path)))
            self.assertEqual([(r["ranks"], r["micro_batches"]) for r in rows],
                             [("1", "2"), ("3", "2")])
            for r in rows:
                n = int(r["ranks"])
                self.assertEqual(r["exit_code"], "0")
                self.assertEqual(r["generated_tokens"], "800")
                self.assertAlmostEqual(float(r["tok_s"]), 100 * n * 0.9 ** (n - 1), places=1)
                self.assertEqual(r["stage_busy_pct"], "95.0;80.0")
            try:
                import matplotlib  # noqa: F401
                have_mpl = True
            except ImportError:
                have_mpl = subprocess.run(["/usr/bin/python3", "-c", "import matplotlib"],
                                          capture_output=True).returncode == 0
            if have_mpl:
                self.assertTrue(os.path.getsize(os.path.join(d, "s.png")) > 1000, p.stdout + p.stderr)
                if os.environ.get("SWEEP_TEST_KEEP_PNG"):
                    import shutil
                    shutil.copy(os.path.join(d, "s.png"), os.environ["SWEEP_TEST_KEEP_PNG"])


if __name__ == "__main__":
    unittest.main()
