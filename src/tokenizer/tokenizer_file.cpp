// tokenizer_file.cpp: the seed's tokenizer file (read with validation, write) and the two
// sources `tokenize --make` builds it from: o200k_base.tiktoken and Hugging Face tokenizer.json.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "common/error.h"
#include "common/mapped_file.h"
#include "tokenizer/tokenizer.h"

namespace gptoss {

namespace {
constexpr float kSpecialScore = -1e30f;
constexpr int32_t kMaxTokenBytes = 1 << 16;  // anything longer is a corrupt file

std::string read_whole(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("%s: cannot open: %s", path.c_str(), std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail("%s: read error", path.c_str());
  return ss.str();
}
}  // namespace

std::string harmony_special_text(int32_t id) {
  switch (id) {
    case tok::kStartOfText: return "<|startoftext|>";
    case tok::kEndOfText: return "<|endoftext|>";
    case tok::kReturn: return "<|return|>";
    case tok::kConstrain: return "<|constrain|>";
    case tok::kChannel: return "<|channel|>";
    case tok::kStart: return "<|start|>";
    case tok::kEnd: return "<|end|>";
    case tok::kMessage: return "<|message|>";
    case tok::kCall: return "<|call|>";
    default: return "<|reserved_" + std::to_string(id) + "|>";
  }
}

TokenTable read_tokenizer_file(const std::string& path) {
  MappedFile f(path);
  const uint8_t* p = f.data();
  size_t n = f.size(), off = 0;
  auto rd_i32 = [&](const char* what, size_t id) {
    if (off + 4 > n)
      fail("%s: truncated tokenizer file (%s of token id %zu missing at byte %zu)", path.c_str(),
           what, id, off);
    int32_t v;
    std::memcpy(&v, p + off, 4);
    off += 4;
    return v;
  };
  if (n < 4) fail("%s: truncated tokenizer file (%zu bytes, no header)", path.c_str(), n);
  int32_t max_len;
  std::memcpy(&max_len, p, 4);
  off = 4;
  if (max_len <= 0 || max_len > kMaxTokenBytes)
    fail("%s: not a tokenizer file (max_token_length %d is absurd)", path.c_str(), max_len);
  TokenTable t;
  t.tokens.reserve(tok::kVocabSize);
  t.special.reserve(tok::kVocabSize);
  while (off < n) {
    size_t id = t.tokens.size();
    if (id >= size_t(tok::kVocabSize))
      fail("%s: more than %d tokens (%zu bytes left after the last one)", path.c_str(),
           tok::kVocabSize, n - off);
    int32_t score_bits = rd_i32("score", id);
    float score;
    std::memcpy(&score, &score_bits, 4);
    int32_t len = rd_i32("length", id);
    if (len < 0 || len > max_len)
      fail("%s: token id %zu has byte length %d (max_token_length %d)", path.c_str(), id, len,
           max_len);
    if (off + size_t(len) > n)
      fail("%s: truncated tokenizer file (token id %zu needs %d bytes, %zu left)", path.c_str(),
           id, len, n - off);
    bool special = score <= -1e29f;
    if (!special && !(score == float(id)))
      fail("%s: token id %zu has score %g; mergeable tokens must have score = rank = id",
           path.c_str(), id, double(score));
    if (!special && len == 0) fail("%s: token id %zu is empty", path.c_str(), id);
    t.tokens.emplace_back(reinterpret_cast<const char*>(p + off), size_t(len));
    t.special.push_back(special);
    off += size_t(len);
  }
  if (t.tokens.size() != size_t(tok::kVocabSize))
    fail("%s: has %zu tokens, o200k_harmony needs %d", path.c_str(), t.tokens.size(),
         tok::kVocabSize);
  // Compatibility: the course exporter wrote the NUL byte token as the text "<0x00>".
  bool has_nul = false;
  size_t hex_nul = SIZE_MAX, hex_count = 0;
  for (size_t id = 0; id < t.tokens.size(); ++id) {
    if (t.special[id]) continue;
    if (t.tokens[id].size() == 1 && t.tokens[id][0] == '\0') has_nul = true;
    if (t.tokens[id] == "<0x00>") { hex_nul = id; ++hex_count; }
  }
  if (!has_nul && hex_count == 1) t.tokens[hex_nul] = std::string(1, '\0');
  for (int32_t id = tok::kNumMergeable; id < tok::kVocabSize; ++id)
    if (!t.special[id] || t.tokens[id] != harmony_special_text(id))
      fail("%s: token id %d should be the special %s", path.c_str(), id,
           harmony_special_text(id).c_str());
  return t;
}

void write_tokenizer_file(const std::string& path, const TokenTable& t) {
  GPTOSS_ASSERT(t.tokens.size() == t.special.size());
  int32_t max_len = 0;
  for (const auto& s : t.tokens) max_len = std::max<int32_t>(max_len, int32_t(s.size()));
  std::string buf;
  buf.reserve(4 + t.tokens.size() * 16);
  auto put = [&](const void* v, size_t k) { buf.append(static_cast<const char*>(v), k); };
  put(&max_len, 4);
  for (size_t id = 0; id < t.tokens.size(); ++id) {
    float score = t.special[id] ? kSpecialScore : float(id);
    int32_t len = int32_t(t.tokens[id].size());
    put(&score, 4);
    put(&len, 4);
    put(t.tokens[id].data(), t.tokens[id].size());
  }
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail("%s: cannot create: %s", tmp.c_str(), std::strerror(errno));
  size_t w = std::fwrite(buf.data(), 1, buf.size(), f);
  int e1 = std::fflush(f), e2 = std::fclose(f);
  if (w != buf.size() || e1 != 0 || e2 != 0) {
    std::remove(tmp.c_str());
    fail("%s: write failed: %s", tmp.c_str(), std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail("%s: cannot rename %s into place: %s", path.c_str(), tmp.c_str(), std::strerror(errno));
}

namespace {
int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Mergeable tokens given as (id, bytes) in any order -> table with ids 0..N-1. `what` names the
// ids in messages ("token ranks", "model.vocab ids").
TokenTable table_from_pairs(std::vector<std::pair<int64_t, std::string>>& pairs,
                            const std::string& path, const char* what) {
  std::sort(pairs.begin(), pairs.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  TokenTable t;
  for (size_t i = 0; i < pairs.size(); ++i) {
    if (pairs[i].first != int64_t(i))
      fail("%s: %s must be 0..N-1 without gaps or repeats (%zu is %s)", path.c_str(), what, i,
           pairs[i].first < int64_t(i) ? "repeated" : "missing");
    t.tokens.push_back(std::move(pairs[i].second));
    t.special.push_back(0);
  }
  if (t.tokens.empty()) fail("%s: no tokens", path.c_str());
  return t;
}
}  // namespace

TokenTable table_from_tiktoken(const std::string& path) {
  std::string text = read_whole(path);
  std::vector<std::pair<int64_t, std::string>> pairs;
  size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0)
      fail("%s:%zu: expected '<base64 token> <rank>'", path.c_str(), line_no);
    std::string_view b64 = line.substr(0, sp), num = line.substr(sp + 1);
    std::string bytes;
    uint32_t acc = 0;
    int bits = 0;
    size_t pad = 0;
    for (unsigned char c : b64) {
      if (c == '=') { ++pad; continue; }
      int v = b64_value(c);
      if (v < 0 || pad) fail("%s:%zu: bad base64 token", path.c_str(), line_no);
      acc = (acc << 6) | uint32_t(v);
      bits += 6;
      if (bits >= 8) { bits -= 8; bytes.push_back(char((acc >> bits) & 0xFF)); }
    }
    if (b64.size() % 4 != 0 || bytes.empty()) fail("%s:%zu: bad base64 token", path.c_str(), line_no);
    int64_t rank = 0;
    if (num.empty() || num.size() > 9) fail("%s:%zu: bad rank", path.c_str(), line_no);
    for (char c : num) {
      if (c < '0' || c > '9') fail("%s:%zu: bad rank", path.c_str(), line_no);
      rank = rank * 10 + (c - '0');
    }
    pairs.emplace_back(rank, std::move(bytes));
  }
  return table_from_pairs(pairs, path, "token ranks");
}

namespace {
// tokenizer.json files may name 200018 by o200k_base's <|endofprompt|>, an alias we accept.
bool harmony_text_ok(int64_t id, const std::string& text) {
  return text == harmony_special_text(int32_t(id)) || (id == 200018 && text == "<|endofprompt|>");
}
}  // namespace

namespace {
// A JSON object key for a one-line message: quoted, control characters, '"' and '\' escaped,
// cut after 40 bytes on a character boundary.
std::string quoted_key(std::string_view key) {
  std::string out = "\"";
  size_t n = key.size() <= 40 ? key.size() : 40;
  while (n < key.size() && n > 0 && (static_cast<unsigned char>(key[n]) & 0xC0) == 0x80) --n;
  for (char ch : key.substr(0, n)) {
    unsigned char u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') out += '\\', out += ch;
    else if (u < 0x20 || u == 0x7f) out += strfmt("\\u%04x", u);
    else out += ch;
  }
  return out + (n < key.size() ? "\"..." : "\"");
}

// The JSON type of v in messages ("a string", "an array", ...).
std::string a_type(const nlohmann::json& v) {
  if (v.is_number_float()) return "a non-integer number (" + v.dump() + ")";
  const std::string t = v.type_name();
  return (t == "array" || t == "object" ? "an " : "a ") + t;
}

// v as an id in [0, kVocabSize); Error "NAME: PATH is ...: ..." otherwise.
int64_t json_id(const nlohmann::json& v, const std::string& name, const std::string& key_path) {
  if (!v.is_number_integer())
    fail("%s: %s is %s, expected an integer token id", name.c_str(), key_path.c_str(),
         a_type(v).c_str());
  const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() < uint64_t(tok::kVocabSize)
                                               : v.get<int64_t>() >= 0 && v.get<int64_t>() < tok::kVocabSize;
  if (!in_range)
    fail("%s: %s = %s is not a token id of o200k_harmony (0..%d)", name.c_str(), key_path.c_str(),
         v.dump().c_str(), tok::kVocabSize - 1);
  return v.get<int64_t>();
}
}  // namespace

TokenTable table_from_hf_json_text(std::string_view text, const std::string& name) {
  const char* N = name.c_str();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    std::string why = e.what();  // one line ("... at line L, column C: ..."); may quote the input
    if (why.size() > 200) why = why.substr(0, 200) + "...";
    fail("%s: not valid JSON: %s", N, why.c_str());
  }
  if (!j.is_object()) fail("%s: the top level is %s, expected an object", N, a_type(j).c_str());
  auto model = j.find("model");
  if (model == j.end())
    fail("%s: no \"model\" object (expected a byte-level BPE tokenizer.json)", N);
  if (!model->is_object())
    fail("%s: model is %s, expected an object", N, a_type(*model).c_str());
  if (auto type = model->find("type"); type != model->end()) {
    if (!type->is_string())
      fail("%s: model.type is %s, expected the string \"BPE\"", N, a_type(*type).c_str());
    if (*type != "BPE")
      fail("%s: model.type is %s; only byte-level \"BPE\" is supported", N,
           quoted_key(type->get_ref<const std::string&>()).c_str());
  }
  auto vocab = model->find("vocab");
  if (vocab == model->end()) fail("%s: no model.vocab object", N);
  if (!vocab->is_object())
    fail("%s: model.vocab is %s, expected an object of token -> id", N, a_type(*vocab).c_str());
  // GPT-2 byte-to-unicode: printable bytes map to themselves, the rest to U+0100 upwards.
  std::unordered_map<uint32_t, unsigned char> to_byte;
  uint32_t extra = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    to_byte[printable ? uint32_t(b) : 256 + extra++] = (unsigned char)b;
  }
  std::vector<std::pair<int64_t, std::string>> pairs;
  for (const auto& [key, val] : vocab->items()) {
    const std::string where = "model.vocab[" + quoted_key(key) + "]";
    const int64_t id = json_id(val, name, where);
    if (id >= tok::kNumMergeable) {
      if (!harmony_text_ok(id, key))
        fail("%s: %s = %lld collides with the harmony special %s", N, where.c_str(),
             (long long)id, harmony_special_text(int32_t(id)).c_str());
      continue;
    }
    if (key.empty()) fail("%s: %s = %lld is an empty token", N, where.c_str(), (long long)id);
    std::string bytes;
    const auto* s = reinterpret_cast<const unsigned char*>(key.data());
    size_t i = 0;
    while (i < key.size()) {
      int st;
      size_t len = utf8_step(s + i, key.size() - i, &st);
      uint32_t cp = s[i];
      if (st == 0 && len > 1) {
        cp = s[i] & (0xFF >> (len + 1));
        for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
      }
      auto it = to_byte.find(cp);
      if (st != 0 || it == to_byte.end())
        fail("%s: %s: character %zu (U+%04X) is not in the GPT-2 byte-to-unicode alphabet", N,
             where.c_str(), bytes.size() + 1, cp);
      bytes.push_back(char(it->second));
      i += len;
    }
    pairs.emplace_back(id, std::move(bytes));
  }
  TokenTable t = table_from_pairs(pairs, name, "model.vocab ids");
  auto added = j.find("added_tokens");
  if (added == j.end() || added->is_null()) return t;
  if (!added->is_array())
    fail("%s: added_tokens is %s, expected an array", N, a_type(*added).c_str());
  for (size_t k = 0; k < added->size(); ++k) {
    const nlohmann::json& a = (*added)[k];
    const std::string where = "added_tokens[" + std::to_string(k) + "]";
    if (!a.is_object()) fail("%s: %s is %s, expected an object", N, where.c_str(), a_type(a).c_str());
    auto id_it = a.find("id"), content_it = a.find("content");
    if (id_it == a.end()) fail("%s: %s has no \"id\"", N, where.c_str());
    if (content_it == a.end()) fail("%s: %s has no \"content\"", N, where.c_str());
    const int64_t id = json_id(*id_it, name, where + ".id");
    if (!content_it->is_string())
      fail("%s: %s.content is %s, expected a string", N, where.c_str(),
           a_type(*content_it).c_str());
    const std::string& content = content_it->get_ref<const std::string&>();
    if (id >= int64_t(t.tokens.size()) && !harmony_text_ok(id, content))
      fail("%s: %s is %s at id %lld but o200k_harmony has %s there", N, where.c_str(),
           quoted_key(content).c_str(), (long long)id, harmony_special_text(int32_t(id)).c_str());
  }
  return t;
}

TokenTable table_from_hf_json(const std::string& path) {
  return table_from_hf_json_text(read_whole(path), path);
}

void add_harmony_specials(TokenTable& t, const std::string& src) {
  if (t.tokens.size() > size_t(tok::kNumMergeable))
    fail("%s: %zu mergeable tokens, o200k_harmony has room for %d", src.c_str(), t.tokens.size(),
         tok::kNumMergeable);
  for (int32_t id = int32_t(t.tokens.size()); id < tok::kVocabSize; ++id) {
    t.tokens.push_back(harmony_special_text(id));
    t.special.push_back(1);
  }
}

TokenTable make_token_table(const std::string& src) {
  FILE* f = std::fopen(src.c_str(), "rb");
  if (!f) fail("%s: cannot open: %s", src.c_str(), std::strerror(errno));
  int c;
  while ((c = std::fgetc(f)) != EOF && std::isspace(c)) {}
  std::fclose(f);
  TokenTable t = c == '{' ? table_from_hf_json(src) : table_from_tiktoken(src);
  add_harmony_specials(t, src);
  Tokenizer check(t, src);  // validates (all 256 bytes present, no duplicate tokens)
  return t;
}

}  // namespace gptoss
