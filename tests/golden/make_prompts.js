// make_prompts.js: writes tests/golden/prompts.json, the prompts of the golden tests with their
// token ids from an independent tokenizer (npm gpt-tokenizer, o200k_harmony; cross-checked with
// js-tiktoken's o200k_base ranks when that package is present too).
//
// usage: node tests/golden/make_prompts.js NODE_MODULES_DIR OUT.json
//   NODE_MODULES_DIR: a node_modules folder holding gpt-tokenizer (and optionally js-tiktoken),
//   e.g. tests/tokenizer/node/node_modules or /tmp/npmt/node_modules.
'use strict';
const fs = require('fs');
const path = require('path');

if (process.argv.length !== 4) {
  console.error('usage: node make_prompts.js NODE_MODULES_DIR OUT.json');
  process.exit(2);
}
const nm = path.resolve(process.argv[2]);
const out = process.argv[3];
// Resolve through the packages' "exports" maps, from the folder that holds node_modules.
const from = (id) => require(require.resolve(id, { paths: [path.dirname(nm)] }));
const gt = from('gpt-tokenizer/encoding/o200k_harmony');

let tk = null;  // optional second oracle
try {
  const { Tiktoken } = from('js-tiktoken/lite');
  const ranks = from('js-tiktoken/ranks/o200k_base');
  tk = new Tiktoken(ranks.default || ranks);
} catch (e) {
  console.error('note: js-tiktoken not found, ids come from gpt-tokenizer only');
}

// name, text, wanted token count range [lo, hi] (checked so edits keep each prompt's purpose).
const prompts = [
  ['english', 'The quick brown fox jumps over the lazy dog. Once upon a time, in a small village by the sea,', [15, 30]],
  ['one_token', 'Hello', [1, 1]],
  ['cjk', '日本語の文章を少し書いてみます。北京是中国的首都。한국어 문장도 있습니다.', [10, 40]],
  ['emoji', 'I love pizza 🍕 and cats 🐈‍⬛! 😀👍🏽 🇫🇷', [10, 40]],
  ['accented', 'Café naïve façade, São Paulo, Zürich, Ελληνικά, русский текст, Ångström.', [15, 45]],
  ['code_ws', 'def f(x):\n    return x * 2  # double\n\n\n\tprint(f(21))\r\n12345678 3.14159', [15, 45]],
  // Prompt alone exceeds the sliding window (16) by a lot; with 32 generated tokens it is ~4.5x.
  ['past_window',
   'In the morning the fisherman checked his nets, mended two torn ropes, and rowed out past ' +
   'the harbour wall while the gulls circled and the sky slowly turned from grey to gold.', [36, 48]],
  ['long',
   'Weather forecasting has changed a great deal over the last century. Early forecasters drew ' +
   'maps by hand from telegraph reports and relied on experience and rules of thumb. Today, ' +
   'numerical models divide the atmosphere into millions of grid cells and step the equations of ' +
   'fluid motion forward in time on large computers. Satellites, radar and weather balloons feed ' +
   'these models with observations, and ensembles of slightly different runs show how confident ' +
   'a forecast is. Even so, small errors grow quickly, which is why', [90, 115]],
];

const result = { tokenizer: 'o200k_harmony (npm gpt-tokenizer ' +
  JSON.parse(fs.readFileSync(path.join(nm, 'gpt-tokenizer/package.json'))).version +
  (tk ? ', checked with js-tiktoken' : '') + ')', prompts: [] };
for (const [name, text, [lo, hi]] of prompts) {
  const ids = gt.encode(text);
  if (tk) {
    const ids2 = tk.encode(text);
    if (JSON.stringify(ids) !== JSON.stringify(ids2)) {
      console.error(`${name}: gpt-tokenizer and js-tiktoken disagree:\n${ids}\n${ids2}`);
      process.exit(1);
    }
  }
  if (ids.length < lo || ids.length > hi) {
    console.error(`${name}: ${ids.length} tokens, wanted ${lo}..${hi}`);
    process.exit(1);
  }
  if (gt.decode(ids) !== text) {
    console.error(`${name}: decode(encode(text)) != text`);
    process.exit(1);
  }
  result.prompts.push({ name, text, ids });
  console.log(`${name}: ${ids.length} tokens`);
}
// One prompt per line keeps diffs readable.
const lines = result.prompts.map((p) => '  ' + JSON.stringify(p));
fs.writeFileSync(out, '{"tokenizer": ' + JSON.stringify(result.tokenizer) + ',\n "prompts": [\n' +
                 lines.join(',\n') + '\n ]}\n');
JSON.parse(fs.readFileSync(out, 'utf8'));  // sanity
console.log(`wrote ${out}`);
