#!/usr/bin/env bash
# getp-job.sh: the common body of the sbatch scripts in slurm/ (run inside the allocation).
# Prints where the job landed (node, GPUs, NUMA), then runs getp with one rank per task:
#   launch/srun.sh -- $RUN $MODEL -m getp -i $PROMPTS -o $OUT -b $BATCH [--dp $DP] $RUN_ARGS
# Settings (environment; sbatch passes the submitting shell's environment by default):
#   GPTOSS_ROOT  repository root (default: the folder sbatch was called from)
#   RUN          the run program (default $GPTOSS_ROOT/build/run)
#   MODEL        model file (required)
#   PROMPTS      getp prompt file (required)
#   OUT          output file (default getp-<jobid>.txt)
#   BATCH        concurrent sequences (default 32; per ring with DP)
#   DP           data-parallel rings (run --dp): the tasks form DP rings of tasks/DP ranks each,
#                e.g. DP=8 on 8 GCDs runs 20b as eight single-GCD replicas; unset: one ring
#   RUN_ARGS     extra arguments for run, e.g. "--backend gpu --micro-batches 8"
set -euo pipefail
root=${GPTOSS_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
cd "$root"
: "${MODEL:?set MODEL=/path/to/model.bin (sbatch --export=ALL,MODEL=...)}"
: "${PROMPTS:?set PROMPTS=/path/to/prompts.txt}"
RUN=${RUN:-$root/build/run}
OUT=${OUT:-getp-${SLURM_JOB_ID:-local}.txt}
BATCH=${BATCH:-32}

echo "job ${SLURM_JOB_ID:-?} on ${SLURM_JOB_NODELIST:-$(hostname)}: ${SLURM_NTASKS:-?} tasks," \
     "GPUs ${ROCR_VISIBLE_DEVICES:-${CUDA_VISIBLE_DEVICES:-${SLURM_JOB_GPUS:-none}}}"
if command -v rocm-smi >/dev/null 2>&1; then rocm-smi --showtoponuma 2>/dev/null | grep -i numa || true; fi
export GPTOSS_BIND_VERBOSE=${GPTOSS_BIND_VERBOSE:-1}  # one line per rank: GPU and cores it got
# shellcheck disable=SC2086  # RUN_ARGS is a list of words
dp_args=()
[ -n "${DP:-}" ] && dp_args=(--dp "$DP")
exec "$root/launch/srun.sh" -- "$RUN" "$MODEL" -m getp -i "$PROMPTS" -o "$OUT" -b "$BATCH" \
    "${dp_args[@]}" ${RUN_ARGS:-}
