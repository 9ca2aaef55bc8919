#!/usr/bin/env python3
"""sweep.py: scaling sweeps of `run MODEL -m getp` over rank counts x micro-batch counts x batch sizes.

Each run is launched through launch/mpirun.sh (workstation) or launch/srun.sh (inside an sbatch
or salloc allocation), its final report is parsed (parse_getp_report below), and one CSV row is
appended per run:
    time, host, launcher, ranks, micro_batches, batch, prompts, generated_tokens, wall_s, tok_s,
    stage_busy_pct (per stage, ';'-separated), exit_code
Then a PNG is drawn from the whole CSV: throughput (tok/s) and parallel efficiency
(tok_s(N) / (N * tok_s(1)) at the same micro-batches and batch) against ranks.

Example (CPU backend, workstation):
    launch/sweep.py --run build/run --model build/tiny.bin --prompts prompts.txt \
        --ranks 1,2,3,4 --micro-batches 1,2,4 --batch 8,32 --csv sweep.csv --png sweep.png
Inside an sbatch allocation: add --launcher srun. Redraw only: --plot-only --csv sweep.csv.
Python 3 standard library; matplotlib for the PNG (Debian: python3-matplotlib). If the running
python lacks matplotlib but /usr/bin/python3 has it, the script re-runs itself with that one.
"""
import argparse
import csv
import datetime
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIELDS = ["time", "host", "launcher", "ranks", "micro_batches", "batch", "prompts",
          "generated_tokens", "wall_s", "tok_s", "stage_busy_pct", "exit_code"]


def parse_getp_report(text):
    """Parses the final report of `run -m getp` (its stderr+stdout) into a dict with keys
    prompts, generated_tokens, wall_s, tok_s (numbers) and stage_busy_pct (list of floats, one per
    pipeline stage, rank 0 first; [] if not reported). Returns None if no report is found.

    Preferred: ONE machine-readable line printed by rank 0 at the end, "getp: " + a JSON object:
        getp: {"prompts": 64, "generated_tokens": 8192, "wall_s": 12.5, "tok_s": 655.4,
               "stage_busy_pct": [91.0, 88.5, 90.2]}
    (any extra keys are ignored; the last such line wins).
    Fallback: the human-readable lines of the current `run`:
        getp: 64 prompts (5123 prompt tokens) -> out.txt
        getp: generated 8192 tokens in 12.50 s of inference (655.4 tok/s output); load 0.42 s
    and, if present, "stage R busy 91.0%" fragments for the per-stage busy percentages.
    """
    result = None
    for line in text.splitlines():
        line = line.strip().lstrip("\r")
        if line.startswith("getp: {"):
            try:
                obj = json.loads(line[len("getp: "):])
            except ValueError:
                continue
            result = {
                "prompts": obj.get("prompts"),
                "generated_tokens": obj.get("generated_tokens"),
                "wall_s": obj.get("wall_s"),
                "tok_s": obj.get("tok_s"),
                "stage_busy_pct": [float(x) for x in obj.get("stage_busy_pct", [])],
            }
    if result is not None:
        if result["tok_s"] is None and result["wall_s"]:
            result["tok_s"] = result["generated_tokens"] / result["wall_s"]
        return result
    gen = re.findall(r"getp: generated (\d+) tokens in ([0-9.]+) s(?: of inference)?"
                     r"(?: \(([0-9.]+) tok/s)?", text)
    if not gen:
        return None
    tokens, wall, tps = gen[-1]
    prompts = re.findall(r"getp: (\d+) prompts", text)
    busy = [float(x) for x in re.findall(r"stage \d+ busy ([0-9.]+)%", text)]
    wall_s = float(wall)
    return {
        "prompts": int(prompts[-1]) if prompts else None,
        "generated_tokens": int(tokens),
        "wall_s": wall_s,
        "tok_s": float(tps) if tps else (int(tokens) / wall_s if wall_s > 0 else 0.0),
        "stage_busy_pct": busy,
    }


def int_list(s):
    return [int(x) for x in s.split(",") if x.strip()]


def launch_command(args, ranks, micro_batches, batch, out_path):
    prog = [args.run, args.model, "-m", "getp", "-i", args.prompts, "-o", out_path,
            "-b", str(batch)]
    if args.mb_flag:
        prog += [args.mb_flag, str(micro_batches)]
    prog += args.extra
    opts = shlex.split(args.launcher_args)
    if args.launcher == "srun":
        return [os.path.join(HERE, "srun.sh"), "-n", str(ranks)] + opts + ["--"] + prog
    return [os.path.join(HERE, "mpirun.sh"), "-n", str(ranks)] + opts + ["--"] + prog


def append_row(path, row):
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def read_rows(path):
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("exit_code") == "0" and r.get("tok_s")]


