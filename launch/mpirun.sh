#!/usr/bin/env bash
# mpirun.sh -n RANKS [MPIRUN OPTIONS...] -- PROGRAM [ARGS...]
# Workstation launcher: runs RANKS ranks of PROGRAM on this machine with Open MPI's mpirun, each
# through launch/bind.sh (one GPU per rank from its local rank, CPU cores nearest that GPU; on the
# CPU backend an even split of the cores). mpirun's own binding is off so bind.sh decides.
# Adds --oversubscribe when RANKS exceeds the cores, and --allow-run-as-root as root.
# Example: launch/mpirun.sh -n 4 -- build/run model.bin -m getp -i prompts.txt
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ranks="" extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n|-np) ranks=$2; shift 2 ;;
    --) shift; break ;;
    *) extra+=("$1"); shift ;;
  esac
done
[ -n "$ranks" ] && [ $# -ge 1 ] || { echo "usage: mpirun.sh -n RANKS [mpirun options] -- PROGRAM [ARGS...]" >&2; exit 2; }
opts=(-np "$ranks" --bind-to none --map-by slot)
[ "$ranks" -gt "$(nproc)" ] && opts+=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && opts+=(--allow-run-as-root)
exec mpirun "${opts[@]}" "${extra[@]}" "$here/bind.sh" "$@"
