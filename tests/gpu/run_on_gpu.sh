#!/bin/bash
# run_on_gpu.sh: what one call on the GPU machine runs, from binaries built here (CUDA, sm_90,
# build-gpu2) and copied with tokenizer.bin (and, for `run`, the Open MPI runtime: mpi/) into one
# git-ignored folder (see docs/gpu.md). Logs go to $OUT (or ./gpu-out).
# Usage: tests/gpu/run_on_gpu.sh [.dev/gpu2] [steps...]
#   steps: tests golden probe decodebench bench top1 runbench getp compare ncu profile detail
#          memcheck big120 precision moecfg wgmma steprows probes srcprof
#   probes: where the MoE time goes. The one-row chain (router, mlp1, mlp2) with parts of its
#           expert matmuls left out, next to the read probe over its bytes as 3 / 2 / 1 dependent
#           launches (bench-kernels --moe-probes, overlap on and off); the grouped wgmma kernel
#           with its decode, wgmma, consumers, epilogue or copies left out (bench-moe --wgmma 1
#           --ws-probe 0..7 at 1024 and 4096 rows, twice, with mma.sync beside it): wsprobe.csv
#   srcprof: per-instruction warp-stall samples (ncu SourceCounters) of the grouped wgmma
#           kernel's third launch at 4096 rows (mlp1 when the launches alternate mlp1, mlp2), the top lines by samples (srcprof.txt; tests/gpu/ncu_source_top.py)
#   steprows: device steps of 512 / 2048 / 4096 rows (--step-rows), interleaved twice
#           (steprows.csv): bench-moe at 512..4096 rows; bench-engine's prefill of 8 prompts at once
#           (--pp-batch 8, 512 rows each per step) and a batch-1024 decode step (--ctx 1536
#           --decode-pos 256); then getp 1k/1k at -b 1024 with each step size (run -m bench)
#   wgmma: Hopper's wgmma kernels against mma.sync, twice, interleaved (wgmma.csv): the dense GEMM
#           (bench-kernels --fast-gemm; bench-engine --gemm-wgmma 1|0, the default being 1), the
#           grouped MoE GEMM (bench-moe --precision fast --wgmma 0|1 at 256 / 512 / 4096 rows;
#           bench-engine --wgmma 1, opt-in), the engine's batch-256 step and 512-row prefill
#   moecfg: the grouped MoE GEMM's configurations 0, 3 and 4 (MoeOptions::grouped_config; 3 and 4
#           stage x hi-only, 4 / 5 stages at two blocks per SM), interleaved twice: bench-moe at
#           256 / 512 / 4096 rows and the engine's batch-256 step + 512-row prefill (moecfg.csv)
#   decodebench: the batch-1 decode matmuls and the MoE block as chains of launches next to the
#           read probe over the same bytes (bench-kernels --decode): a kernel's fixed cost at 25-53 MB
#   detail: ncu sections (stall reasons, issue slots, memory) of the batch-256 decode step's
#           grouped MoE GEMM and dense GEMM launches (detail.txt)
#   precision: issue 14's bar for --precision fast: check-top1 (exact and fast paths vs the CPU
#           engine) and tests/golden/hf_bf16_error.py (transformers' bf16 forward vs the same CPU
#           logits) on the tiny seed-1 checkpoint and the calibrated synthetic 20b (prec-*.json)
#   profile: per-kernel ncu tables of one batch-256 and one batch-512 decode step (~1k keys per
#           sequence) and one 512-row prefill chunk (pf-*.txt); PROFILE_ONLY=pf-decode1024 for a
#           batch-1024 step (--ctx 1536)
#   probe: the read bandwidth (bench-kernels --read-bw), the ceiling of every decode figure
#   big120: batch-1 decode of the synthetic 120b (written to /dev/shm after the 20b is removed),
#           with the decode kernels (twice) and without (--no-decode-kernels)
#   golden: the tiny model's committed golden outputs on the GPU (--kv-cache f32), seeds 1 and 2
#   compare: batch-1 decode (generate) and getp (-m bench, 256 x 1024 in / 1024 out) with this
#            build's `run` and with $BEFORE/run (another build, e.g. the previous commit), twice each,
#            interleaved, in the same call: compare.csv
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
# The model: kept from an earlier invocation (KEEP_MODEL=1 there), else written: SYNTH=fast writes
# bench-engine's patterned random 20b in one pass; otherwise the project's calibrated synthetic 20b
# (std ~ 1/sqrt(fan_in)) through export-model.
if [ -f $M ]; then
  echo "=== using the existing $M"
