#!/bin/bash
# run_fuzz.sh: runs every fuzz_* target of a FUZZ=ON build for SECONDS each, starting from the
# seed corpus in tests/fuzz/corpus/<target>/ (new inputs go to a scratch folder, the seeds are not
# modified). A crash input is copied into the corpus folder (so the CTest replay test fails until it
# is fixed) and the script exits 1. Prints the executions of each target.
# usage: run_fuzz.sh BUILD_DIR TOKENIZER_FILE [SECONDS=20]
set -uo pipefail
build=$1 tok=$2 secs=${3:-20}
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0 total=0
for t in model_file export_reader tokenizer tokenizer_json getp_input harmony serve_request; do
  mkdir -p "$scratch/$t"
  GPTOSS_FUZZ_TOKENIZER=$tok "$build/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 \
    -rss_limit_mb=2048 -timeout=10 -artifact_prefix="$scratch/$t-" "$scratch/$t" "$here/corpus/$t" \
    >"$scratch/$t.log" 2>&1
  rc=$?
  runs=$(awk '/^stat::number_of_executed_units/ {print $2}' "$scratch/$t.log")
  echo "fuzz_$t: ${runs:-?} executions in ${secs} s, exit $rc"
  total=$((total + ${runs:-0}))
  if [ $rc -ne 0 ]; then
    status=1
    grep -E "^fuzz:|ERROR|SUMMARY" "$scratch/$t.log" | head -n 5
    for a in "$scratch/$t"-*; do
      [ -f "$a" ] || continue
      cp "$a" "$here/corpus/$t/regress-$(basename "$a")"
      echo "  kept $here/corpus/$t/regress-$(basename "$a")"
    done
  fi
done
echo "fuzz: $total executions in all"
exit $status
