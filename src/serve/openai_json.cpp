// openai_json.cpp: reply and chunk objects (see openai_json.h).
#include "serve/openai_json.h"

#include <random>

namespace gptoss::serve {

std::string new_reply_id(Endpoint e) {
  static const char kHex[] = "0123456789abcdef";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = e == Endpoint::Chat          ? "chatcmpl-"
                   : e == Endpoint::Completions ? "cmpl-"
                                                : "resp_";
  for (int i = 0; i < 24; ++i) id += kHex[rng() % 16];
  return id;
}

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }
std::string sse(const Json& j) { return "data: " + dump(j) + "\n\n"; }
std::string sse_event(const Json& j) {
  return "event: " + j.value("type", std::string("message")) + "\ndata: " + dump(j) + "\n\n";
}

Json usage_json(const ReplyMeta& m, const ReplyBuilder& r, bool responses) {
  const int p = m.prompt_tokens, c = r.completion_tokens;
  if (responses)
    return Json{{"input_tokens", p},
                {"input_tokens_details", {{"cached_tokens", 0}}},
                {"output_tokens", c},
                {"output_tokens_details", {{"reasoning_tokens", r.reasoning_tokens}}},
                {"total_tokens", p + c}};
  return Json{{"prompt_tokens", p},
              {"completion_tokens", c},
              {"total_tokens", p + c},
              {"completion_tokens_details", {{"reasoning_tokens", r.reasoning_tokens}}}};
}

Json completion_json(const ReplyMeta& m, const ReplyBuilder& r) {
  Json choice{
      {"index", 0}, {"text", r.content}, {"logprobs", nullptr}, {"finish_reason", r.finish_reason}};
  return Json{
      {"id", m.id},       {"object", "text_completion"},      {"created", m.created},
      {"model", m.model}, {"choices", Json::array({choice})}, {"usage", usage_json(m, r, false)}};
}

namespace {
Json tool_calls_json(const ReplyBuilder& r) {
  Json calls = Json::array();
  for (const ToolCall& c : r.tool_calls)
    calls.push_back(Json{{"id", c.id},
                         {"type", "function"},
                         {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  return calls;
}
}  // namespace

Json chat_json(const ReplyMeta& m, const ReplyBuilder& r) {
  Json msg{{"role", "assistant"}};
  msg["content"] = r.content.empty() && !r.tool_calls.empty() ? Json() : Json(r.content);
  if (!r.reasoning.empty()) msg["reasoning_content"] = r.reasoning;
  if (!r.tool_calls.empty()) msg["tool_calls"] = tool_calls_json(r);
  Json choice{
      {"index", 0}, {"message", msg}, {"logprobs", nullptr}, {"finish_reason", r.finish_reason}};
  return Json{
      {"id", m.id},       {"object", "chat.completion"},      {"created", m.created},
      {"model", m.model}, {"choices", Json::array({choice})}, {"usage", usage_json(m, r, false)}};
}

Json responses_json(const ReplyMeta& m, const ReplyBuilder& r, const GenRequest& g) {
  Json output = Json::array();
  const std::string suffix = m.id.substr(5);
  if (!r.reasoning.empty())
    output.push_back(
        Json{{"type", "reasoning"},
             {"id", "rs_" + suffix},
             {"summary", Json::array()},
             {"content", Json::array({Json{{"type", "reasoning_text"}, {"text", r.reasoning}}})}});
  if (!r.content.empty() || r.tool_calls.empty())
    output.push_back(Json{{"type", "message"},
                          {"id", "msg_" + suffix},
                          {"status", r.finish_reason == "length" ? "incomplete" : "completed"},
                          {"role", "assistant"},
                          {"content", Json::array({Json{{"type", "output_text"},
                                                        {"text", r.content},
                                                        {"annotations", Json::array()}}})}});
  for (size_t i = 0; i < r.tool_calls.size(); ++i) {
    const ToolCall& c = r.tool_calls[i];
    output.push_back(Json{{"type", "function_call"},
                          {"id", "fc_" + suffix + (i ? std::to_string(i) : "")},
                          {"call_id", c.id},
                          {"name", c.name},
                          {"arguments", c.arguments},
                          {"status", "completed"}});
  }
  const bool incomplete = r.finish_reason == "length";
  return Json{{"id", m.id},
              {"object", "response"},
              {"created_at", m.created},
              {"status", incomplete ? "incomplete" : "completed"},
              {"incomplete_details", incomplete ? Json{{"reason", "max_output_tokens"}} : Json()},
              {"error", nullptr},
              {"model", m.model},
              {"output", output},
              {"parallel_tool_calls", false},
              {"temperature", g.temperature},
              {"top_p", g.top_p},
              {"max_output_tokens", g.max_tokens},
              {"usage", usage_json(m, r, true)}};
}

Json completion_chunk(const ReplyMeta& m, const std::string& text, const char* finish_reason) {
  Json choice{{"index", 0},
              {"text", text},
              {"logprobs", nullptr},
              {"finish_reason", finish_reason ? Json(finish_reason) : Json()}};
  return Json{{"id", m.id},
              {"object", "text_completion"},
              {"created", m.created},
              {"model", m.model},
              {"choices", Json::array({choice})}};
}

Json chat_chunk(const ReplyMeta& m, const Delta& d, const ReplyBuilder& r, bool first,
                const char* finish_reason, bool with_usage_field) {
  Json delta = Json::object();
  if (first) {
    delta["role"] = "assistant";
    delta["content"] = "";
  }
  if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
  if (!d.content.empty()) delta["content"] = d.content;
  if (d.tool_started || !d.tool_arguments.empty()) {
    const ToolCall& c = r.tool_calls.back();
    Json call{{"index", static_cast<int>(r.tool_calls.size()) - 1}};
    if (d.tool_started) {
      call["id"] = c.id;
      call["type"] = "function";
      call["function"] = Json{{"name", c.name}, {"arguments", d.tool_arguments}};
    } else {
      call["function"] = Json{{"arguments", d.tool_arguments}};
    }
    delta["tool_calls"] = Json::array({call});
  }
  Json choice{{"index", 0},
              {"delta", delta},
              {"logprobs", nullptr},
              {"finish_reason", finish_reason ? Json(finish_reason) : Json()}};
  Json j{{"id", m.id},
         {"object", "chat.completion.chunk"},
         {"created", m.created},
         {"model", m.model},
         {"choices", Json::array({choice})}};
  if (with_usage_field) j["usage"] = nullptr;
  return j;
}

Json usage_chunk(const ReplyMeta& m, const ReplyBuilder& r, bool chat) {
  return Json{{"id", m.id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", m.created},
              {"model", m.model},
              {"choices", Json::array()},
              {"usage", usage_json(m, r, false)}};
}

}  // namespace gptoss::serve
