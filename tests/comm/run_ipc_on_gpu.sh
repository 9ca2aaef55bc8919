#!/bin/bash
# run_ipc_on_gpu.sh: the device ring's checks (GPU IPC, host-staged MPI, the one-rank loopback)
# on a machine with two GPUs of one host
# (issue 6, "Transport"), from binaries built here with -DGPU_BACKEND=CUDA and copied into one
# folder BINDIR: comm_ipc_transport_test, comm_ipc_bench (and mpi/lib, Open MPI's libraries, used
# only if the machine's own are missing). Logs go to $OUT (or ./ipc-out); the summary to stdout.
# Usage: tests/comm/run_ipc_on_gpu.sh BINDIR
# Steps (each under `timeout`, so nothing can hang; mpirun ends the job when a rank dies):
#   np2      the test suite on 2 ranks, one GPU each (links 0->1 and 1->0 over GPU IPC)
#   np1      the test suite on 1 rank (the loopback with device slots, IpcTransportLoopback.*)
#   fallback the test suite on 2 ranks with --transport=mpi (MPI host-staged links)
#   bench    one-way time / bandwidth table, GPU IPC and the MPI fallback
#   deadpeer rank 1 of a running benchmark is SIGKILLed: the job must end within 30 s
B=${1:?usage: run_ipc_on_gpu.sh BINDIR}
B=$(cd "$B" && pwd)
O=${OUT:-ipc-out}
mkdir -p "$O"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=$(command -v mpirun || echo "$B/mpi/bin/mpirun")
if ldd "$B/comm_ipc_transport_test" | grep -q "not found"; then export LD_LIBRARY_PATH="$B/mpi/lib"; fi
{
  date; hostname
  nvidia-smi --query-gpu=index,name,pci.bus_id,memory.total --format=csv 2>&1
  nvidia-smi topo -m 2>&1
  "$MPIRUN" --version 2>&1 | head -2
  ldd "$B/comm_ipc_transport_test" | grep -E "not found|mpi|cudart"
} > "$O/env.log" 2>&1
head -4 "$O/env.log" | tail -3
MPI=("$MPIRUN" --bind-to none)

t() {  # name, timeout_s, command...: runs it, keeps the log, prints a summary
  local name=$1 tt=$2; shift 2
  echo "=== $name ($(date +%T))"
  local t0=$SECONDS
  timeout -k 10 "$tt" "$@" > "$O/$name.log" 2>&1
  local rc=$?
  echo "rc=$rc wall_s=$((SECONDS - t0))" >> "$O/$name.log"
  grep -E "^ring:|^\[       OK \]|^\[  (FAILED|PASSED) |^\[  SKIPPED \] [0-9]+ test|FAILED  \]|Failure|error:|^rc=" \
    "$O/$name.log" | head -40
  [ $rc = 124 ] && echo "$name: TIMED OUT after $tt s"
  return 0
}

t np2 120 "${MPI[@]}" -np 2 "$B/comm_ipc_transport_test" --gtest_color=no
t np1 90 "${MPI[@]}" -np 1 "$B/comm_ipc_transport_test" --gtest_color=no
t fallback 120 "${MPI[@]}" -np 2 "$B/comm_ipc_transport_test" --gtest_color=no --transport=mpi

echo "=== bench ($(date +%T))"
timeout -k 10 90 "${MPI[@]}" -np 2 "$B/comm_ipc_bench" --rows 1,16,64,256,512 --iters 2000 \
  > "$O/bench.log" 2>&1; echo "rc=$?" >> "$O/bench.log"
timeout -k 10 60 "${MPI[@]}" -np 2 "$B/comm_ipc_bench" --transport mpi --rows 1,64,512 \
  --iters 500 > "$O/bench_mpi.log" 2>&1; echo "rc=$?" >> "$O/bench_mpi.log"
grep -E "^rank|^\||^rc=|error" "$O/bench.log"
grep -E "^\| mpi|^rc=|error" "$O/bench_mpi.log"

echo "=== deadpeer ($(date +%T))"
t0=$SECONDS
timeout -k 5 40 "${MPI[@]}" -np 2 "$B/comm_ipc_bench" --rows 64 --iters 100000000 \
  > "$O/deadpeer.log" 2>&1 &
JOB=$!
sleep 8
VICTIM=""
for p in $(pgrep -x comm_ipc_bench); do  # this script's ranks only: rank 1 by its environment
  if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then VICTIM=$p; fi
done
if [ -n "$VICTIM" ]; then
  kill -9 "$VICTIM"
  t1=$SECONDS
  wait $JOB; rc=$?
  echo "deadpeer: killed rank 1 (pid $VICTIM); job ended after $((SECONDS - t1)) s, rc=$rc (124 = hung until timeout)" | tee -a "$O/deadpeer.log"
else
  wait $JOB; echo "deadpeer: rank 1 not found (benchmark already ended?) rc=$?" | tee -a "$O/deadpeer.log"
fi
tail -5 "$O/deadpeer.log"
# Fold the small logs into one (few files come back from the machine).
for f in env.log np1.log fallback.log bench_mpi.log deadpeer.log; do
  [ -f "$O/$f" ] && { echo "##### $f"; cat "$O/$f"; rm -f "$O/$f"; }
done > "$O/misc.log"
