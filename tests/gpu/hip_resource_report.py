#!/usr/bin/env python3
"""hip_resource_report.py: static resources of every GPU kernel of a HIP build (gfx90a), from the
code objects hipcc already produced, and a check of the MI250 limits. No GPU needed; takes seconds.

  tests/gpu/hip_resource_report.py --build build-hip --launch-limits build/launch_limits_test \\
      [--markdown FILE] [--target gfx90a]

Per kernel (the AMDGPU metadata note of the code object, the same numbers as hipcc's
-Rpass-analysis=kernel-resource-usage):
  LDS      static group segment (+ the largest dynamic shared memory any launch passes, from
           `launch_limits_test --dynamic-smem gfx90a`, i.e. kernels/gpu/moe_plan.h and
           kernels/gpu/launch_shapes.h) = the workgroup's LDS
  VGPR     unified VGPRs per lane (.vgpr_count: arch VGPRs aligned to 4 + AGPRs on gfx90a), AGPR
  scratch  private segment bytes per lane (register spills, stack arrays), dynamic stack
  waves    the occupancy these imply, waves per SIMD: workgroups per CU limited by wave slots (8 per
           SIMD), VGPRs (512 per lane per SIMD, granule 8) and LDS (64 KiB per CU), times the
           workgroup's waves, over the CU's 4 SIMDs (the per-CU workgroup cap is not modelled)
Fails (exit 1) when a kernel's LDS exceeds the target's 64 KiB per workgroup, when a hot kernel
(every kernel but the COLD ones below) uses scratch or a dynamic stack, when a kernel cannot be
resident at all, or when a kernel's static LDS is larger than its launch record declares (then
gpu_launch_limits checked the wrong number).
Objects: every <build>/**/hip/<target>/*.o (kernels/gpu/GpuSources.cmake writes them there).
"""
import argparse
import glob
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

# Kernels allowed to use scratch: not on any inference path.
COLD = {
    "moe_topk_logits_kernel": "test entry point (moe_router_topk_logits)",
    "moe_decode_test_kernel": "test entry point (moe_mxfp4_decode)",
}


def die(msg):
    print(f"hip_resource_report: error: {msg}", file=sys.stderr)
    sys.exit(2)


def find_tool(name):
    """LLVM tool `name`, newest /usr/lib/llvm-N first (Debian's hipcc uses llvm-15), then PATH."""
    dirs = sorted(glob.glob("/usr/lib/llvm-*/bin"), key=lambda p: -int(re.findall(r"\d+", p)[-1]))
    for d in dirs:
        c = os.path.join(d, name)
        if os.access(c, os.X_OK):
            return c
    p = shutil.which(name)
    if not p:
        die(f"{name} not found (it comes with hipcc's LLVM: apt-get install hipcc)")
    return p


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        die(f"{' '.join(cmd)} failed: {r.stderr.strip()[:300]}")
    return r.stdout


def short_name(demangled):
    """'void gptoss::gpu::(anonymous namespace)::moe_gemv_kernel<4, true>(...)' -> 'moe_gemv_kernel<4, true>'"""
    d = demangled.replace("(anonymous namespace)::", "")
    d = re.sub(r"^void ", "", d)
    depth = 0
    for i, ch in enumerate(d):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif ch == "(" and depth == 0:
            d = d[:i]
            break
    depth, last = 0, 0
    for i in range(len(d) - 1):
        if d[i] == "<":
            depth += 1
        elif d[i] == ">":
            depth -= 1
        elif d[i:i + 2] == "::" and depth == 0:
            last = i + 2
    return d[last:]


