// api.h: the OpenAI request side of `run -m serve`: the JSON of /v1/completions,
// /v1/chat/completions and /v1/responses checked field by field and turned into one GenRequest
// (prompt token ids, sampling, limits). Chat and responses are rendered with harmony
// (src/harmony): system/developer messages and `instructions` become the developer message,
// `tools` the functions namespace, reasoning_effort the system message; assistant tool calls and
// tool results render back as harmony messages; earlier reasoning is kept only in the ongoing
// tool-call chain (after the last user message), as the harmony guide says.
// Every problem is an ApiError (HTTP status + OpenAI error object), never an exception of
// another type: a client can never cause a 500.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace gptoss {
class Tokenizer;
}

namespace gptoss::serve {

using Json = nlohmann::ordered_json;

// An OpenAI-style error: {"error": {"message", "type", "param", "code"}} with an HTTP status.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string param = "", std::string code = "",
           std::string type = "");
  int status;
  std::string param, code, type;
  Json body() const;
};

enum class Endpoint { Completions, Chat, Responses };
const char* endpoint_name(Endpoint e);

// What a server allows and defaults to (from the command line and the model).
struct ApiLimits {
  std::string model_id;  // the one model served (GET /v1/models)
  int ctx = 4096;        // positions per sequence: prompt + generated
  int vocab = 201088;
  int default_max_tokens = 0;  // when the request gives none (0 = what the context leaves)
  float temperature = 1.0f;    // defaults of the sampling fields
  float top_p = 1.0f;
  int top_k = 0;
  std::string reasoning = "medium";
  std::string date;  // harmony system message date, YYYY-MM-DD ("" = today, UTC)
};

struct GenRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::vector<int32_t> prompt;  // token ids fed to the model
  int max_tokens = 1;           // >= 1, prompt + max_tokens <= ctx
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;
  std::optional<uint64_t> seed;   // none: the server picks one per request
  std::vector<std::string> stop;  // stop strings (at most 4, each 1..256 bytes)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool harmony = false;        // chat / responses: the output is parsed as harmony
  bool tools = false;          // function tools were offered
  std::string model;
};

// Each parses a request body (already JSON) or throws ApiError (status 400).
GenRequest parse_completion_request(const Json& body, const Tokenizer& tk, const ApiLimits& lim);
GenRequest parse_chat_request(const Json& body, const Tokenizer& tk, const ApiLimits& lim);
GenRequest parse_responses_request(const Json& body, const Tokenizer& tk, const ApiLimits& lim);

// The request body as JSON, or ApiError 400 naming where the syntax error is.
Json parse_body(const std::string& body);

}  // namespace gptoss::serve
