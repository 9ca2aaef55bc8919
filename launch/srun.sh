#!/usr/bin/env bash
# srun.sh [SRUN OPTIONS...] -- PROGRAM [ARGS...]
# Slurm launcher (inside an sbatch/salloc allocation, or with -n for a fresh job step): srun with
# PMIx for Open MPI, every rank through launch/bind.sh (one GPU + nearest cores per rank), and
# --kill-on-bad-exit so a rank that fails or dies ends the whole step at once (no hang).
# Slurm's own CPU binding is off (bind.sh binds); without -n the allocation's task count is used.
# Example (in an sbatch script): launch/srun.sh -- ./run model.bin -m getp -i prompts.txt
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    *) extra+=("$1"); shift ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: srun.sh [srun options] -- PROGRAM [ARGS...]" >&2; exit 2; }
opts=(--mpi=pmix --kill-on-bad-exit=1)
# Turn Slurm's own binding off unless the cluster has no task plugin at all (then srun would warn).
case "$(scontrol show config 2>/dev/null | awk '$1 == "TaskPlugin" { print $3 }')" in
  task/none) ;;
  *) opts+=(--cpu-bind=none) ;;
esac
exec srun "${opts[@]}" "${extra[@]}" "$here/bind.sh" "$@"
