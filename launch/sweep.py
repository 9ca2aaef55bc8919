#!/usr/bin/env python3
"""sweep.py: scaling sweeps of `run MODEL -m getp` over rank counts x shapes x micro-batch counts x batch sizes.

Each run is launched through launch/mpirun.sh (workstation) or launch/srun.sh (inside an sbatch
or salloc allocation), its final report is parsed (parse_getp_report below), and one CSV row is
appended per run:
    time, host, launcher, ranks, dp, micro_batches, batch, prompts, generated_tokens, wall_s, tok_s,
    stage_busy_pct (per stage of ring 0, ';'-separated), exit_code, mode
dp is the number of data-parallel rings the run had (its report's "rings"; `run --dp R`: R rings of
ranks/R ranks each). --dp 1,2,all runs each rank count N as one ring, as 2 rings (when 2 divides
N) and as every R that divides N; "auto" passes no --dp (the runtime's own choice).
mode is "getp", or "decode" for the batch-1 decode runs of --decode N (`run -m generate -n N`,
one per rank count; tok_s is its decode rate).
Then a PNG is drawn from the whole CSV: getp throughput (tok/s) against ranks, one line per
ring size (ranks per ring: 1 = data parallel only; "one ring" = a pure pipeline of N; the best
micro-batch count and batch of each) and one for the best of all; the parallel efficiency
of the best, best(N) * N0 / (N * best(N0)) against the smallest rank count N0 in the CSV (1, or
the fewest GPUs a big model fits); and the batch-1 decode rate if the CSV has decode rows.

Batches: --batch B1,B2 runs each B at every micro-batch count; --batch-per-mb R1,R2 runs batch
R x M at M micro-batches (R rows per micro-batch, each rank count at its best concurrency).
--mb-max-per-rank K keeps the micro-batch counts M <= K x ranks per ring (a ring of one rank: M = 1
only, it has no ring to fill).

Example (CPU backend, workstation):
    launch/sweep.py --run build/run --model build/tiny.bin --prompts prompts.txt \
        --ranks 1,2,3,4 --micro-batches 1,2,4 --batch 8,32 --csv sweep.csv --png sweep.png
Example (GPUs, 20b, M from 1 to 2 x ranks, 512 rows per micro-batch, batch-1 decode too):
    launch/sweep.py --run build/run --model 20b.bin --prompts p.txt --ranks 1,2,4 \
        --micro-batches 1,2,3,4,5,6,7,8 --mb-max-per-rank 2 --batch-per-mb 512 \
        --decode 256 --decode-args "-z tokenizer.bin --backend gpu -c 2048" \
        --csv s.csv -- -z tokenizer.bin --backend gpu -n 128 -c 512 --ignore-eos
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
FIELDS = ["time", "host", "launcher", "ranks", "dp", "micro_batches", "batch", "prompts",
          "generated_tokens", "wall_s", "tok_s", "stage_busy_pct", "exit_code", "mode"]


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
                "rings": int(obj.get("rings", 1)),
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


def parse_decode_report(text):
    """Parses `run -m generate`'s closing line on stderr,
        generated: 256 tokens (length), decode 0.750 s (340.0 tok/s)
    into {"generated_tokens", "wall_s", "tok_s"}; None if it is not there."""
    m = re.findall(r"generated: (\d+) tokens \([^)]*\), decode ([0-9.]+) s \(([0-9.]+) tok/s\)", text)
    if not m:
        return None
    n, wall, tps = m[-1]
    return {"prompts": 1, "generated_tokens": int(n), "wall_s": float(wall), "tok_s": float(tps),
            "stage_busy_pct": []}


def int_list(s):
    return [int(x) for x in s.split(",") if x.strip()]


def launch_command(args, ranks, micro_batches, batch, out_path, decode=False, dp=1):
    if decode:
        prog = [args.run, args.model, "-m", "generate", "-i", args.decode_prompt,
                "-n", str(args.decode), "-T", "0", "--ignore-eos"] + shlex.split(args.decode_args)
    else:
        prog = [args.run, args.model, "-m", "getp", "-i", args.prompts, "-o", out_path,
                "-b", str(batch)]
        if dp != "auto":
            prog += ["--dp", str(dp)]
        if args.mb_flag:
            prog += [args.mb_flag, str(micro_batches)]
        prog += args.extra
    opts = shlex.split(args.launcher_args)
    if args.launcher == "srun":
        return [os.path.join(HERE, "srun.sh"), "-n", str(ranks)] + opts + ["--"] + prog
    return [os.path.join(HERE, "mpirun.sh"), "-n", str(ranks)] + opts + ["--"] + prog


def dp_list(s):
    """--dp: integers, "all" (every R dividing the rank count) and "auto" (no --dp)."""
    out = []
    for x in s.split(","):
        x = x.strip()
        if not x:
            continue
        if x in ("all", "auto"):
            out.append(x)
        else:
            out.append(int(x))
    return out


def shapes(args, ranks):
    """The --dp values to run at `ranks` ranks, in order, without repeats."""
    out = []
    for d in args.dp:
        ds = [r for r in range(1, ranks + 1) if ranks % r == 0] if d == "all" else [d]
        for r in ds:
            if r != "auto" and (r < 1 or ranks % r != 0):
                continue  # R rings must divide the ranks
            if r not in out:
                out.append(r)
    return out


def configurations(args):
    """(ranks, dp, micro_batches, batch) of every getp run, in order."""
    out = []
    for ranks in args.ranks:
        for dp in shapes(args, ranks):
            per_ring = ranks if dp == "auto" else ranks // dp
            mbs = args.micro_batches
            if args.mb_max_per_rank > 0:
                mbs = [1] if per_ring == 1 else [m for m in mbs if m <= args.mb_max_per_rank * per_ring]
            for mb in mbs:
                batches = [r * mb for r in args.batch_per_mb] if args.batch_per_mb else args.batch
                for batch in batches:
                    out.append((ranks, dp, mb, batch))
    return out


def append_row(path, row):
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    if not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != FIELDS:
            sys.exit("sweep: %s has other columns (%s): write to a new CSV" % (path, ",".join(header)))
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def read_rows(path):
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("exit_code") == "0" and r.get("tok_s")]


def ring_size_key(ranks, dp):
    """The shape's line in the plot: ranks per ring, or 0 for one ring of every rank."""
    return 0 if dp <= 1 else ranks // dp