def kernels_of_object(obj, target, tools, tmp):
    """The kernels' metadata in the `target` code object embedded in a HIP object file."""
    if ".hip_fatbin" not in run([tools["readelf"], "-S", "-W", obj]):
        return []  # no device code in this object (e.g. moe_grouped_gemm.cu on HIP)
    fatbin = os.path.join(tmp, "fatbin")
    run([tools["objcopy"], f"--dump-section=.hip_fatbin={fatbin}", obj, os.path.join(tmp, "null.o")])
    bundles = run([tools["bundler"], "--list", "--type=o", f"--input={fatbin}"]).split()
    want = [b for b in bundles if b.startswith("hip") and b.endswith("-" + target)]
    if not want:
        die(f"{obj}: no {target} code object (bundles: {', '.join(bundles)})")
    co = os.path.join(tmp, "co.elf")
    run([tools["bundler"], "--unbundle", "--type=o", f"--input={fatbin}", f"--targets={want[0]}",
         f"--output={co}"])
    notes = run([tools["readelf"], "--notes", co])
    kernels, cur, in_kernels = [], None, False
    for line in notes.split("\n"):
        if line.startswith("amdhsa.kernels:"):
            in_kernels = True
            continue
        if in_kernels and re.match(r"^amdhsa\.", line):
            break
        if not in_kernels:
            continue
        m = re.match(r"^  - \.(\w+):\s*(.*)$", line)
        if m:  # a new kernel's first key
            cur = {}
            kernels.append(cur)
            cur[m.group(1)] = m.group(2).strip()
            continue
        m = re.match(r"^    \.(\w+):\s*(.*)$", line)
        if m and cur is not None:
            cur[m.group(1)] = m.group(2).strip()
    return kernels


def demangle(names):
    tool = shutil.which("c++filt") or shutil.which("llvm-cxxfilt")
    if not tool:
        return {n: n for n in names}
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout
    return dict(zip(names, out.split("\n")))


def read_launch_table(tool, target):
    limits = {}
    for line in run([tool, "--limits", target]).split("\n"):
        if line.strip():
            k, v = line.split(None, 1)
            limits[k] = v if k == "name" else int(v)
    table = {}
    for line in run([tool, "--dynamic-smem", target]).split("\n"):
        if not line.strip() or line.startswith("#"):
            continue
        name, threads, dyn, stat = line.split("\t")
        table[name] = {"threads": int(threads), "dyn": int(dyn), "static": int(stat)}
    return limits, table


