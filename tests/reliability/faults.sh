#!/bin/sh
# faults.sh: faults injected into `run -m getp` on the tiny model.
# usage: faults.sh CASE RUN MODEL TOKENIZER WORKDIR
#   sigint    SIGINT mid-run: exit 130, "interrupted by SIGINT: D/N prompts done", every finished
#             line kept in OUT.partial and equal to an uninterrupted run; --resume completes it and
#             OUT equals the uninterrupted run (SIGTERM: tests/run/e2e.sh getp_resume)
#   diskfull  OUT on a full disk (a tmpfs of 8 KiB; needs root for mount, else exit 77 = skipped):
#             one clear error line, exit 1, no OUT, every complete line of OUT.partial equal to the
#             uninterrupted run; after space is freed, --resume finishes and OUT equals it
#   truncate  the model file truncated (by another process) while getp reads it: the exact line
#             "run: error: MODEL: the file shrank from M to 4096 bytes while in use (read at
#             byte B); ...", exit 1 (not a SIGBUS crash), finished lines kept in OUT.partial
case_name=$1 RUN=$2 MODEL=$3 TOK=$4 W=$5
mnt=""
cleanup() { [ -n "$mnt" ] && umount "$mnt" 2>/dev/null; }
trap cleanup EXIT
rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 1
die() { echo "FAIL ($case_name): $*"; for f in *.err; do [ -f "$f" ] && { echo "--- $f"; tail -n 5 "$f"; }; done; exit 1; }
run() { "$RUN" "$MODEL" -z "$TOK" "$@"; }
prompts() { echo "$1"; i=0; while [ $i -lt "$1" ]; do echo "Prompt $i: a lazy dog $i"; i=$((i+1)); done; }
# check_partial P REF: every complete INDEX<TAB>ids line of P equals line INDEX+1 of REF; prints
# the count of complete lines. A torn last line (no '\n': the disk filled mid-line) is not
# counted; --resume drops it (src/run/README.md).
check_partial() {
  [ -z "$(tail -c 1 "$1")" ] || echo "torn last line (dropped by --resume)" >&2
  { if [ -z "$(tail -c 1 "$1")" ]; then cat "$1"; else sed '$d' "$1"; fi; } | awk -F'\t' -v ref="$2" 'BEGIN { while ((getline l < ref) > 0) r[n++] = l }
    NR == 1 { if ($0 !~ /^# gptoss getp partial v1 /) { print "bad header"; exit 1 } next }
    { if (r[$1] != $2) { print "line for prompt " $1 " differs"; exit 1 } c++ }
    END { print c + 0 }'
}

case $case_name in
sigint)
  prompts 16 >in.txt
  run -m getp -i in.txt -o full.txt -n 8 -b 4 --ignore-eos 2>full.err || die "exit $?"
  "$RUN" "$MODEL" -z "$TOK" -m getp -i in.txt -o out.txt -n 8 -b 1 --ignore-eos 2>int.err &
  pid=$!; n=0
  until [ -f out.txt.partial ] && [ "$(grep -c '	' out.txt.partial)" -ge 3 ]; do
    kill -0 $pid 2>/dev/null || die "run ended before it could be interrupted"
    sleep 0.05; n=$((n+1)); [ $n -lt 2400 ] || die "no progress in 120 s"
  done
  kill -INT $pid; wait $pid; rc=$?
  [ $rc -eq 130 ] || die "exit $rc after SIGINT (expected 130)"
  [ ! -e out.txt ] || die "OUT exists after an interrupted run"
  d=$(check_partial out.txt.partial full.txt) || die "partial: $d"
  [ "$d" -ge 3 ] && [ "$d" -lt 16 ] || die "$d lines in the partial"
  grep -q "^getp: interrupted by SIGINT: $d/16 prompts done, kept in out.txt.partial; rerun with --resume to finish$" int.err ||
    die "no 'interrupted by SIGINT: $d/16 prompts done' line"
  run -m getp -i in.txt -o out.txt -n 8 -b 5 --ignore-eos --resume 2>resume.err || die "resume exit $?"
  cmp -s out.txt full.txt || die "resumed output differs from the uninterrupted run"
  [ ! -e out.txt.partial ] || die "partial left after resume"
  echo "sigint: interrupted after $d/16 prompts, resumed, output identical"
  ;;
diskfull)
  [ "$(id -u)" -eq 0 ] || { echo "SKIP: mounting a tmpfs needs root"; exit 77; }
  prompts 24 >in.txt
  run -m getp -i in.txt -o full.txt -n 40 -b 4 --ignore-eos 2>full.err || die "exit $?"
  sz=$(wc -c <full.txt)
  [ "$sz" -gt 4096 ] && [ "$sz" -lt 8192 ] || die "reference output is $sz bytes: adjust -n so it is 4..8 KiB"
  # (a) 8 KiB: OUT.partial fits, the final OUT.tmp does not (partial + OUT > 8 KiB).
  # (b) 4 KiB: OUT.partial itself fills the disk mid-run.
  for kib in 8 4; do
    mnt=$PWD/disk$kib; mkdir -p "$mnt"
    mount -t tmpfs -o size=${kib}k tmpfs "$mnt" 2>mount.err || { echo "SKIP: mount -t tmpfs not permitted: $(cat mount.err)"; exit 77; }
    run -m getp -i in.txt -o "$mnt/out.txt" -n 40 -b 4 --ignore-eos 2>full$kib.err; rc=$?
    [ $rc -eq 1 ] || die "${kib}k disk: exit $rc (expected 1)"
    [ "$(grep -c '^run: error: ' full$kib.err)" -eq 1 ] && tail -n 1 full$kib.err | grep -q "^run: error: $mnt/out.txt.*: No space left on device" ||
      die "${kib}k disk: no one-line 'No space left on device' error naming the file"
    echo "${kib}k disk: $(tail -n 1 full$kib.err)"
    [ ! -e "$mnt/out.txt" ] || die "${kib}k disk: OUT exists after a failed write"
    [ ! -e "$mnt/out.txt.tmp" ] || die "${kib}k disk: OUT.tmp left behind"
    [ -e "$mnt/out.txt.partial" ] || die "${kib}k disk: OUT.partial lost"
    d=$(check_partial "$mnt/out.txt.partial" full.txt) || die "${kib}k disk: partial: $d"
    echo "${kib}k disk: $d/24 complete lines kept in OUT.partial, all correct"
    # Free space: move the partial to a roomy folder, resume there.
    mkdir -p resume$kib && cp "$mnt/out.txt.partial" resume$kib/ && umount "$mnt"; mnt=""
    run -m getp -i in.txt -o resume$kib/out.txt -n 40 -b 3 --ignore-eos --resume 2>resume$kib.err || die "${kib}k: resume exit $?"
    cmp -s resume$kib/out.txt full.txt || die "${kib}k disk: resumed output differs from the uninterrupted run"
  done
  ;;
