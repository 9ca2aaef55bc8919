// tokenizer.cpp: the o200k_harmony encoder/decoder: special-token splitting, the pre-tokenizer
// (pretokenize.cpp), byte-level BPE by rank through an open-addressing byte-string -> rank table,
// whole-sequence and streaming decode.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <queue>
#include <unordered_map>

#include "common/error.h"

namespace gptoss {

namespace {

inline uint64_t load_prefix8(const char* p, size_t n) {
  uint64_t w = 0;
  std::memcpy(&w, p, n < 8 ? n : 8);
  return w;
}
inline uint64_t mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}
inline uint64_t hash_bytes(const char* p, size_t n, uint64_t prefix8) {
  uint64_t h = mix64(prefix8 ^ (n * 0x9E3779B97F4A7C15ull));
  for (size_t i = 8; i < n; i += 8) {
    uint64_t w = 0;
    std::memcpy(&w, p + i, n - i < 8 ? n - i : 8);
    h = mix64(h ^ w) + i;
  }
  return h;
}

// Byte string -> id for the mergeable tokens. Slots keep length and first 8 bytes so most probes
// never touch the token text.
class RankMap {
 public:
  void build(const std::vector<std::string>& tokens, const std::vector<uint8_t>& special) {
    tokens_ = &tokens;
    size_t cap = 16;
    while (cap < tokens.size() * 2 + 16) cap <<= 1;
    mask_ = cap - 1;
    slots_.assign(cap, Slot{});
    for (size_t id = 0; id < tokens.size(); ++id) {
      if (special[id]) continue;
      const std::string& t = tokens[id];
      max_len_ = std::max(max_len_, t.size());
      uint64_t pre = load_prefix8(t.data(), t.size());
      size_t h = hash_bytes(t.data(), t.size(), pre) & mask_;
      while (slots_[h].id >= 0) h = (h + 1) & mask_;
      slots_[h] = Slot{pre, int32_t(id), uint32_t(t.size())};
    }
  }
  // -1 if the bytes are not a mergeable token.
  inline int32_t find(const char* p, size_t n) const {
    if (n > max_len_) return -1;
    uint64_t pre = load_prefix8(p, n);
    size_t h = hash_bytes(p, n, pre) & mask_;
    for (;;) {
      const Slot& s = slots_[h];
      if (s.id < 0) return -1;
      if (s.len == n && s.prefix8 == pre &&
          (n <= 8 || std::memcmp((*tokens_)[s.id].data() + 8, p + 8, n - 8) == 0))
        return s.id;
      h = (h + 1) & mask_;
    }
  }

 private:
  struct Slot {
    uint64_t prefix8 = 0;
    int32_t id = -1;
    uint32_t len = 0;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0, max_len_ = 0;
  const std::vector<std::string>* tokens_ = nullptr;
};

constexpr int32_t kNoRank = INT32_MAX;

}  // namespace

struct Tokenizer::Impl {
  std::string name;
  TokenTable table;
  RankMap ranks;
  std::unordered_map<std::string, int32_t> specials;  // text -> id
  size_t max_special_len = 0;

  void init() {
    const auto& tokens = table.tokens;
    if (tokens.empty()) fail("%s: tokenizer has no tokens", name.c_str());
    if (table.special.size() != tokens.size())
      fail("%s: token table has %zu tokens but %zu special flags", name.c_str(), tokens.size(),
           table.special.size());
    ranks.build(tokens, table.special);
    for (size_t id = 0; id < tokens.size(); ++id) {
      if (table.special[id]) {
        if (!specials.emplace(tokens[id], int32_t(id)).second)
          fail("%s: special token '%s' appears twice (ids %d and %zu)", name.c_str(),
               tokens[id].c_str(), specials[tokens[id]], id);
        max_special_len = std::max(max_special_len, tokens[id].size());
      } else if (ranks.find(tokens[id].data(), tokens[id].size()) != int32_t(id)) {
        fail("%s: token id %zu has the same bytes as an earlier token", name.c_str(), id);
      }
    }
    // tiktoken's o200k_harmony keeps o200k_base's <|endofprompt|> as a second text for 200018
    // (which decodes as <|reserved_200018|>); gpt-tokenizer and js-tiktoken accept it too.
    constexpr int32_t kEndOfPrompt = 200018;
    if (tokens.size() == size_t(tok::kVocabSize) && table.special[kEndOfPrompt]) {
      specials.emplace("<|endofprompt|>", kEndOfPrompt);
      max_special_len = std::max(max_special_len, sizeof("<|endofprompt|>") - 1);
    }
    for (int b = 0; b < 256; ++b) {
      char c = char(b);
      if (ranks.find(&c, 1) < 0) fail("%s: byte 0x%02x is not a token (byte-level BPE needs all 256)", name.c_str(), b);
    }
  }

