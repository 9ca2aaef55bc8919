// make_corpus.js: writes the tokenizer parity corpus. Each case is CASE.txt (raw bytes) and
// CASE.ids (the expected ids, space separated), agreed on by two independent JavaScript
// tokenizers: gpt-tokenizer (o200k_harmony) and js-tiktoken (o200k_base ranks + harmony
// specials). Cases whose name ends in ".special" are encoded with special tokens allowed.
// Also writes special_table.tsv: "id text" for every special id of gpt-tokenizer's o200k_harmony.
// Usage: node make_corpus.js OUT_DIR   (NODE_PATH = tests/tokenizer/node/node_modules)
'use strict';
const fs = require('fs');
const path = require('path');
const gpt = require('gpt-tokenizer/cjs/encoding/o200k_harmony');
const { Tiktoken } = require('js-tiktoken/lite');
const o200kBase = require('js-tiktoken/ranks/o200k_base');

const outDir = process.argv[2];
if (!outDir) { console.error('usage: node make_corpus.js OUT_DIR'); process.exit(2); }
fs.mkdirSync(outDir, { recursive: true });
for (const f of fs.readdirSync(outDir))  // drop cases of an older corpus
  if (/\.(txt|ids|tsv|json|out)$/.test(f)) fs.unlinkSync(path.join(outDir, f));

// o200k_harmony specials as gpt-tokenizer defines them (its encoder map, id -> text).
const specialMap = new Map();  // text -> id
for (let id = 199998; id < 201088; id++) {
  const names = { 199998: '<|startoftext|>', 199999: '<|endoftext|>', 200002: '<|return|>',
    200003: '<|constrain|>', 200005: '<|channel|>', 200006: '<|start|>', 200007: '<|end|>',
    200008: '<|message|>', 200012: '<|call|>' };
  specialMap.set(names[id] || `<|reserved_${id}|>`, id);
}
specialMap.set('<|endofprompt|>', 200018);  // alias kept by tiktoken and gpt-tokenizer
// Check our table against gpt-tokenizer: each special text alone must encode to our id.
for (const [text, id] of specialMap) {
  const got = gpt.encode(text, { allowedSpecial: 'all' });
  if (got.length !== 1 || got[0] !== id) throw new Error(`gpt-tokenizer disagrees on ${text}: ${got}`);
}
fs.writeFileSync(path.join(outDir, 'special_table.tsv'),
  [...specialMap].map(([t, id]) => `${id} ${t}`).join('\n') + '\n');

const tiktoken = new Tiktoken({ ...o200kBase, special_tokens: Object.fromEntries(specialMap) });
const specialRe = new RegExp([...specialMap.keys()].map(s => s.replace(/[|]/g, '\\|')).join('|'), 'g');

// gpt-tokenizer 4.0.0 finds an allowed special token only at the start of the text (its sticky
// special-token regex adds the search offset twice), so with specials allowed we split at them
// ourselves and encode the text in between with it.
function gptEncode(text, special) {
  if (!special) return gpt.encode(text, { disallowedSpecial: new Set() });
  const out = [];
  let last = 0;
  for (const m of text.matchAll(specialRe)) {
    out.push(...gpt.encode(text.slice(last, m.index), { disallowedSpecial: new Set() }));
    out.push(specialMap.get(m[0]));
    last = m.index + m[0].length;
  }
  out.push(...gpt.encode(text.slice(last), { disallowedSpecial: new Set() }));
  return out;
}
function tiktokenEncode(text, special) {
  return special ? tiktoken.encode(text, 'all') : tiktoken.encode(text, [], []);
}

let nCases = 0;
const t0 = Date.now();
function lap(what) { if (process.env.CORPUS_TIMES) console.log(what, Date.now() - t0, 'ms'); }
function addCase(name, bytes, { special = false, tiktokenToo = true, oracle = 'both' } = {}) {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'utf8');
  const text = new TextDecoder('utf-8').decode(buf);  // invalid bytes -> U+FFFD, like a JS caller
  let a = gptEncode(text, special);
  if (oracle === 'tiktoken') {
    const b = tiktokenEncode(text, special);
    if (a.join() === b.join()) throw new Error(`case ${name}: expected the known gpt-tokenizer difference`);
    a = b;
  } else if (tiktokenToo) {
    const b = tiktokenEncode(text, special);
    if (a.length !== b.length || a.some((v, i) => v !== b[i]))
      throw new Error(`case ${name}: gpt-tokenizer and js-tiktoken disagree`);
  }
  const base = name + (special ? '.special' : '');
  fs.writeFileSync(path.join(outDir, base + '.txt'), buf);
  fs.writeFileSync(path.join(outDir, base + '.ids'), a.join(' ') + '\n');
  nCases++;
}

