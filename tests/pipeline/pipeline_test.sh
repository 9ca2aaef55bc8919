#!/usr/bin/env bash
# pipeline_test.sh: the `run` program as an MPI ring pipeline on the tiny model.
# usage: pipeline_test.sh CASE NP RUN MODEL TOKENIZER WORKDIR
#   same     getp OUT and generate text of NP ranks (several micro-batch counts, prompt chunking,
#            a hand-given --layers split) equal the 1-rank ones byte for byte; only rank 0 prints;
#            the getp JSON line has ranks, micro_batches and NP stage_busy_pct entries
#   chat     chat output of NP ranks equals the 1-rank chat
#   kill     SIGKILL of rank 1 mid-getp ends the whole job within 10 s naming rank 1; the finished
#            prompts stay in OUT.partial and --resume on NP ranks completes OUT = 1-rank OUT
#   sigterm  SIGTERM to rank 0 mid-getp: the ring is shut down cleanly (stage report printed,
#            exit 143), OUT.partial kept; --resume completes OUT = 1-rank OUT
#   stall    rank 1 stopped (SIGSTOP) mid-getp with --ring-timeout 2: its neighbours give up after
#            2 s naming rank 1 and the whole job ends (never a hang)
#   chatstall chat with --ring-timeout 2: idling 3 s between turns is fine (the ring waits on a
#            person without limit), but rank 1 stopped (SIGSTOP) before a turn ends the job within
#            a few seconds, rank 0 naming the micro-batch that did not come back
#   interrupt Ctrl-C (SIGINT) to mpirun at random times, 5 times, each run a --resume of the one
#            before; half of them twice in a row (mpirun then quits at once and its ranks end on
#            their own while the next --resume starts: the partial file's lock makes it wait). The
#            final OUT equals one process's, and no prompt is computed twice in the last run
#            (INTERRUPT_SEED=S repeats a sequence of times); after a single Ctrl-C, OUT.partial
#            does not change once mpirun has returned
#   mismatch rank NP-1 given another model file: every rank refuses to start, one message naming
#            which ranks have which file
#   errors   bad splits: one clear error line
#   bench    -m bench on NP ranks runs its three tests through the ring (pp, tg, getp; CSV on
#            stdout, the stage report of NP stages on stderr)
#   dp       data-parallel rings (--dp R, every R dividing NP): getp OUT equals the 1-rank OUT
#            byte for byte (greedy and sampled), every ring takes prompts; SIGTERM to rank 0
#            mid-getp keeps OUT.partial and a --resume with another shape completes it; generate
#            and chat run on ring 0 with the same text; an R that does not divide NP is one error
#   headsplit the LM head split over the NP ranks (--head-split on; auto where the cost model takes
#            it): getp OUT equals the 1-rank OUT byte for byte for greedy, top-k, top-k + top-p,
#            top-p and plain temperature sampling, with the rows counted where they were chosen
#            (slices' candidates for greedy/top-k, rank 0's whole head for the others); generate
#            (one sequence, forced on) equals too; --head-split off has no second lap; a bad value
#            is one error line
#   spawn    one process that "sees" NP GPUs (GPTOSS_VISIBLE_GPUS_STANDIN=NP, no launcher) runs
#            itself as mpirun -np NP: getp OUT (one ring, and --dp NP) and generate equal one
#            rank's; --no-spawn stays one rank; SIGTERM mid-getp (to the same process id, now
#            mpirun) ends every rank, keeps OUT.partial, and a --resume completes it
# mpirun as root with oversubscription: the environment comes from CTest (OMPI_ALLOW_RUN_AS_ROOT..).
set -u
case_name=$1 NP=$2 RUN=$3 MODEL=$4 TOK=$5 W=$6
rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
die() { echo "FAIL ($case_name np$NP): $*"; for f in *.err; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done; exit 1; }
has() { grep -Eq -- "$2" "$1" || die "$1 lacks /$2/"; }
one() { "$RUN" "$MODEL" -z "$TOK" "$@"; }                      # a world of one, no launcher
many() { timeout -k 5 120 mpirun --oversubscribe -np "$NP" "$RUN" "$MODEL" -z "$TOK" "$@"; }
prompts() {  # prompts N: N distinct prompts, the last one long (it is prefilled in chunks)
  echo "$1"; i=1
  while [ "$i" -lt "$1" ]; do echo "Prompt number $i: the quick brown fox $i"; i=$((i+1)); done
  echo "A much longer prompt that is cut into several chunks: one two three four five six seven eight nine ten eleven twelve"
}
count_done() { if [ -f out.txt.partial ]; then grep -c "	" out.txt.partial; else echo 0; fi; }
# wait_progress PID N WHAT: until out.txt.partial holds N finished prompts (60 s at most), while
# PID runs
wait_progress() {
  n=0
  while [ "$(count_done)" -lt "$2" ]; do
    kill -0 "$1" 2>/dev/null || die "$3 ended before the fault"
    sleep 0.05; n=$((n+1)); [ $n -lt 1200 ] || die "no progress in 60 s"
  done
}
# pid of rank R among the descendants of PID $1 (timeout -> mpirun -> ranks)
rank_pid() {
  for p in $(pgrep -P "$1") $(for c in $(pgrep -P "$1"); do pgrep -P "$c"; done); do
    tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && { echo "$p"; return; }
  done
}

