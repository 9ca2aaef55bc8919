// fuzz_serve_request.cpp: what a client sends to `run -m serve` (src/serve/api.h) and what a model
// writes back (src/serve/reply.h), on arbitrary bytes. The first input byte picks the endpoint,
// the rest is the request body. Properties: parsing ends in a GenRequest or an ApiError with
// status 400 and a non-empty message (any other exception would be a 500: a finding); an accepted
// request's prompt fits the context with max_tokens; its prompt ids, read back as generated
// tokens (with its stop strings), give a reply whose content and reasoning are valid UTF-8 whose
// streamed deltas add up to the whole, and a finish reason of stop, length or tool_calls.
// Tokenizer: $GPTOSS_FUZZ_TOKENIZER, else the test data one.
#include <memory>

#include "fuzz_util.h"
#include "serve/api.h"
#include "serve/reply.h"
#include "tokenizer/tokenizer.h"

#ifndef GPTOSS_TEST_TOKENIZER
#define GPTOSS_TEST_TOKENIZER ""
#endif

namespace {

const gptoss::Tokenizer& tokenizer() {
  static std::unique_ptr<gptoss::Tokenizer> t = [] {
    const char* p = std::getenv("GPTOSS_FUZZ_TOKENIZER");
    std::string path = p && *p ? p : GPTOSS_TEST_TOKENIZER;
    try {
      return std::make_unique<gptoss::Tokenizer>(path);
    } catch (const std::exception& e) {
      std::fprintf(
          stderr, "fuzz_serve_request: cannot load the tokenizer (%s); set GPTOSS_FUZZ_TOKENIZER\n",
          e.what());
      std::exit(2);
    }
  }();
  return *t;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace gptoss;
  using namespace gptoss::serve;
  if (size < 1 || size > 65536) return 0;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  ApiLimits lim;
  lim.model_id = "m";
  lim.ctx = 512;
  lim.date = "2026-01-01";
  GenRequest g;
  try {
    const Json j = parse_body(body);
    switch (data[0] % 3) {
      case 0:
        g = parse_chat_request(j, tokenizer(), lim);
        break;
      case 1:
        g = parse_completion_request(j, tokenizer(), lim);
        break;
      default:
        g = parse_responses_request(j, tokenizer(), lim);
        break;
    }
  } catch (const ApiError& e) {
    if (e.status != 400 || std::string(e.what()).empty())
      fuzz::finding("an ApiError that is not a 400 with a message");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: exception other than ApiError: %s\n", e.what());
    fuzz::finding("a client could cause a 500");
  }
  if (g.prompt.empty() || g.max_tokens < 1 ||
      static_cast<int64_t>(g.prompt.size()) + g.max_tokens > lim.ctx)
    fuzz::finding("an accepted request does not fit the context");
  ReplyBuilder r(tokenizer(), g, {199999, 200002, 200012});
  std::string content, reasoning;
  Delta d;
  for (int32_t t : g.prompt) {
    r.push(t, d);
    if (r.stopped()) break;
  }
  r.finish(EndKind::Length, d);
  if (d.content != r.content || d.reasoning != r.reasoning)
    fuzz::finding("deltas do not add up to the reply");
  if (!utf8_valid(r.content) || !utf8_valid(r.reasoning)) fuzz::finding("invalid UTF-8 in a reply");
  if (r.finish_reason != "stop" && r.finish_reason != "length" && r.finish_reason != "tool_calls")
    fuzz::finding("an unknown finish_reason");
  return 0;
}
