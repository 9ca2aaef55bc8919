// fuzz_getp_input.cpp: the getp input parser (src/run/getp_io.h, rules in src/run/README.md) and
// the ids-line parser used by --resume/--verify, on arbitrary bytes. Properties: a gptoss::Error
// whose message starts with the file name, or prompts that are non-empty, valid UTF-8, without
// '\n' (only ONE trailing '\r' per line is stripped, as documented: "\r\r" is the prompt "\r"), on increasing line numbers, as many as line 1 announced; and the
// strict UTF-8 check agrees with the tokenizer's (an independent implementation).
#include "fuzz_util.h"
#include "run/getp_io.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gptoss;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if ((first_invalid_utf8(in) == std::string_view::npos) != utf8_valid(in))
    fuzz::finding("first_invalid_utf8 and utf8_valid disagree");
  try {
    std::vector<PromptLine> p = parse_prompts(in, "in.txt");
    if (p.empty()) fuzz::finding("no prompts accepted");
    int last = 1;
    for (const PromptLine& l : p) {
      if (l.text.empty()) fuzz::finding("empty prompt accepted");
      if (l.line <= last) fuzz::finding("line numbers not increasing");
      last = l.line;
      if (!utf8_valid(l.text)) fuzz::finding("invalid UTF-8 prompt accepted");
      if (l.text.find('\n') != std::string::npos) fuzz::finding("prompt holds a newline");
    }
  } catch (const Error& e) {
    std::string m = e.what();
    if (m.rfind("in.txt", 0) != 0 || m.find('\n') != std::string::npos)
      fuzz::finding("error message does not start with the file name or is not one line");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    fuzz::finding("exception other than gptoss::Error");
  }
  // parse_ids: nullopt or ids that format back to the canonical spelling of the same numbers.
  fuzz::expect_clean([&] {
    std::optional<std::vector<int32_t>> ids = parse_ids(in);
    if (ids) {
      for (int32_t id : *ids)
        if (id < 0) fuzz::finding("parse_ids gave a negative id");
      std::optional<std::vector<int32_t>> again = parse_ids(format_ids(*ids));
      if (!again || *again != *ids) fuzz::finding("parse_ids(format_ids(x)) != x");
    }
  });
  return 0;
}