  int32_t rank_of(const char* p, size_t n) const {
    int32_t r = ranks.find(p, n);
    return r < 0 ? kNoRank : r;
  }

  // Byte-pair merge of one piece, for short pieces: tiktoken's quadratic scan.
  void bpe_small(const char* p, size_t n, std::vector<int32_t>& out) const {
    struct Part { uint32_t start; int32_t rank; };
    Part parts[130];
    size_t np = n + 1;
    for (size_t i = 0; i + 1 < n; ++i) parts[i] = {uint32_t(i), rank_of(p + i, 2)};
    parts[n - 1] = {uint32_t(n - 1), kNoRank};
    parts[n] = {uint32_t(n), kNoRank};
    for (;;) {
      int32_t best = kNoRank;
      size_t bi = 0;
      for (size_t i = 0; i + 1 < np; ++i)
        if (parts[i].rank < best) { best = parts[i].rank; bi = i; }
      if (best == kNoRank) break;
      // Merge parts bi and bi+1: drop boundary bi+1, then refresh the two affected pair ranks.
      for (size_t k = bi + 1; k + 1 < np; ++k) parts[k] = parts[k + 1];
      --np;
      parts[bi].rank = (bi + 2 < np) ? rank_of(p + parts[bi].start, parts[bi + 2].start - parts[bi].start) : kNoRank;
      if (bi > 0)
        parts[bi - 1].rank = rank_of(p + parts[bi - 1].start, parts[bi + 1].start - parts[bi - 1].start);
    }
    for (size_t i = 0; i + 1 < np; ++i) {
      int32_t id = ranks.find(p + parts[i].start, parts[i + 1].start - parts[i].start);
      GPTOSS_ASSERT(id >= 0);
      out.push_back(id);
    }
  }

  // Same merges for long pieces in O(n log n): a heap of adjacent pairs keyed by (rank, start),
  // with stale entries skipped, picks exactly the pair the quadratic scan would (lowest rank,
  // leftmost on ties).
  void bpe_large(const char* p, size_t n, std::vector<int32_t>& out) const {
    std::vector<uint32_t> next(n), prev(n);  // [n] linked list of part starts
    std::vector<uint8_t> alive(n, 1);
    for (size_t i = 0; i < n; ++i) { next[i] = uint32_t(i + 1); prev[i] = uint32_t(i - 1); }
    struct Cand { int32_t rank; uint32_t left, mid, end; };
    auto cmp = [](const Cand& a, const Cand& b) {
      return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
    };
    std::priority_queue<Cand, std::vector<Cand>, decltype(cmp)> heap(cmp);
    auto push = [&](uint32_t left) {
      uint32_t mid = next[left];
      if (mid >= n) return;
      uint32_t end = next[mid];
      int32_t r = ranks.find(p + left, end - left);
      if (r >= 0) heap.push(Cand{r, left, mid, end});
    };
    for (size_t i = 0; i + 1 < n; ++i) push(uint32_t(i));
    while (!heap.empty()) {
      Cand c = heap.top();
      heap.pop();
      if (!alive[c.left] || next[c.left] != c.mid || !alive[c.mid] || next[c.mid] != c.end) continue;
      alive[c.mid] = 0;
      next[c.left] = c.end;
      if (c.end < n) prev[c.end] = c.left;
      if (c.left > 0) push(prev[c.left]);
      push(c.left);
    }
    for (uint32_t i = 0; i < n; i = next[i]) {
      int32_t id = ranks.find(p + i, next[i] - i);
      GPTOSS_ASSERT(id >= 0);
      out.push_back(id);
    }
  }