truncate)
  # A private copy of the model: truncating it must not touch the shared test model.
  cp "$MODEL" model.bin || die "cannot copy the model"
  size=$(wc -c <model.bin)
  prompts 16 >in.txt
  "$RUN" model.bin -z "$TOK" -m getp -i in.txt -o out.txt -n 64 -b 1 --ignore-eos 2>trunc.err &
  pid=$!; n=0
  until [ -f out.txt.partial ] && [ "$(grep -c '	' out.txt.partial)" -ge 2 ]; do
    kill -0 $pid 2>/dev/null || die "run ended before the model could be truncated"
    sleep 0.05; n=$((n+1)); [ $n -lt 2400 ] || die "no progress in 120 s"
  done
  truncate -s 4096 model.bin
  wait $pid; rc=$?
  [ $rc -eq 1 ] || die "exit $rc after the model was truncated (expected 1; 135 = killed by SIGBUS)"
  [ "$(wc -l <trunc.err | tr -d ' ')" -ge 1 ] && [ "$(grep -c '^run: error: ' trunc.err)" -eq 1 ] || die "not one error line"
  tail -n 1 trunc.err | grep -q "^run: error: model.bin: the file shrank from $size to 4096 bytes while in use (read at byte [0-9]*); do not modify or replace a file while a program uses it$" ||
    die "last line is not the truncation error: $(tail -n 1 trunc.err)"
  [ ! -e out.txt ] || die "OUT exists after a failed run"
  d=$(grep -c '	' out.txt.partial)
  [ "$d" -ge 2 ] && [ "$d" -lt 16 ] || die "$d lines in the partial"
  echo "truncate: $(tail -n 1 trunc.err) ($d/16 prompts kept in OUT.partial)"
  ;;
*) die "unknown case" ;;
esac
echo "PASS $case_name"
