#!/usr/bin/env bash
# slurm_getp.sh BUILD_DIR [RANKS [DP]]: the ring pipeline under a real Slurm (CI runs it after ctest).
# Starts the local one-node Slurm (launch/slurm-local.sh; root) unless $SLURM_CONF is set, runs
#   srun -n RANKS -O --mpi=pmix --kill-on-bad-exit=1 BUILD_DIR/run TINY -m getp -i P -o out.txt
# (RANKS default 3) through tests/comm/slurm_smoke.sh, which also runs the same command as one
# process and requires stdout and out.txt to be byte-identical; then checks that the srun run
# really was a RANKS-stage ring. With DP: `--dp DP` (DP rings of RANKS/DP ranks), and out.txt must
# equal the single-process run's without --dp. Stops Slurm again; exits non-zero on any failure or
# mismatch.
# Needs the test data that ctest's fixtures write: BUILD_DIR/test-data/{tiny,tokenizer}.bin.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: slurm_getp.sh BUILD_DIR [RANKS]" >&2; exit 2; }
build=$(cd "$1" && pwd) || exit 2
ranks=${2:-3}
dp=${3:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
run=$build/run model=$build/test-data/tiny.bin tok=$build/test-data/tokenizer.bin
for f in "$run" "$model" "$tok"; do
  [ -e "$f" ] || { echo "slurm_getp: FAIL: $f missing (build run and run ctest first)"; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
{ echo 6; for i in 1 2 3 4 5; do echo "Slurm prompt $i: the quick brown fox jumps over the lazy dog $i"; done
  echo "A longer prompt, prefilled in chunks across the ring: one two three four five six seven eight"; } >p.txt
export OMP_NUM_THREADS=1
args=(-m getp -i p.txt -n 16 -b 4 --chunk 16)
if [ "$dp" -eq 1 ]; then
  "$root/tests/comm/slurm_smoke.sh" -n "$ranks" --compare-file out.txt -- \
      "$run" "$model" -z "$tok" "${args[@]}" -o out.txt >log.txt 2>&1
else
  # A world of one cannot take --dp DP: the reference is the plain single-process run.
  "$run" "$model" -z "$tok" "${args[@]}" -o ref.txt 2>ref.log || { cat ref.log; echo "slurm_getp: FAIL (reference)"; exit 1; }
  "$root/tests/comm/slurm_smoke.sh" -n "$ranks" -- \
      "$run" "$model" -z "$tok" "${args[@]}" --dp "$dp" -o out.txt >log.txt 2>&1
fi
rc=$?
cat log.txt
[ "$rc" -eq 0 ] || { echo "slurm_getp: FAIL (slurm_smoke exit $rc)"; exit 1; }
if [ "$dp" -ne 1 ]; then
  cmp -s ref.txt out.txt || { echo "slurm_getp: FAIL: srun -n $ranks --dp $dp output differs from one process"; exit 1; }
fi
grep -q "\"rings\": $dp, \"ranks\": $ranks," log.txt || { echo "slurm_getp: FAIL: the srun run was not $dp ring(s) of $ranks ranks"; exit 1; }
stages=$((ranks / dp))
[ "$stages" -eq 1 ] || [ "$(grep -c '^stage [0-9]* busy' log.txt)" -ge "$stages" ] || { echo "slurm_getp: FAIL: no per-stage report"; exit 1; }
echo "slurm_getp: PASS: srun -n $ranks$([ "$dp" -ne 1 ] && echo " --dp $dp") getp output equals the single-process output ($(wc -l <out.txt) lines)"
