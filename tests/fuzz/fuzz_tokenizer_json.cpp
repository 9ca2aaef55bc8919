// fuzz_tokenizer_json.cpp: the Hugging Face tokenizer.json reader of `tokenize --make`
// (table_from_hf_json_text, src/tokenizer/tokenizer.h) on arbitrary bytes. Properties: either a
// gptoss::Error whose message is one line starting with the file name, or a table of mergeable
// tokens 0..N-1 (N <= 199998, none empty, none special) that survives a round trip: written back
// as a tokenizer.json with the GPT-2 byte-to-unicode table (restated here from its definition,
// not taken from the reader) it reads back to the same table.
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

namespace {

// GPT-2 bytes_to_unicode: '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for themselves, the
// other 68 bytes for U+0100, U+0101, ... in byte order. Returns the UTF-8 of byte b's character.
std::string gpt2_char(unsigned char b) {
  auto self = [](int x) { return (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE; };
  uint32_t cp = b;
  if (!self(b)) {
    cp = 256;
    for (int x = 0; x < b; ++x) cp += !self(x);
  }
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string to_json(const gptoss::TokenTable& t) {
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t id = 0; id < t.tokens.size(); ++id) {
    std::string key;
    for (char c : t.tokens[id]) key += gpt2_char(static_cast<unsigned char>(c));
    vocab[key] = id;
  }
  return nlohmann::json{{"model", {{"type", "BPE"}, {"vocab", vocab}}}}.dump();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gptoss;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  try {
    TokenTable t = table_from_hf_json_text(in, "tokenizer.json");
    if (t.tokens.empty() || t.tokens.size() > size_t(tok::kNumMergeable))
      fuzz::finding("accepted a table with no tokens or more than 199998 mergeable ones");
    if (t.special.size() != t.tokens.size()) fuzz::finding("special flags do not match the tokens");
    for (size_t id = 0; id < t.tokens.size(); ++id) {
      if (t.tokens[id].empty()) fuzz::finding("accepted an empty token");
      if (t.special[id]) fuzz::finding("a mergeable token is marked special");
    }
    TokenTable back = table_from_hf_json_text(to_json(t), "round-trip");
    if (back.tokens != t.tokens || back.special != t.special)
      fuzz::finding("written back with GPT-2 byte-to-unicode, the table reads back different");
  } catch (const Error& e) {
    std::string m = e.what();
    if (m.rfind("tokenizer.json: ", 0) != 0 || m.find('\n') != std::string::npos) {
      std::fprintf(stderr, "message: %s\n", m.c_str());
      fuzz::finding("error message does not start with the file name or is not one line");
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    fuzz::finding("exception other than gptoss::Error");
  }
  return 0;
}