  // Pieces that needed merging, remembered for the rest of one encode call (text repeats words).
  struct PieceHash {
    size_t operator()(std::string_view v) const {
      return hash_bytes(v.data(), v.size(), load_prefix8(v.data(), v.size()));
    }
  };
  using PieceCache = std::unordered_map<std::string_view, std::pair<size_t, uint32_t>, PieceHash>;

  void encode_ordinary(std::string_view text, std::vector<int32_t>& out, PieceCache& cache) const {
    for (size_t start = 0, e; start < text.size(); start = e) {
      e = pretokenize_next(text, start);
      const char* p = text.data() + start;
      size_t n = e - start;
      int32_t id = ranks.find(p, n);
      if (id >= 0) { out.push_back(id); continue; }
      std::string_view key(p, n);
      auto it = cache.find(key);
      if (it != cache.end()) {
        // Copy through an index: out may reallocate while inserting from itself.
        for (uint32_t k = 0; k < it->second.second; ++k) out.push_back(out[it->second.first + k]);
        continue;
      }
      size_t before = out.size();
      if (n <= 128) bpe_small(p, n, out);
      else bpe_large(p, n, out);
      if (cache.size() < (1u << 20)) cache.emplace(key, std::pair{before, uint32_t(out.size() - before)});
    }
  }
};

Tokenizer::Tokenizer(const std::string& path) : Tokenizer(read_tokenizer_file(path), path) {}

Tokenizer::Tokenizer(TokenTable table, const std::string& name) : impl_(std::make_unique<Impl>()) {
  impl_->name = name;
  impl_->table = std::move(table);
  impl_->init();
}

Tokenizer::~Tokenizer() = default;

int Tokenizer::vocab_size() const { return int(impl_->table.tokens.size()); }
const TokenTable& Tokenizer::table() const { return impl_->table; }

bool Tokenizer::is_special(int32_t id) const {
  token_bytes(id);
  return impl_->table.special[id];
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    fail("token id %d is out of range (vocab %d, %s)", id, vocab_size(), impl_->name.c_str());
  return impl_->table.tokens[id];
}

int32_t Tokenizer::special_id(std::string_view text) const {
  auto it = impl_->specials.find(std::string(text));
  return it == impl_->specials.end() ? -1 : it->second;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::string fixed;
  if (!utf8_valid(text)) {
    fixed = utf8_sanitize(text);
    text = fixed;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  Impl::PieceCache cache;
  if (!allow_special) {
    impl_->encode_ordinary(text, out, cache);
    return out;
  }
  // Split at special-token texts (all have the form <|...|>), encode the text in between.
  size_t start = 0, pos = 0;
  while (pos < text.size()) {
    size_t open = text.find("<|", pos);
    if (open == std::string_view::npos) break;
    // A special's text has no "|>" inside, so the only candidate ends at the first "|>"; look
    // for it only within the longest special's length (keeps "<|<|<|..." linear).
    std::string_view window = text.substr(open, impl_->max_special_len);
    size_t close = window.find("|>", 2);
    int32_t id = -1;
    size_t len = close == std::string_view::npos ? 0 : close + 2;
    if (len) id = special_id(window.substr(0, len));
    if (id < 0) { pos = open + 1; continue; }
    impl_->encode_ordinary(text.substr(start, open - start), out, cache);
    out.push_back(id);
    start = pos = open + len;
  }
  impl_->encode_ordinary(text.substr(start), out, cache);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string s;
  for (int32_t id : ids) s += token_bytes(id);
  return s;
}

// Emits the complete characters of pending_ (invalid subsequences as U+FFFD); keeps a cut-off
// tail that may still become a valid character.
static std::string drain_utf8(std::string& pending, bool at_end) {
  const auto* p = reinterpret_cast<const unsigned char*>(pending.data());
  size_t n = pending.size(), i = 0;
  std::string out;
  while (i < n) {
    int st;
    size_t len = utf8_step(p + i, n - i, &st);
    if (st == 2 && !at_end) break;
    if (st == 0) out.append(pending, i, len);
    else out.append("\xEF\xBF\xBD");
    i += len;
  }
  pending.erase(0, i);
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tok_.token_bytes(id);
  return drain_utf8(pending_, false);
}

std::string StreamDecoder::flush() { return drain_utf8(pending_, true); }

}  // namespace gptoss
