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
                             "stage_busy_pct": [90.0, 80.5], "rings": 1})

    def test_human_lines(self):
        text = ("getp: 4 prompts (20 prompt tokens) -> o\n\rgetp: 4/4 prompts, 40.0 tok/s, ETA 0s\n"
                "getp: generated 64 tokens in 1.50 s of inference (42.7 tok/s output); load 0.1 s\n"
                "stage 0 busy 91.5% idle 8.5%\nstage 1 busy 80.0% idle 20.0%\n")
        r = sweep.parse_getp_report(text)
        self.assertEqual(r, {"prompts": 4, "generated_tokens": 64, "wall_s": 1.5, "tok_s": 42.7,
                             "stage_busy_pct": [91.5, 80.0]})

    def test_no_report(self):
        self.assertIsNone(sweep.parse_getp_report("run: error: model.bin: no such file\n"))
        self.assertIsNone(sweep.parse_decode_report("run: error: model.bin: no such file\n"))

    def test_decode_line(self):
        text = ("prompt: 11 tokens, prefill 0.031 s (354.8 tok/s); time to first token 0.031 s\n"
                "generated: 256 tokens (length), decode 0.752 s (339.9 tok/s)\n")
        r = sweep.parse_decode_report(text)
        self.assertEqual(r["generated_tokens"], 256)
        self.assertEqual(r["wall_s"], 0.752)
        self.assertEqual(r["tok_s"], 339.9)


