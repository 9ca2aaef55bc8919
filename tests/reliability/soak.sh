#!/bin/bash
# soak.sh: getp over many prompts on the tiny model with continuous batching.
# Checks: (1) the output equals a run with another -b (and --chunk); (2) memory is flat after
# warm-up: the peak anonymous RSS (heap, KV cache: max of RssAnon sampled every 0.2 s) when 10% of
# the prompts are done vs at the end differ by less than RSS_SLACK_KB (default 16 MiB; the output
# vectors grow by a few bytes a prompt). The total peak RSS (VmHWM) is printed too but not checked:
# it includes the mmapped model's page cache, which grows as prompts touch new embedding rows
# (the tiny model's embedding is 77 MB, 4 KiB pages hold 10 rows). Prints the figures.
# usage: soak.sh RUN MODEL TOKENIZER WORKDIR [N=10000] [MAX_NEW=4] [B1=32] [B2=5]
# Full soak (docs/reliability.md): soak.sh build/run build/tiny.bin build/tokenizer.bin /tmp/soak
# CTest runs a reduced one (300 prompts).
set -u
RUN=$1 MODEL=$2 TOK=$3 W=$4 N=${5:-10000} NEW=${6:-4} B1=${7:-32} B2=${8:-5}
SLACK_KB=${RSS_SLACK_KB:-16384}
rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 1
die() { echo "FAIL: $*"; tail -n 5 ./*.err 2>/dev/null; exit 1; }
# N distinct prompts of varied lengths (2..11 words), some with special-token texts and non-ASCII.
awk -v n="$N" 'BEGIN { print n; srand(7)
  split("the quick brown fox jumps over a lazy dog while état naïve 東京 données <|start|> 42 1e9 -- ok", w, " ")
  for (i = 0; i < n; i++) { k = 2 + int(rand() * 10); s = "p" i ":"; for (j = 0; j < k; j++) s = s " " w[1 + int(rand() * 20)]; print s } }' >in.txt

# run_getp TAG B CHUNK: runs getp into TAG.txt, samples VmHWM when 10% of the prompts are done and at the end.
run_getp() {
  local tag=$1 out=$1.txt b=$2 chunk=$3 t0 pid hwm_early="" hwm_last="" done_n anon=0 anon_early=""
  t0=$(date +%s.%N)
  "$RUN" "$MODEL" -z "$TOK" -m getp -i in.txt -o "$out" -n "$NEW" -b "$b" --chunk "$chunk" 2>"$out.err" &
  pid=$!
  while kill -0 $pid 2>/dev/null; do
    h=$(awk '/^VmHWM/ {print $2}' /proc/$pid/status 2>/dev/null) && [ -n "$h" ] && hwm_last=$h
    a=$(awk '/^RssAnon/ {print $2}' /proc/$pid/status 2>/dev/null) && [ -n "$a" ] && [ "$a" -gt $anon ] && anon=$a
    if [ -z "$hwm_early" ] && [ -f "$out.partial" ]; then
      done_n=$(($(wc -l <"$out.partial") - 1))
      [ "$done_n" -ge $((N / 10)) ] && hwm_early=$hwm_last anon_early=$anon
    fi
    sleep 0.2
  done
  wait $pid || die "getp -b $b exit $?"
  echo "$out: -b $b --chunk $chunk: $(awk -v t0="$t0" -v t1="$(date +%s.%N)" 'BEGIN {printf "%.1f", t1 - t0}') s wall, peak anonymous RSS ${anon_early:-?} kB at $((N / 10)) prompts, $anon kB at $N; peak total RSS ${hwm_early:-?} kB / ${hwm_last:-?} kB"
  eval "anon_early_$tag=\${anon_early:-0} anon_last_$tag=\$anon"
}
run_getp a "$B1" 256
run_getp b "$B2" 64
[ "$(wc -l <a.txt)" -eq "$N" ] || die "a.txt does not have $N lines"
cmp -s a.txt b.txt || die "-b $B1 and -b $B2 outputs differ (first: $(cmp a.txt b.txt))"
grep "generated" a.txt.err | tail -n 1
for o in a b; do
  e=$(eval echo "\$anon_early_$o") l=$(eval echo "\$anon_last_$o")
  [ "$e" -gt 0 ] || die "$o: no RSS sample at $((N / 10)) prompts (run too fast to sample?)"
  [ $((l - e)) -lt "$SLACK_KB" ] || die "$o: peak anonymous RSS grew from $e kB ($((N / 10)) prompts) to $l kB ($N prompts)"
done
echo "PASS soak: $N prompts, outputs of -b $B1 and -b $B2 identical, peak RSS flat"
