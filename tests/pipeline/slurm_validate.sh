#!/usr/bin/env bash
# slurm_validate.sh BUILD_DIR: a dry run of slurm/mi250-validate.sbatch under a real Slurm on a
# machine without a GPU (the local one-node Slurm of launch/slurm-local.sh, started here unless
# $SLURM_CONF is set, and stopped again). Submits
#   sbatch --wait --export=ALL,BUILD=BUILD_DIR,ALLOW_NO_GPU=1 [no GPUs, 1 CPU per task, -O]
#          slurm/mi250-validate.sbatch
# and checks the job's output: step 1 reports that no GPU is present, every GPU step is a SKIP
# saying so, the launch-limit step passes, the golden and ring steps pass on the CPU backend
# (their dry runs), and the verdict line says NOT VALIDATED; the job exits 0 (ALLOW_NO_GPU=1).
# Needs BUILD_DIR's run, export-model, launch_limits_test, golden_test and a tokenizer.bin
# (launch/setup.sh + ctest make them). Exits non-zero on any failure.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: slurm_validate.sh BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd) || exit 2
root=$(cd "$(dirname "$0")/../.." && pwd)
for f in run export-model launch_limits_test golden_test; do
  [ -x "$build/$f" ] || { echo "slurm_validate: FAIL: $build/$f missing (build it first)"; exit 1; }
done
started=0
if [ -z "${SLURM_CONF:-}" ]; then
  line=$("$root/launch/slurm-local.sh" start) || { echo "slurm_validate: FAIL: could not start Slurm"; exit 1; }
  eval "$line"
  started=1
fi
work=$(mktemp -d)
cleanup() {
  rm -rf "$work"
  [ "$started" = 1 ] && "$root/launch/slurm-local.sh" stop
}
trap cleanup EXIT

# The sbatch file asks for an MI250 node (2 GPUs, 8 CPUs per task, 64 GB); the command line
# overrides that for this machine: no GPUs, one CPU per task, whatever memory it has, overcommit.
echo "slurm_validate: sbatch --wait slurm/mi250-validate.sbatch (BUILD=$build, ALLOW_NO_GPU=1)"
timeout -k 5 900 sbatch --wait --chdir="$work" --output="$work/validate.out" \
  --gpus-per-node=0 --cpus-per-task=1 --mem=0 --overcommit \
  --export=ALL,GPTOSS_ROOT="$root",BUILD="$build",ALLOW_NO_GPU=1,OUT_DIR="$work/logs",OMP_NUM_THREADS=1 \
  "$root/slurm/mi250-validate.sbatch" > "$work/sbatch.txt" 2>&1
rc=$?
cat "$work/sbatch.txt"
cat "$work/validate.out" 2>/dev/null || { echo "slurm_validate: FAIL: the job wrote no output"; exit 1; }
fails=0
expect() {  # WHAT REGEX
  if grep -qE "$2" "$work/validate.out"; then echo "slurm_validate: ok: $1"; else echo "slurm_validate: FAIL: $1 (no line matching /$2/)"; fails=$((fails + 1)); fi
}
[ "$rc" -eq 0 ] || { echo "slurm_validate: FAIL: sbatch --wait exited $rc"; fails=$((fails + 1)); }
expect "step 1 says no GPU is present" '^\[1/7\] gpu: run finds a GPU +FAIL'
expect "... and why" '^ +no GPU present: .*(no GPU backend|no GPU found|sees no GPU)'
expect "launch limits pass" '^\[2/7\] limits: launch shapes +PASS'
for s in "3/7\] kernels" "4/7\] engine" "5/7\] golden" "6/7\] ring" "7/7\] bench"; do
  expect "${s%%\\*} skipped: no GPU" "^\[$s.* SKIP \(no GPU present \(step 1\)\)"
done
expect "golden dry run on the CPU passes" '^\[5/7\] +\(dry run on the CPU backend\) +PASS'
expect "ring dry run (srun -n 2) on the CPU passes" '^\[6/7\] +\(dry run on the CPU backend\) +PASS'
expect "verdict: not validated, no GPU" '^validate: NOT VALIDATED: no GPU present'
grep -q '"ranks": 2,' "$work/logs/ring-cpu.log" && echo "slurm_validate: ok: the ring dry run was a 2-rank ring" ||
  { echo "slurm_validate: FAIL: the ring dry run was not a 2-rank ring"; fails=$((fails + 1)); }
[ "$fails" -eq 0 ] || { echo "slurm_validate: FAIL ($fails checks)"; exit 1; }
echo "slurm_validate: PASS: mi250-validate.sbatch ran under Slurm and reported every GPU step as 'no GPU present'"
