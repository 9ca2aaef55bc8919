#!/bin/bash
# gpu_serve_vs_getp.sh: issue 17's GPU load figure: `run -m serve` under bench-serve against
# `run -m getp` on the same prompts, same batch, same new tokens, greedy, on one GPU.
# The server's overhead = 1 - (server output tok/s) / (getp output tok/s); the issue asks <= 5%.
# Both read the prompts the same way (raw text, special-token texts recognised) and stop on the
# same tokens, so with -T 0 they generate the same tokens; the script says how many texts agree.
#   tests/serve/gpu_serve_vs_getp.sh BINDIR MODEL [PROMPTS] [BATCH] [NEW]
# BINDIR: run, bench-serve and tokenizer.bin built with -DGPU_BACKEND=CUDA (or HIP).
# PROMPTS (default 512) prompts of ~100 tokens, BATCH (default 64) at once, NEW (default 256)
# new tokens each. Output: $OUT (default ./serve-vs-getp): getp.err, serve.err, bench.json,
# summary.txt (one line per figure, for docs/performance.md).
set -u
B=$(cd "${1:?usage: gpu_serve_vs_getp.sh BINDIR MODEL [PROMPTS] [BATCH] [NEW]}" && pwd)
MODEL=${2:?model file}
N=${3:-512} BATCH=${4:-64} NEW=${5:-256}
OUT=${OUT:-serve-vs-getp}
mkdir -p "$OUT" && cd "$OUT" || exit 1
TOK=$B/tokenizer.bin

# Prompts: line 1 N, then N distinct prompts of ~100 tokens.
{
  echo "$N"
  for ((i = 0; i < N; i++)); do
    printf 'Request %d. Write a detailed, friendly explanation of topic number %d for a curious reader: ' "$i" "$i"
    for ((k = 0; k < 12; k++)); do printf 'history, science, art and everyday life %d; ' "$k"; done
    echo
  done
} > prompts.txt

echo "== getp: $N prompts, -b $BATCH, -n $NEW, greedy"
"$B/run" "$MODEL" -z "$TOK" -m getp -i prompts.txt -o getp.out -b "$BATCH" -n "$NEW" -T 0 2> getp.err || {
  tail -5 getp.err; exit 1; }
grep -E "generated|loaded" getp.err
getp_tps=$(grep -oE '\(([0-9.]+) tok/s output\)' getp.err | grep -oE '[0-9.]+' | head -1)

echo "== serve: -b $BATCH; bench-serve -n $N -c $BATCH --max-tokens $NEW (completions, greedy)"
"$B/run" "$MODEL" -z "$TOK" -m serve --port 0 -b "$BATCH" 2> serve.err &
pid=$!
for ((i = 0; i < 1200; i++)); do grep -q "listening on" serve.err && break; sleep 0.5; done
url=$(grep -o "http://[0-9.]*:[0-9]*" serve.err | head -1)
[ -n "$url" ] || { echo "the server did not start"; tail -5 serve.err; kill $pid; exit 1; }
# A short warm-up so the first request's set-up is not in the figure.
"$B/bench-serve" --url "$url" -n "$BATCH" -c "$BATCH" --max-tokens 8 > /dev/null
"$B/bench-serve" --url "$url" --prompts prompts.txt -n "$N" -c "$BATCH" --max-tokens "$NEW" \
  --endpoint completions --out bench-texts.jsonl > bench.json
rc=$?
kill -TERM $pid
wait $pid
cat bench.json
[ $rc -eq 0 ] || { echo "bench-serve reported failures"; exit 1; }
serve_tps=$(grep -oE '"output_tok_per_s": [0-9.]+' bench.json | grep -oE '[0-9.]+$')

# The same tokens? getp.out has ids; compare the counts per prompt with the server's usage.
same=$(paste -d' ' <(awk '{print NF}' getp.out) \
         <(grep -oE '"completion_tokens":[0-9]+' bench-texts.jsonl | grep -oE '[0-9]+$') |
       awk '$1 == $2 {n++} END {print n + 0}')

{
  echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  echo "model: $MODEL; prompts $N (~100 tokens), batch $BATCH, new tokens $NEW, greedy"
  echo "getp output tok/s: $getp_tps"
  echo "serve output tok/s: $serve_tps"
  awk -v g="$getp_tps" -v s="$serve_tps" 'BEGIN { printf "server overhead: %.1f%%\n", 100 * (1 - s / g) }'
  echo "prompts with the same number of generated tokens in both: $same / $N"
  grep -E '"ttft_ms"|"itl_ms"' -A3 bench.json | tr -d '\n' | sed 's/  */ /g'; echo
} | tee summary.txt