case $case_name in
same)
  prompts 5 >in.txt
  one -m getp -i in.txt -o ref.txt -n 12 -b 3 2>ref.err || die "1 rank: exit $?"
  [ "$(wc -l <ref.txt)" -eq 5 ] || die "ref.txt does not have 5 lines"
  many -m getp -i in.txt -o a.txt -n 12 -b 3 >a.out 2>a.err || die "np$NP: exit $?"
  cmp -s ref.txt a.txt || die "np$NP default micro-batches: OUT differs from 1 rank"
  [ -s a.out ] && die "getp wrote to stdout"
  [ "$(grep -c '^getp: {' a.err)" -eq 1 ] || die "not exactly one getp JSON line (only rank 0 prints)"
  [ "$(grep -c '^model: ' a.err)" -eq 1 ] || die "start-up summary printed more than once"
  has a.err "\"ranks\": $NP, \"micro_batches\": $NP, \"stage_busy_pct\": \\[[0-9.]+(, [0-9.]+){$((NP-1))}\\]"
  [ "$(grep -c '^stage [0-9]* busy' a.err)" -eq "$NP" ] || die "stage report lacks $NP lines"
  has a.err "pipeline: $NP ranks"
  has a.err "^shape: one ring of $NP ranks \\(auto: CPU backend"
  # More micro-batches than ranks, small prompt chunks (prefill pipelines), and a paged KV cache
  # of one sequence's worth (48 positions at -c 48, blocks of 8): the 3 slots wait for blocks and
  # take ones others held, every rank's cache following the blocks in the rows.
  many -m getp -i in.txt -o b.txt -n 12 -b 3 --micro-batches $((NP+2)) --chunk 8 -c 48 --kv-tokens 48 --kv-block 8 2>b.err || die "np$NP M=$((NP+2)): exit $?"
  cmp -s ref.txt b.txt || die "np$NP --micro-batches $((NP+2)) --chunk 8 --kv-tokens 48: OUT differs from 1 rank"
  has b.err "\\(3 slots sharing 48 positions \\(--kv-tokens\\), at most 48 each, paged in blocks of 8\\)"
  # Without -b the 5 prompts take 5 KV-cache slots, not the default 32: rank 0 tells every rank
  # the count before the ring opens.
  many -m getp -i in.txt -o n.txt -n 12 2>n.err || die "np$NP without -b: exit $?"
  cmp -s ref.txt n.txt || die "np$NP without -b: OUT differs from 1 rank"
  has n.err "KV cache [0-9.]+ MiB on rank 0 \\(5 slots x 4096 positions"
  many -m getp -i in.txt -o c.txt -n 12 -b 1 --micro-batches 1 2>c.err || die "np$NP M=1: exit $?"
  cmp -s ref.txt c.txt || die "np$NP --micro-batches 1 -b 1: OUT differs from 1 rank"
  if [ "$NP" -eq 2 ]; then
    many -m getp -i in.txt -o d.txt -n 12 -b 3 --layers 3,1 2>d.err || die "np2 --layers 3,1: exit $?"
    cmp -s ref.txt d.txt || die "--layers 3,1: OUT differs from 1 rank"
    has d.err "rank 0: layers \[0, 3\) \+ embedding \+ LM head; rank 1: layers \[3, 4\)"
  fi
  # generate: the same text; a prompt prefilled in chunks of 2 tokens across the ring.
  one -m generate -i "Hello world, this is a test of the pipeline" -n 12 -T 0 --ignore-eos >g1.txt 2>g1.err || die "generate 1 rank: exit $?"
  many -m generate -i "Hello world, this is a test of the pipeline" -n 12 -T 0 --ignore-eos --chunk 4 --micro-batches 2 >gn.txt 2>gn.err || die "generate np$NP: exit $?"
  [ -s g1.txt ] || die "no generated text"
  # The text ends with one newline of its own: byte for byte, nothing added by mpirun's forwarding.
  [ "$(tail -c 1 g1.txt | od -An -tx1 | tr -d ' ')" = 0a ] || die "generate: the text does not end with a newline"
  cmp -s g1.txt gn.txt || die "generate np$NP: text differs from 1 rank"
  # Sampling too (each request has its own seeded stream).
  one -m generate -i "Once upon a time" -n 10 -T 0.9 -s 7 --ignore-eos >s1.txt 2>s1.err || die "sampled 1 rank: exit $?"
  many -m generate -i "Once upon a time" -n 10 -T 0.9 -s 7 --ignore-eos >sn.txt 2>sn.err || die "sampled np$NP: exit $?"
  cmp -s s1.txt sn.txt || die "sampled generate np$NP differs from 1 rank"
  ;;
