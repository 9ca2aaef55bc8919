// openai_json.h: the response side of the OpenAI API: whole replies and stream chunks of
// /v1/completions, /v1/chat/completions and /v1/responses, from a ReplyBuilder's fields and
// deltas. Field names and object types follow OpenAI's API reference; reasoning goes in
// `reasoning_content` (chat) or a reasoning output item (responses).
#pragma once
#include <cstdint>
#include <string>

#include "serve/api.h"
#include "serve/reply.h"

namespace gptoss::serve {

// What every reply of one request shares.
struct ReplyMeta {
  std::string id;       // "chatcmpl-...", "cmpl-..." or "resp_..."
  int64_t created = 0;  // Unix seconds
  std::string model;
  int prompt_tokens = 0;
};

// A new id with the endpoint's prefix.
std::string new_reply_id(Endpoint e);
// The usage object (chat/completions form, or the responses form).
Json usage_json(const ReplyMeta& m, const ReplyBuilder& r, bool responses);

// Non-streamed replies.
Json completion_json(const ReplyMeta& m, const ReplyBuilder& r);
Json chat_json(const ReplyMeta& m, const ReplyBuilder& r);
Json responses_json(const ReplyMeta& m, const ReplyBuilder& r, const GenRequest& g);

// Stream chunks (one "data:" line each). first: the chat chunk that carries the role.
Json completion_chunk(const ReplyMeta& m, const std::string& text, const char* finish_reason);
Json chat_chunk(const ReplyMeta& m, const Delta& d, const ReplyBuilder& r, bool first,
                const char* finish_reason, bool with_usage_field);
Json usage_chunk(const ReplyMeta& m, const ReplyBuilder& r, bool chat);

// "data: JSON\n\n" (invalid UTF-8 can not occur in our strings, but is replaced, never thrown).
std::string sse(const Json& j);
// "event: TYPE\ndata: JSON\n\n" for the responses stream.
std::string sse_event(const Json& j);
std::string dump(const Json& j);

}  // namespace gptoss::serve
