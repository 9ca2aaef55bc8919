// tokenizer_test.cpp: GoogleTest unit and parity tests of the o200k_harmony tokenizer.
// Oracles: the corpus written by make_corpus.js (ids agreed by gpt-tokenizer and js-tiktoken),
// PCRE2 running the spec's regex, and a plain quadratic BPE written here.
// Arguments (or the environment variables they set): --tokenizer= (GPTOSS_TEST_TOKENIZER, the
// file from `tokenize --make`), --corpus= (GPTOSS_TOK_CORPUS, folder from make_corpus.js),
// --fixtures= (GPTOSS_TOK_FIXTURES, tests/tokenizer/data).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "common/error.h"
#include "tokenizer/tokenizer.h"

using namespace gptoss;
namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) throw std::runtime_error(std::string("environment variable ") + name + " not set");
  return v;
}
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p.string());
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void spit(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> v;
  std::istringstream in(s);
  int64_t x;
  while (in >> x) v.push_back(int32_t(x));
  return v;
}
fs::path tmp_dir() {
  fs::path d = fs::temp_directory_path() / ("gptoss-tok-test-" + std::to_string(getpid()));
  fs::create_directories(d);
  return d;
}

const Tokenizer& T() {
  static Tokenizer t(env("GPTOSS_TEST_TOKENIZER"));
  return t;
}

std::string id_string(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += ' ';
    s += std::to_string(ids[i]);
  }
  return s;
}

}  // namespace

// --- parity with gpt-tokenizer / js-tiktoken ---

TEST(Parity, Corpus) {
  fs::path dir = env("GPTOSS_TOK_CORPUS");
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".txt") continue;
    std::string name = e.path().stem().string();
    bool special = name.size() > 8 && name.substr(name.size() - 8) == ".special";
    std::string text = slurp(e.path());
    std::vector<int32_t> want = parse_ids(slurp(fs::path(e.path()).replace_extension(".ids")));
    std::vector<int32_t> got = T().encode(text, special);
    if (got != want) {
      size_t i = 0;
      while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
      ADD_FAILURE() << name << ": first difference at token " << i << " of " << want.size()
                    << " (got " << (i < got.size() ? got[i] : -1) << ", want "
                    << (i < want.size() ? want[i] : -1) << ")";
    }
    // Decode round trip: exact bytes for valid UTF-8, else the U+FFFD-decoded text; the alias
    // <|endofprompt|> decodes as the text of its id, <|reserved_200018|>.
    std::string back = utf8_valid(text) ? text : utf8_sanitize(text);
    for (size_t k; special && (k = back.find("<|endofprompt|>")) != std::string::npos;)
      back.replace(k, 15, "<|reserved_200018|>");
    EXPECT_EQ(T().decode(got), back) << name;
    ++n;
  }
  EXPECT_GT(n, 500);
}

TEST(Parity, SpecialTable) {
  std::istringstream in(slurp(fs::path(env("GPTOSS_TOK_CORPUS")) / "special_table.tsv"));
  int32_t id;
  std::string text;
  int n = 0;
  while (in >> id >> text) {
    EXPECT_EQ(T().special_id(text), id) << text;
    EXPECT_TRUE(T().is_special(id));
    if (text != "<|endofprompt|>") {
      EXPECT_EQ(T().token_bytes(id), text);
    }
    ++n;
  }
  EXPECT_EQ(n, 201088 - 199998 + 1);
  EXPECT_EQ(T().token_bytes(200018), "<|reserved_200018|>");
  EXPECT_EQ(T().vocab_size(), 201088);
  EXPECT_EQ(T().special_id("<|start|>"), tok::kStart);
  EXPECT_EQ(T().special_id("<|nope|>"), -1);
}

TEST(Encode, SpecExample) {
  EXPECT_EQ(T().encode("Hello world"), (std::vector<int32_t>{13225, 2375}));
}

TEST(Encode, SpecialsOnlyWhenAllowed) {
  std::string s = "<|start|>user<|message|>hi<|end|>";
  std::vector<int32_t> on = T().encode(s, true), off = T().encode(s, false);
  ASSERT_GE(on.size(), 5u);
  EXPECT_EQ(on.front(), tok::kStart);
  EXPECT_EQ(on.back(), tok::kEnd);
  for (int32_t id : off) EXPECT_FALSE(T().is_special(id));
  EXPECT_EQ(T().decode(off), s);
  EXPECT_EQ(T().decode(on), s);
}

