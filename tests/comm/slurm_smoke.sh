#!/usr/bin/env bash
# slurm_smoke.sh [-n RANKS] [--compare] [--compare-file FILE] [--timeout S] -- COMMAND [ARGS...]
# Runs COMMAND as RANKS (default 3) MPI ranks under a real Slurm:
#   srun -n RANKS -O --mpi=pmix --kill-on-bad-exit=1 COMMAND ARGS
# and passes if the step exits 0 within the timeout (default 120 s). With --compare it also runs
# COMMAND once as a single process (no launcher: a world of one) and passes only if the srun
# run's standard output is byte-identical to it (e.g. `run TINY -m getp ...`, which prints on
# rank 0 only). --compare-file FILE (implies --compare) also requires the FILE that COMMAND writes
# (e.g. getp's -o output) to be byte-identical between the two runs.
# Slurm: uses $SLURM_CONF if set; otherwise starts launch/slurm-local.sh (root only) and stops it
# again at the end.
# Examples:
#   tests/comm/slurm_smoke.sh -- build/comm_transport_test
#   tests/comm/slurm_smoke.sh --compare-file out.txt -- build/run build/test-data/tiny.bin -m getp -i p.txt -o out.txt
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ranks=3 compare=0 limit=120 file=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n) ranks=$2; shift 2 ;;
    --compare) compare=1; shift ;;
    --compare-file) compare=1; file=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "slurm_smoke: unknown option $1" >&2; exit 2 ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: slurm_smoke.sh [-n RANKS] [--compare] [--compare-file FILE] [--timeout S] -- COMMAND [ARGS...]" >&2; exit 2; }

started=0
if [ -z "${SLURM_CONF:-}" ]; then
  line=$("$root/launch/slurm-local.sh" start) || { echo "slurm_smoke: FAIL: could not start Slurm" >&2; exit 1; }
  eval "$line"
  started=1
fi
work=$(mktemp -d)
cleanup() {
  rm -rf "$work"
  [ "$started" = 1 ] && "$root/launch/slurm-local.sh" stop
}
trap cleanup EXIT

echo "slurm_smoke: SLURM_CONF=$SLURM_CONF; $(sinfo -h -o '%n %t %c CPUs' | head -1)"
echo "slurm_smoke: srun -n $ranks -O --mpi=pmix --kill-on-bad-exit=1 $*"
timeout -k 5 "$limit" srun -n "$ranks" -O --mpi=pmix --kill-on-bad-exit=1 "$@" >"$work/srun.out" 2>"$work/srun.err"
rc=$?
cat "$work/srun.out"
cat "$work/srun.err" >&2
if [ "$rc" -ne 0 ]; then
  echo "slurm_smoke: FAIL: srun exited $rc$([ "$rc" -eq 124 ] && echo " (timed out after $limit s)")"
  exit 1
fi
if [ -n "$file" ]; then
  [ -f "$file" ] || { echo "slurm_smoke: FAIL: the srun run wrote no $file"; exit 1; }
  mv "$file" "$work/srun.file"
fi
if [ "$compare" = 1 ]; then
  echo "slurm_smoke: single process: $*"
  timeout -k 5 "$limit" "$@" >"$work/single.out" 2>"$work/single.err"
  rc=$?
  if [ "$rc" -ne 0 ]; then
    cat "$work/single.err" >&2
    echo "slurm_smoke: FAIL: single-process run exited $rc"
    exit 1
  fi
  if ! cmp -s "$work/single.out" "$work/srun.out"; then
    diff "$work/single.out" "$work/srun.out" | head -20
    echo "slurm_smoke: FAIL: $ranks-rank output differs from the single-process output"
    exit 1
  fi
  echo "slurm_smoke: $ranks-rank output equals the single-process output ($(wc -c <"$work/srun.out") bytes)"
  if [ -n "$file" ]; then
    if ! cmp -s "$file" "$work/srun.file"; then
      diff "$file" "$work/srun.file" | head -20
      echo "slurm_smoke: FAIL: $file from $ranks ranks differs from the single-process one"
      exit 1
    fi
    echo "slurm_smoke: $file from $ranks ranks equals the single-process one ($(wc -c <"$file") bytes)"
  fi
fi
echo "slurm_smoke: PASS"
