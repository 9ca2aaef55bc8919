#!/usr/bin/env bash
# slurm_spawn.sh BUILD_DIR: one Slurm task that sees 2 GPUs (the stand-in
# GPTOSS_VISIBLE_GPUS_STANDIN=2; the course cluster's `srun --gres=gpu:8 ./run ...`): its launcher
# started one rank, so `run` must stop at once with exit 1 and one error line that gives the srun
# command that would use both; with --no-spawn the same task runs as one rank and equals the
# plain single-process output. Starts the local one-node Slurm (launch/slurm-local.sh; root)
# unless $SLURM_CONF is set, and stops it again.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: slurm_spawn.sh BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd) || exit 2
root=$(cd "$(dirname "$0")/../.." && pwd)
run=$build/run model=$build/test-data/tiny.bin tok=$build/test-data/tokenizer.bin
for f in "$run" "$model" "$tok"; do
  [ -e "$f" ] || { echo "slurm_spawn: FAIL: $f missing (build run and run ctest first)"; exit 1; }
done
started=0
if [ -z "${SLURM_CONF:-}" ]; then
  line=$("$root/launch/slurm-local.sh" start) || { echo "slurm_spawn: FAIL: could not start Slurm"; exit 1; }
  eval "$line"
  started=1
fi
work=$(mktemp -d)
cleanup() { cd / && rm -rf "$work"; [ "$started" = 1 ] && "$root/launch/slurm-local.sh" stop >/dev/null; }
trap cleanup EXIT
cd "$work" || exit 1
export OMP_NUM_THREADS=1
printf '2\nSlurm spawn prompt one\nSlurm spawn prompt two\n' >p.txt
fail() { echo "slurm_spawn: FAIL: $*"; cat err.txt 2>/dev/null; exit 1; }
timeout 60 srun -n 1 --mpi=pmix --export=ALL,GPTOSS_VISIBLE_GPUS_STANDIN=2 \
    "$run" "$model" -z "$tok" -m getp -i p.txt -o out.txt -n 8 >out.log 2>err.txt
rc=$?
[ "$rc" -eq 1 ] || fail "expected exit 1, got $rc"
[ "$(grep -c '^run: error' err.txt)" -eq 1 ] || fail "not exactly one error line"
grep -q "^run: error: this process sees 2 GPUs but Slurm started it as one task: to use all 2 run \`srun -n 2 --mpi=pmix $run $model -z $tok -m getp -i p.txt -o out.txt -n 8\`; --no-spawn uses one$" err.txt \
  || fail "the error line does not give the srun command"
[ ! -e out.txt ] || fail "OUT written"
"$run" "$model" -z "$tok" -m getp -i p.txt -o ref.txt -n 8 2>ref.log || fail "one process: exit $?"
timeout 60 srun -n 1 --mpi=pmix --export=ALL,GPTOSS_VISIBLE_GPUS_STANDIN=2 \
    "$run" "$model" -z "$tok" -m getp -i p.txt -o out.txt -n 8 --no-spawn >out.log 2>err.txt \
  || fail "--no-spawn under srun: exit $?"
cmp -s ref.txt out.txt || fail "--no-spawn under srun: OUT differs from one process"
echo "slurm_spawn: PASS: one task seeing 2 GPUs stops with the srun command; --no-spawn runs as one rank"
