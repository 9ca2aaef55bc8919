#!/bin/sh
# e2e.sh: end-to-end tests of the `run` program on the tiny synthetic model.
# usage: e2e.sh CASE RUN MODEL TOKENIZER WORKDIR
#   generate chat getp_batch getp_resume errors: the modes and their one-line errors
#   outputs   getp's OUT: -o - is stdout, a FIFO and a link into /proc are written directly (a
#             shell's >> still appends), a symlink to a file stays a link; bad paths (a directory, a
#             missing directory, a missing REF, OUT == REF, IN, the model or the tokenizer) fail
#             before the model loads, with nothing written; a --verify difference exits 2
#   prompts   generate's prompt from -i, -f FILE, stdin and -i -; getp -i -; a fresh printed seed
#             at -T > 0 without -s (runs differ; -s SEED repeats one); getp --resume takes the seed
#             of its OUT.partial
#   cli       --version and --help of the three programs, tokenize's one-line errors, a repeated
#             flag, grammatical counts, a 1-prompt getp reserving 1 slot, progress lines in a log,
#             SIGINT -> 130, the defaults found at run time (environment, then beside the program)
#   version   the version is git describe of the source (at build time); from a `git archive`
#             tarball, the commit it records; else "unknown"
case_name=$1 RUN=$2 MODEL=$3 TOK=$4 W=$5
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(dirname "$RUN")
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
# expect_early_error ARGS...: as expect_error, and found before anything was loaded: one line
expect_early_error() {
  expect_error "$@"
  [ "$(wc -l < err.txt)" -eq 1 ] || die "error reported after loading for: $*: $(cat err.txt)"
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
  # The paged KV cache (src/sched/scheduler.h): a pool of 128 positions at -c 64 runs the
  # 8 prompts of -b 8 at most five at a time (each can need ~12 + 6 positions: 3 blocks of 8):
  # the same output.
  run -m getp -i in.txt -o kv.txt -n 6 -b 8 -c 64 --kv-tokens 128 --kv-block 8 2>kv.err || die "--kv-tokens: exit $?"
  cmp -s b1.txt kv.txt || die "--kv-tokens 128: output differs from -b 1"
  has kv.err "KV cache .* MiB (8 slots sharing 128 positions (--kv-tokens), at most 64 each, paged in blocks of 8)"
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
  expect_error -m generate -i "hi" -c 256 --kv-tokens 255; has err.txt "run: error: --kv-tokens: the paged KV cache must hold at least one sequence of -c 256 and at most 2^31-1 positions, got 255"
  expect_error -m generate -i "hi" --kv-block -1; has err.txt "run: error: --kv-block: positions per block must be in \[1, 4096\] (GPU: 0 = no paging), got -1"
  expect_error -m generate -i "hi" --kv-block 0;  has err.txt "run: error: --kv-block 0: the CPU backend always pages its KV cache; give 1..4096 positions per block"
  expect_error -m generate -i "hi" --kv-block 0 --kv-tokens 4096; has err.txt "run: error: --kv-tokens sizes the paged KV cache, which --kv-block 0 turns off"
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
outputs)
  prompts 3 >in.txt
  run -m getp -i in.txt -o ref.txt -n 2 2>ref.err || die "exit $?"
  # -o - writes OUT to stdout; no file named "-".
  run -m getp -i in.txt -o - -n 2 >stdout.txt 2>o1.err || die "-o -: exit $?"
  cmp -s ref.txt stdout.txt || die "-o -: stdout differs from OUT"
  [ ! -e ./- ] && [ ! -e ./-.partial ] || die "-o - created a file"
  has o1.err "getp: 3 prompts (.* prompt tokens) -> stdout"
  # A link into /proc (as /dev/stdout is) is written through, never replaced: >> still appends.
  ln -s /proc/self/fd/1 my_stdout
  echo "first line" >log.txt
  run -m getp -i in.txt -o my_stdout -n 2 >>log.txt 2>o2.err || die "-o my_stdout: exit $?"
  [ -L my_stdout ] || die "the link to /proc/self/fd/1 was replaced"
  { echo "first line"; cat ref.txt; } | cmp -s - log.txt || die "-o my_stdout >>log.txt: not appended"
  # A FIFO is written directly.
  mkfifo fifo
  cat fifo >fifo.txt & reader=$!
  run -m getp -i in.txt -o fifo -n 2 2>o3.err || die "-o fifo: exit $?"
  wait $reader
  [ -p fifo ] || die "the FIFO was replaced"
  cmp -s ref.txt fifo.txt || die "-o fifo: the reader got other text"
  # A symlink to a regular file: the file is replaced atomically, the link stays a link.
  mkdir data && echo old >data/real.txt && ln -s data/real.txt link.txt
  run -m getp -i in.txt -o link.txt -n 2 2>o4.err || die "-o link.txt: exit $?"
  [ -L link.txt ] || die "the symlink was replaced by a file"
  cmp -s ref.txt data/real.txt || die "the file behind the symlink does not hold OUT"
  # Bad paths: one line, before the model loads; nothing written.
  mkdir odir
  expect_early_error -m getp -i in.txt -o odir -n 2
  has err.txt "^run: error: -o odir: is a directory (expected a file)$"
  [ ! -e odir.partial ] || die "odir.partial written"
  expect_early_error -m getp -i in.txt -o nodir/out.txt -n 2
  has err.txt "^run: error: -o nodir/out.txt: directory nodir: No such file or directory$"
  expect_early_error -m getp -i in.txt -o v.txt -n 2 --verify missing.txt
  has err.txt "^run: error: --verify missing.txt: No such file or directory$"
  [ ! -e v.txt ] && [ ! -e v.txt.partial ] || die "output written although REF is missing"
  cp ref.txt same.txt && ln -s same.txt alias.txt
  expect_early_error -m getp -i in.txt -o same.txt -n 2 --verify alias.txt
  has err.txt "^run: error: --verify alias.txt: is the output file (-o same.txt); the reference must be another file$"
  expect_early_error -m getp -i in.txt -o same.txt -n 2 --verify same.txt
  has err.txt "^run: error: --verify: the reference must be another file than -o same.txt$"
  cmp -s ref.txt same.txt || die "the reference was overwritten"
  ln in.txt in_hard.txt
  expect_early_error -m getp -i in.txt -o in_hard.txt -n 2
  has err.txt "^run: error: -o in_hard.txt: is the input file (-i in.txt)$"
  # OUT is the model or the tokenizer (also through a link): refused, the file untouched.
  cp "$MODEL" mcopy.bin && cp "$TOK" tcopy.bin && ln -s mcopy.bin mlink.bin || die "copies"
  early_error_of() {  # early_error_of MODEL TOKENIZER ARGS...: as expect_early_error
    m=$1 z=$2; shift 2
    "$RUN" "$m" -z "$z" "$@" >/dev/null 2>err.txt </dev/null; rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l < err.txt)" -eq 1 ] || die "exit $rc for: $m -z $z $*: $(cat err.txt)"
  }
  early_error_of mcopy.bin "$TOK" -m getp -i in.txt -o mcopy.bin -n 2
  has err.txt "^run: error: -o mcopy.bin: is the model file (mcopy.bin)$"
  early_error_of mcopy.bin "$TOK" -m getp -i in.txt -o mlink.bin -n 2
  has err.txt "^run: error: -o mlink.bin: is the model file (mcopy.bin)$"
  early_error_of "$MODEL" tcopy.bin -m getp -i in.txt -o tcopy.bin -n 2
  has err.txt "^run: error: -o tcopy.bin: is the tokenizer file (-z tcopy.bin)$"
  cmp -s "$MODEL" mcopy.bin && [ -L mlink.bin ] || die "the model file was changed"
  cmp -s "$TOK" tcopy.bin || die "the tokenizer file was changed"
  [ ! -e mcopy.bin.partial ] && [ ! -e tcopy.bin.partial ] && [ ! -e mlink.bin.partial ] ||
    die "an OUT.partial was written"
  rm -f mcopy.bin mlink.bin tcopy.bin
  printf '1 2\nx\n' >bad_ref.txt
  expect_early_error -m getp -i in.txt -o v.txt -n 2 --verify bad_ref.txt
  has err.txt "^run: error: bad_ref.txt:2: not a line of token ids$"
  # --verify: equal -> 0; a difference -> exit 2 (not 1, the error status).
  run -m getp -i in.txt -o v.txt -n 2 --verify ref.txt 2>v.err || die "verify of equal outputs: exit $?"
  awk 'NR==2 {$1 = ($1 == 5 ? 6 : 5)} {print}' ref.txt >ref2.txt
  run -m getp -i in.txt -o v2.txt -n 2 --verify ref2.txt 2>v2.err; rc=$?
  [ $rc -eq 2 ] || die "verify of a changed reference: exit $rc (expected 2)"
  has v2.err "verify: 2/3 prompts match; first divergence: prompt 1 (0-based), token 0"
  cmp -s ref.txt v2.txt || die "OUT not written when verify found a difference"
  ;;