dp)
  prompts 12 >in.txt
  one -m getp -i in.txt -o ref.txt -n 12 -b 2 2>ref.err || die "1 rank: exit $?"
  one -m getp -i in.txt -o sref.txt -n 12 -b 2 -T 0.9 -s 11 2>sref.err || die "1 rank sampled: exit $?"
  R=2
  while [ $R -le "$NP" ]; do
    if [ $((NP % R)) -eq 0 ]; then
      many -m getp -i in.txt -o a$R.txt -n 12 -b 2 --dp $R 2>a$R.err || die "--dp $R: exit $?"
      cmp -s ref.txt a$R.txt || die "np$NP --dp $R: OUT differs from 1 rank"
      has a$R.err "^shape: $R rings x $((NP / R)) ranks? \\(--dp $R\\); prompts go to the rings by load"
      has a$R.err "\"rings\": $R, \"ranks\": $NP,"
      # Every ring ran prompts.
      per=$(sed -n 's/^getp: prompts per ring \([0-9, ]*\);.*/\1/p' a$R.err)
      [ "$(echo "$per" | tr ',' '\n' | grep -c '[1-9]')" -eq $R ] || die "--dp $R: a ring got no prompt ($per)"
      [ "$(grep -c '^getp: {' a$R.err)" -eq 1 ] || die "--dp $R: not exactly one getp JSON line"
      many -m getp -i in.txt -o s$R.txt -n 12 -b 2 -T 0.9 -s 11 --dp $R 2>s$R.err || die "--dp $R sampled: exit $?"
      cmp -s sref.txt s$R.txt || die "np$NP --dp $R sampled: OUT differs from 1 rank"
      # Without -b every ring's ranks take 12 slots (the prompt count, from rank 0), not 32.
      many -m getp -i in.txt -o n$R.txt -n 12 --dp $R 2>n$R.err || die "--dp $R without -b: exit $?"
      cmp -s ref.txt n$R.txt || die "np$NP --dp $R without -b: OUT differs from 1 rank"
      has n$R.err "KV cache [0-9.]+ MiB( on rank 0)? \\(12 slots x 4096 positions"
    fi
    R=$((R * 2))
  done
  # Interrupted as NP rings of one rank, resumed as 2 rings of NP/2 ranks.
  args="-m getp -i in.txt -n 40 -b 1 --ignore-eos"
  one $args -o lref.txt 2>lref.err || die "1 rank (long): exit $?"
  timeout -k 5 120 mpirun --oversubscribe -np "$NP" "$RUN" "$MODEL" -z "$TOK" $args --dp "$NP" -o out.txt >job.out 2>job.err &
  mp=$!
  wait_progress $mp 2 "the --dp job"
  victim=$(rank_pid $mp 0)
  [ -n "$victim" ] || die "could not find rank 0's process"
  kill -TERM "$victim"
  wait $mp; rc=$?
  [ "$rc" -ne 0 ] || die "the interrupted --dp job succeeded"
  [ ! -e out.txt ] || die "OUT written by an interrupted --dp job"
  has job.err "getp: interrupted by SIGTERM: [0-9]+/12 prompts done, kept in out.txt.partial"
  many $args -o out.txt --resume --dp 2 2>resume.err || die "--resume --dp 2: exit $?"
  has resume.err "getp: resumed: [0-9]+/12 prompts were already done"
  cmp -s lref.txt out.txt || die "--dp: resumed OUT differs from the 1-rank OUT"
  # generate and chat: ring 0 only, the same text.
  one -m generate -i "Hello world, this is a test of the rings" -n 12 -T 0 --ignore-eos >g1.txt 2>g1.err || die "generate 1 rank: exit $?"
  many -m generate -i "Hello world, this is a test of the rings" -n 12 -T 0 --ignore-eos --dp 2 >g2.txt 2>g2.err || die "generate --dp 2: exit $?"
  cmp -s g1.txt g2.txt || die "generate --dp 2: text differs from 1 rank"
  has g2.err "^shape: 2 rings x $((NP / 2)) ranks? \\(--dp 2\\); -m generate runs on ring 0, the other ring waits"
  printf 'Hello there\nWhat is 2+2?\n' >chat.txt
  one -m chat -n 10 <chat.txt >c1.txt 2>c1.err || die "chat 1 rank: exit $?"
  many -m chat -n 10 --dp 2 <chat.txt >c2.txt 2>c2.err || die "chat --dp 2: exit $?"
  [ "$(cat c1.txt)" = "$(cat c2.txt)" ] || die "chat --dp 2 output differs from 1 rank"
  if [ "$NP" -ge 4 ]; then
    many -m getp -i in.txt -o e.txt --dp 3 >e.out 2>e.err && die "--dp 3 on $NP ranks succeeded"
    has e.err "run: error: --dp 3: the $NP ranks must form rings of equal size"
    [ "$(grep -c '^run: error' e.err)" -eq 1 ] || die "--dp 3: the error was printed more than once"
  fi
  ;;
