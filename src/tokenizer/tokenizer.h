// tokenizer.h: exact o200k_harmony byte-level BPE (gpt-oss-spec.md), read from the seed's
// tokenizer file format: int32 max_token_length, then for each id: f32 score, int32 byte length,
// the bytes (mergeable tokens: raw bytes, score = rank; specials and reserved: their text,
// score -1e30). See docs/tokenizer.md.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gptoss {

// The contents of a tokenizer file: the bytes of every id and whether it is special.
struct TokenTable {
  std::vector<std::string> tokens;  // [vocab] raw bytes (specials: their text)
  std::vector<uint8_t> special;     // [vocab] 1 = special or reserved (never produced by BPE)
};

class Tokenizer {
 public:
  explicit Tokenizer(const std::string& path);  // Error naming the file on any problem
  // From a table already in memory; `name` is used in error messages.
  Tokenizer(TokenTable table, const std::string& name);
  ~Tokenizer();
  int vocab_size() const;
  // Encodes text. Special-token texts (<|start|> ...) become their ids only if allow_special.
  // Invalid UTF-8 is first decoded the way JavaScript's TextDecoder does (each maximal invalid
  // subsequence becomes U+FFFD), so results equal gpt-tokenizer/js-tiktoken on the decoded string.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const;
  // The raw bytes of one id (specials: their text). Error for an id out of range.
  const std::string& token_bytes(int32_t id) const;
  // Id of a special token by its text, or -1.
  int32_t special_id(std::string_view text) const;
  // True for special and reserved ids.
  bool is_special(int32_t id) const;
  // Whole-sequence decode (may contain invalid UTF-8 if the ids do).
  std::string decode(const std::vector<int32_t>& ids) const;
  // The token table this tokenizer was built from (for writing it back).
  const TokenTable& table() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Streaming decoder: feed ids one at a time; returns the text that is complete so far, never
// splitting a UTF-8 character across returned pieces. flush() returns what is left (invalid
// bytes are returned as U+FFFD).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& t) : tok_(t) {}
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

// Well-known ids of o200k_harmony.
namespace tok {
inline constexpr int32_t kStartOfText = 199998, kEndOfText = 199999, kReturn = 200002,
                         kConstrain = 200003, kChannel = 200005, kStart = 200006, kEnd = 200007,
                         kMessage = 200008, kCall = 200012;
inline constexpr int32_t kNumMergeable = 199998;  // o200k_base ranks 0..199997
inline constexpr int32_t kVocabSize = 201088;     // o200k_harmony
}  // namespace tok

// --- tokenizer file and sources (tokenizer_file.cpp) ---
// Reads and validates a tokenizer file; every problem is an Error naming the file.
TokenTable read_tokenizer_file(const std::string& path);
// Writes the seed's format (max_token_length = longest token over all ids).
void write_tokenizer_file(const std::string& path, const TokenTable& table);
// Text of o200k_harmony special/reserved id (199998..201087): named ones or <|reserved_N|>.
std::string harmony_special_text(int32_t id);
// Mergeable tokens (id = rank) from an o200k_base.tiktoken file (base64 + rank per line).
TokenTable table_from_tiktoken(const std::string& path);
// Mergeable tokens (id = rank) from a Hugging Face tokenizer.json (byte-level BPE vocab with the
// GPT-2 byte-to-unicode mapping). Added tokens at ids >= the mergeable count must agree with
// the harmony specials. Every malformed or wrong-typed input is a one-line Error naming the file
// and the key path ("model.vocab[\"abc\"] is a string, expected an integer token id").
TokenTable table_from_hf_json(const std::string& path);
// The same on the file's contents; `name` starts every message (the fuzz target's entry point).
TokenTable table_from_hf_json_text(std::string_view text, const std::string& name);
// Makes a full o200k_harmony table from mergeable tokens ids 0..N-1 (N <= 199998): every id
// from N to 201087 becomes a special (the named harmony ones, else <|reserved_N|>).
void add_harmony_specials(TokenTable& table, const std::string& src);
// `tokenize --make`: detects the source format (tokenizer.json if it starts with '{').
TokenTable make_token_table(const std::string& src);

// --- UTF-8 helpers and the pre-tokenizer (pretokenize.cpp) ---
// WHATWG UTF-8 decode step at p[0..n): returns bytes consumed; *status 0 = valid character,
// 1 = invalid (emit U+FFFD for the consumed bytes), 2 = incomplete (valid prefix cut by the end).
size_t utf8_step(const unsigned char* p, size_t n, int* status);
bool utf8_valid(std::string_view s);
// Replaces every maximal invalid subsequence by U+FFFD (same as JavaScript's TextDecoder).
std::string utf8_sanitize(std::string_view s);
// Splits valid UTF-8 text into o200k pre-tokenizer pieces; appends each piece's end offset.
void pretokenize(std::string_view valid_utf8, std::vector<size_t>& piece_ends);
// End of the piece that starts at byte i < size (same split, one piece at a time).
size_t pretokenize_next(std::string_view valid_utf8, size_t i);
// The same split through PCRE2 (JIT) with the regex of gpt-oss-spec.md; PCRE2's Unicode tables
// may be older than ours, so this is a cross-check for tests, not the encoder's path.
void pretokenize_pcre2(std::string_view valid_utf8, std::vector<size_t>& piece_ends);

}  // namespace gptoss
