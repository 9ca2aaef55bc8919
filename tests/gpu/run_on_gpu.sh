#!/bin/bash
# run_on_gpu.sh: what one call on the GPU machine runs, from binaries built here (CUDA, sm_90) and
# copied to build-gpu-run/ (see docs/gpu.md). Logs and JSON go to $OUT (or ./gpu-out).
# Usage: tests/gpu/run_on_gpu.sh [build-gpu-run]
B=${1:-build-gpu-run}
O=${OUT:-gpu-out}
mkdir -p "$O"
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm --format=csv 2>&1 | tee "$O/gpu.txt"
run() {  # name, timeout, command...
  local name=$1 t=$2; shift 2
  echo "=== $name"
  timeout "$t" "$@" > "$O/$name.log" 2>&1
  echo "rc=$?" >> "$O/$name.log"
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |^rc=|Failure|Expected|Which is|rel L2|decode:|chunks:" "$O/$name.log" | head -40
}
run kernels 60 "$B/gpu_kernels_test"
run engine 80 "$B/gpu_engine_test"
[ -x "$B/gpu_moe_test" ] && run moe 50 "$B/gpu_moe_test"
echo "=== bench-kernels"
timeout 60 "$B/bench-kernels" > "$O/bench_kernels.json" 2> "$O/bench_kernels.err"; echo "rc=$?"
cat "$O/bench_kernels.json" "$O/bench_kernels.err"
echo "=== bench-engine (synthetic 20b)"
timeout 120 "$B/bench-engine" --synthetic 20b --out /dev/shm/gptoss-20b-synth.bin --ctx 4096 --pp 512 \
  --tg 64 --batch 1,8,64 > "$O/bench_engine.json" 2> "$O/bench_engine.err"; echo "rc=$?"
cat "$O/bench_engine.json" "$O/bench_engine.err"
rm -f /dev/shm/gptoss-20b-synth.bin
echo "=== compute-sanitizer memcheck (engine tests on the tiny-config model, graphs off)"
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
GPTOSS_GPU_GRAPHS=0 timeout 150 "$CS" --tool memcheck --error-exitcode 9 "$B/gpu_engine_test" \
  --gtest_filter='*bf16kv*:*errors*' > "$O/memcheck.log" 2>&1; echo "rc=$?"
grep -E "ERROR SUMMARY|PASSED|FAILED|Invalid" "$O/memcheck.log" | head -10