spawn)
  prompts 8 >in.txt
  one -m getp -i in.txt -o ref.txt -n 12 -b 2 2>ref.err || die "1 rank: exit $?"
  standin() { GPTOSS_VISIBLE_GPUS_STANDIN=$NP timeout -k 5 120 "$RUN" "$MODEL" -z "$TOK" "$@"; }
  standin -m getp -i in.txt -o a.txt -n 12 -b 2 2>a.err || die "spawned getp: exit $?"
  cmp -s ref.txt a.txt || die "spawned getp: OUT differs from 1 rank"
  has a.err "^run: this process sees $NP GPUs: running it as $NP ranks, one per GPU \\(mpirun -np $NP; --no-spawn uses one\\)"
  has a.err "\"rings\": 1, \"ranks\": $NP,"
  [ "$(grep -c '^stage [0-9]* busy' a.err)" -eq "$NP" ] || die "no $NP-stage report"
  standin -m getp -i in.txt -o b.txt -n 12 -b 2 --dp "$NP" 2>b.err || die "spawned getp --dp $NP: exit $?"
  cmp -s ref.txt b.txt || die "spawned getp --dp $NP: OUT differs from 1 rank"
  has b.err "\"rings\": $NP, \"ranks\": $NP,"
  standin -m getp -i in.txt -o c.txt -n 12 -b 2 --no-spawn 2>c.err || die "--no-spawn: exit $?"
  cmp -s ref.txt c.txt || die "--no-spawn: OUT differs from 1 rank"
  has c.err "\"rings\": 1, \"ranks\": 1,"
  grep -q "running it as" c.err && die "--no-spawn started ranks"
  # A chosen GPU (GPTOSS_DEVICE, as launch/bind.sh sets it) or mpirun -np 1: one rank, as asked.
  GPTOSS_DEVICE=0 standin -m getp -i in.txt -o d.txt -n 12 -b 2 2>d.err || die "GPTOSS_DEVICE=0: exit $?"
  has d.err "\"rings\": 1, \"ranks\": 1,"
  GPTOSS_VISIBLE_GPUS_STANDIN=$NP timeout -k 5 120 mpirun --oversubscribe -np 1 "$RUN" "$MODEL" -z "$TOK" \
      -m getp -i in.txt -o e.txt -n 12 -b 2 2>e.err || die "mpirun -np 1: exit $?"
  has e.err "\"rings\": 1, \"ranks\": 1,"
  cmp -s ref.txt e.txt || die "mpirun -np 1: OUT differs from 1 rank"
  one -m generate -i "Hello world, this is a spawned ring" -n 12 -T 0 --ignore-eos >g1.txt 2>g1.err || die "generate 1 rank: exit $?"
  standin -m generate -i "Hello world, this is a spawned ring" -n 12 -T 0 --ignore-eos >g2.txt 2>g2.err || die "spawned generate: exit $?"
  cmp -s g1.txt g2.txt || die "spawned generate: text differs from 1 rank"
  # SIGTERM to the first process mid-getp: every copy ends, OUT.partial is kept. (An input name of
  # its own: other tests running beside this one must not match the search for its copies.)
  cp in.txt spawn-in.txt
  args="-m getp -i spawn-in.txt -n 40 -b 1 --ignore-eos"
  one $args -o lref.txt 2>lref.err || die "1 rank (long): exit $?"
  GPTOSS_VISIBLE_GPUS_STANDIN=$NP "$RUN" "$MODEL" -z "$TOK" $args -o out.txt >job.out 2>job.err &
  pid=$!
  wait_progress $pid 2 "the spawned job"
  kill -TERM $pid
  wait $pid; rc=$?
  [ "$rc" -ne 0 ] || die "the spawned job succeeded after SIGTERM"
  has job.err "getp: interrupted by SIGTERM: [0-9]+/8 prompts done, kept in out.txt.partial"
  # The ranks end with mpirun; on a loaded machine that can take a few seconds.
  n=0
  while pgrep -f "$MODEL -z $TOK $args -o out.txt" >/dev/null; do
    sleep 0.1; n=$((n+1)); [ $n -lt 150 ] || die "a rank outlived the job by 15 s"
  done
  standin $args -o out.txt --resume 2>resume.err || die "spawned --resume: exit $?"
  cmp -s lref.txt out.txt || die "spawned --resume: OUT differs from 1 rank"
  ;;