elif [ "${SYNTH:-}" = fast ]; then
  echo "=== write synthetic 20b ($(date +%T))"
  "$B/bench-engine" --synthetic 20b --out $M --write-only > "$O/export.log" 2>&1 || tail -3 "$O/export.log"
elif [ -x "$B/export-model" ]; then  # the project's calibrated synthetic 20b (std ~ 1/sqrt(fan_in))
  echo "=== export synthetic 20b ($(date +%T))"
  ( "$B/export-model" --synthetic 20b /dev/shm/20b-hf && "$B/export-model" /dev/shm/20b-hf $M ) > "$O/export.log" 2>&1 || tail -3 "$O/export.log"
  has precision || rm -rf /dev/shm/20b-hf
fi
if has tests; then
  t kernels 60 "$B/gpu_kernels_test"
  [ -x "$B/gpu_attention_test" ] && t attention 90 "$B/gpu_attention_test"
  t moe 60 "$B/gpu_moe_test"
  [ -x "$B/gpu_sample_test" ] && t sample 90 "$B/gpu_sample_test"
  [ -x "$B/gpu_decode_test" ] && t decode 120 "$B/gpu_decode_test"
  [ -x "$B/gpu_head_slice_test" ] && t head_slice 120 "$B/gpu_head_slice_test"
  t engine 120 "$B/gpu_engine_test"
fi
if has probe; then
  t probe 60 "$B/bench-kernels" --read-bw
  grep -h read_bandwidth "$O/probe.log"
fi
if has decodebench; then
  t decodebench 60 "$B/bench-kernels" --decode --reps 50
  grep -h '"kernel"' "$O/decodebench.log"
fi
if has golden && [ -x "$B/golden_test" ]; then
  for seed in 1 2; do
    ( "$B/export-model" --synthetic tiny /tmp/tiny$seed-hf --seed $seed && "$B/export-model" /tmp/tiny$seed-hf /tmp/tiny$seed.bin ) > /dev/null 2>&1
    t golden$seed 120 "$B/golden_test" --gtest_filter='Golden.*' --golden tests/golden/tiny_seed$seed.json \
      --model /tmp/tiny$seed.bin --tokenizer "$B/tokenizer.bin" --backend gpu --kv-cache f32
  done
fi
if has bench; then
  t bench_moe 60 "$B/bench-moe" --reps 20
  t bench_moe_scalar 60 "$B/bench-moe" --reps 20 --rows 1,8 --gemv scalar
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
if has precision; then
  for pm in tiny 20b; do
    if [ $pm = tiny ]; then
      HF=/tmp/ptiny-hf; MB=/tmp/ptiny.bin
      ( "$B/export-model" --synthetic tiny $HF --seed 1 && "$B/export-model" $HF $MB ) > /dev/null 2>&1
    else
      HF=/dev/shm/20b-hf; MB=$M
      [ -d $HF ] || { echo "=== precision: no $HF (the model was not exported in this call)"; continue; }
    fi
    D=/dev/shm/pdump-$pm; mkdir -p $D
    t prec-$pm-top1 ${PREC_TIMEOUT:-400} "$B/check-top1" $MB --n ${PREC_N:-256} --dump $D --json "$O/prec-$pm.json"
    t prec-$pm-hf ${PREC_TIMEOUT:-400} python3 tests/golden/hf_bf16_error.py --checkpoint $HF --dump $D \
      --out "$O/prec-$pm-hf-bf16.json"
    t prec-$pm-hf32 ${PREC_TIMEOUT:-400} python3 tests/golden/hf_bf16_error.py --checkpoint $HF \
      --dump $D --out "$O/prec-$pm-hf-f32.json" --dtype float32
    rm -rf $D
  done
  rm -rf /dev/shm/20b-hf