def summarize(rows):
    """From successful CSV rows: per_shape {ring size (0 = one ring of all): {ranks: best getp
    tok/s}}, best {ranks: best getp tok/s}, eff {ranks: best(N) * N0 / (N * best(N0))} with N0
    the fewest ranks, decode {ranks: best batch-1 decode tok/s}."""
    per_shape, best, decode = {}, {}, {}
    for r in rows:
        n, tps = int(r["ranks"]), float(r["tok_s"])
        if (r.get("mode") or "getp") == "decode":
            decode[n] = max(decode.get(n, 0.0), tps)
            continue
        k = ring_size_key(n, int(r.get("dp") or 1))
        per_shape.setdefault(k, {})
        per_shape[k][n] = max(per_shape[k].get(n, 0.0), tps)
        best[n] = max(best.get(n, 0.0), tps)
    eff = {}
    if best:
        n0 = min(best)
        if best[n0] > 0:
            eff = {n: best[n] * n0 / (n * best[n0]) for n in best}
    return per_shape, best, eff, decode


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
    per_shape, best, eff, decode = summarize(rows)
    panels = 3 if decode else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2))
    ax1, ax2 = axes[0], axes[1]
    all_ranks = sorted(set(best) | set(decode))
    for k, pts in sorted(per_shape.items()):
        ns = sorted(pts)
        ax1.plot(ns, [pts[n] for n in ns], marker="o", ms=4, lw=1, alpha=0.7,
                 label="one ring of all ranks" if k == 0 else
                 "rings of %d rank%s" % (k, "" if k == 1 else "s"))
    if best:
        ns = sorted(best)
        ax1.plot(ns, [best[n] for n in ns], color="black", marker="s", lw=2, label="best")
        ax2.plot(ns, [eff[n] for n in ns], color="black", marker="s", lw=2, label="best")
        for n in ns:
            ax2.annotate("%.2f" % eff[n], (n, eff[n]), textcoords="offset points", xytext=(4, 6),
                         fontsize=8)
    ax1.set_xlabel("ranks (one GPU or core set each)")
    ax1.set_ylabel("getp throughput (generated tok/s)")
    ax1.set_title("getp throughput")
    n0 = min(best) if best else 1
    ax2.set_xlabel("ranks")
    ax2.set_ylabel("efficiency  best(N) x %d / (N x best(%d))" % (n0, n0))
    ax2.set_title("parallel efficiency of the best run")
    ax2.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax2.set_ylim(0, max(1.1, ax2.get_ylim()[1]))
    ax1.set_ylim(0, None)
    if decode:
        ax3 = axes[2]
        ns = sorted(decode)
        ax3.plot(ns, [decode[n] for n in ns], marker="o", color="tab:red")
        for n in ns:
            ax3.annotate("%.0f" % decode[n], (n, decode[n]), textcoords="offset points",
                         xytext=(4, 6), fontsize=8)
        ax3.set_xlabel("ranks")
        ax3.set_ylabel("batch-1 decode (tok/s)")
        ax3.set_title("batch-1 decode")
        ax3.set_ylim(0, max(decode.values()) * 1.2)
    for ax in axes:
        ax.set_xticks(all_ranks)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    print("sweep: wrote %s" % png_path)
    return True


