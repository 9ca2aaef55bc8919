#!/usr/bin/env python3
"""ncu_source_top.py: the instructions of an `ncu -i REP --page source --csv --print-source sass`
listing with the most warp-stall samples (SourceCounters), and the totals per stall reason, so a
kernel's time can be pinned to lines. Usage: ncu_source_top.py LISTING.csv [N (default 40)].
Column names differ between ncu versions: the sample columns are found by their names; when none
is found the header is printed so the next call can name them."""
import csv
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: ncu_source_top.py LISTING.csv [N]")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    with open(sys.argv[1], newline="", errors="replace") as f:
        lines = f.read().splitlines()
    # ncu may print notes before the CSV header: start at the first line that looks like one.
    start = next((i for i, l in enumerate(lines) if l.startswith('"') and "Source" in l), None)
    if start is None:
        print("ncu_source_top: no CSV header found; first lines:")
        print("\n".join(lines[:10]))
        return 1
    rows = list(csv.reader(lines[start:]))
    head, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    src = next((i for i, h in enumerate(head) if h.strip() in ("Source", "# Source")), None)
    if src is None:
        src = next(i for i, h in enumerate(head) if "Source" in h)
    total = next((i for i, h in enumerate(head) if "Warp Stall Sampling (All" in h), None)
    if total is None:
        print("ncu_source_top: no 'Warp Stall Sampling (All Samples)' column; header:")
        print(head)
        return 1
    reasons = [i for i, h in enumerate(head) if h.startswith("stall_") or h.lower().startswith("stall ")]

    def num(r, i):
        try:
            return float(r[i].replace(",", ""))
        except ValueError:
            return 0.0

    all_samples = sum(num(r, total) for r in body)
    print(f"{len(body)} instructions, {all_samples:.0f} warp-stall samples")
    if reasons:
        sums = sorted(((sum(num(r, i) for r in body), head[i]) for i in reasons), reverse=True)
        print("by reason: " + ", ".join(f"{h} {v / max(all_samples, 1):.1%}" for v, h in sums if v > 0))
    print(f"top {n} instructions by samples (share, index, instruction):")
    order = sorted(range(len(body)), key=lambda k: -num(body[k], total))
    for k in order[:n]:
        r = body[k]
        print(f"{num(r, total) / max(all_samples, 1):6.1%} {k:6d}  {r[src].strip()[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