fi
if has runbench; then
  # `run` links Open MPI. The machine has its own Open MPI (an orted whose PMIx plugin breaks
  # against carried libraries): use its libraries, carried ones only if some are missing, and a
  # singleton that starts no daemon.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_ess_singleton_isolated=1
  if ldd "$B/run" | grep -q "not found"; then export LD_LIBRARY_PATH="$B/mpi/lib"; fi
  t runbench ${RUNBENCH_TIMEOUT:-280} "$B/run" $M -z "$B/tokenizer.bin" --backend gpu -m bench -n 128 \
    --pp ${RUNBENCH_PP:-512} -b ${GETP_B:-256} --getp-prompt 1024 --getp-new 1024 -r 1 -c 2048 ${RUNBENCH_EXTRA:-}
fi
if has getp; then  # a real getp job with the GPU defaults (-b sized from free memory, --chunk 512)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_ess_singleton_isolated=1
  if ldd "$B/run" | grep -q "not found"; then export LD_LIBRARY_PATH="$B/mpi/lib"; fi
  { echo 64; for i in $(seq 1 64); do echo "Prompt number $i: tell me a story about the number $i."; done; } > /tmp/p64.txt
  t getp 120 "$B/run" $M -z "$B/tokenizer.bin" --backend gpu -m getp -i /tmp/p64.txt -o /tmp/o64.txt -n 64 -c 1024
  grep -E "KV cache|getp:" "$O/getp.log" | head -3
fi
if has compare; then
  # COMPARE_SIDES: builds / variants, each "name" of: before ($BEFORE/run), after (this build),
  # nodecode (this build with --no-decode-kernels), overlap / nooverlap (--launch-overlap on / off), exact / fast
  # (this build, --precision). Batch-1 decode COMPARE_REPS times per side
  # (interleaved), getp (-m bench, 256 x 1024 in / 1024 out) once for the sides in
  # COMPARE_GETP_SIDES.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_ess_singleton_isolated=1
  if ldd "$B/run" | grep -q "not found"; then export LD_LIBRARY_PATH="$B/mpi/lib"; fi
  echo "build,rep,test,tok_s" > "$O/compare.csv"
  for rep in $(seq 1 ${COMPARE_REPS:-2}); do
    for side in ${COMPARE_SIDES:-before after}; do
      R="$B/run"; extra=()
      [ $side = before ] && R="$BEFORE/run"
      [ $side = nodecode ] && extra=(--no-decode-kernels)
      [ $side = overlap ] && extra=(--launch-overlap on)
      [ $side = nooverlap ] && extra=(--launch-overlap off)
      [ $side = exact ] && extra=(--precision exact)
      [ $side = fast ] && extra=(--precision fast)
      timeout 120 "$R" $M -z "$B/tokenizer.bin" --backend gpu -m generate -i "Tell me a long story." \
        -n 256 -T 0 --ignore-eos -c 1024 "${extra[@]}" > "$O/gen-$side-$rep.log" 2>&1
      d=$(grep -oE "decode [0-9.]+ s \([0-9.]+ tok/s" "$O/gen-$side-$rep.log" | grep -oE "[0-9.]+ tok/s" | cut -d' ' -f1)
      echo "$side,$rep,decode_b1,$d" >> "$O/compare.csv"
      [ "$rep" -le "${COMPARE_GETP_REPS:-1}" ] || continue
      [[ " ${COMPARE_GETP_SIDES:-before after} " == *" $side "* ]] || continue
      timeout ${COMPARE_GETP_TIMEOUT:-200} "$R" $M -z "$B/tokenizer.bin" --backend gpu -m bench --pp 0 -n 128 \
        -b 256 --getp-prompt 1024 --getp-new 1024 -r 1 -c 2048 --format csv "${extra[@]}" > "$O/bench-$side-$rep.log" 2>&1
      for k in tg128 getp; do
        v=$(grep -E "^\".*,$k" "$O/bench-$side-$rep.log" | awk -F, '{print $(NF-3)}')  # tok_per_s_mean (the model name may hold commas)
        echo "$side,$rep,$k,$v" >> "$O/compare.csv"
      done
    done
  done
  cat "$O/compare.csv"