def plot(csv_path, png_path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("sweep: matplotlib not available: no PNG (install python3-matplotlib)", file=sys.stderr)
        return False
    rows = read_rows(csv_path)
    if not rows:
        print("sweep: no successful runs in %s: no PNG" % csv_path, file=sys.stderr)
        return False
    series = {}  # (micro_batches, batch) -> {ranks: best tok/s}
    for r in rows:
        key = (int(r["micro_batches"]), int(r["batch"]))
        n = int(r["ranks"])
        series.setdefault(key, {})
        series[key][n] = max(series[key].get(n, 0.0), float(r["tok_s"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    all_ranks = sorted({n for s in series.values() for n in s})
    for (mb, b), pts in sorted(series.items()):
        ns = sorted(pts)
        label = "micro-batches %d, batch %d" % (mb, b)
        ax1.plot(ns, [pts[n] for n in ns], marker="o", label=label)
        if 1 in pts and pts[1] > 0:
            ax2.plot(ns, [pts[n] / (n * pts[1]) for n in ns], marker="o", label=label)
    ax1.set_xlabel("ranks")
    ax1.set_ylabel("throughput (generated tok/s)")
    ax1.set_title("getp throughput")
    ax2.set_xlabel("ranks")
    ax2.set_ylabel("parallel efficiency  tok/s(N) / (N x tok/s(1))")
    ax2.set_title("parallel efficiency")
    ax2.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax2.set_ylim(0, max(1.1, ax2.get_ylim()[1]))
    ax1.set_ylim(0, None)
    for ax in (ax1, ax2):
        ax.set_xticks(all_ranks)
        ax.grid(alpha=0.3)
        if ax.get_lines()[1:] or ax is ax1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    print("sweep: wrote %s" % png_path)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="build/run", help="the run program")
    ap.add_argument("--model", help="model file")
    ap.add_argument("--prompts", help="getp prompt file")
    ap.add_argument("--ranks", default="1,2,4", type=int_list)
    ap.add_argument("--micro-batches", default="1", type=int_list)
    ap.add_argument("--batch", default="32", type=int_list)
    ap.add_argument("--mb-flag", default="--micro-batches",
                    help="run's option for the micro-batch count ('' = do not pass one)")
    ap.add_argument("--launcher", choices=["mpirun", "srun"], default="mpirun")
    ap.add_argument("--launcher-args", default="",
                    help="extra options for mpirun/srun; write --launcher-args=-O (srun: more ranks than cores)")
    ap.add_argument("--csv", default="sweep.csv")
    ap.add_argument("--png", default=None, help="default: the CSV name with .png")
    ap.add_argument("--repeat", type=int, default=1, help="runs per configuration")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="-- then extra arguments for run")
    args = ap.parse_args()
    args.extra = args.extra[1:] if args.extra[:1] == ["--"] else args.extra
    png = args.png or os.path.splitext(args.csv)[0] + ".png"

    if not args.plot_only:
        if not args.model or not args.prompts:
            ap.error("--model and --prompts are needed (or --plot-only)")
        if not args.mb_flag and len(args.micro_batches) > 1:
            ap.error("several --micro-batches values but no --mb-flag to pass them")
        for ranks in args.ranks:
            for mb in args.micro_batches:
                for batch in args.batch:
                    for _ in range(args.repeat):
                        fd, out_path = tempfile.mkstemp(prefix="sweep-", suffix=".out")
                        os.close(fd)
                        cmd = launch_command(args, ranks, mb, batch, out_path)
                        print("sweep: " + " ".join(cmd), flush=True)
                        if args.dry_run:
                            os.unlink(out_path)
                            continue
                        t0 = time.time()
                        try:
                            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                               text=True, timeout=args.timeout)
                            text, rc = p.stdout, p.returncode
                        except subprocess.TimeoutExpired as e:
                            text, rc = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), 124
                        for suffix in ("", ".partial"):
                            if os.path.exists(out_path + suffix):
                                os.unlink(out_path + suffix)
                        rep = parse_getp_report(text) if rc == 0 else None
                        if rc == 0 and rep is None:
                            rc = -1  # ran, but printed no report
                        if rc != 0:
                            sys.stderr.write(text[-3000:])
                            print("sweep: run failed (exit %d) after %.1f s" % (rc, time.time() - t0),
                                  file=sys.stderr)
                        rep = rep or {}
                        row = {
                            "time": datetime.datetime.now().isoformat(timespec="seconds"),
                            "host": socket.gethostname(), "launcher": args.launcher,
                            "ranks": ranks, "micro_batches": mb, "batch": batch,
                            "prompts": rep.get("prompts", ""),
                            "generated_tokens": rep.get("generated_tokens", ""),
                            "wall_s": "%.3f" % rep["wall_s"] if rep.get("wall_s") is not None else "",
                            "tok_s": "%.2f" % rep["tok_s"] if rep.get("tok_s") is not None else "",
                            "stage_busy_pct": ";".join("%.1f" % x for x in rep.get("stage_busy_pct", [])),
                            "exit_code": rc,
                        }
                        append_row(args.csv, row)
                        if rc == 0:
                            print("sweep: ranks %d, micro-batches %d, batch %d: %s tok/s" %
                                  (ranks, mb, batch, row["tok_s"]), flush=True)
        if args.dry_run:
            return 0
    plot(args.csv, png)
    return 0


if __name__ == "__main__":
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        # pyenv or venv pythons often lack Debian's python3-matplotlib: use the system one.
        sysp = "/usr/bin/python3"
        if os.path.realpath(sys.executable) != os.path.realpath(sysp) and os.path.exists(sysp) and \
                subprocess.run([sysp, "-c", "import matplotlib"], capture_output=True).returncode == 0 \
                and not os.environ.get("GPTOSS_SWEEP_REEXEC"):
            os.environ["GPTOSS_SWEEP_REEXEC"] = "1"
            os.execv(sysp, [sysp] + sys.argv)
    sys.exit(main())