chat)
  printf 'Hello there\nWhat is 2+2?\n' >in.txt
  one -m chat -n 10 <in.txt >c1.txt 2>c1.err || die "chat 1 rank: exit $?"
  many -m chat -n 10 --chunk 16 <in.txt >cn.txt 2>cn.err || die "chat np$NP: exit $?"
  [ "$(grep -c '^\[turn ' cn.err)" -eq 2 ] || die "expected 2 turns"
  [ "$(cat c1.txt)" = "$(cat cn.txt)" ] || die "chat np$NP output differs from 1 rank"
  ;;
kill|sigterm|stall)
  prompts 10 >in.txt
  args="-m getp -i in.txt -n 40 -b 1 --ignore-eos"
  [ "$case_name" = stall ] && args="$args --ring-timeout 2"
  one $args -o ref.txt 2>ref.err || die "1 rank: exit $?"
  timeout -k 5 120 mpirun --oversubscribe -np "$NP" "$RUN" "$MODEL" -z "$TOK" $args -o out.txt >job.out 2>job.err &
  mp=$!
  wait_progress $mp 2 "the job"
  case $case_name in
    kill) victim=$(rank_pid $mp 1); sig=KILL ;;
    stall) victim=$(rank_pid $mp 1); sig=STOP ;;
    *) victim=$(rank_pid $mp 0); sig=TERM ;;
  esac
  [ -n "$victim" ] || die "could not find the rank's process"
  t0=$(date +%s.%N)
  kill -$sig "$victim"
  wait $mp; rc=$?
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  echo "job exit $rc, ${dt} s after SIG$sig"
  awk -v d="$dt" 'BEGIN { exit !(d < 10) }' || die "the job took ${dt} s to end"
  [ "$rc" -ne 0 ] || die "the job succeeded"
  [ ! -e out.txt ] || die "OUT written by an interrupted job"
  [ "$(count_done)" -ge 2 ] || die "finished prompts lost from out.txt.partial"
  if [ "$case_name" = kill ]; then
    has job.err "rank 1 .*(signal 9|Killed)"
  elif [ "$case_name" = stall ]; then
    has job.err "run: error: rank [0-9]+/$NP .*no (message|credit) from rank 1 for 2 s"
  else
    has job.err "getp: interrupted by SIGTERM: [0-9]+/10 prompts done, kept in out.txt.partial"
    [ "$(grep -c '^stage [0-9]* busy' job.err)" -eq "$NP" ] || die "the ring was not shut down cleanly (no stage report)"
  fi
  [ "$case_name" = stall ] && { kill -CONT "$victim" 2>/dev/null; kill -KILL "$victim" 2>/dev/null; }
  many $args -o out.txt --resume 2>resume.err || die "--resume: exit $?"
  has resume.err "getp: resumed: [0-9]+/10 prompts were already done"
  cmp -s ref.txt out.txt || die "resumed OUT differs from the 1-rank OUT"
  ;;