fi
# The engine's 512-row prefill and batch-256 step at ~1k keys (bench-engine FLAGS...) as two CSV
# lines "REP,SIDE,pp1024_tok_s|b256_ms_per_step,VALUE". Usage: step256_csv REP SIDE LOG CSV FLAGS...
step256_csv() {
  local rep=$1 side=$2 log=$3 csv=$4; shift 4
  "$B/bench-engine" $M --ctx 2048 --pp 1024 --pp-chunk 512 --batch 256 --tg 16 --decode-pos 1024 \
    "$@" > "$log" 2>&1
  local pp ms
  pp=$(grep -oE '"step": "pp1024"[^}]*"tok_per_s": [0-9.]+' "$log" | grep -oE '[0-9.]+$')
  ms=$(grep -oE '"batch": 256[^}]*"ms_per_step": [0-9.]+' "$log" | grep -oE '[0-9.]+$')
  echo "$rep,$side,pp1024_tok_s,$pp" >> "$csv"
  echo "$rep,$side,b256_ms_per_step,$ms" >> "$csv"
}
if has wgmma; then
  echo "rep,side,test,value" > "$O/wgmma.csv"
  "$B/bench-kernels" --reps 20 --fast-gemm > "$O/wgmma-fastgemm.log" 2>&1
  grep '"us"' "$O/wgmma-fastgemm.log"
  for rep in 1 2; do
    for w in 0 1; do
      "$B/bench-moe" --reps 10 --rows 256,512,4096 --precision fast --wgmma $w > "$O/wgmma-moe$w.log" 2>&1
      grep -h time_us "$O/wgmma-moe$w.log" | sed -E 's/.*"rows": ([0-9]+).*"time_us": ([0-9.]+).*/\1 \2/' |
        while read -r rows us; do echo "$rep,moe-wgmma$w,moe_us_rows$rows,$us" >> "$O/wgmma.csv"; done
    done
    for side in "gemm0 --gemm-wgmma 0" "gemm1 --gemm-wgmma 1" "moe1 --wgmma 1"; do
      read -r name flags <<< "$side"
      step256_csv "$rep" "$name" "$O/wgmma-e-$name.log" "$O/wgmma.csv" $flags
    done
  done
  cat "$O/wgmma.csv"
fi
if has steprows; then
  echo "rep,step_rows,test,value" > "$O/steprows.csv"
  "$B/bench-moe" --reps 10 --rows 512,1024,2048,4096 --precision fast > "$O/steprows-moe.log" 2>&1
  grep -h time_us "$O/steprows-moe.log" | sed -E 's/.*"rows": ([0-9]+).*"time_us": ([0-9.]+).*/\1 \2/' |
    while read -r rows us; do echo "0,-,moe_us_rows$rows,$us" >> "$O/steprows.csv"; done
  for rep in 1 2; do
    for S in 512 2048 4096; do
      log="$O/steprows-e$S-$rep.log"
      "$B/bench-engine" $M --ctx 1536 --pp 1024 --pp-chunk 512 --pp-batch 8 --batch 1024 --tg 8 \
        --decode-pos 256 --step-rows $S > "$log" 2>&1
      pp=$(grep -oE '"step": "pp1024"[^}]*"tok_per_s": [0-9.]+' "$log" | grep -oE '[0-9.]+$')
      ms=$(grep -oE '"batch": 1024[^}]*"ms_per_step": [0-9.]+' "$log" | grep -oE '[0-9.]+$')
      echo "$rep,$S,pp1024x8_tok_s,$pp" >> "$O/steprows.csv"
      echo "$rep,$S,b1024_ms_per_step,$ms" >> "$O/steprows.csv"
    done
  done
  for S in 512 2048 4096; do
    "$B/run" $M --backend gpu -m bench --pp 0 -n 16 -b 1024 --getp-prompt 1024 --getp-new 1024 -r 1 \
      -c 2048 --step-rows $S > "$O/steprows-getp$S.log" 2>&1
    v=$(grep -oE 'getp p1024 n1024 rep 1/1: [0-9.]+' "$O/steprows-getp$S.log" | grep -oE '[0-9.]+$')
    echo "1,$S,getp_b1024_tok_s,$v" >> "$O/steprows.csv"
  done
  cat "$O/steprows.csv"