TEST(Encode, ManyOpenersStayLinear) {
  // 300 000 "<|" with one "|>" at the end: special search must not rescan the tail each time.
  std::string s;
  for (int i = 0; i < 300000; ++i) s += "<|";
  s += "end|>";
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> ids = T().encode(s, true);
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(ids.back(), tok::kEnd);
  EXPECT_EQ(T().decode(ids), s);
  EXPECT_LT(sec, 5.0);
}

// --- pre-tokenizer: hand-written splitter vs PCRE2 running the spec's regex ---

TEST(Pretokenize, MatchesPcre2OnRandomText) {
  // Characters whose Unicode classes are the same in PCRE2's tables and ours.
  const char* alphabet[] = {"a", "Z", "z", "Q", " ", " ", "\t", "\n", "\r", "'", "'", "s", "S",
                            "t", "T", "d", "D", "l", "L", "r", "R", "e", "E", "v", "V", "m",
                            "M", "0", "9", "!", "?", ".", ",", "/", "-", "_", "(", "\"",
                            "\xc2\xa0", "\xe3\x80\x80", "\xd0\xb6", "\xd0\x96", "\xcf\x83",
                            "\xce\xa3", "\xc7\x85", "\xca\xb0", "\xe5\xad\x97", "\xe3\x81\xae",
                            "\xe3\x83\xbc", "\xcc\x81", "\xe0\xa4\x83", "\xe2\x83\x9d",
                            "\xe2\x85\xab", "\xc2\xbd", "\xf0\x9f\x98\x80", "\xe2\x80\x8d",
                            "\xef\xbb\xbf", "\xc2\x85", "\xe2\x80\xa8", "\xc5\xbf", "\xd9\xa3"};
  const size_t na = sizeof(alphabet) / sizeof(alphabet[0]);
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s;
    int len = 1 + int(rng() % 30);
    for (int i = 0; i < len; ++i) s += alphabet[rng() % na];
    std::vector<size_t> a, b;
    pretokenize(s, a);
    pretokenize_pcre2(s, b);
    ASSERT_EQ(a, b) << "text: " << s;
  }
}