chatstall)
  mkfifo in.fifo
  timeout -k 5 120 mpirun --oversubscribe -np "$NP" "$RUN" "$MODEL" -z "$TOK" -m chat -n 8 \
      --ring-timeout 2 <in.fifo >chat.out 2>job.err &
  mp=$!
  exec 3>in.fifo
  turns() { grep -c '^\[turn ' job.err 2>/dev/null || true; }
  wait_turns() {  # wait_turns N: until N turns are reported (60 s at most)
    local n=0
    while [ "$(turns)" -lt "$1" ]; do
      kill -0 $mp 2>/dev/null || { exec 3>&-; die "the job ended before turn $1"; }
      sleep 0.05; n=$((n+1)); [ $n -lt 1200 ] || { exec 3>&-; die "turn $1 did not finish in 60 s"; }
    done
  }
  echo "Hello there" >&3
  wait_turns 1
  sleep 3  # idle for longer than --ring-timeout: no rank may give up
  echo "What is 2+2?" >&3
  wait_turns 2
  victim=$(rank_pid $mp 1)
  [ -n "$victim" ] || { exec 3>&-; die "could not find rank 1's process"; }
  kill -STOP "$victim"
  t0=$(date +%s.%N)
  echo "And 3+3?" >&3
  while kill -0 $mp 2>/dev/null && ! grep -q "^run: error" job.err; do sleep 0.05; done
  te=$(date +%s.%N)
  wait $mp; rc=$?
  echo "error printed $(awk -v a="$t0" -v b="$te" 'BEGIN { printf "%.1f", b - a }') s after the third turn was typed"
  exec 3>&-
  kill -CONT "$victim" 2>/dev/null; kill -KILL "$victim" 2>/dev/null
  dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  echo "job exit $rc, ${dt} s after the third turn was typed"
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || die "exit $rc"
  awk -v d="$dt" 'BEGIN { exit !(d < 10) }' || die "the job took ${dt} s to end"
  has job.err "run: error: rank 0/$NP .*micro-batch [0-9]+ has not come back from rank $((NP-1)) after 2 s \(--ring-timeout\): a rank is stuck"
  [ "$(turns)" -eq 2 ] || die "expected 2 finished turns, got $(turns)"
  ;;
interrupt)
  prompts 10 >in.txt
  args="-m getp -i in.txt -n 16 -b 2 --ignore-eos"
  one $args -o ref.txt 2>ref.err || die "1 rank: exit $?"
  seed=${INTERRUPT_SEED:-$$}
  echo "random seed $seed (INTERRUPT_SEED=$seed repeats the sequence)"
  RANDOM=$seed
  k=0
  while [ ! -e out.txt ] && [ $k -lt 5 ]; do
    k=$((k+1))
    before=$(count_done)
    mpirun --oversubscribe -np "$NP" "$RUN" "$MODEL" -z "$TOK" $args -o out.txt --resume >/dev/null 2>run$k.err &
    mp=$!
    # After 0, 1 or 2 more prompts are done, then 0 to 300 ms more: within a step, or in start-up.
    more=$((RANDOM % 3)) ms=$((RANDOM % 300)) twice=$((RANDOM % 2)) n=0
    while [ "$(count_done)" -lt $((before + more)) ] && kill -0 $mp 2>/dev/null; do
      sleep 0.02; n=$((n+1)); [ $n -lt 3000 ] || die "no progress in 60 s"
    done
    sleep "$(awk -v m=$ms 'BEGIN { print m / 1000 }')"
    kill -INT $mp 2>/dev/null
    [ $twice = 1 ] && { sleep 0.05; kill -INT $mp 2>/dev/null; }
    wait $mp; rc=$?
    echo "interrupt $k ($([ $twice = 1 ] && echo twice || echo once)) after $more more prompts + $ms ms: mpirun exit $rc, $(count_done) done"
    # Once, mpirun returns after it has reaped its ranks: OUT.partial is final, nothing is written
    # after. (Twice, it quits at once and rank 0 may still append the step in flight before it
    # sees the launcher gone: src/run/README.md, "Interrupting under mpirun".)
    if [ $twice = 0 ]; then
      at_return=$(count_done)
      sleep 1.5
      [ "$(count_done)" -eq "$at_return" ] ||
        die "interrupt $k: OUT.partial held $at_return prompts when mpirun returned, $(count_done) 1.5 s later"
    fi
  done
  if [ ! -e out.txt ]; then
    many $args -o out.txt --resume 2>final.err || die "the last --resume: exit $?"
    # Every prompt once: the last run generated 16 tokens for each prompt it did not resume.
    resumed=$(sed -n 's/.*"resumed_prompts": \([0-9]*\).*/\1/p' final.err)
    generated=$(sed -n 's/.*"generated_tokens": \([0-9]*\).*/\1/p' final.err)
    echo "last run: $resumed prompts resumed, $generated tokens generated"
    [ "$generated" -eq $(( (10 - resumed) * 16 )) ] || die "the last run generated $generated tokens for $((10 - resumed)) prompts"
  fi
  [ ! -e out.txt.partial ] || die "out.txt.partial left behind"
  cmp -s ref.txt out.txt || die "OUT after $k interrupts differs from the uninterrupted OUT"
  ;;
