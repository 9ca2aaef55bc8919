#!/bin/sh
# fake_getp.sh: stands in for `run MODEL -m getp ...` in the sweep test. Rank 0 prints the report
# lines sweep.py parses; throughput grows with the rank count (efficiency 0.9 per extra rank).
# FAKE_GETP_FORMAT=json prints the machine-readable line, otherwise the human-readable ones.
rank=${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-0}}
n=${OMPI_COMM_WORLD_SIZE:-${SLURM_NTASKS:-1}}
[ "$rank" = 0 ] || exit 0
tok=$(awk -v n="$n" 'BEGIN { printf "%.1f", 100 * n * 0.9 ^ (n - 1) }')
if [ "${FAKE_GETP_FORMAT:-}" = json ]; then
  echo "getp: {\"prompts\": 8, \"generated_tokens\": 800, \"wall_s\": $(awk -v t="$tok" 'BEGIN{printf "%.3f", 800 / t}'), \"tok_s\": $tok, \"stage_busy_pct\": [95.0, 80.0]}" >&2
else
  echo "getp: 8 prompts (80 prompt tokens) -> out" >&2
  echo "getp: generated 800 tokens in $(awk -v t="$tok" 'BEGIN{printf "%.2f", 800 / t}') s of inference ($tok tok/s output); load 0.01 s" >&2
fi
