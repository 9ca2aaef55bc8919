// pretokenize.cpp: UTF-8 decoding (WHATWG rules, like JavaScript's TextDecoder) and the o200k
// pre-tokenizer: a hand-written, linear-time equivalent of the regex in gpt-oss-spec.md with the
// character classes of the JavaScript regex engine (unicode_table.h), plus a PCRE2 version of
// the same regex used by the tests as a cross-check.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstring>
#include <mutex>

#include "common/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_table.h"

namespace gptoss {

size_t utf8_step(const unsigned char* p, size_t n, int* status) {
  unsigned b = p[0];
  if (b < 0x80) { *status = 0; return 1; }
  size_t need;
  unsigned lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) need = 1;
  else if (b >= 0xE0 && b <= 0xEF) { need = 2; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
  else if (b >= 0xF0 && b <= 0xF4) { need = 3; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
  else { *status = 1; return 1; }
  for (size_t k = 1; k <= need; ++k) {
    if (k >= n) { *status = 2; return k; }
    unsigned c = p[k];
    if (c < lo || c > hi) { *status = 1; return k; }
    lo = 0x80; hi = 0xBF;
  }
  *status = 0;
  return need + 1;
}

bool utf8_valid(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (!(w & 0x8080808080808080ull)) { i += 8; continue; }
    }
    if (p[i] < 0x80) { ++i; continue; }
    int st;
    size_t len = utf8_step(p + i, n - i, &st);
    if (st != 0) return false;
    i += len;
  }
  return true;
}

std::string utf8_sanitize(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  std::string out;
  out.reserve(n + 16);
  while (i < n) {
    int st;
    size_t len = utf8_step(p + i, n - i, &st);
    if (st == 0) out.append(s.data() + i, len);
    else out.append("\xEF\xBF\xBD");  // one U+FFFD per maximal invalid subpart (or cut tail)
    i += len;
  }
  return out;
}