class Plan(unittest.TestCase):
    def args(self, **kw):
        ns = dict(ranks=[1, 2, 4], micro_batches=[1, 2, 3, 4, 5, 6, 7, 8], mb_max_per_rank=2,
                  batch_per_mb=[512], batch=[32], dp=[1])
        ns.update(kw)
        return type("A", (), ns)

    def test_m_up_to_twice_ranks_and_rows_per_micro_batch(self):
        c = sweep.configurations(self.args())
        self.assertEqual(c[0], (1, 1, 1, 512))  # one rank: M = 1 only
        self.assertEqual([m for r, d, m, b in c if r == 2], [1, 2, 3, 4])
        self.assertEqual([m for r, d, m, b in c if r == 4], [1, 2, 3, 4, 5, 6, 7, 8])
        self.assertTrue(all(b == 512 * m for r, d, m, b in c))
        self.assertEqual(len(c), 13)

    def test_shapes_every_divisor_and_m_per_ring(self):
        c = sweep.configurations(self.args(ranks=[1, 4, 6], dp=["all"], micro_batches=[1, 2, 3, 4],
                                           batch_per_mb=[], batch=[8]))
        self.assertEqual(sorted({(r, d) for r, d, m, b in c}),
                         [(1, 1), (4, 1), (4, 2), (4, 4), (6, 1), (6, 2), (6, 3), (6, 6)])
        # M <= 2 x ranks per ring; rings of one rank take M = 1 only.
        self.assertEqual([m for r, d, m, b in c if (r, d) == (4, 2)], [1, 2, 3, 4])
        self.assertEqual([m for r, d, m, b in c if (r, d) == (6, 3)], [1, 2, 3, 4])
        self.assertEqual([m for r, d, m, b in c if (r, d) == (4, 4)], [1])
        # A given R that does not divide N is left out; auto passes through.
        c = sweep.configurations(self.args(ranks=[2, 3], dp=[2, "auto"], micro_batches=[1],
                                           batch_per_mb=[], batch=[8]))
        self.assertEqual([(r, d) for r, d, m, b in c], [(2, 2), (2, "auto"), (3, "auto")])

    def test_plain_cross_product(self):
        c = sweep.configurations(self.args(ranks=[1, 3], micro_batches=[1, 2], mb_max_per_rank=0,
                                           batch_per_mb=[], batch=[4, 8]))
        self.assertEqual(c, [(1, 1, 1, 4), (1, 1, 1, 8), (1, 1, 2, 4), (1, 1, 2, 8), (3, 1, 1, 4),
                             (3, 1, 1, 8), (3, 1, 2, 4), (3, 1, 2, 8)])

    def test_efficiency_against_the_fewest_ranks(self):
        rows = [{"ranks": "2", "dp": "1", "micro_batches": "2", "tok_s": "100", "mode": "getp"},
                {"ranks": "2", "dp": "1", "micro_batches": "4", "tok_s": "120", "mode": "getp"},
                {"ranks": "4", "dp": "1", "micro_batches": "4", "tok_s": "216", "mode": "getp"},
                {"ranks": "4", "dp": "2", "micro_batches": "2", "tok_s": "230", "mode": "getp"},
                {"ranks": "4", "micro_batches": "1", "tok_s": "50", "mode": ""},
                {"ranks": "2", "micro_batches": "1", "tok_s": "200", "mode": "decode"}]
        per_shape, best, eff, decode = sweep.summarize(rows)
        self.assertEqual(best, {2: 120.0, 4: 230.0})
        self.assertAlmostEqual(eff[4], 230 * 2 / (4 * 120))
        self.assertEqual(eff[2], 1.0)
        # 0 = one ring of all ranks (no dp column: one ring, a getp row); 2 = rings of 2 ranks.
        self.assertEqual(per_shape[0], {2: 120.0, 4: 216.0})
        self.assertEqual(per_shape[2], {4: 230.0})
        self.assertEqual(decode, {2: 200.0})


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
            self.assertEqual([(r["ranks"], r["dp"], r["micro_batches"]) for r in rows],
                             [("1", "1", "2"), ("3", "1", "2")])
            for r in rows:
                n = int(r["ranks"])
                self.assertEqual(r["exit_code"], "0")
                self.assertEqual(r["generated_tokens"], "800")
                self.assertAlmostEqual(float(r["tok_s"]), 100 * n * 0.9 ** (n - 1) * min(1, 2 / n), places=1)
                self.assertEqual(r["stage_busy_pct"], "95.0;80.0")
                self.assertEqual(r["mode"], "getp")
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


    def test_decode_and_rows_per_micro_batch(self):
        with tempfile.TemporaryDirectory() as d:
            csv_path = os.path.join(d, "s.csv")
            p = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "sweep.py"),
                                "--run", os.path.join(ROOT, "tests", "comm", "fake_getp.sh"),
                                "--model", "m.bin", "--prompts", "p.txt", "--ranks", "1,2",
                                "--micro-batches", "1,2,3,4,5", "--mb-max-per-rank", "2",
                                "--batch-per-mb", "8", "--decode", "64", "--csv", csv_path,
                                "--log-dir", os.path.join(d, "logs")],
                               capture_output=True, text=True, timeout=180)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            rows = list(csv.DictReader(open(csv_path)))
            self.assertEqual([(r["mode"], r["ranks"], r["micro_batches"], r["batch"]) for r in rows],
                             [("decode", "1", "1", "1"), ("decode", "2", "1", "1"),
                              ("getp", "1", "1", "8"), ("getp", "2", "1", "8"),
                              ("getp", "2", "2", "16"), ("getp", "2", "3", "24"),
                              ("getp", "2", "4", "32")])
            self.assertEqual([r["tok_s"] for r in rows],
                             ["300.00", "290.00", "100.00", "90.00", "180.00", "180.00", "180.00"])
            self.assertTrue(all(r["exit_code"] == "0" for r in rows))
            self.assertEqual(len(os.listdir(os.path.join(d, "logs"))), 7)
            # Appending rows of another layout to it is refused, not mixed.
            old = os.path.join(d, "old.csv")
            with open(old, "w") as f:
                f.write("time,host,ranks\n")
            p = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "sweep.py"),
                                "--run", os.path.join(ROOT, "tests", "comm", "fake_getp.sh"),
                                "--model", "m.bin", "--prompts", "p.txt", "--ranks", "1",
                                "--csv", old], capture_output=True, text=True, timeout=60)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("other columns", p.stderr)
            p = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "sweep.py"),
                                "--plot-only", "--csv", csv_path, "--png", os.path.join(d, "x.png")],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("2 rank(s): best getp 180.0 tok/s, efficiency 0.900", p.stdout)
            self.assertIn("2 rank(s): batch-1 decode 290.0 tok/s", p.stdout)

    def test_every_shape_under_mpirun(self):
        # --dp all at 2 ranks: one ring of 2 (M 1, 2) and 2 rings of one (M 1); the rings count
        # comes from the report. With the stand-in, rings of one are the best shape at 2 ranks.
        with tempfile.TemporaryDirectory() as d:
            csv_path = os.path.join(d, "s.csv")
            env = dict(os.environ, FAKE_GETP_FORMAT="json")
            p = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "sweep.py"),
                                "--run", os.path.join(ROOT, "tests", "comm", "fake_getp.sh"),
                                "--model", "m.bin", "--prompts", "p.txt", "--ranks", "1,2",
                                "--dp", "all", "--micro-batches", "1,2", "--mb-max-per-rank", "2",
                                "--batch", "4", "--csv", csv_path, "--log-dir",
                                os.path.join(d, "logs")],
                               capture_output=True, text=True, env=env, timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            rows = list(csv.DictReader(open(csv_path)))
            self.assertEqual([(r["ranks"], r["dp"], r["micro_batches"], r["tok_s"]) for r in rows],
                             [("1", "1", "1", "100.00"), ("2", "1", "1", "90.00"),
                              ("2", "1", "2", "180.00"), ("2", "2", "1", "200.00")])
            self.assertIn("--dp 2", open(os.path.join(d, "logs", "getp-r2-dp2-m1-b4.log")).read())
            per_shape, best, eff, decode = sweep.summarize(sweep.read_rows(csv_path))
            self.assertEqual(best, {1: 100.0, 2: 200.0})
            self.assertEqual(eff[2], 1.0)


if __name__ == "__main__":
    unittest.main()
