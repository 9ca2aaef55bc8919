#!/usr/bin/env python3
"""ncu_table.py NCU_CSV: per-kernel table of an `ncu --csv --print-units base --metrics
gpu__time_duration.sum,dram__bytes_read.sum,...` run (tests/gpu/run_on_gpu.sh, steps ncu and
profile): per kernel the launches, mean time (us), mean DRAM bytes read (MB), achieved read GB/s
and share of the total time, as markdown rows for docs/performance.md. When the run also collected
sm__throughput.avg.pct_of_peak_sustained_elapsed (the busiest SM unit, % of its peak) and
dram__throughput.avg.pct_of_peak_sustained_elapsed, their time-weighted means are two more
columns."""
import collections
import csv
import sys

rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr, rows = rows[0], rows[1:]
ki, mi, vi, ii = (hdr.index(k) for k in ("Kernel Name", "Metric Name", "Metric Value", "ID"))
per = collections.defaultdict(dict)
for r in rows:
    per[r[ii]][r[mi]] = float(r[vi].replace(",", ""))
    per[r[ii]]["name"] = r[ki]
SM, DR = ("sm__throughput.avg.pct_of_peak_sustained_elapsed",
          "dram__throughput.avg.pct_of_peak_sustained_elapsed")
pct = any(SM in m for m in per.values())
agg = collections.OrderedDict()
for m in per.values():
    name = m["name"].split("(")[0].replace("void ", "").replace("(anonymous namespace)::", "")
    a = agg.setdefault(name, [0, 0.0, 0.0, 0.0, 0.0])
    t = m.get("gpu__time_duration.sum", 0.0)  # ns
    a[0] += 1
    a[1] += t
    a[2] += m.get("dram__bytes_read.sum", 0.0)  # bytes
    a[3] += t * m.get(SM, 0.0)
    a[4] += t * m.get(DR, 0.0)
total = sum(a[1] for a in agg.values())
extra_h = " SM % of peak | DRAM % of peak |" if pct else ""
print("| kernel | launches | us each | MB read each | GB/s | share |" + extra_h)
print("|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if pct else ""))
for name, (n, t, b, s, d) in sorted(agg.items(), key=lambda x: -x[1][1]):
    extra = f" {s / max(t, 1):.0f} | {d / max(t, 1):.0f} |" if pct else ""
    print(f"| `{name}` | {n} | {t / n / 1e3:.1f} | {b / n / 1e6:.2f} | {b / max(t, 1):.0f} | "
          f"{t / total:.3f} |" + extra)
print(f"| total | {sum(a[0] for a in agg.values())} | {total / 1e3:.1f} | | | 1 |" +
      (" | |" if pct else ""))