fi
if has moecfg; then
  echo "rep,config,test,value" > "$O/moecfg.csv"
  for rep in 1 2; do
    for c in 0 3 4; do
      "$B/bench-moe" --reps 10 --rows 256,512,4096 --precision fast --grouped-config $c > "$O/moecfg-m$c.log" 2>&1
      grep -h time_us "$O/moecfg-m$c.log" | sed -E 's/.*"rows": ([0-9]+).*"time_us": ([0-9.]+).*/\1 \2/' |
        while read -r rows us; do echo "$rep,$c,moe_us_rows$rows,$us" >> "$O/moecfg.csv"; done
      step256_csv "$rep" "$c" "$O/moecfg-e$c.log" "$O/moecfg.csv" --moe-config $c
    done
  done
  cat "$O/moecfg.csv"
fi
if has ncu; then  # per-kernel device time and DRAM bytes of batch-1 decode steps (graph nodes)
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  timeout 300 $NCU --clock-control none --csv --print-units base --metrics \
    gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --launch-skip ${NCU_SKIP:-2000} \
    --launch-count ${NCU_COUNT:-300} "$B/bench-engine" $M --ctx 4096 --pp 0 --tg 16 --batch 1 \
    > "$O/ncu.csv" 2> "$O/ncu.err"; echo "ncu rc=$?"; tail -3 "$O/ncu.err"
  python3 tests/gpu/ncu_table.py "$O/ncu.csv" | tee "$O/ncu-summary.txt"