namespace {

using namespace uni;

// Decodes the code point at s[i] (valid UTF-8 assumed); *len = its byte length.
inline uint32_t cp_at(const unsigned char* s, size_t i, size_t* len) {
  unsigned b = s[i];
  if (b < 0x80) { *len = 1; return b; }
  if (b < 0xE0) { *len = 2; return ((b & 0x1F) << 6) | (s[i + 1] & 0x3F); }
  if (b < 0xF0) {
    *len = 3;
    return ((b & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
  }
  *len = 4;
  return ((b & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) |
         (s[i + 3] & 0x3F);
}
inline uint8_t cls(uint32_t cp) { return kUniStage2[kUniStage1[cp >> 8] * 256u + (cp & 255u)]; }
inline bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }
// [^\r\n\p{L}\p{N}]
inline bool is_p(uint32_t c, uint8_t k) { return !(k & (kL | kN)) && !is_crlf(c); }
// [^\s\p{L}\p{N}]
inline bool is_q(uint8_t k) { return !(k & (kSpace | kL | kN)); }

// Optional (?:'s|'t|'re|'ve|'m|'ll|'d) (ASCII case-insensitive) at m; returns the new end.
inline size_t contraction(const unsigned char* s, size_t n, size_t m) {
  if (m + 1 >= n || s[m] != '\'') return m;
  unsigned a = s[m + 1] | 0x20;
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return m + 2;
  if (m + 2 < n) {
    unsigned b = s[m + 2] | 0x20;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return m + 3;
  }
  return m;
}

// End of the regex match starting at i (always non-empty).
size_t match_at(const unsigned char* s, size_t n, size_t i) {
  size_t len0, l;
  uint32_t c0 = cp_at(s, i, &len0);
  uint8_t k0 = cls(c0);
  bool p0 = is_p(c0, k0);
  // Alternative 1: P? U* W+ contraction?   (U = [Lu Lt Lm Lo M], W = [Ll Lm Lo M])
  if (p0 || (k0 & (kUpperSet | kLowerSet))) {
    for (int p = p0 ? 1 : 0; p >= 0; --p) {
      size_t j = i + (p ? len0 : 0), k = j, last_w = SIZE_MAX;
      bool w_at_end = false;
      while (k < n) {  // greedy U*, remembering the last character that is also in W
        uint8_t kc = cls(cp_at(s, k, &l));
        if (!(kc & kUpperSet)) { w_at_end = kc & kLowerSet; break; }
        if (kc & kLowerSet) last_w = k;
        k += l;
      }
      // Backtracking U* gives the largest split point whose next character is in W.
      size_t w = w_at_end ? k : last_w;
      if (w == SIZE_MAX) continue;
      size_t m = w;
      while (m < n && (cls(cp_at(s, m, &l)) & kLowerSet)) m += l;  // greedy W+
      return contraction(s, n, m);
    }
    // Alternative 2: P? U+ W* contraction?
    for (int p = p0 ? 1 : 0; p >= 0; --p) {
      size_t j = i + (p ? len0 : 0);
      if (j >= n || !(cls(cp_at(s, j, &l)) & kUpperSet)) continue;
      size_t m = j;
      while (m < n && (cls(cp_at(s, m, &l)) & kUpperSet)) m += l;
      while (m < n && (cls(cp_at(s, m, &l)) & kLowerSet)) m += l;
      return contraction(s, n, m);
    }
  }
  // Alternative 3: \p{N}{1,3}
  if (k0 & kN) {
    size_t m = i + len0;
    for (int r = 1; r < 3 && m < n && (cls(cp_at(s, m, &l)) & kN); ++r) m += l;
    return m;
  }
  // Alternative 4: ' '?[^\s\p{L}\p{N}]+[\r\n/]*
  {
    size_t j = SIZE_MAX;
    if (c0 == ' ' && i + 1 < n && is_q(cls(cp_at(s, i + 1, &l)))) j = i + 1;
    else if (is_q(k0)) j = i;
    if (j != SIZE_MAX) {
      size_t m = j;
      while (m < n && is_q(cls(cp_at(s, m, &l)))) m += l;
      while (m < n && (s[m] == '\r' || s[m] == '\n' || s[m] == '/')) ++m;
      return m;
    }
  }
  // Alternatives 5-7 on the whitespace run [i, e): \s*[\r\n]+ | \s+(?!\S) | \s+
  GPTOSS_ASSERT(k0 & kSpace);
  size_t e = i, last_crlf = SIZE_MAX, last_start = i, count = 0;
  while (e < n) {
    uint32_t c = cp_at(s, e, &l);
    if (!(cls(c) & kSpace)) break;
    if (is_crlf(c)) last_crlf = e;
    last_start = e;
    e += l;
    ++count;
  }
  if (last_crlf != SIZE_MAX) return last_crlf + 1;
  if (e == n || count < 2) return e;
  return last_start;
}

}  // namespace

size_t pretokenize_next(std::string_view text, size_t i) {
  return match_at(reinterpret_cast<const unsigned char*>(text.data()), text.size(), i);
}

void pretokenize(std::string_view text, std::vector<size_t>& piece_ends) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size(), i = 0;
  while (i < n) {
    i = match_at(s, n, i);
    piece_ends.push_back(i);
  }
}

namespace {
// JavaScript's \s (the reference tokenizers split with JS regexes), spelled out for PCRE2.
#define JS_SPACE "\\t\\n\\x{0b}\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}"
const char* kPattern =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?:'(?:[sS]|[dD]|[mM]|[tT]|[lL][lL]|[vV][eE]|[rR][eE]))?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "(?:'(?:[sS]|[dD]|[mM]|[tT]|[lL][lL]|[vV][eE]|[rR][eE]))?"
    "|\\p{N}{1,3}"
    "| ?[^" JS_SPACE "\\p{L}\\p{N}]+[\\r\\n/]*"
    "|[" JS_SPACE "]*[\\r\\n]+"
    "|[" JS_SPACE "]+(?![^" JS_SPACE "])"
    "|[" JS_SPACE "]+";
#undef JS_SPACE

struct Pcre2Re {
  pcre2_code* code = nullptr;
  Pcre2Re() {
    int err;
    PCRE2_SIZE off;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, nullptr);
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("pre-tokenizer regex: %s at offset %zu", reinterpret_cast<char*>(msg), size_t(off));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if no JIT
  }
  ~Pcre2Re() { pcre2_code_free(code); }
};
}  // namespace

void pretokenize_pcre2(std::string_view text, std::vector<size_t>& piece_ends) {
  static Pcre2Re re;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(re.code, nullptr);
  auto* s = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    int rc = pcre2_match(re.code, s, text.size(), i, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, md,
                         nullptr);
    if (rc < 0) {
      pcre2_match_data_free(md);
      fail("pre-tokenizer regex: no match at byte %zu (code %d)", i, rc);
    }
    size_t end = pcre2_get_ovector_pointer(md)[1];
    GPTOSS_ASSERT(end > i);
    piece_ends.push_back(end);
    i = end;
  }
  pcre2_match_data_free(md);
}

}  // namespace gptoss
