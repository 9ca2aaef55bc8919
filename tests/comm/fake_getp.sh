#!/bin/sh
# fake_getp.sh: stands in for `run MODEL -m getp ...` (and `-m generate`) in the sweep test. Rank 0
# prints the report lines sweep.py parses; getp throughput grows with the rank count (efficiency
# 0.9 per extra rank) and with the micro-batch count up to the rank count (M < ranks: M/ranks of
# it); with --dp R the ranks are R rings of n/R, each as fast as a job of n/R ranks (the report
# says "rings": R); batch-1 decode is 300 - 10 per extra rank.
# FAKE_GETP_FORMAT=json prints the machine-readable line, otherwise the human-readable ones.
rank=${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-0}}
n=${OMPI_COMM_WORLD_SIZE:-${SLURM_NTASKS:-1}}
[ "$rank" = 0 ] || exit 0
mode=getp mb=$n dp=1
while [ $# -gt 0 ]; do
  case "$1" in
    -m) mode=$2; shift ;;
    --micro-batches) mb=$2; shift ;;
    --dp) dp=$2; shift ;;
  esac
  shift
done
if [ "$mode" = generate ]; then
  echo "prompt: 5 tokens, prefill 0.010 s (500.0 tok/s); time to first token 0.010 s" >&2
  echo "generated: 64 tokens (length), decode 0.210 s ($((300 - 10 * (n - 1))).0 tok/s)" >&2
  exit 0
fi
tok=$(awk -v n="$n" -v m="$mb" -v r="$dp" 'BEGIN { p = n / r; f = m < p ? m / p : 1; printf "%.1f", r * 100 * p * 0.9 ^ (p - 1) * f }')
if [ "${FAKE_GETP_FORMAT:-}" = json ]; then
  echo "getp: {\"prompts\": 8, \"generated_tokens\": 800, \"wall_s\": $(awk -v t="$tok" 'BEGIN{printf "%.3f", 800 / t}'), \"tok_s\": $tok, \"rings\": $dp, \"stage_busy_pct\": [95.0, 80.0]}" >&2
else
  echo "getp: 8 prompts (80 prompt tokens) -> out" >&2
  echo "getp: generated 800 tokens in $(awk -v t="$tok" 'BEGIN{printf "%.2f", 800 / t}') s of inference ($tok tok/s output); load 0.01 s" >&2
fi