TEST(Pretokenize, ExamplePieces) {
  auto split = [](const std::string& s) {
    std::vector<size_t> ends;
    pretokenize(s, ends);
    std::vector<std::string> out;
    size_t st = 0;
    for (size_t e : ends) { out.push_back(s.substr(st, e - st)); st = e; }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(split("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(split("HTTPServer's x"), (V{"HTTPServer's", " x"}));
  EXPECT_EQ(split("12345"), (V{"123", "45"}));
  EXPECT_EQ(split("a  \n\n b"), (V{"a", "  \n\n", " b"}));
  EXPECT_EQ(split("x   y"), (V{"x", "  ", " y"}));
  EXPECT_EQ(split(" !!/\n"), (V{" !!/\n"}));
}

// --- invalid UTF-8 ---

TEST(Utf8, SanitizeLikeTextDecoder) {
  // One U+FFFD per maximal invalid subpart (WHATWG): C0 80 -> 2, ED A0 80 -> 3, E2 82 cut -> 1.
  const std::string r = "\xEF\xBF\xBD";
  auto rep = [&](int k) {
    std::string s;
    for (int i = 0; i < k; ++i) s.append(r);
    return s;
  };
  EXPECT_EQ(utf8_sanitize("a\xC0\x80" "b"), std::string("a").append(rep(2)).append("b"));
  EXPECT_EQ(utf8_sanitize("\xED\xA0\x80"), rep(3));
  EXPECT_EQ(utf8_sanitize("\xE2\x82" "d"), rep(1).append("d"));
  EXPECT_EQ(utf8_sanitize("\xF0\x9F\x98"), rep(1));
  EXPECT_EQ(utf8_sanitize("\xF4\x90\x80\x80"), rep(4));
  EXPECT_EQ(utf8_sanitize("ok \xE6\x97\xA5"), "ok \xE6\x97\xA5");
  EXPECT_TRUE(utf8_valid("plain ascii and \xE6\x97\xA5"));
  EXPECT_FALSE(utf8_valid("\xFF"));
  EXPECT_EQ(T().encode("a\xFF" "b"), T().encode(std::string("a").append(r).append("b")));
}

// --- BPE: fast merges vs a plain quadratic implementation ---

namespace {
std::vector<int32_t> reference_bpe(const std::string& piece) {
  static std::map<std::string, int32_t>* ranks = [] {
    auto* m = new std::map<std::string, int32_t>;
    for (int32_t id = 0; id < tok::kNumMergeable; ++id) (*m)[T().token_bytes(id)] = id;
    return m;
  }();
  std::vector<std::string> parts;
  for (char c : piece) parts.emplace_back(1, c);
  for (;;) {
    int32_t best = INT32_MAX;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto it = ranks->find(parts[i] + parts[i + 1]);
      if (it != ranks->end() && it->second < best) { best = it->second; bi = i; }
    }
    if (best == INT32_MAX) break;
    parts[bi] += parts[bi + 1];
    parts.erase(parts.begin() + long(bi) + 1);
  }
  std::vector<int32_t> ids;
  for (auto& p : parts) ids.push_back(ranks->at(p));
  return ids;
}
}  // namespace

TEST(Bpe, LongPiecesMatchQuadraticReference) {
  std::mt19937 rng(99);
  const std::vector<std::vector<std::string>> alphabets = {
      {"a", "b", "e", "n", "r", "s", "t"}, {"\xd0\xb0", "\xd0\xbe", "\xd1\x82", "\xd0\xbd"},
      {" "}, {"!", "=", "-", "*", "#"}, {"a"}};
  for (int iter = 0; iter < 40; ++iter) {
    const auto& al = alphabets[iter % alphabets.size()];
    std::string s;
    size_t len = 100 + rng() % 1500;
    while (s.size() < len) s += al[rng() % al.size()];
    if (al[0] == " ") s += "x";  // keep the spaces one piece: " "*n then " x"
    std::vector<size_t> ends;
    pretokenize(s, ends);
    std::vector<int32_t> want;
    size_t st = 0;
    for (size_t e : ends) {
      auto part = reference_bpe(s.substr(st, e - st));
      want.insert(want.end(), part.begin(), part.end());
      st = e;
    }
    ASSERT_EQ(id_string(T().encode(s)), id_string(want)) << "iteration " << iter;
  }
}

TEST(Bpe, LongRuns200kNoStackOverflow) {
  // 'a' x 10000 is checked against gpt-tokenizer in the corpus; merges of a repeated letter are
  // periodic, so 200000 must be 20 copies of it.
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> small = T().encode(std::string(10000, 'a'));
  std::vector<int32_t> big = T().encode(std::string(200000, 'a'));
  std::vector<int32_t> want;
  for (int i = 0; i < 20; ++i) want.insert(want.end(), small.begin(), small.end());
  EXPECT_EQ(big, want);
  for (std::string unit : {"A", "\xd0\xb6", "!", " ", "7", "\xe5\xad\x97", "\n", "\xcc\x81"}) {
    std::string s;
    for (int i = 0; i < 200000; ++i) s += unit;
    std::vector<int32_t> ids = T().encode(s);
    EXPECT_EQ(T().decode(ids), s);
    EXPECT_LT(ids.size(), s.size());
  }
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(sec, 10.0) << "long runs must not be quadratic";
}

// --- streaming decode ---

TEST(Stream, NeverSplitsACharacter) {
  fs::path dir = env("GPTOSS_TOK_CORPUS");
  for (const char* name : {"cjk", "emoji", "devanagari_marks", "cyrillic_greek", "mixed_2m"}) {
    std::string text = slurp(dir / (std::string(name) + ".txt"));
    std::vector<int32_t> ids = T().encode(text);
    StreamDecoder sd(T());
    std::string all;
    for (int32_t id : ids) {
      std::string piece = sd.push(id);
      ASSERT_TRUE(utf8_valid(piece)) << name;
      all += piece;
    }
    all += sd.flush();
    EXPECT_EQ(all, text) << name;
  }
}

TEST(Stream, HoldsPartialCharacterAndFlushesInvalid) {
  // Single-byte tokens of 日 = E6 97 A5: BPE keeps lone bytes as their byte tokens.
  std::vector<int32_t> ids;
  for (unsigned char b : {0xE6, 0x97, 0xA5}) {
    int32_t id = -1;
    for (int32_t i = 0; i < 256 * 2 && id < 0; ++i)
      if (T().token_bytes(i) == std::string(1, char(b))) id = i;
    ASSERT_GE(id, 0);
    ids.push_back(id);
  }
  StreamDecoder sd(T());
  EXPECT_EQ(sd.push(ids[0]), "");
  EXPECT_EQ(sd.push(ids[1]), "");
  EXPECT_EQ(sd.push(ids[2]), "\xE6\x97\xA5");
  EXPECT_EQ(sd.push(ids[0]), "");
  EXPECT_EQ(sd.push(T().encode("x")[0]), "\xEF\xBF\xBDx");  // E6 then 'x': invalid, then x
  EXPECT_EQ(sd.push(ids[0]), "");
  EXPECT_EQ(sd.push(ids[1]), "");
  EXPECT_EQ(sd.flush(), "\xEF\xBF\xBD");  // cut-off character at the end
  EXPECT_EQ(sd.flush(), "");
  EXPECT_EQ(sd.push(tok::kStart), "<|start|>");
}

// --- file format ---

TEST(FileFormat, WriteReadRoundTrip) {
  fs::path p = tmp_dir() / "roundtrip.bin";
  write_tokenizer_file(p.string(), T().table());
  EXPECT_EQ(slurp(p), slurp(env("GPTOSS_TEST_TOKENIZER")));
  TokenTable t = read_tokenizer_file(p.string());
  EXPECT_EQ(t.tokens, T().table().tokens);
  EXPECT_EQ(t.special, T().table().special);
  fs::remove(p);
}

TEST(FileFormat, NulByteWrittenAsHexIsAccepted) {
  ASSERT_EQ(T().token_bytes(188), std::string(1, '\0'));
  TokenTable t = T().table();
  t.tokens[188] = "<0x00>";
  fs::path p = tmp_dir() / "hexnul.bin";
  write_tokenizer_file(p.string(), t);
  Tokenizer back(p.string());
  EXPECT_EQ(back.token_bytes(188), std::string(1, '\0'));
  EXPECT_EQ(back.encode(std::string("a\0b", 3)), T().encode(std::string("a\0b", 3)));
  fs::remove(p);
}

namespace {
std::string load_error(const std::string& path) {
  try {
    Tokenizer t(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(FileFormat, BadFilesAreOneLineErrorsNamingTheFile) {
  std::string good = slurp(env("GPTOSS_TEST_TOKENIZER"));
  fs::path p = tmp_dir() / "bad.bin";
  auto check = [&](const std::string& bytes, const char* what) {
    spit(p, bytes);
    std::string msg = load_error(p.string());
    EXPECT_NE(msg.find(p.string()), std::string::npos) << what << ": " << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  };
  check(good.substr(0, 2), "truncated");
  check(good.substr(0, 4), "has 0 tokens");
  check(good.substr(0, 4 + 6), "truncated");
  check(good.substr(0, good.size() / 2), "truncated");
  check(good.substr(0, good.size() - 3), "truncated");
  // Drop the last token entirely: wrong count.
  check(good.substr(0, good.size() - (8 + std::string("<|reserved_201087|>").size())), "201088");
  std::string absurd = good;
  int32_t big = 1 << 30;
  std::memcpy(&absurd[0], &big, 4);
  check(absurd, "absurd");
  std::string badlen = good;
  int32_t neg = -5;
  std::memcpy(&badlen[4 + 4], &neg, 4);
  check(badlen, "byte length -5");
  std::string badscore = good;
  float s = 7.5f;
  std::memcpy(&badscore[4], &s, 4);
  check(badscore, "score");
  check(good + "xyz", "more than");
  EXPECT_NE(load_error("/nonexistent/tok.bin").find("/nonexistent/tok.bin"), std::string::npos);
  fs::remove(p);
}

// --- sources for --make ---

TEST(Make, HuggingFaceJsonEqualsTiktoken) {
  TokenTable a = make_token_table((fs::path(env("GPTOSS_TOK_CORPUS")) / "o200k_tokenizer.json").string());
  EXPECT_EQ(a.tokens, T().table().tokens);
  EXPECT_EQ(a.special, T().table().special);
}

TEST(Make, TinyHuggingFaceFixture) {
  fs::path src = fs::path(env("GPTOSS_TOK_FIXTURES")) / "tiny_tokenizer.json";
  TokenTable t = make_token_table(src.string());
  ASSERT_EQ(t.tokens.size(), size_t(tok::kVocabSize));
  EXPECT_EQ(t.tokens[32], " ");
  EXPECT_EQ(t.tokens[256], " t");
  EXPECT_EQ(t.tokens[258], " the");
  EXPECT_EQ(t.tokens[259], "\xC3\xA9");
  EXPECT_EQ(t.tokens[261], "caf");
  EXPECT_EQ(t.tokens[262], "<|reserved_262|>");
  EXPECT_EQ(t.tokens[tok::kStart], "<|start|>");
  Tokenizer tiny(t, src.string());
  // " café": é (259) merges before af (260), then c+af (261); " the" is one token.
  EXPECT_EQ(tiny.encode(" the caf\xC3\xA9 the"), (std::vector<int32_t>{258, 32, 261, 259, 258}));
  EXPECT_EQ(tiny.encode("the"), (std::vector<int32_t>{116, 257}));
  fs::path p = tmp_dir() / "tiny.bin";
  write_tokenizer_file(p.string(), t);
  EXPECT_EQ(Tokenizer(p.string()).encode(" the"), (std::vector<int32_t>{258}));
  fs::remove(p);
  // An added token that contradicts the harmony specials is an error naming the file.
  std::string json = slurp(src);
  json.replace(json.find("<|start|>"), 9, "<|bogus|>");
  fs::path bad = tmp_dir() / "bad_tokenizer.json";
  spit(bad, json);
  try {
    make_token_table(bad.string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("<|bogus|>"), std::string::npos) << e.what();
  }
  fs::remove(bad);
}

// Every malformed or wrong-typed tokenizer.json is a one-line Error naming the file and the key
// path of what is wrong (the fuzz target fuzz_tokenizer_json checks the same on random input).
TEST(Make, HuggingFaceJsonErrorsNameFileAndKeyPath) {
  const std::string ok_vocab = R"({"a": 0, "b": 1})";
  auto with_vocab = [](const std::string& vocab, const std::string& rest = "") {
    return R"({"model": {"type": "BPE", "vocab": )" + vocab + "}" + rest + "}";
  };
  const std::pair<std::string, std::string> cases[] = {
      {"{\"model\": ", "not valid JSON: [json.exception.parse_error.101] parse error at line 1, column 11"},
      {"[1, 2]", "the top level is an array, expected an object"},
      {R"({"version": "1.0"})", "no \"model\" object"},
      {R"({"model": "BPE"})", "model is a string, expected an object"},
      {R"({"model": {"type": 1, "vocab": {}}})", "model.type is a number, expected the string \"BPE\""},
      {R"({"model": {"type": "Unigram", "vocab": {}}})", "model.type is \"Unigram\"; only byte-level \"BPE\" is supported"},
      {R"({"model": {"type": "BPE"}})", "no model.vocab object"},
      {with_vocab(R"(["a", "b"])"), "model.vocab is an array, expected an object of token -> id"},
      {with_vocab(R"({"a": 0, "b": "1"})"), "model.vocab[\"b\"] is a string, expected an integer token id"},
      {with_vocab(R"({"a": 0, "b": 1.5})"), "model.vocab[\"b\"] is a non-integer number (1.5), expected an integer token id"},
      {with_vocab(R"({"a": 0, "b": null})"), "model.vocab[\"b\"] is a null, expected an integer token id"},
      {with_vocab(R"({"a": 0, "b": -3})"), "model.vocab[\"b\"] = -3 is not a token id of o200k_harmony (0..201087)"},
      {with_vocab(R"({"a": 0, "b": 201088})"), "model.vocab[\"b\"] = 201088 is not a token id of o200k_harmony (0..201087)"},
      {with_vocab(R"({"a": 0, "b": 18446744073709551615})"), "model.vocab[\"b\"] = 18446744073709551615 is not a token id"},
      {with_vocab(R"({"a": 0, "": 1})"), "model.vocab[\"\"] = 1 is an empty token"},
      {with_vocab(R"({"a": 0, "x\ny": 1})"), "model.vocab[\"x\\u000ay\"]: character 2 (U+000A) is not in the GPT-2 byte-to-unicode alphabet"},
      {with_vocab(R"({"a": 0, "<|bogus|>": 200006})"), "model.vocab[\"<|bogus|>\"] = 200006 collides with the harmony special <|start|>"},
      {with_vocab(R"({"a": 0, "b": 0})"), "model.vocab ids must be 0..N-1 without gaps or repeats (1 is repeated)"},
      {with_vocab(R"({"a": 0, "b": 2})"), "model.vocab ids must be 0..N-1 without gaps or repeats (1 is missing)"},
      {with_vocab(ok_vocab, R"(, "added_tokens": {"id": 200006})"), "added_tokens is an object, expected an array"},
      {with_vocab(ok_vocab, R"(, "added_tokens": ["<|start|>"])"), "added_tokens[0] is a string, expected an object"},
      {with_vocab(ok_vocab, R"(, "added_tokens": [{"id": 200006, "content": "<|start|>"}, {"content": "x"}])"), "added_tokens[1] has no \"id\""},
      {with_vocab(ok_vocab, R"(, "added_tokens": [{"id": 200006}])"), "added_tokens[0] has no \"content\""},
      {with_vocab(ok_vocab, R"(, "added_tokens": [{"id": "200006", "content": "<|start|>"}])"), "added_tokens[0].id is a string, expected an integer token id"},
      {with_vocab(ok_vocab, R"(, "added_tokens": [{"id": -1, "content": "x"}])"), "added_tokens[0].id = -1 is not a token id"},
      {with_vocab(ok_vocab, R"(, "added_tokens": [{"id": 200006, "content": ["<|start|>"]}])"), "added_tokens[0].content is an array, expected a string"},
      {with_vocab(ok_vocab, R"(, "added_tokens": [{"id": 200006, "content": "<|bogus|>"}])"), "added_tokens[0] is \"<|bogus|>\" at id 200006 but o200k_harmony has <|start|> there"},
  };
  fs::path p = tmp_dir() / "wrong.json";
  for (const auto& [json, want] : cases) {
    spit(p, json);
    try {
      table_from_hf_json(p.string());
      ADD_FAILURE() << "no error for " << json;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(p.string() + ": ", 0), 0u) << msg;
      EXPECT_NE(msg.find(want), std::string::npos) << "want: " << want << "\ngot:  " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
  // The same text in memory: the name given starts the message; a valid file still reads.
  EXPECT_THROW(table_from_hf_json_text("[]", "mem"), Error);
  spit(p, with_vocab(ok_vocab, R"(, "added_tokens": null)"));
  EXPECT_EQ(table_from_hf_json(p.string()).tokens, (std::vector<std::string>{"a", "b"}));
  fs::remove(p);
}

TEST(Make, TiktokenErrorsNameFileAndLine) {
  fs::path p = tmp_dir() / "bad.tiktoken";
  spit(p, "IQ== 0\nnot base64! 1\n");
  try {
    table_from_tiktoken(p.string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p.string() + ":2"), std::string::npos) << e.what();
  }
  spit(p, "IQ== 0\nIg== 5\n");
  EXPECT_THROW(table_from_tiktoken(p.string()), Error);
  fs::remove(p);
}

TEST(Decode, OutOfRangeIdIsAnError) {
  EXPECT_THROW(T().decode({1, 201088}), Error);
  EXPECT_THROW(T().token_bytes(-1), Error);
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    for (auto [flag, var] : {std::pair{"--tokenizer=", "GPTOSS_TEST_TOKENIZER"},
                             std::pair{"--corpus=", "GPTOSS_TOK_CORPUS"},
                             std::pair{"--fixtures=", "GPTOSS_TOK_FIXTURES"}})
      if (a.rfind(flag, 0) == 0) setenv(var, a.c_str() + std::strlen(flag), 1);
  }
  return RUN_ALL_TESTS();
}