mismatch)
  cp "$MODEL" other.bin
  printf 'X' | dd of=other.bin bs=1 seek=$(( $(stat -c %s other.bin) - 100 )) conv=notrunc 2>/dev/null
  printf '1\nhello\n' >in.txt
  timeout -k 5 60 mpirun --oversubscribe -np $((NP-1)) "$RUN" "$MODEL" -z "$TOK" -m getp -i in.txt -o o.txt : \
      -np 1 "$RUN" other.bin -z "$TOK" -m getp -i in.txt -o o.txt >job.out 2>job.err
  rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || die "exit $rc"
  has job.err "^run: error: model file differs between ranks: ranks 0(,[0-9])* have .*tiny.bin, format 1 .*; rank $((NP-1)) has other.bin, format 1 .*every rank must be given the same file"
  [ "$(grep -c 'model file differs' job.err)" -eq 1 ] || die "the mismatch was reported more than once"
  ;;
headsplit)
  prompts 7 >in.txt
  # rows chosen from the slices / from the whole head, from rank 0's --profile line
  split_counts() { sed -n 's/^pipeline profile rank 0: head split: \([0-9]*\) rows chosen from the slices. candidates, \([0-9]*\) from the whole head$/\1 \2/p' "$1"; }
  for samp in "-T 0" "-T 0.8 --top-k 20" "-T 1.2 --top-k 64 -p 0.9" "-T 0.9 -p 0.95" "-T 1.0" \
              "-T 0.7 --top-k 100"; do
    # shellcheck disable=SC2086
    one -m getp -i in.txt -o ref.txt -n 10 -b 6 -s 11 $samp 2>ref.err || die "1 rank ($samp): exit $?"
    # shellcheck disable=SC2086
    many -m getp -i in.txt -o a.txt -n 10 -b 6 -s 11 $samp --head-split on --profile >/dev/null 2>a.err ||
      die "np$NP --head-split on ($samp): exit $?"
    cmp -s ref.txt a.txt || die "--head-split on ($samp): OUT differs from 1 rank"
    has a.err "LM head split over the ranks \(vocab ids rank 0 \[0, "
    read -r sl wh <<<"$(split_counts a.err)"
    [ -n "$sl" ] || die "($samp) no head-split profile line"
    case "$samp" in
      *top-k\ 100* | "-T 0.9 -p 0.95" | "-T 1.0")
        [ "$sl" -eq 0 ] && [ "$wh" -gt 0 ] || die "($samp) rows from slices $sl, whole head $wh: the whole head should choose all" ;;
      *) [ "$sl" -gt 0 ] && [ "$wh" -eq 0 ] || die "($samp) rows from slices $sl, whole head $wh: the slices should choose all" ;;
    esac
  done
  many -m getp -i in.txt -o b.txt -n 10 -b 6 -s 11 -T 0 --head-split off --profile >/dev/null 2>b.err ||
    die "--head-split off: exit $?"
  one -m getp -i in.txt -o ref.txt -n 10 -b 6 -s 11 -T 0 2>/dev/null
  cmp -s ref.txt b.txt || die "--head-split off: OUT differs from 1 rank"
  grep -q "head split\|LM head split" b.err && die "--head-split off still split the head"
  one -m generate -i "Hello there" -n 12 -T 0.8 --top-k 30 -s 3 >g1.txt 2>/dev/null || die "1 rank generate"
  many -m generate -i "Hello there" -n 12 -T 0.8 --top-k 30 -s 3 --head-split on >g2.txt 2>g2.err ||
    die "np$NP generate --head-split on: exit $?"
  cmp -s g1.txt g2.txt || die "generate --head-split on differs from 1 rank"
  many -m getp -i in.txt -o o.txt --head-split maybe >/dev/null 2>e.err && die "--head-split maybe accepted"
  has e.err "^run: error: --head-split: expected auto, on or off, got 'maybe'"
  [ "$(grep -c '^run: error' e.err)" -eq 1 ] || die "not one error line"
  ;;