def run_one(args, ranks, mb, batch, decode=False, dp=1):
    fd, out_path = tempfile.mkstemp(prefix="sweep-", suffix=".out")
    os.close(fd)
    cmd = launch_command(args, ranks, mb, batch, out_path, decode, dp)
    print("sweep: " + shlex.join(cmd), flush=True)
    if args.dry_run:
        os.unlink(out_path)
        return
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
    if rc == 0:
        rep = parse_decode_report(text) if decode else parse_getp_report(text)
    else:
        rep = None
    if rc == 0 and rep is None:
        rc = -1  # ran, but printed no report
    if rc != 0:
        sys.stderr.write(text[-3000:])
        print("sweep: run failed (exit %d) after %.1f s" % (rc, time.time() - t0),
              file=sys.stderr)
    if args.log_dir:
        name = "%s-r%d-dp%s-m%d-b%d.log" % ("decode" if decode else "getp", ranks, dp, mb, batch)
        with open(os.path.join(args.log_dir, name), "w") as f:
            f.write(shlex.join(cmd) + "\n" + text)
    rep = rep or {}
    row = {
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(), "launcher": args.launcher,
        "ranks": ranks, "dp": rep.get("rings", 1 if dp == "auto" or decode else dp),
        "micro_batches": mb, "batch": batch,
        "prompts": rep.get("prompts", ""),
        "generated_tokens": rep.get("generated_tokens", ""),
        "wall_s": "%.3f" % rep["wall_s"] if rep.get("wall_s") is not None else "",
        "tok_s": "%.2f" % rep["tok_s"] if rep.get("tok_s") is not None else "",
        "stage_busy_pct": ";".join("%.1f" % x for x in rep.get("stage_busy_pct", [])),
        "exit_code": rc,
        "mode": "decode" if decode else "getp",
    }
    append_row(args.csv, row)
    if rc == 0:
        print("sweep: %s, ranks %d, rings %s, micro-batches %d, batch %d: %s tok/s" %
              ("batch-1 decode" if decode else "getp", ranks, row["dp"], mb, batch, row["tok_s"]),
              flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="build/run", help="the run program")
    ap.add_argument("--model", help="model file")
    ap.add_argument("--prompts", help="getp prompt file")
    ap.add_argument("--ranks", default="1,2,4", type=int_list)
    ap.add_argument("--dp", default="1", type=dp_list,
                    help="data-parallel rings per rank count: integers, all (every divisor), auto "
                         "(no --dp: the runtime picks); values that do not divide N are skipped")
    ap.add_argument("--micro-batches", default="1", type=int_list)
    ap.add_argument("--batch", default="32", type=int_list)
    ap.add_argument("--batch-per-mb", default="", type=int_list,
                    help="rows per micro-batch: batch = R x M (instead of --batch)")
    ap.add_argument("--mb-max-per-rank", type=int, default=0,
                    help="keep micro-batch counts M <= K x ranks (one rank: M = 1); 0 = all")
    ap.add_argument("--decode", type=int, default=0,
                    help="also measure batch-1 decode per rank count: `run -m generate -n N`")
    ap.add_argument("--decode-args", default="", help="run's options for the decode runs")
    ap.add_argument("--decode-prompt", default="Tell me a long story about a lighthouse keeper.")
    ap.add_argument("--decode-only", action="store_true", help="only the --decode runs")
    ap.add_argument("--log-dir", default="", help="keep each run's output here")
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
        if not args.model or (not args.prompts and not args.decode_only):
            ap.error("--model and --prompts are needed (or --plot-only)")
        if not args.mb_flag and len(args.micro_batches) > 1:
            ap.error("several --micro-batches values but no --mb-flag to pass them")
        if args.decode_only and not args.decode:
            ap.error("--decode-only needs --decode N")
        if args.log_dir:
            os.makedirs(args.log_dir, exist_ok=True)
        for ranks in args.ranks if args.decode else []:
            for _ in range(args.repeat):
                run_one(args, ranks, 1, 1, decode=True)
        for ranks, dp, mb, batch in [] if args.decode_only else configurations(args):
            for _ in range(args.repeat):
                run_one(args, ranks, mb, batch, dp=dp)
        if args.dry_run:
            return 0
    else:
        per_shape, best, eff, decode = summarize(read_rows(args.csv))
        for n in sorted(best):
            print("sweep: %d rank(s): best getp %.1f tok/s, efficiency %.3f" % (n, best[n], eff[n]))
        for n in sorted(decode):
            print("sweep: %d rank(s): batch-1 decode %.1f tok/s" % (n, decode[n]))
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
