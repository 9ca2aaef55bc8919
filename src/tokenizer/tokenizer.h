// tokenizer.h: exact o200k_harmony byte-level BPE (gpt-oss-spec.md), read from the seed's
// tokenizer file format: int32 max_token_length, then for each id: f32 score, int32 byte length,
// the bytes (mergeable tokens: raw bytes, score = rank; specials and reserved: their text,
// score -1e30).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gptoss {

class Tokenizer {
 public:
  explicit Tokenizer(const std::string& path);  // Error naming the file on any problem
  ~Tokenizer();
  int vocab_size() const;
  // Encodes text. Special-token texts (<|start|> ...) become their ids only if allow_special.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const;
  // The raw bytes of one id (specials: their text). Error for an id out of range.
  const std::string& token_bytes(int32_t id) const;
  // Id of a special token by its text, or -1.
  int32_t special_id(std::string_view text) const;
  // Whole-sequence decode (may contain invalid UTF-8 if the ids do).
  std::string decode(const std::vector<int32_t>& ids) const;

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
}

}  // namespace gptoss