// Deterministic PRNG (xorshift32).
let seed = 0x9E3779B9;
function rnd(n) { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed % n; }

addCase('ascii', 'Hello world. The quick brown fox jumps over the lazy dog! 42 times?\n');
addCase('ascii_prose', 'It was the best of times, it was the worst of times; it was the age of wisdom...\n\n"Quoted," she said -- and left.');
addCase('code', 'int main(int argc, char** argv) {\n  for (int i = 0; i < 10; ++i) printf("%d\\n", i);\n\treturn 0;\n}\n\ndef f(x):\n    return x**2 + 1  # comment\n\n    \nconst a = {b: [1, 2, 3]}; // http://example.com/path/to?x=1&y=2\n');
addCase('whitespace', 'a  b   c\t\t d \n\n\n  \n x    \ty\n   \n\t \n' + ' '.repeat(17) + 'z' + ' '.repeat(9));
addCase('whitespace_only', '   \n  \t ');
addCase('whitespace_unicode', 'x\u00a0y \u3000z\u2003\u2003w \u0085v \u0085\u0085u\u2028t\u2029s \u200b r\u180e');
// U+FEFF is \s for JavaScript regexes. gpt-tokenizer turns the token bytes EF BB BF into a string
// with a BOM-stripping TextDecoder and so never finds token 5574; js-tiktoken is right here.
addCase('bom', 'v\ufeffu \ufeff\ufeff x\ufeff', { oracle: 'tiktoken' });
addCase('crlf', 'line1\r\nline2\r\n\r\n  \r\nend\r\r\n\n\r\n\t\r\nx\r');
addCase('cjk', '日本語のテキストを分割します。中文数据和模型。한국어 텍스트입니다. 漢字かなカナ混じり文');
addCase('cyrillic_greek', 'ПриветМир привет МИР мИр Москва-2024 ΑθήναΑθήνα αΒγΔ ΣΊΣΥΦΟΣ σίσυφος HTTPServerError iPhoneXR McDonald\'s ǅungla ǈa');
addCase('devanagari_marks', 'हिन्दी नमस्ते दुनिया क्षत्रिय e\u0301 a\u0300\u0301b \u0301x  \u0301\u0302 9\u0301 \u20dd! ก่อน ஆங்கிலம்');
addCase('emoji', '👨‍👩‍👧‍👦 family 🏳️‍🌈 flag 👍🏽👍🏿 ok 🇯🇵🇺🇸 ❤️‍🔥 1️⃣ 😀😃😄');
addCase('digits', '1234567890 12 123 1234 12345 ١٢٣٤٥ ۱۲۳ ⅫⅩ 3.14159 1,000,000 ²³¹ ½ 0x1F 1e-9 ９９９');
addCase('contractions', "it's IT'S It'S he'll HE'LL hE'lL we're WE'RE We'Re wE'rE I've I'VE I'vE 'd 'D 'M 'T 'S 're 'Re 'rE 'RE 'll 'Ll 'lL 'LL 've 'VE don't DON'T don'T x'ſ 'x ''s ' s Σ's ПРИВЕТ'S café's");
addCase('invalid_utf8', Buffer.concat([Buffer.from('ok '), Buffer.from([0xff]), Buffer.from(' a'),
  Buffer.from([0xc0, 0x80]), Buffer.from('b'), Buffer.from([0x80, 0x80]), Buffer.from('c'),
  Buffer.from([0xe2, 0x82]), Buffer.from('d'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('e'),
  Buffer.from([0xf0, 0x80, 0x80, 0x80]), Buffer.from('f'), Buffer.from([0xf4, 0x90, 0x80, 0x80]),
  Buffer.from(' g'), Buffer.from([0xf0, 0x9f, 0x98]), Buffer.from('h'), Buffer.from([0xc3]),
  Buffer.from('\u00e9'), Buffer.from([0xfe, 0xfd]), Buffer.from(' end'), Buffer.from([0xe6, 0x97])]));
addCase('invalid_only', Buffer.from([0xff, 0xfe, 0x80, 0xc1, 0xf5]));
addCase('empty', '');
addCase('replacement_char', 'a\ufffdb \ufffd\ufffd');

// Long single-class runs. js-tiktoken's merge loop is quadratic, so it only checks 1000-char
// runs; gpt-tokenizer alone checks 10000-char runs.
for (const [nm, ch] of [['a', 'a'], ['A', 'A'], ['zhe', 'ж'], ['bang', '!'], ['space', ' '], ['digit', '7'], ['han', '字'], ['nl', '\n']]) {
  addCase(`run1k_${nm}`, ch.repeat(1000));
  addCase(`run10k_${nm}`, ch.repeat(10000), { tiktokenToo: false });
}

lap('runs');
// Special tokens, with and without --special.
const specialText = '<|start|>system<|message|>You are ChatGPT.<|end|><|start|>user<|message|>Hi <|reserved_200500|> there<|end|><|start|>assistant<|channel|>final<|message|>ok<|return|> <|endofprompt|><|endoftext|><|notaspecial|> <|start|<|call|>';
addCase('specials', specialText);
addCase('specials', specialText, { special: true });
addCase('specials_edge', 'x<|<|end|>|>y<|start|><|start|>', { special: true });

// Random strings over a mixed alphabet (every class the splitter distinguishes).
const alphabet = [...'aZzQ \t\n\r\'\'sStTdDlLrReEvVmM09!?.,/-_()"\\\u000b\u000c', '\u00a0', '\u3000', 'ж', 'Ж', 'σ', 'Σ',
  'ǅ', 'ᾈ', 'ʰ', 'ー', 'ꜰ', '字', 'の', '\u0301', '\u0903', '\u20dd', '\u0488', 'Ⅻ', '½', '²', '٣', '😀', '\u200d',
  '\u0085', '\u2028', '\u2029', 'ſ', 'ﬁ', '\ufffd', '\ue000', '\u{10ffff}', '\u0378', '\u00ad', '\u061c', '\u180e',
  '\u200b', '\u2060', '\u{1f1ef}', '\u{1d400}', '\u{20000}', 'İ', 'ı', 'K', 'ß', 'ẞ', '\u{11f00}', '\u{1e4d0}', 'ⓐ',
  'Ⓐ', '〇', '々', '\u3031', 'ﾞ'];
for (let k = 0; k < 500; k++) {
  let s = '';
  const len = 1 + rnd(50);
  for (let i = 0; i < len; i++) s += alphabet[rnd(alphabet.length)];
  addCase(`fuzz_${String(k).padStart(3, '0')}`, s);
}

// A few MB of mixed text, generated deterministically.
const words = ['the', 'tokenizer', 'Model', 'quick', 'BROWN', 'fox', "dog's", "we'll", "ISN'T", 'HTTPServer',
  'parseJSON', 'return', 'std::vector<float>', 'x->next', '//', '/*', '*/', 'привет', 'МИР', 'Москва',
  '日本語', 'の', 'テキスト', '中文', 'हिन्दी', 'नमस्ते', '😀', '👨‍👩‍👧', '2024', '3.14159', '1000000',
  'ΑΒΓ', 'αβγ', 'éàü', 'naïve', '\n', '\n\n', '    ', '\t', '\r\n', '!!', '...', '?', '—', '  \n'];
let mixed = '';
while (mixed.length < 2_000_000) { mixed += words[rnd(words.length)]; if (rnd(4)) mixed += ' '; }
lap('small cases');
addCase('mixed_2m', mixed);
lap('mixed');
// The same o200k_base ranks as a Hugging Face tokenizer.json (GPT-2 byte-to-unicode keys), to
// check `tokenize --make` reads that source exactly like the .tiktoken file.
{
  const byteToChar = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    byteToChar[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  const tiktokenFile = require.resolve('gpt-tokenizer/data/o200k_base.tiktoken');
  const vocab = {};
  for (const line of fs.readFileSync(tiktokenFile, 'utf8').split('\n')) {
    if (!line) continue;
    const [b64, rank] = line.split(' ');
    vocab[[...Buffer.from(b64, 'base64')].map(b => byteToChar[b]).join('')] = Number(rank);
  }
  const added = [...specialMap].filter(([t]) => t !== '<|reserved_200018|>')
    .map(([content, id]) => ({ id, content, special: true }));
  fs.writeFileSync(path.join(outDir, 'o200k_tokenizer.json'), JSON.stringify({
    version: '1.0', added_tokens: added, model: { type: 'BPE', vocab, merges: [] } }));
}
console.log(`make_corpus: ${nCases} cases agreed by gpt-tokenizer and js-tiktoken in ${outDir}`);