prompts)
  run -m generate -i "Hello world" -n 6 -T 0 --ignore-eos >a.txt 2>a.err || die "-i: exit $?"
  has a.err "prompt: 2 tokens,"
  printf 'Hello world\n' >p.txt
  run -m generate -f p.txt -n 6 -T 0 --ignore-eos >b.txt 2>b.err || die "-f: exit $?"
  cmp -s a.txt b.txt || die "-f FILE: other text than -i (the final newline is not part of the prompt)"
  printf 'Hello world\r\n' | run -m generate -n 6 -T 0 --ignore-eos >c.txt 2>c.err || die "stdin: exit $?"
  cmp -s a.txt c.txt || die "prompt on stdin: other text than -i"
  printf 'Hello world' | run -m generate -i - -n 6 -T 0 --ignore-eos >d.txt 2>d.err || die "-i -: exit $?"
  cmp -s a.txt d.txt || die "-i -: other text than -i"
  expect_early_error -m generate -f nothere.txt
  has err.txt "^run: error: -f nothere.txt: No such file or directory$"
  printf '' | run -m generate >/dev/null 2>err.txt && die "an empty prompt on stdin accepted"
  has err.txt "^run: error: stdin: the prompt is empty$"
  # getp reads IN from stdin with -i -.
  prompts 3 >in.txt
  run -m getp -i in.txt -o f.txt -n 4 2>f.err || die "getp: exit $?"
  run -m getp -i - -o s.txt -n 4 <in.txt 2>s.err || die "getp -i -: exit $?"
  cmp -s f.txt s.txt || die "getp -i -: other OUT"
  # Sampling without -s: a fresh seed each run, printed; -s SEED repeats that run.
  run -m generate -i "Once upon a time" -n 8 --ignore-eos >r1.txt 2>r1.err || die "exit $?"
  run -m generate -i "Once upon a time" -n 8 --ignore-eos >r2.txt 2>r2.err || die "exit $?"
  seed=$(sed -n 's/^seed: \([0-9]*\) (random; -s \1 repeats this run)$/\1/p' r1.err)
  [ -n "$seed" ] || die "no 'seed: S (random; -s S repeats this run)' line"
  cmp -s r1.txt r2.txt && die "two runs at -T 1 without -s gave the same text"
  run -m generate -i "Once upon a time" -n 8 --ignore-eos -s "$seed" >r3.txt 2>r3.err || die "exit $?"
  cmp -s r1.txt r3.txt || die "-s $seed did not repeat the run that printed it"
  grep -q '^seed:' r3.err && die "a seed line although -s was given"
  # getp at -T > 0 without -s, interrupted: --resume takes OUT.partial's seed, and the result is
  # the run that seed gives.
  prompts 6 >in6.txt
  "$RUN" "$MODEL" -z "$TOK" -m getp -i in6.txt -o out.txt -n 6 -b 1 -T 0.9 --ignore-eos 2>k.err &
  pid=$!
  n=0
  while [ "$(count_done)" -lt 2 ]; do
    kill -0 $pid 2>/dev/null || die "run ended before it could be interrupted"
    sleep 0.05; n=$((n+1)); [ $n -lt 1200 ] || die "no progress in 60 s"
  done
  kill -INT $pid; wait $pid; rc=$?
  [ $rc -eq 130 ] || die "exit $rc after SIGINT (expected 130)"
  has k.err "interrupted by SIGINT: .*/6 prompts done, kept in out.txt.partial"
  seed=$(sed -n 's/^seed: \([0-9]*\) (random; .*$/\1/p' k.err)
  [ -n "$seed" ] || die "getp printed no seed"
  run -m getp -i in6.txt -o out.txt -n 6 -b 3 -T 0.9 --ignore-eos --resume 2>res.err || die "resume: exit $?"
  has res.err "^seed: $seed (from out.txt.partial)$"
  run -m getp -i in6.txt -o full.txt -n 6 -T 0.9 --ignore-eos -s "$seed" 2>full.err || die "exit $?"
  cmp -s out.txt full.txt || die "resumed sampled OUT differs from the run with -s $seed"
  ;;
