#!/bin/bash
# run_on_gpu.sh: what one call on the GPU machine runs, from binaries built here (CUDA, sm_90,
# build-gpu2) and copied with tokenizer.bin (and, for `run`, the Open MPI runtime: mpi/) into one
# git-ignored folder (see docs/gpu.md). Logs go to $OUT (or ./gpu-out).
# Usage: tests/gpu/run_on_gpu.sh [.dev/gpu2] [steps...]   steps: tests bench top1 runbench getp ncu memcheck
B=${1:-.dev/gpu2}; shift
STEPS=${*:-tests bench top1 runbench ncu memcheck}
O=${OUT:-gpu-out}
mkdir -p "$O"
has() { [[ " $STEPS " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$O/gpu.txt"
t() {  # name, timeout, command...
  local name=$1 tt=$2; shift 2
  echo "=== $name ($(date +%T))"
  timeout "$tt" "$@" > "$O/$name.log" 2>&1
  echo "rc=$?" >> "$O/$name.log"
  grep -E "^\[  (FAILED|PASSED|SKIPPED) |^rc=|Failure|Expected|Which is|rel L2|decode:|chunks:|time_us|tok_per_s|top-1|PASS|FAIL|^\|" "$O/$name.log" | head -60
}
M=/dev/shm/20b.bin
if [ -x "$B/export-model" ]; then  # the project's calibrated synthetic 20b (std ~ 1/sqrt(fan_in))
  echo "=== export synthetic 20b ($(date +%T))"
  ( "$B/export-model" --synthetic 20b /dev/shm/20b-hf && "$B/export-model" /dev/shm/20b-hf $M && rm -rf /dev/shm/20b-hf ) > "$O/export.log" 2>&1 || tail -3 "$O/export.log"
fi
if has tests; then
  t kernels 60 "$B/gpu_kernels_test"
  t moe 60 "$B/gpu_moe_test"
  [ -x "$B/gpu_sample_test" ] && t sample 90 "$B/gpu_sample_test"
  t engine 120 "$B/gpu_engine_test"
fi
if has bench; then
  t bench_moe 60 "$B/bench-moe" --reps 20
  GPTOSS_MOE_GEMV=scalar t bench_moe_scalar 60 "$B/bench-moe" --reps 20 --rows 1,8
  if [ -f $M ]; then
    t bench_engine 150 "$B/bench-engine" $M --ctx 4096 --pp 512 --tg 128 --batch 1,8,64,128,256
  else
    t bench_engine 150 "$B/bench-engine" --synthetic 20b --out $M --ctx 4096 --pp 512 --tg 128 --batch 1,8,64,256
  fi
fi
[ -f $M ] || "$B/bench-engine" --synthetic 20b --out $M --pp 0 --tg 1 --batch 1 > /dev/null 2>&1
if has top1; then
  t top1 150 "$B/check-top1" $M --n 256
fi
if has runbench; then
  # `run` links Open MPI. The machine has its own Open MPI (an orted whose PMIx plugin breaks
  # against carried libraries): use its libraries, carried ones only if some are missing, and a
  # singleton that starts no daemon.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_ess_singleton_isolated=1
  if ldd "$B/run" | grep -q "not found"; then export LD_LIBRARY_PATH="$B/mpi/lib"; fi
  t runbench ${RUNBENCH_TIMEOUT:-280} "$B/run" $M -z "$B/tokenizer.bin" --backend gpu -m bench -n 128 \
    --pp 512 -b ${GETP_B:-256} --getp-prompt 1024 --getp-new 1024 -r 1 -c 2048
fi
if has getp; then  # a real getp job with the GPU defaults (-b sized from free memory, --chunk 512)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_ess_singleton_isolated=1
  if ldd "$B/run" | grep -q "not found"; then export LD_LIBRARY_PATH="$B/mpi/lib"; fi
  { echo 64; for i in $(seq 1 64); do echo "Prompt number $i: tell me a story about the number $i."; done; } > /tmp/p64.txt
  t getp 120 "$B/run" $M -z "$B/tokenizer.bin" --backend gpu -m getp -i /tmp/p64.txt -o /tmp/o64.txt -n 64 -c 1024
  grep -E "KV cache|getp:" "$O/getp.log" | head -3
fi
if has ncu; then  # per-kernel device time of batch-1 decode steps (graph nodes), H100 counters
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  timeout 200 $NCU --clock-control none --metrics gpu__time_duration.sum --launch-skip 1200 \
    --launch-count 250 --print-summary per-kernel "$B/bench-engine" $M --ctx 4096 --pp 0 --tg 8 \
    --batch 1 > "$O/ncu.log" 2>&1; echo "ncu rc=$?"
  grep -E "^  [a-zA-Z_].*\(|gpu__time_duration.sum|Invocations" "$O/ncu.log" | head -80
fi
rm -f $M
if has memcheck; then
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  GPTOSS_GPU_GRAPHS=0 t memcheck 150 "$CS" --tool memcheck --error-exitcode 9 "$B/gpu_engine_test" \
    --gtest_filter='*bf16kv*:*errors*'
  grep -E "ERROR SUMMARY|Invalid" "$O/memcheck.log" | head -5
fi
# At most 8 files come back from the machine: fold the small logs into one.
for f in gpu.txt export.log kernels.log moe.log sample.log bench_moe_scalar.log memcheck.log; do
  [ -f "$O/$f" ] && { echo "##### $f"; cat "$O/$f"; rm -f "$O/$f"; }
done > "$O/misc.log"