fi
if has profile; then  # one whole step per run under ncu (bench-engine --profile): decode at
  # batch 256 and 512 with ~1k keys per sequence (a getp 1k/1k step), and a 512-row prefill chunk
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  # PROFILE_ONLY="pf-decode256 ...": only those steps (pf-decode1024 only when named: its KV
  # cache takes ~42 GB at --ctx 1536).
  for spec in "pf-decode256:--pp 0 --batch 256 --tg 2 --decode-pos 1024 --profile decode" \
              "pf-decode1024:--ctx 1536 --pp 0 --batch 1024 --tg 2 --decode-pos 1024 --profile decode" \
              "pf-decode512:--pp 0 --batch 512 --tg 2 --decode-pos 1024 --profile decode" \
              "pf-prefill512:--pp 1024 --pp-chunk 512 --batch 1 --tg 1 --profile pp"; do
    name=${spec%%:*}
    [[ " ${PROFILE_ONLY:-pf-decode256 pf-decode512 pf-prefill512} " == *" $name "* ]] || continue
    timeout 240 $NCU --clock-control none --profile-from-start off --csv --print-units base \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed \
      "$B/bench-engine" $M --ctx 2048 ${spec#*:} > "$O/$name.csv" 2> "$O/$name.err"
    echo "=== $name: ncu rc=$?"; tail -2 "$O/$name.err"
    python3 tests/gpu/ncu_table.py "$O/$name.csv" > "$O/$name.txt" && cat "$O/$name.txt"
    # the same step's wall time without the profiler
    timeout 120 "$B/bench-engine" $M --ctx 2048 ${spec#*:} 2>&1 | grep -E '"pp|"tg' | tee -a "$O/$name.txt"
  done
fi
if has probes; then
  for ov in 1 0; do
    t moeprobes$ov 120 "$B/bench-kernels" --moe-probes --reps 50 --overlap $ov
    grep -E '"kernel": "(moe|read)' "$O/moeprobes$ov.log" | sed -E 's/"shape": "[^"]*", //' | cut -c1-190
  done
  echo "rep,kernel,probe,rows,time_us" > "$O/wsprobe.csv"
  for rep in 1 2; do
    for p in mma 0 1 2 3 4 5 6 7; do
      args=(--wgmma 1 --ws-probe $p); [ $p = mma ] && args=(--wgmma 0)
      timeout 60 "$B/bench-moe" --reps 10 --rows 1024,4096 --precision fast "${args[@]}" 2>&1 |
        sed -nE 's/.*"rows": ([0-9]+).*"time_us": ([0-9.]+).*/\1,\2/p' | sed "s/^/$rep,moe,$p,/" >> "$O/wsprobe.csv"
    done
  done
  cat "$O/wsprobe.csv"
fi
if has srcprof; then
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  timeout 240 $NCU --clock-control none --kernel-name "regex:moe_ws_kernel" --launch-skip 2 --launch-count 1 \
    --section SourceCounters --section WarpStateStats --import-source yes -f -o "$O/srcprof" \
    "$B/bench-moe" --reps 1 --rows 4096 --precision fast --wgmma 1 > "$O/srcprof.err" 2>&1
  echo "=== srcprof: ncu rc=$?"; tail -2 "$O/srcprof.err"
  $NCU -i "$O/srcprof.ncu-rep" --page source --csv --print-source sass > "$O/srcprof-sass.csv" 2>&1
  python3 tests/gpu/ncu_source_top.py "$O/srcprof-sass.csv" 60 | tee "$O/srcprof.txt"
  rm -f "$O/srcprof-sass.csv" "$O/srcprof.ncu-rep"
fi
if has detail; then  # ncu sections (stall reasons, issue, memory) of the batch-256 decode step's
  # grouped MoE GEMM and dense GEMM launches (DETAIL_KERNELS: a kernel-name regex)
  NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  timeout 300 $NCU --clock-control none --profile-from-start off \
    --kernel-name "regex:${DETAIL_KERNELS:-moe_tc|bf16_bf16w_gemm}" --launch-count ${DETAIL_COUNT:-4} \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section InstructionStats --section SourceCounters \
    "$B/bench-engine" $M --ctx 2048 --pp 0 --batch ${DETAIL_BATCH:-256} --tg 2 --decode-pos 1024 \
    --profile decode ${DETAIL_EXTRA:-} > "$O/detail.txt" 2>&1
  echo "=== detail: ncu rc=$?"; grep -E "^  [a-z_]+.*\(|Duration|Warp Cycles Per Issued|Issue Slots Busy|Registers Per" "$O/detail.txt" | head -40
fi
[ -n "${KEEP_MODEL:-}" ] || rm -f $M
if has big120; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_ess_singleton_isolated=1
  rm -f /dev/shm/20b.bin
  M120=/dev/shm/120b.bin
  echo "=== write synthetic 120b ($(date +%T))"
  "$B/bench-engine" --synthetic 120b --out $M120 --write-only > "$O/export120.log" 2>&1 || tail -3 "$O/export120.log"
  for side in ${BIG120_SIDES:-after nodecode}; do
    extra=(); [ $side = nodecode ] && extra=(--no-decode-kernels)
    timeout 120 "$B/run" $M120 -z "$B/tokenizer.bin" --backend gpu -m generate -i "Tell me a long story." \
      -n 128 -T 0 --ignore-eos -c 1024 "${extra[@]}" > "$O/gen120-$side.log" 2>&1
    d=$(grep -oE "decode [0-9.]+ s \([0-9.]+ tok/s" "$O/gen120-$side.log" | grep -oE "[0-9.]+ tok/s" | cut -d' ' -f1)
    echo "120b,$side,decode_b1,$d" | tee -a "$O/compare.csv"
  done
  rm -f $M120
fi
if has memcheck; then
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  GPTOSS_GPU_GRAPHS=0 t memcheck 150 "$CS" --tool memcheck --error-exitcode 9 "$B/gpu_engine_test" \
    --gtest_filter='*bf16kv*:*errors*'
  grep -E "ERROR SUMMARY|Invalid" "$O/memcheck.log" | head -5
fi
# At most 8 files come back from the machine: keep the main ones, fold the other logs into one.
KEEP=" ${KEEP_FILES:-compare.csv ncu.csv ncu-summary.txt engine.log top1.log runbench.log getp.log} misc.log misc.log.tmp "
( cd "$O" && for f in *; do
    [[ "$KEEP" == *" $f "* ]] && continue
    [ -f "$f" ] && { echo "##### $f"; cat "$f"; rm -f "$f"; }
  done ) > "$O/misc.log.tmp"
cat "$O/misc.log.tmp" >> "$O/misc.log" && rm -f "$O/misc.log.tmp"  # a second invocation appends
