#!/bin/sh
# e2e.sh: end-to-end tests of the `run` program on the tiny synthetic model.
# usage: e2e.sh CASE RUN MODEL TOKENIZER WORKDIR   (CASE: generate chat getp_batch getp_resume errors)
case_name=$1 RUN=$2 MODEL=$3 TOK=$4 W=$5
rm -rf "$W" && mkdir -p "$W" || exit 1
cd "$W" || exit 1
die() { echo "FAIL: $*"; for f in *.err; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; }; done; exit 1; }
has() { grep -q -- "$2" "$1" || die "$1 lacks '$2'"; }
run() { "$RUN" "$MODEL" -z "$TOK" "$@"; }
# expect_error ARGS...: exit 1 and one error line "run: error: ...", the last line on stderr (the
# start-up summary may come before it when the error is found after loading); stderr in err.txt
expect_error() {
  run "$@" >/dev/null 2>err.txt </dev/null; rc=$?
  [ $rc -eq 1 ] || die "exit $rc (expected 1) for: $*"
  [ "$(grep -c '^run: error: ' err.txt)" -eq 1 ] || die "not one error line for: $*: $(cat err.txt)"
  tail -n 1 err.txt | grep -q '^run: error: ' || die "error is not the last line for: $*"
}
count_done() { if [ -f out.txt.partial ]; then grep -c "	" out.txt.partial; else echo 0; fi; }
prompts() {  # prompts N: a getp input of N distinct prompts
  echo "$1"; i=0; while [ $i -lt "$1" ]; do echo "Prompt number $i: the quick brown fox $i"; i=$((i+1)); done
}

case $case_name in
generate)
  run -m generate -i "Hello world" -n 8 -T 0 --ignore-eos >out.txt 2>gen.err || die "exit $?"
  has gen.err "synthetic"
  has gen.err "KV cache"
  has gen.err "prompt: 2 tokens, prefill .* tok/s); time to first token"
  has gen.err "generated: 8 tokens (max new tokens), decode .* tok/s"
  [ -s out.txt ] || die "no text on stdout"
  # The text ends with one newline, so the stats on stderr never share the last line of text.
  [ "$(tail -c 1 out.txt | od -An -tx1 | tr -d ' ')" = 0a ] || die "the text does not end with a newline"
  # Greedy is reproducible.
  run -m generate -i "Hello world" -n 8 -T 0 --ignore-eos >out2.txt 2>/dev/null || die "exit $?"
  cmp -s out.txt out2.txt || die "two greedy runs differ"
  ;;
chat)
  printf 'Hello there\nWhat is 2+2?\r\n\nThanks, bye\n' >in.txt
  run -m chat -n 12 <in.txt >out.txt 2>chat.err || die "exit $?"
  [ "$(grep -c '^\[turn ' chat.err)" -eq 3 ] || die "expected 3 turns"
  has chat.err "\[turn 3: .* tok/s), context"
  # Turn 2 and 3 feed only the new tokens: the context grows by each turn's tokens only.
  grep -q '^> ' out.txt && die "prompt '> ' printed although stdin is not a terminal"
  # EOF right away: clean exit.
  run -m chat </dev/null >/dev/null 2>empty.err || die "exit $? on empty stdin"
  # A first turn that cannot fit the context is an error; a later one ends the chat cleanly.
  echo hi | run -m chat -c 40 >/dev/null 2>small.err && die "first turn beyond the context accepted"
  has small.err "run: error: -c: the system prompt and first message take .* tokens; they do not fit the context of 40"
  printf 'one\ntwo\nthree\n' | run -m chat -c 90 -n 30 >/dev/null 2>full.err || die "exit $? on a full context"
  has full.err "chat: context full (.* of 90 positions used); ending the chat"
  ;;
getp_batch)
  prompts 8 >in.txt
  run -m getp -i in.txt -o b1.txt -n 6 -b 1 2>b1.err || die "exit $?"
  run -m getp -i in.txt -o b8.txt -n 6 -b 8 --chunk 16 2>b8.err || die "exit $?"
  [ "$(wc -l < b1.txt)" -eq 8 ] || die "b1.txt does not have 8 lines"
  cmp -s b1.txt b8.txt || die "-b 1 and -b 8 outputs differ"
  has b8.err "generated .* tokens in .* s of inference (.* tok/s output); load"
  [ ! -e b8.txt.partial ] || die "partial file left behind"
  # Sampling (-T > 0) does not depend on -b either: each prompt has its own seeded stream.
  run -m getp -i in.txt -o t1.txt -n 4 -b 1 -T 0.8 -s 5 2>t1.err || die "exit $?"
  run -m getp -i in.txt -o t8.txt -n 4 -b 8 -T 0.8 -s 5 2>t8.err || die "exit $?"
  cmp -s t1.txt t8.txt || die "-T 0.8: -b 1 and -b 8 outputs differ"
  cut -d" " -f1-4 b1.txt >g4.txt
  cmp -s t1.txt g4.txt && die "-T 0.8 gave the greedy output"
  # --verify: equal -> 0; a changed reference -> non-zero with the first divergence.
  run -m getp -i in.txt -o v.txt -n 6 -b 4 --verify b1.txt 2>v.err || die "verify failed on equal files"
  has v.err "verify: 8/8 prompts match"
  awk 'NR==3 {$2 = ($2 == 5 ? 6 : 5)} {print}' b1.txt >ref.txt
  run -m getp -i in.txt -o v2.txt -n 6 -b 4 --verify ref.txt 2>v2.err && die "verify passed on a changed reference"
  has v2.err "verify: 7/8 prompts match; first divergence: prompt 2 (0-based), token 1"
  # Prompts written with CRLF give the same output.
  sed 's/$/\r/' in.txt >crlf.txt
  run -m getp -i crlf.txt -o crlf_out.txt -n 6 2>crlf.err || die "exit $?"
  cmp -s b1.txt crlf_out.txt || die "CRLF input gave other output"
  ;;