def occupancy(vgprs, lds, threads, lim):
    """(waves per SIMD, what limits it) when a CU holds as many of these workgroups as fit: a CU has
    simds_per_cu SIMDs of max_waves_per_simd wave slots and vgprs_per_simd_lane VGPRs per lane each
    (a wave takes its VGPR count rounded up to vgpr_granule), and smem_per_cu bytes of LDS."""
    simds = lim["simds_per_cu"]
    waves_per_wg = math.ceil(threads / lim["wave_size"])
    alloc = math.ceil(max(vgprs, 1) / lim["vgpr_granule"]) * lim["vgpr_granule"]
    by = {  # workgroups per CU
        "waves": simds * lim["max_waves_per_simd"] // waves_per_wg,
        "VGPRs": simds * min(lim["max_waves_per_simd"], lim["vgprs_per_simd_lane"] // alloc) // waves_per_wg,
        "LDS": (lim["smem_per_cu"] // lds) if lds > 0 else 10**9,
    }
    wgs = min(by.values())
    limiter = "waves" if wgs == by["waves"] else min(by, key=lambda k: by[k])
    return wgs * waves_per_wg / simds, limiter


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="the HIP build folder (cmake -DGPU_BACKEND=HIP)")
    ap.add_argument("--launch-limits", required=True, help="a built launch_limits_test (any build)")
    ap.add_argument("--target", default="gfx90a")
    ap.add_argument("--markdown", help="also write the table to this file")
    a = ap.parse_args()

    objs = sorted(glob.glob(os.path.join(a.build, "**", "hip", "*", "*.o"), recursive=True))
    if not objs:
        die(f"no HIP objects under {a.build}/**/hip/*/ (build the GPU targets of a -DGPU_BACKEND=HIP build first)")
    if not os.access(a.launch_limits, os.X_OK):
        die(f"{a.launch_limits}: not an executable (cmake --build BUILD --target launch_limits_test)")
    tools = {"objcopy": find_tool("llvm-objcopy"), "bundler": find_tool("clang-offload-bundler"),
             "readelf": find_tool("llvm-readelf")}
    lim, table = read_launch_table(a.launch_limits, a.target)

    rows, seen = [], set()
    with tempfile.TemporaryDirectory() as tmp:
        for obj in objs:
            src = os.path.basename(obj)[:-2]  # moe.cu.o -> moe.cu
            ks = kernels_of_object(obj, a.target, tools, tmp)
            names = demangle([k["name"] for k in ks])
            for k in ks:
                name = short_name(names[k["name"]])
                if (src, name) in seen:
                    continue
                seen.add((src, name))
                rows.append((src, name, k))

    problems, out = [], []
    out.append(f"| kernel | file | threads | LDS static + dynamic = total (bytes) | VGPRs (AGPRs) | SGPRs "
               f"| scratch (bytes/lane) | waves/SIMD (limited by) |")
    out.append("|---|---|---|---|---|---|---|---|")
    for src, name, k in sorted(rows, key=lambda r: (r[0], r[1])):
        g = lambda key, d=0: int(k.get(key, d))
        lds_static, scratch = g("group_segment_fixed_size"), g("private_segment_fixed_size")
        vgpr, agpr, sgpr = g("vgpr_count"), g("agpr_count"), g("sgpr_count")
        spills = g("vgpr_spill_count") + g("sgpr_spill_count")
        dyn_stack = k.get("uses_dynamic_stack", "false") == "true"
        launch = table.get(name)
        dyn = launch["dyn"] if launch else 0
        threads = launch["threads"] if launch else g("max_flat_workgroup_size", 1024)
        lds = lds_static + dyn
        waves, limiter = occupancy(vgpr, lds, threads, lim)
        notes = []
        if lds > lim["max_smem_per_block"]:
            problems.append(f"{name} ({src}): {lds} bytes of LDS per workgroup, {a.target} has {lim['max_smem_per_block']}")
        if launch and lds_static > launch["static"]:
            problems.append(f"{name} ({src}): static LDS {lds_static} bytes in the code object, but its launch record "
                            f"declares {launch['static']} (fix the constant in its plan)")
        if scratch or dyn_stack or spills:
            if name in COLD:
                notes.append(f"cold: {COLD[name]}")
            else:
                problems.append(f"{name} ({src}): hot kernel uses scratch ({scratch} bytes/lane, "
                                f"{spills} spills{', dynamic stack' if dyn_stack else ''})")
        if waves <= 0:
            problems.append(f"{name} ({src}): cannot be resident ({threads} threads, {vgpr} VGPRs, {lds} bytes of LDS)")
        dyn_s = f"{dyn}" if launch else "n/a"
        thr_s = f"{threads}" if launch else f"<= {threads}"
        scr_s = f"{scratch}" + (" + dynamic stack" if dyn_stack else "") + (f" ({notes[0]})" if notes else "")
        out.append(f"| `{name}` | {src} | {thr_s} | {lds_static} + {dyn_s} = {lds} | {vgpr} ({agpr}) | {sgpr} "
                   f"| {scr_s} | {waves:g} ({limiter}) |")
    text = "\n".join(out)
    print(text)
    missing = sorted(set(table) - {r[1] for r in rows})
    if missing:
        problems.append("launch records name kernels the code objects do not have: " + ", ".join(missing))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")
    print(f"\nhip_resource_report: {len(rows)} kernels in {len(objs)} objects ({a.target}); threads and dynamic LDS "
          f"from launch_limits_test (n/a: no launch record, i.e. no dynamic LDS in any checked launch; threads <= "
          f"the kernel's launch bound)")
    if problems:
        for p in problems:
            print(f"hip_resource_report: FAIL: {p}")
        return 1
    print("hip_resource_report: PASS: every kernel within 64 KiB of LDS, no scratch in a hot kernel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
