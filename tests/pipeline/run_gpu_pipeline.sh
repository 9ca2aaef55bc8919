#!/bin/bash
# run_gpu_pipeline.sh: issue 6's checks and measurements of the ring pipeline on GPUs, on a machine
# with two GPUs of one host, from binaries built here with -DGPU_BACKEND=CUDA and copied into one
# folder BINDIR (run, export-model, bench-engine, tokenizer.bin; mpi/lib used only if the
# machine's Open MPI libraries are missing). Logs go to $OUT (or ./gpupipe-out).
# Usage: tests/pipeline/run_gpu_pipeline.sh BINDIR [steps...]
# Steps (default: all but 120b1; each under `timeout`, so nothing can hang):
#   engine gpu_engine_test (the one-GPU engine, whose code the stage shares)
#   tiny   greedy output of 2 ranks (and 3 ranks on 2 GPUs, and the MPI fallback) equals 1 GPU
#   headsplit  issue 18 item 3 on the GPU: one ring of 2 ranks (--dp 1: the automatic shape would
#          make tiny two rings of one) with --head-split on (tiny model, -b 1: the same kernel paths
#          as one GPU) gives the 1-GPU getp OUT byte for byte for greedy, top-k and top-k + top-p
#          sampling, with every row chosen from the slices (--profile); at -b 4 the split ring
#          against the whole-head ring is reported (not a gate). Runs on one GPU too (both ranks
#          share it)
#   dp     issue 18: 2 rings of 2 ranks (--dp 2, 4 ranks sharing the GPUs there are, one is
#          enough) give the 1-GPU getp OUT byte for byte (tiny model, -b 1: the same kernel paths)
#   20b    the same on a synthetic 20b (bench-engine --synthetic 20b: fast, patterned weights)
#   kill   rank 1 of a running 2-GPU getp is SIGKILLed: the job must end within 30 s
#   perf   20b: batch-1 decode (generate) and getp throughput, 1 rank vs 2 ranks
#   getp   20b getp throughput for a few rank:batch[:layers] settings (GETP_RUNS), with profile
#   sweep  launch/sweep.py over 1 and 2 ranks (CSV; the PNG is drawn on the dev machine)
#   120b   synthetic 120b (bench-engine --synthetic 120b) on 2 GPUs: decode and getp
#   120b1  the same 120b on one GPU (reference tokens for the 2-GPU run; it fits one 80 GB card)
#   scale20b, scale120b  issue 7's sweep (launch/sweep.py through launch/mpirun.sh, so bind.sh
#          picks each rank's GPU): batch-1 decode and getp for SCALE_RANKS ranks (default 1,2,4 up
#          to the GPU count), micro-batches 1..2 x ranks, SCALE_ROWS rows per micro-batch (20b 512,
#          120b 256), SCALE_PROMPTS prompts of ~100 tokens, SCALE_NEW new tokens, -c 512. CSV in
#          $OUT/scaling-MODEL.csv, each run's log in $OUT/sweep-MODEL/. SCALE_ONE_GPU_BATCHES="256,1024"
#          adds one-GPU runs at those -b (after the rest).
B=${1:?usage: run_gpu_pipeline.sh BINDIR [steps...]}
B=$(cd "$B" && pwd)
shift
STEPS=${*:-engine tiny headsplit 20b perf kill sweep 120b}
has() { [[ " $STEPS " == *" $1 "* ]]; }
R=${OUT:-gpupipe-out}
mkdir -p "$R"
R=$(cd "$R" && pwd)
HERE=$(cd "$(dirname "$0")/../.." && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if ldd "$B/run" | grep -q "not found"; then export LD_LIBRARY_PATH="$B/mpi/lib"; fi
MPI=(mpirun --bind-to none)
# One process on a machine with several GPUs would run itself as one rank per GPU (src/run/main.cpp):
# the 1-GPU references name their GPU.
ONE=(env GPTOSS_DEVICE=0)
[ -n "${LD_LIBRARY_PATH:-}" ] && MPI+=(-x LD_LIBRARY_PATH)
TOK=$B/tokenizer.bin
W=/dev/shm/gpupipe
O=$W/logs  # one log per step; each is appended to $R/all.log as it ends (one file comes back)
mkdir -p $W $O
cd $W || exit 1
{
  date; hostname
  nvidia-smi --query-gpu=index,name,pci.bus_id,memory.total --format=csv 2>&1
  nvidia-smi topo -m 2>&1 | head -5
  mpirun --version 2>&1 | head -1
  free -g | head -2; df -h /dev/shm | tail -1
} > "$O/env.log" 2>&1
head -5 "$O/env.log"
keep() { { echo "##### $1"; cat "$O/$1.log"; } >> "$R/all.log"; }
keep env

fails=0
ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
# name, timeout_s, command...: runs it with its log in $O/name.log; returns its exit code
t() {
  local name=$1 tt=$2; shift 2
  local t0=$SECONDS
  timeout -k 10 "$tt" "$@" > "$O/$name.log" 2>&1
  local rc=$?
  echo "rc=$rc wall_s=$((SECONDS - t0))" >> "$O/$name.log"
  [ $rc = 124 ] && echo "$name: TIMED OUT after $tt s"
  keep "$name"
  return $rc
}
# the same with the command's stdout in file $3 (name, timeout_s, outfile, command...)
t_out() {
  local name=$1 tt=$2 out=$3; shift 3
  local t0=$SECONDS
  timeout -k 10 "$tt" "$@" > "$out" 2> "$O/$name.log"
  local rc=$?
  echo "rc=$rc wall_s=$((SECONDS - t0))" >> "$O/$name.log"
  [ $rc = 124 ] && echo "$name: TIMED OUT after $tt s"
  keep "$name"
  return $rc
}
same() {  # what, file_a, file_b
  if cmp -s "$2" "$3"; then ok "$1"; else bad "$1 ($(diff "$2" "$3" | grep -c '^<') lines differ)"; return 1; fi
}
prompts() {  # n tokens file: n prompts of about `tokens` tokens (" item 12 of 34," is 5)
  python3 - "$1" "$2" "$3" <<'PY'
import sys
n, tok, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    f.write(f"{n}\n")
    for i in range(1, n + 1):
        f.write(f"Prompt {i}:" + "".join(f" item {j % 997} of {i % 997}," for j in range(max(1, tok // 5))) + "\n")
PY
}

# ---- models ----
if { has tiny || has headsplit; } && [ ! -f tiny.bin ]; then
  "$B/export-model" --synthetic tiny tiny-hf --seed 1 > /dev/null && "$B/export-model" tiny-hf tiny.bin > /dev/null
  rm -rf tiny-hf
fi
if { has 20b || has kill || has perf || has sweep || has getp || has scale20b; } && [ ! -f 20b.bin ]; then
  t write20b 300 "$B/bench-engine" --synthetic 20b --out 20b.bin --write-only
  tail -2 "$O/write20b.log"
fi
if has engine; then  # the one-GPU engine's own tests (the stage shares its code)
  t engine_test 120 "$B/gpu_engine_test" --gtest_color=no
  grep -E "^\[  (PASSED|FAILED) |FAILED  \]" "$O/engine_test.log"
  grep -q "^\[  PASSED" "$O/engine_test.log" && ok "gpu_engine_test" || bad "gpu_engine_test"
fi

# ---- greedy equality: 1 GPU (the engine) vs the ring on 2 GPUs ----
# (--dp 1 on the multi-rank runs: without it the automatic shape makes a model that fits one GPU
# into rings of one rank each, data-parallel copies, and no activation would cross a link.)
equal_runs() {  # label model n_new batch [quick: no fallback / generate runs]
  local L=$1 M=$2 N=$3 Bt=$4 quick=${5:-}
  local args=(-z "$TOK" -T 0 --ignore-eos -c 1024)
  t "$L-1gpu" 300 "${ONE[@]}" "$B/run" "$M" "${args[@]}" --backend gpu -m getp -i in.txt -o "$L-ref.txt" -n "$N" -b "$Bt"
  t "$L-np2" 300 "${MPI[@]}" -np 2 "$B/run" "$M" "${args[@]}" --dp 1 --backend gpu -m getp -i in.txt \
      -o "$L-np2.txt" -n "$N" -b "$Bt" || bad "$L np2 exit"
  grep -m1 "^pipeline:" "$O/$L-np2.log"
  same "$L: 2 ranks (getp -b $Bt) equal 1 GPU" "$L-ref.txt" "$L-np2.txt"
  [ -n "$quick" ] && return
  # Sampling: each request's draws are made when its token is chosen (rank 0, after the ring).
  local sargs=(-z "$TOK" -T 0.8 -p 0.95 -s 7 --ignore-eos -c 1024 --backend gpu -m getp -i in.txt -n "$N" -b "$Bt")
  t "$L-s1" 300 "${ONE[@]}" "$B/run" "$M" "${sargs[@]}" -o "$L-s1.txt"
  t "$L-s2" 300 "${MPI[@]}" -np 2 "$B/run" "$M" "${sargs[@]}" --dp 1 -o "$L-s2.txt" || bad "$L sampled np2 exit"
  same "$L: 2 ranks equal 1 GPU when sampling (-T 0.8 -p 0.95)" "$L-s1.txt" "$L-s2.txt"
  t "$L-mpi" 300 "${MPI[@]}" -np 2 "$B/run" "$M" "${args[@]}" --dp 1 --backend gpu --transport mpi \
      -m getp -i in.txt -o "$L-mpi.txt" -n "$N" -b "$Bt" || bad "$L fallback exit"
  grep -m1 "^pipeline:" "$O/$L-mpi.log"
  grep -q "host-staged: IPC disabled" "$O/$L-mpi.log" || bad "$L: --transport mpi gave no host-staged links"
  same "$L: 2 ranks over the MPI fallback equal 1 GPU" "$L-ref.txt" "$L-mpi.txt"
  t_out "$L-gen1" 300 "$L-g1.txt" "${ONE[@]}" "$B/run" "$M" "${args[@]}" --backend gpu -m generate -i "The pipeline on GPUs" -n "$N"
  t_out "$L-gen2" 300 "$L-g2.txt" "${MPI[@]}" -np 2 "$B/run" "$M" "${args[@]}" --dp 1 --backend gpu -m generate \
      -i "The pipeline on GPUs" -n "$N"
  [ -s "$L-g1.txt" ] || bad "$L: generate printed nothing"
  same "$L: generate on 2 ranks equals 1 GPU" "$L-g1.txt" "$L-g2.txt" ||
    { echo "##### $L generate: 1 GPU vs 2 ranks"; diff "$L-g1.txt" "$L-g2.txt"; } >> "$R/all.log"
}
if has dp; then
  echo "=== dp ($(date +%T))"
  [ -f tiny.bin ] || { "$B/export-model" --synthetic tiny tiny-hf --seed 1 > /dev/null &&
                       "$B/export-model" tiny-hf tiny.bin > /dev/null; rm -rf tiny-hf; }
  prompts 12 10 dp-in.txt
  dargs=(-z "$TOK" -m getp -i dp-in.txt -n 24 -b 1 -c 256 --backend gpu)
  t dp-1gpu 120 "${ONE[@]}" "$B/run" tiny.bin "${dargs[@]}" -o dp-ref.txt
  t dp-4 180 "${MPI[@]}" --oversubscribe -np 4 "$B/run" tiny.bin "${dargs[@]}" -o dp-4.txt --dp 2 ||
    bad "dp: 4 ranks --dp 2 exit"
  grep -m1 "^shape:" "$O/dp-4.log"
  grep -q "^shape: 2 rings x 2 ranks" "$O/dp-4.log" || bad "dp: no 2 x 2 shape line"
  same "dp: 2 rings x 2 ranks (getp -b 1) equal 1 GPU" dp-ref.txt dp-4.txt
fi
if has tiny; then
  echo "=== tiny ($(date +%T))"
  prompts 6 30 in.txt
  equal_runs tiny tiny.bin 24 1
  # Batched: micro-batches of other sizes than the engine's steps may take other kernel paths
  # (GEMV vs GEMM, see docs/gpu.md "Batch invariance"): reported, not a gate.
  t tiny-b4-1gpu 120 "${ONE[@]}" "$B/run" tiny.bin -z "$TOK" -T 0 --ignore-eos -c 1024 --backend gpu -m getp -i in.txt -o b4-ref.txt -n 24 -b 4 --chunk 8
  t tiny-b4-np3 120 "${MPI[@]}" -np 3 "$B/run" tiny.bin --dp 1 -z "$TOK" -T 0 --ignore-eos -c 1024 --backend gpu -m getp \
      -i in.txt -o b4-np3.txt -n 24 -b 4 --chunk 8 --micro-batches 5 || bad "tiny np3 exit"
  grep -m1 "^pipeline:" "$O/tiny-b4-np3.log"
  echo "info: 3 ranks on 2 GPUs, -b 4 --micro-batches 5 --chunk 8 vs 1 GPU -b 4 --chunk 8:" \
       "$(diff b4-ref.txt b4-np3.txt | grep -c '^<') of $(wc -l < b4-ref.txt) lines differ"
fi
if has headsplit; then
  echo "=== headsplit ($(date +%T))"
  prompts 6 30 hs-in.txt
  # rows chosen from the slices / from rank 0's whole head (rank 0's --profile line)
  hs_counts() { sed -n "s/^pipeline profile rank 0: head split: \([0-9]*\) rows chosen from the slices' candidates, \([0-9]*\) from the whole head\$/\1 \2/p" "$1"; }
  for samp in "-T 0" "-T 0.8 --top-k 20 -s 7" "-T 1.1 --top-k 64 -p 0.9 -s 3"; do
    tag=$(echo "$samp" | tr -d ' .-'); tag=${tag:0:12}
    hargs=(-z "$TOK" --ignore-eos -c 1024 --backend gpu -m getp -i hs-in.txt -n 24 -b 1)
    # shellcheck disable=SC2086
    t "hs-$tag-1gpu" 120 "${ONE[@]}" "$B/run" tiny.bin "${hargs[@]}" $samp -o "hs-$tag-ref.txt"
    # shellcheck disable=SC2086
    t "hs-$tag-np2" 180 "${MPI[@]}" -np 2 "$B/run" tiny.bin "${hargs[@]}" $samp --head-split on \
        --dp 1 --profile -o "hs-$tag-np2.txt" || bad "headsplit ($samp): np2 exit"
    grep -m1 "^pipeline:" "$O/hs-$tag-np2.log"
    grep -q "LM head split over the ranks" "$O/hs-$tag-np2.log" ||
      bad "headsplit ($samp): the start-up line names no head split"
    read -r sl wh <<<"$(hs_counts "$O/hs-$tag-np2.log")"
    if [ -n "$sl" ] && [ "$sl" -gt 0 ] && [ "$wh" -eq 0 ]; then
      ok "headsplit ($samp): $sl rows chosen from the slices, none from the whole head"
    else
      bad "headsplit ($samp): rows from the slices '$sl', from the whole head '$wh'"
    fi
    same "headsplit ($samp): 2 ranks --head-split on (getp -b 1) equal 1 GPU" "hs-$tag-ref.txt" "hs-$tag-np2.txt"
  done
  hb=(-z "$TOK" -T 0 --ignore-eos -c 1024 --backend gpu -m getp -i hs-in.txt -n 24 -b 4 --chunk 8)
  t hs-b4-whole 120 "${MPI[@]}" -np 2 "$B/run" tiny.bin "${hb[@]}" --dp 1 --head-split off -o hs-b4-whole.txt
  t hs-b4-split 120 "${MPI[@]}" -np 2 "$B/run" tiny.bin "${hb[@]}" --dp 1 --head-split on -o hs-b4-split.txt ||
    bad "headsplit -b 4: np2 exit"
  echo "info: -b 4 --chunk 8, 2 ranks, --head-split on vs off:" \
       "$(diff hs-b4-whole.txt hs-b4-split.txt | grep -c '^<') of $(wc -l < hs-b4-whole.txt) lines differ"
fi
if has 20b; then
  echo "=== 20b ($(date +%T))"
  prompts 3 50 in.txt
  equal_runs 20b 20b.bin 32 1 quick
fi

# ---- a rank that dies ----
if has kill; then
  echo "=== kill ($(date +%T))"
  prompts 64 200 in.txt
  t0=$SECONDS
  timeout -k 5 120 "${MPI[@]}" -np 2 "$B/run" 20b.bin --dp 1 -z "$TOK" --backend gpu -m getp -i in.txt \
      -o kill.txt -n 2000 -b 64 -c 4096 --ignore-eos > "$O/kill.log" 2>&1 &
  JOB=$!
  victim=""
  for _ in $(seq 1 60); do
    sleep 1
    for p in $(pgrep -f "run 20b.bin"); do
      tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=$p
    done
    [ -n "$victim" ] && grep -q "pipeline:" "$O/kill.log" && break
  done
  sleep 5
  tk=$SECONDS
  [ -n "$victim" ] && kill -9 "$victim"
  wait $JOB
  rc=$?
  echo "rc=$rc killed_pid=$victim end_after_kill_s=$((SECONDS - tk))" >> "$O/kill.log"
  keep kill
  if [ -n "$victim" ] && [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $((SECONDS - tk)) -le 30 ]; then
    ok "kill: rank 1 SIGKILLed, job ended in $((SECONDS - tk)) s with exit $rc"
  else
    bad "kill: victim '$victim' rc=$rc after $((SECONDS - tk)) s"
  fi
  pgrep -f "run 20b.bin" && bad "kill: processes left over"
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader
fi

# ---- throughput ----
tps() { grep -oE "[0-9.]+ tok/s" "$1" | tail -1; }
if has perf; then  # batch-1 decode: 1 GPU vs 2 ranks (the difference is the two hops per token)
  echo "=== perf ($(date +%T))"
  for r in 1 2; do
    pre=("${ONE[@]}"); [ $r = 2 ] && pre=("${MPI[@]}" -np 2)
    t_out dec$r 200 dec$r.txt "${pre[@]}" "$B/run" 20b.bin --dp 1 -z "$TOK" --backend gpu -m generate \
      -i "Tell me a long story." -n 512 --ignore-eos -T 0 -c 2048
    echo "batch-1 decode, $r rank(s): $(grep -E 'tok/s' "$O/dec$r.log" | tail -1)"
  done
  grep -E "^pipeline|busy|stage" "$O/dec2.log" | head -5
fi
if has sweep; then  # getp throughput over 1 and 2 ranks (launch/sweep.py, CSV)
  echo "=== sweep ($(date +%T))"
  prompts ${SWEEP_PROMPTS:-256} 500 big.txt
  GPTOSS_BIND=none timeout 560 python3 "$HERE/launch/sweep.py" --run "$B/run" --model 20b.bin \
    --prompts big.txt --ranks 1,2 --micro-batches 2 --batch ${SWEEP_BATCH:-256} \
    --csv "$R/scaling-gpu.csv" --png /tmp/none.png --timeout 240 \
    -- -z "$TOK" --backend gpu -n 256 -c 2048 --ignore-eos > "$O/sweep.log" 2>&1
  echo "sweep rc=$?" >> "$O/sweep.log"; keep sweep
  cat "$R/scaling-gpu.csv"
fi
# getp at one batch per rank count (GETP_RUNS: "ranks:batch[:layers]" ...), with rank 0's host
# profile (--profile)
if has getp; then
  echo "=== getp ($(date +%T))"
  prompts ${GETP_PROMPTS:-1024} 500 big.txt
  for spec in ${GETP_RUNS:-1:256 1:512 2:512 2:1024}; do
    IFS=: read -r nr bt lay <<<"$spec"
    pre=("${ONE[@]}"); [ "$nr" -gt 1 ] && pre=("${MPI[@]}" -np "$nr")
    extra=(); [ -n "$lay" ] && extra=(--layers "$lay")
    name=getp-r$nr-b$bt${lay:+-l${lay/,/-}}
    t "$name" 240 "${pre[@]}" "$B/run" 20b.bin -z "$TOK" --backend gpu -m getp -i big.txt -o g.txt \
      -n 256 -b "$bt" -c 2048 --ignore-eos --profile "${extra[@]}"
    echo "$name: $(grep -E '^getp: generated' "$O/$name.log")"
    grep -E "^pipeline|^stage|profile" "$O/$name.log"
  done
fi

# ---- issue 7: the scaling sweep over 1..4 (or 8) GPUs ----
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU")
scale() {  # model rows_per_mb prompts new_tokens per_run_timeout_s
  local M=$1 rows=$2 np=$3 nn=$4 tt=$5
  local ranks=${SCALE_RANKS:-}
  if [ -z "$ranks" ]; then
    ranks=1; for n in 2 4 8; do [ "$n" -le "$NGPU" ] && ranks+=",$n"; done
  fi
  echo "=== scale $M ($(date +%T)): ranks $ranks, $rows rows per micro-batch, $np prompts, $nn new"
  prompts "$np" 100 scale.txt
  local base=${M%.bin}
  GPTOSS_BIND_VERBOSE=1 timeout -k 10 "${SCALE_TIMEOUT:-560}" python3 "$HERE/launch/sweep.py" \
    --run "$B/run" --model "$M" --prompts scale.txt --ranks "$ranks" \
    --micro-batches 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 --mb-max-per-rank 2 \
    --batch-per-mb "$rows" --decode 256 --decode-args "-z $TOK --backend gpu -c 1024" \
    --csv "$R/scaling-$base.csv" --png /tmp/none.png --timeout "$tt" --log-dir "$R/sweep-$base" \
    -- -z "$TOK" --backend gpu -n "$nn" -c 512 --ignore-eos --profile > "$O/scale-$base.log" 2>&1
  echo "sweep rc=$?" >> "$O/scale-$base.log"
  if [ -n "${SCALE_ONE_GPU_BATCHES:-}" ]; then  # one GPU at other batches too (its best concurrency)
    timeout -k 10 "${SCALE_TIMEOUT:-560}" python3 "$HERE/launch/sweep.py" \
      --run "$B/run" --model "$M" --prompts scale.txt --ranks 1 --batch "$SCALE_ONE_GPU_BATCHES" \
      --csv "$R/scaling-$base.csv" --png /tmp/none.png --timeout "$tt" --log-dir "$R/sweep-$base" \
      -- -z "$TOK" --backend gpu -n "$nn" -c 512 --ignore-eos --profile >> "$O/scale-$base.log" 2>&1
    echo "sweep (one GPU) rc=$?" >> "$O/scale-$base.log"
  fi
  keep "scale-$base"
  grep -E "^sweep: (getp|batch-1)|failed" "$O/scale-$base.log"
}
if has scale20b; then
  scale 20b.bin "${SCALE_ROWS:-512}" "${SCALE_PROMPTS:-2048}" "${SCALE_NEW:-128}" 150
fi
rm -f 20b.bin

# ---- 120b ----
if has 120b || has 120b1 || has scale120b; then
  echo "=== 120b ($(date +%T))"
  t write120b 300 "$B/bench-engine" --synthetic 120b --out 120b.bin --write-only
  tail -2 "$O/write120b.log"
  ls -la 120b.bin
fi
if has scale120b; then
  scale 120b.bin "${SCALE_ROWS:-256}" "${SCALE_PROMPTS:-1024}" "${SCALE_NEW:-64}" 200
fi
if has 120b || has 120b1; then
  G=(-z "$TOK" --backend gpu -m generate -i "The pipeline on GPUs" -n 128 -T 0 --ignore-eos -c 1024)
  if has 120b1; then
    t_out 120b-gen1 300 g1.txt "${ONE[@]}" "$B/run" 120b.bin "${G[@]}"
    echo "120b 1 GPU: $(grep -E 'tok/s' "$O/120b-gen1.log" | tail -1)"
  fi
  t_out 120b-gen2 300 g2.txt "${MPI[@]}" -np 2 "$B/run" 120b.bin "${G[@]}" || bad "120b np2 exit"
  grep -E "^gpu|^pipeline" "$O/120b-gen2.log"
  echo "120b 2 GPUs batch-1 decode: $(grep -E 'tok/s' "$O/120b-gen2.log" | tail -1)"
  has 120b1 && same "120b: generate on 2 GPUs equals 1 GPU" g1.txt g2.txt
  prompts 128 500 p120.txt
  t 120b-getp 400 "${MPI[@]}" -np 2 "$B/run" 120b.bin -z "$TOK" --backend gpu -m getp -i p120.txt -o o120.txt -n 256 -b 128 -c 1024 --ignore-eos
  echo "120b 2 GPUs getp: $(grep -E 'tok/s' "$O/120b-getp.log" | tail -1)"
  grep -E "stage [0-9]|busy" "$O/120b-getp.log" | head -4
  rm -f 120b.bin
fi
cd / && rm -rf $W
echo "run_gpu_pipeline: $fails failure(s)"
[ $fails = 0 ]