cli)
  for p in run tokenize export-model; do
    "$BIN/$p" --version >v.txt 2>v.err || die "$p --version: exit $?"
    [ "$(wc -l <v.txt)" -eq 2 ] && [ ! -s v.err ] || die "$p --version: $(cat v.txt v.err)"
    has v.txt "^$p [0-9a-f]\{7,\}.* (\|^$p unknown"
    has v.txt "^build: [A-Za-z]*.*; GPU backend: "
    "$BIN/$p" --help >h.txt 2>h.err || die "$p --help: exit $?"
    has h.txt "Exit status: 0 ok"
  done
  "$RUN" --help >h.txt || die "run --help: exit $?"
  has h.txt "run \[MODEL\] -m bench "
  has h.txt "generate | chat | getp | bench"
  has h.txt "MODEL is \$GPTOSS_MODEL, else tiny.bin beside this program"
  # tokenize: errors in the one form, exit 1.
  "$BIN/tokenize" --bogus >/dev/null 2>err.txt; rc=$?
  [ $rc -eq 1 ] || die "tokenize --bogus: exit $rc"
  [ "$(cat err.txt)" = "tokenize: error: The following argument was not expected: --bogus (see --help)" ] ||
    die "tokenize --bogus: $(cat err.txt)"
  "$BIN/tokenize" --make a >/dev/null 2>err.txt; rc=$?
  [ $rc -eq 1 ] && [ "$(cat err.txt)" = "tokenize: error: --make takes two files: --make SRC OUT (see --help)" ] ||
    die "tokenize --make a: exit $rc: $(cat err.txt)"
  "$BIN/tokenize" -z >/dev/null 2>err.txt; rc=$?
  [ $rc -eq 1 ] && [ "$(wc -l <err.txt)" -eq 1 ] || die "tokenize -z: exit $rc: $(cat err.txt)"
  has err.txt "^tokenize: error: .*(see --help)$"
  echo hi | "$BIN/tokenize" -z nothere.bin -z "$TOK" >ids.txt 2>err.txt || die "tokenize: a repeated -z: $(cat err.txt)"
  echo hi | "$BIN/tokenize" -z "$TOK" >ids1.txt || die "tokenize: exit $?"
  [ -s ids.txt ] && cmp -s ids.txt ids1.txt || die "tokenize: a repeated -z gave $(cat ids.txt)"
  "$BIN/export-model" --info "$MODEL" --info "$MODEL" >/dev/null 2>err.txt || die "export-model: a repeated --info: $(cat err.txt)"
  # run: a repeated flag takes its last value; counts read right.
  run -m generate -i hi -n 5 -n 1 -T 0 --ignore-eos >/dev/null 2>g.err || die "exit $?"
  has g.err "^prompt: 1 token, "
  has g.err "^generated: 1 token (max new tokens)"
  printf '1\nHello world\n' >one.txt
  run -m getp -i one.txt -o o1.txt -n 3 2>one.err || die "exit $?"
  has one.err "^getp: 1 prompt (2 prompt tokens) -> o1.txt$"
  has one.err "(1 slot x 4096 positions, paged in blocks of 32)"  # a 1-prompt getp reserves one slot, not 32
  # Progress lines when stderr is not a terminal (a log file): lines, no carriage returns.
  prompts 6 >in.txt
  run -m getp -i in.txt -o p.txt -n 24 -b 2 --ignore-eos --progress 0.1 2>p.err || die "exit $?"
  [ "$(grep -c '^getp: [0-9]*/6 prompts done, .* tok/s, .* elapsed, ETA ' p.err)" -ge 2 ] ||
    die "fewer than 2 progress lines in the log"
  grep -q "$(printf '\r')" p.err && die "carriage returns in a log"
  run -m getp -i in.txt -o q.txt -n 2 --progress 0 2>q.err || die "exit $?"
  grep -q 'prompts done' q.err && die "progress lines with --progress 0"
  # The defaults are found at run time: the environment, else beside the program.
  GPTOSS_MODEL="$MODEL" GPTOSS_TOKENIZER="$TOK" "$RUN" -m generate -i hi -n 1 >/dev/null 2>env.err ||
    die "GPTOSS_MODEL / GPTOSS_TOKENIZER: $(cat env.err)"
  has env.err "^model: .*($MODEL)$"
  GPTOSS_MODEL=/nonexistent/m.bin "$RUN" -m generate -i hi >/dev/null 2>err.txt && die "a missing default model accepted"
  [ "$(cat err.txt)" = "run: error: model /nonexistent/m.bin: No such file or directory (the default: give MODEL, or set GPTOSS_MODEL; launch/setup.sh builds tiny.bin)" ] ||
    die "missing default model: $(cat err.txt)"
  mkdir moved && cp "$RUN" moved/run && ln -s "$MODEL" moved/tiny.bin && ln -s "$TOK" moved/tokenizer.bin
  (unset GPTOSS_MODEL GPTOSS_TOKENIZER; moved/run -m generate -i hi -n 1 >/dev/null 2>moved.err) ||
    die "a moved build folder: $(cat moved.err)"
  has moved.err "^model: .*($W/moved/tiny.bin)$"
  ;;
