#!/usr/bin/env bash
# expect_job_fails.sh MAX_S PATTERN -- COMMAND...
# Runs COMMAND (an mpirun/srun job that has a fault injected) and passes only if it exits non-zero
# within MAX_S seconds and its output (stdout+stderr) matches the extended regex PATTERN (the
# message naming the rank and the cause). A job still running after MAX_S + 10 s is killed: a hang.
set -u
max_s=$1 pattern=$2
shift 2
[ "${1:-}" = "--" ] && shift
out=$(mktemp)
start=$(date +%s.%N)
timeout -k 5 $((max_s + 10)) "$@" >"$out" 2>&1
rc=$?
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
cat "$out"
echo "expect_job_fails: exit $rc after ${elapsed} s"
fail=0
if [ "$rc" -eq 0 ]; then echo "expect_job_fails: FAIL: the job succeeded"; fail=1; fi
# (137 = 128 + SIGKILL is also what mpirun returns when a rank was killed: tell a hang by time.)
if [ "$rc" -eq 124 ] || awk -v e="$elapsed" -v m="$max_s" 'BEGIN { exit !(e >= m + 10) }'; then
  echo "expect_job_fails: FAIL: the job hung (killed by timeout)"; fail=1
elif awk -v e="$elapsed" -v m="$max_s" 'BEGIN { exit !(e > m) }'; then
  echo "expect_job_fails: FAIL: took ${elapsed} s, limit ${max_s} s"; fail=1
fi
if ! grep -Eq -- "$pattern" "$out"; then echo "expect_job_fails: FAIL: no line matches /$pattern/"; fail=1; fi
rm -f "$out"
[ "$fail" -eq 0 ] && echo "expect_job_fails: PASS"
exit "$fail"