getp_resume)
  prompts 12 >in.txt
  run -m getp -i in.txt -o full.txt -n 8 -b 2 --ignore-eos 2>full.err || die "exit $?"
  "$RUN" "$MODEL" -z "$TOK" -m getp -i in.txt -o out.txt -n 8 -b 1 --ignore-eos 2>kill.err &
  pid=$!
  n=0
  while [ "$(count_done)" -lt 3 ]; do
    kill -0 $pid 2>/dev/null || die "run ended before it could be interrupted"
    sleep 0.05; n=$((n+1)); [ $n -lt 1200 ] || die "no progress in 60 s"
  done
  kill -TERM $pid
  wait $pid; rc=$?
  [ $rc -eq 143 ] || die "exit $rc after SIGTERM (expected 143)"
  [ ! -e out.txt ] || die "OUT exists after an interrupted run"
  has kill.err "interrupted by SIGTERM: .*/12 prompts done, kept in out.txt.partial"
  done_lines=$(grep -c "	" out.txt.partial)
  [ "$done_lines" -lt 12 ] || die "all prompts finished before the signal"
  # Every finished line equals the uninterrupted run's line.
  while IFS="$(printf '\t')" read -r idx ids; do
    case $idx in \#*) continue ;; esac
    [ "$(sed -n "$((idx+1))p" full.txt)" = "$ids" ] || die "partial line $idx differs from full run"
  done <out.txt.partial
  # Without --resume the partial is protected; with it the run completes identically.
  expect_error -m getp -i in.txt -o out.txt -n 8 -b 2 --ignore-eos
  has err.txt "out.txt.partial: exists (left by an interrupted run): use --resume"
  run -m getp -i in.txt -o out.txt -n 8 -b 3 --ignore-eos --resume 2>resume.err || die "resume exit $?"
  cmp -s out.txt full.txt || die "resumed output differs from an uninterrupted run"
  [ ! -e out.txt.partial ] || die "partial left after resume"
  # A partial from other flags is refused.
  "$RUN" "$MODEL" -z "$TOK" -m getp -i in.txt -o o2.txt -n 8 -b 2 --ignore-eos 2>/dev/null &
  pid=$!; sleep 0.3; kill -TERM $pid; wait $pid
  if [ -e o2.txt.partial ]; then
    expect_error -m getp -i in.txt -o o2.txt -n 7 --ignore-eos --resume
    has err.txt "was written by another run"
  fi
  ;;
errors)
  expect_error -m generate -i "hi" -n 0;          has err.txt "run: error: -n: max new tokens must be in \[1, 131072\], got 0"
  expect_error -m generate -i "hi" -c 200000;     has err.txt "run: error: -c: context must be in"
  expect_error -m generate -i "hi" --backend gpu; has err.txt "this build has no GPU backend"
  printf '3\na\nb\n' >few.txt
  expect_error -m getp -i few.txt -o o.txt;       has err.txt "run: error: few.txt: expected 3 prompts, found 2"
  printf 'x\na\n' >count.txt
  expect_error -m getp -i count.txt -o o.txt;     has err.txt "run: error: count.txt:1: the first line must be the number of prompts"
  printf '2\na\n\n' >empty.txt
  expect_error -m getp -i empty.txt -o o.txt;     has err.txt "run: error: empty.txt:3: empty prompt"
  printf '1\nab\377\n' >utf.txt
  expect_error -m getp -i utf.txt -o o.txt;       has err.txt "run: error: utf.txt:2: invalid UTF-8"
  printf '1000001\na\n' >many.txt
  expect_error -m getp -i many.txt -o o.txt;      has err.txt "run: error: many.txt:1: 1000001 prompts announced; a getp input may hold at most 1000000"
  printf '2\nshort\nthis prompt is certainly longer than sixteen tokens of context, it goes on and on and on\n' >long.txt
  expect_error -m getp -i long.txt -o o.txt -c 16; has err.txt "run: error: long.txt:3: the prompt is .* tokens; it must be shorter than the context (-c 16)"
  [ "$(wc -l < err.txt)" -eq 1 ] || die "prompt too long: reported after loading the model"
  [ ! -e o.txt ] && [ ! -e o.txt.partial ] || die "output written for a bad input"
  "$RUN" /dev/null -z "$TOK" -m generate -i hi >/dev/null 2>err.txt; rc=$?
  [ $rc -eq 1 ] && [ "$(wc -l < err.txt)" -eq 1 ] || die "/dev/null model: exit $rc: $(cat err.txt)"
  "$RUN" "$W" -z "$TOK" -m generate -i hi >/dev/null 2>err.txt; rc=$?
  [ $rc -eq 1 ] && [ "$(wc -l < err.txt)" -eq 1 ] || die "directory model: exit $rc: $(cat err.txt)"
  run -m generate -i "hi" --stop 5000000 >/dev/null 2>err.txt && die "stop id out of vocab accepted"
  has err.txt "run: error: --stop: token id 5000000 is outside the vocabulary"
  ;;
*) die "unknown case $case_name" ;;
esac
echo "PASS $case_name"