version)
  "$RUN" --version >v.txt || die "exit $?"
  v=$(sed -n '1s/^run //p' v.txt)
  if [ -e "$SRC/.git" ] && command -v git >/dev/null && git -C "$SRC" rev-parse HEAD >/dev/null 2>&1; then
    # The program's version names a commit of this source (the one it was built from).
    hash=$(echo "$v" | sed -n 's/^\([0-9a-f]\{7,\}\).*/\1/p')
    [ -n "$hash" ] && git -C "$SRC" cat-file -e "$hash^{commit}" || die "version '$v' names no commit of $SRC"
    # The build step writes git describe of the tree as it is now.
    cmake -DSRC="$SRC" -DOUT=now.h -DGIT="$(command -v git)" -P "$SRC/src/common/version.cmake" || die "version.cmake failed"
    want="$(git -C "$SRC" describe --always --dirty --abbrev=10) ($(git -C "$SRC" log -1 --format=%cs))"
    has now.h "^#define GPTOSS_SOURCE_VERSION \"$want\"$"
    # A source tarball (git archive, as GitHub's) has no .git: the commit comes from the archive.
    if git -C "$SRC" cat-file -e HEAD:src/common/version_archive.txt 2>/dev/null; then
      mkdir tarball
      git -C "$SRC" archive --format=tar HEAD src/common/version.cmake src/common/version_archive.txt | tar -x -C tarball ||
        die "git archive failed"
      cmake -DSRC="$W/tarball" -DOUT=tar.h -DGIT="$(command -v git)" -P tarball/src/common/version.cmake || die "version.cmake failed"
      has tar.h "^#define GPTOSS_SOURCE_VERSION \"$(git -C "$SRC" log -1 --format='%h (%cs, source archive)')\"$"
    fi
  fi
  # Neither a checkout nor an archive: "unknown".
  mkdir -p bare/src/common && printf '$Format:%%h %%cs$\n' >bare/src/common/version_archive.txt
  cmake -DSRC="$W/bare" -DOUT=bare.h -DGIT="$(command -v git)" -P "$SRC/src/common/version.cmake" || die "version.cmake failed"
  has bare.h "^#define GPTOSS_SOURCE_VERSION \"unknown (neither a git checkout nor a git archive)\"$"
  ;;
*) die "unknown case $case_name" ;;
esac
echo "PASS $case_name"
