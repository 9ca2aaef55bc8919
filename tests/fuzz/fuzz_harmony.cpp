// fuzz_harmony.cpp: the harmony output parser (HarmonyParser, src/harmony/harmony.h) on arbitrary
// token streams. Each 3 input bytes make one id: a first byte < 64 picks one of the harmony
// specials (so headers, channels and ends occur often), else a mergeable id. Token bytes come
// from a stand-in table (special ids: their harmony text; others: a few bytes derived from the
// id, including ' ' and '<' which end a channel name). Properties: no crash; after Done every
// feed returns Done; content_tokens() counts the Content results; channel() of a Content token
// is analysis, commentary or final; saw_final() iff a Content token arrived on "final"; the
// header buffer never holds more than kMaxHeaderTokens; once Raw, every later token is Raw (one
// token each) or Done.
#include "fuzz_util.h"
#include "harmony/harmony.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gptoss;
  static const int32_t specials[] = {tok::kStart,   tok::kChannel, tok::kMessage, tok::kEnd,
                                     tok::kReturn,  tok::kCall,    tok::kConstrain,
                                     tok::kEndOfText, tok::kStartOfText, 200009 /* <|reserved|> */};
  static std::string scratch;
  TokenBytes bytes = [](int32_t id) -> const std::string& {
    if (id >= tok::kNumMergeable) {
      scratch = harmony_special_text(id);
    } else {
      static const char alphabet[] = "final analysis commentary to=functions <x json";
      scratch.clear();
      for (int k = 0, v = id; k < 1 + id % 4; ++k, v /= 47) scratch += alphabet[v % 47];
    }
    return scratch;
  };
  fuzz::expect_clean([&] {
    HarmonyParser p(bytes);
    int contents = 0;
    bool done = false, final_seen = false, raw = false;
    for (size_t i = 0; i + 3 <= size; i += 3) {
      int32_t id = data[i] < 64 ? specials[data[i] % 10]
                                : int32_t((data[i + 1] | data[i + 2] << 8 | data[i] << 16) % tok::kNumMergeable);
      HarmonyParser::Kind k = p.feed(id);
      if (done && k != HarmonyParser::Kind::Done) fuzz::finding("output after Done");
      if (k == HarmonyParser::Kind::Done) done = true;
      if (k == HarmonyParser::Kind::Content) {
        ++contents;
        if (p.channel() == "final") final_seen = true;
        if (p.channel() != "final" && p.channel() != "analysis" && p.channel() != "commentary")
          fuzz::finding("content on a channel that is not analysis, commentary or final");
      }
      if (p.pending_header().size() > HarmonyParser::kMaxHeaderTokens)
        fuzz::finding("header buffer beyond its bound");
      if (raw && k != HarmonyParser::Kind::Raw && k != HarmonyParser::Kind::Done)
        fuzz::finding("harmony again after raw output");
      if (raw && k == HarmonyParser::Kind::Raw && p.raw_tokens().size() != 1)
        fuzz::finding("raw output re-sent");
      if (k == HarmonyParser::Kind::Raw) raw = true;
    }
    if (p.content_tokens() != contents) fuzz::finding("content_tokens() != Content results");
    if (p.saw_final() != final_seen) fuzz::finding("saw_final() wrong");
    p.reset();
    if (p.feed(tok::kReturn) != HarmonyParser::Kind::Done) fuzz::finding("reset parser not live");
  });
  return 0;
}
