// fuzz_tokenizer.cpp: the o200k_harmony tokenizer on arbitrary input. Needs the real tokenizer
// file: $GPTOSS_FUZZ_TOKENIZER, else the test data one (GPTOSS_TEST_TOKENIZER, CTest fixture
// "tokenizer_file"). The first input byte picks the operation, the rest is its argument:
//   0: encode(bytes) without specials: no special id comes out, every id is in the vocab, and
//      decode(encode(x)) == utf8_sanitize(x) (the round trip is exact on sanitized text)
//   1: encode(bytes) with specials: ids in the vocab, same round trip except the documented
//      alias: <|endofprompt|> is accepted for 200018, which decodes as <|reserved_200018|>
//   2: decode of arbitrary ids (4 bytes each, little endian, any int32 incl. negative and out of
//      range): out-of-range ids are a gptoss::Error; otherwise decode == the concatenation of
//      token_bytes, and the streaming decoder's output == utf8_sanitize(decode)
#include <cstring>
#include <memory>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

#ifndef GPTOSS_TEST_TOKENIZER
#define GPTOSS_TEST_TOKENIZER ""
#endif

static const gptoss::Tokenizer& tokenizer() {
  static std::unique_ptr<gptoss::Tokenizer> t = [] {
    const char* p = std::getenv("GPTOSS_FUZZ_TOKENIZER");
    std::string path = p && *p ? p : GPTOSS_TEST_TOKENIZER;
    try {
      return std::make_unique<gptoss::Tokenizer>(path);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz_tokenizer: cannot load the tokenizer (%s); set GPTOSS_FUZZ_TOKENIZER\n",
                   e.what());
      std::exit(2);
    }
  }();
  return *t;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gptoss;
  if (size < 1) return 0;
  const Tokenizer& tk = tokenizer();
  const int mode = data[0] % 3;
  std::string_view arg(reinterpret_cast<const char*>(data + 1), size - 1);
  fuzz::expect_clean([&] {
    if (mode < 2) {
      const bool specials = mode == 1;
      std::vector<int32_t> ids = tk.encode(arg, specials);
      for (int32_t id : ids) {
        if (id < 0 || id >= tk.vocab_size()) fuzz::finding("encode produced an id outside the vocab");
        if (!specials && tk.is_special(id)) fuzz::finding("encode without specials produced a special id");
      }
      std::string want = utf8_sanitize(arg);
      if (specials) {
        const std::string alias = "<|endofprompt|>", text = "<|reserved_200018|>";
        for (size_t at = want.find(alias); at != std::string::npos; at = want.find(alias, at + text.size()))
          want.replace(at, alias.size(), text);
      }
      if (tk.decode(ids) != want) fuzz::finding("decode(encode(x)) != utf8_sanitize(x)");
      if (!arg.empty() && ids.empty()) fuzz::finding("non-empty text encoded to no ids");
    } else {
      std::vector<int32_t> ids(arg.size() / 4);
      if (!ids.empty()) std::memcpy(ids.data(), arg.data(), ids.size() * 4);
      bool in_range = true;
      std::string concat;
      for (int32_t id : ids) {
        if (id < 0 || id >= tk.vocab_size()) in_range = false;
        else concat += tk.token_bytes(id);
      }
      std::string whole;
      try {
        whole = tk.decode(ids);
      } catch (const Error&) {
        if (in_range) fuzz::finding("decode failed on ids inside the vocab");
        return;
      }
      if (!in_range) fuzz::finding("decode accepted an id outside the vocab");
      if (whole != concat) fuzz::finding("decode != concatenation of token_bytes");
      StreamDecoder sd(tk);
      std::string streamed;
      for (int32_t id : ids) streamed += sd.push(id);
      streamed += sd.flush();
      if (streamed != utf8_sanitize(whole)) fuzz::finding("streaming decode != utf8_sanitize(decode)");
    }
  });
  return 0;
}