errors)
  printf '1\nhello\n' >in.txt
  many -m getp -i in.txt -o o.txt --layers 1,1 >/dev/null 2>e1.err && die "--layers 1,1 accepted"
  has e1.err "^run: error: --layers 1,1: (2 blocks for $NP ranks|adds up to 2 layers, the model has 4)"
  [ "$(grep -c '^run: error' e1.err)" -eq 1 ] || die "not one error line"
  timeout -k 5 60 mpirun --oversubscribe -np 5 "$RUN" "$MODEL" -z "$TOK" -m getp -i in.txt -o o.txt >/dev/null 2>e2.err && die "5 ranks for 4 layers accepted"
  has e2.err "^run: error: the model has 4 layers: it cannot be split over 5 ranks"
  [ "$(grep -c '^run: error' e2.err)" -eq 1 ] || die "not one error line"
  many -m getp -i in.txt -o o.txt --micro-batches 65 >/dev/null 2>e3.err && die "--micro-batches 65 accepted"
  has e3.err "^run: error: --micro-batches: must be in \[0, 64\]"
  [ "$(grep -c '^run: error' e3.err)" -eq 1 ] || die "not one error line"
  many -m getp -i in.txt -o o.txt --kv-cache bf16 >/dev/null 2>e4.err && die "--kv-cache bf16 accepted on the CPU"
  has e4.err "^run: error: --kv-cache bf16: the CPU backend keeps its KV cache in f32 only"
  [ "$(grep -c '^run: error' e4.err)" -eq 1 ] || die "not one error line"
  many -m getp -i in.txt -o o.txt --precision fast >/dev/null 2>e5.err && die "--precision fast accepted on the CPU"
  has e5.err "^run: error: --precision fast: the CPU backend computes in fp32 only \(exact\)"
  [ "$(grep -c '^run: error' e5.err)" -eq 1 ] || die "not one error line"
  many -m getp -i in.txt -o o.txt --precision exact >/dev/null 2>e6.err || die "--precision exact refused on the CPU: $(cat e6.err)"
  ;;
bench)
  many -m bench -n 4 --pp 16 --getp-prompt 8 --getp-new 4 -b 2 -r 1 --format csv >b.csv 2>b.err ||
    die "np$NP bench: exit $?"
  for t in pp16 tg4 'getp p8 n4'; do
    grep -q ",cpu,$t,[0-9]*,1,[0-9.]*,[0-9.]*,0.00,0.0000\$" b.csv || die "bench: no CSV row for $t (no limit without peaks)"
  done
  [ "$(grep -c '^stage [0-9]* busy' b.err)" -eq "$NP" ] || die "bench: stage report lacks $NP lines"
  has b.err "^bench: limits from no read bandwidth \\(--peak-gbs\\) and no matrix peak"
  # Prefill and decode at batch, with given ceilings: every row has a limit and the fraction is
  # its mean over that limit.
  many -m bench -n 4 --pp 16 --getp-prompt 8 --getp-new 4 -b 3 -r 1 --pp-batch 3 --tg-batch 2 \
       --peak-gbs 50 --peak-tflops 1 --format csv >c.csv 2>c.err || die "np$NP bench at batch: exit $?"
  grep -q ",cpu,pp16,3,1," c.csv || die "bench: pp at batch 3 missing"
  grep -q ",cpu,tg4,2,1," c.csv || die "bench: tg at batch 2 missing"
  has c.err "^bench: limits from 50 GB/s read bandwidth \\(given\\) and 1.0 TFLOP/s matrix peak \\(given\\)"
  tail -n +2 c.csv | awk -F, '{ m = $(NF-3); l = $(NF-1); f = $NF;
      if (!(l > 0) || (f - m / l > 0.0001) || (m / l - f > 0.0001)) { print "bad row: " $0; bad = 1 } }
      END { exit bad }' || die "bench: a limit or fraction is wrong"
  ;;
*) die "unknown case" ;;
esac
echo "PASS $case_name np$NP"
