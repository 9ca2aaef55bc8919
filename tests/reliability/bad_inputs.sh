#!/bin/sh
# bad_inputs.sh: `run` given inputs of the wrong kind says exactly what is wrong, in one line,
# exit 1, nothing written. (tests/run/test_options.cpp checks every flag's range message at the
# parser level; tests/model checks every corrupt model file; this checks the program end to end.)
# usage: bad_inputs.sh RUN EXPORT_MODEL MODEL TOKENIZER WORKDIR
RUN=$1 EXPORT=$2 MODEL=$3 TOK=$4 W=$5
rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 1
fails=0
# expect EXACT_MESSAGE ARGS...: exit 1, stderr's last line == "run: error: EXACT_MESSAGE", one
# error line, no output file.
expect() {
  msg=$1; shift
  "$RUN" "$@" </dev/null >out.txt 2>err.txt; rc=$?
  got=$(tail -n 1 err.txt)
  if [ $rc -ne 1 ] || [ "$got" != "run: error: $msg" ] || [ "$(grep -c '^run: error: ' err.txt)" -ne 1 ]; then
    echo "FAIL: run $*"; echo "  expected exit 1 and: run: error: $msg"; echo "  got exit $rc and:"; sed 's/^/    /' err.txt
    fails=$((fails+1))
  else
    echo "ok: $msg"
  fi
  [ ! -e o.txt ] && [ ! -e o.txt.partial ] || { echo "FAIL: output written for: $*"; fails=$((fails+1)); }
}
printf '2\nhello\nworld\n' >in.txt

# The model: a directory, /dev/null, an empty file, other programs' files.
mkdir -p adir
expect "adir: is a directory, not a gpt-oss model file (to convert a checkpoint folder use export-model)" adir -z "$TOK" -i hi
expect "/dev/null: not a regular file (a gpt-oss model file is expected)" /dev/null -z "$TOK" -i hi
: >empty.bin
expect "empty.bin: file is empty (not a gpt-oss model file)" empty.bin -z "$TOK" -i hi
printf 'GGUF\003\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' >m.gguf
expect "m.gguf: not a gpt-oss model file (this looks like a GGUF file)" m.gguf -z "$TOK" -i hi
"$EXPORT" --synthetic micro hf --seed 2 >/dev/null 2>&1 || { echo "FAIL: export-model --synthetic micro"; exit 1; }
expect "hf/model.safetensors: not a gpt-oss model file (this looks like a safetensors file; convert its checkpoint folder with export-model)" hf/model.safetensors -z "$TOK" -i hi
expect "hf: is a directory, not a gpt-oss model file (to convert a checkpoint folder use export-model)" hf -z "$TOK" -i hi
expect "$TOK: not a gpt-oss model file (bad magic)" "$TOK" -z "$TOK" -i hi

# A tokenizer whose vocab does not fit the model (the real o200k_harmony tokenizer on the micro
# model's 1024-id vocab), with the default --stop ids (which are outside 1024, but the root cause
# must be named), and tokenizer paths that are not tokenizers.
"$EXPORT" hf micro.bin >/dev/null 2>&1 || { echo "FAIL: export-model hf micro.bin"; exit 1; }
expect "$TOK: the tokenizer has 201088 ids but the model micro.bin has a vocabulary of 1024" micro.bin -z "$TOK" -i hi
expect "$TOK: the tokenizer has 201088 ids but the model micro.bin has a vocabulary of 1024" micro.bin -z "$TOK" -m getp -i in.txt -o o.txt
expect "adir: not a regular file" "$MODEL" -z adir -i hi
expect "/dev/null: not a regular file" "$MODEL" -z /dev/null -i hi

# Numbers in flags: zero, negative, absurd (every flag's range: tests/run/test_options.cpp).
expect "-n: max new tokens must be in [1, 131072], got 0" "$MODEL" -z "$TOK" -i hi -n 0
expect "-n: max new tokens must be in [1, 131072], got -1" "$MODEL" -z "$TOK" -i hi -n -1
expect "-n: max new tokens must be in [1, 131072], got 1000000000" "$MODEL" -z "$TOK" -i hi -n 1000000000
expect "Could not convert: --max-new = 99999999999999999999 (see --help)" "$MODEL" -z "$TOK" -i hi -n 99999999999999999999
expect "-b: max concurrent sequences must be in [1, 16384], got 0" "$MODEL" -z "$TOK" -m getp -i in.txt -o o.txt -b 0
expect "-b: max concurrent sequences must be in [1, 16384], got -4" "$MODEL" -z "$TOK" -m getp -i in.txt -o o.txt -b -4
expect "-c: context must be in [2, 131072], got 1" "$MODEL" -z "$TOK" -i hi -c 1
expect "--chunk: per-step token budget must be in [1, 65536], got 100000000" "$MODEL" -z "$TOK" -i hi --chunk 100000000
expect "-t: threads must be in [0, 4096], got -1" "$MODEL" -z "$TOK" -i hi -t -1
expect "--top-k: 300000 is larger than the vocabulary (201088)" "$MODEL" -z "$TOK" -i hi --top-k 300000

# A prompt longer than the context (getp: checked before any inference; generate too).
printf '2\nshort\nthis prompt is certainly longer than sixteen tokens of context, it goes on and on and on\n' >long.txt
expect "long.txt:3: the prompt is 18 tokens; it must be shorter than the context (-c 16)" "$MODEL" -z "$TOK" -m getp -i long.txt -o o.txt -c 16

[ $fails -eq 0 ] || { echo "FAIL: $fails case(s)"; exit 1; }
echo "PASS bad_inputs"
