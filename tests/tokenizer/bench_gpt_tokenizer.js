// bench_gpt_tokenizer.js: encode speed of gpt-tokenizer (o200k_harmony) on a text file; prints
// one JSON object. Run by bench-tokenizer: node bench_gpt_tokenizer.js FILE REPS
'use strict';
const fs = require('fs');
const { encode } = require('gpt-tokenizer/cjs/encoding/o200k_harmony');
const buf = fs.readFileSync(process.argv[2]);
const reps = +(process.argv[3] || 3);
const text = new TextDecoder().decode(buf);
let best = Infinity, bestCpu = Infinity, n = 0;
for (let r = 0; r < reps; r++) {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  n = encode(text, { disallowedSpecial: new Set() }).length;
  const c = process.cpuUsage(c0);  // includes the garbage collector's helper threads
  bestCpu = Math.min(bestCpu, (c.user + c.system) / 1e6);
  best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
}
console.log(JSON.stringify({ tokens: n, mb_s: +(buf.length / 1e6 / best).toFixed(2),
  cpu_mb_s: +(buf.length / 1e6 / bestCpu).toFixed(2) }));
