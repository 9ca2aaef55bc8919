// responses_stream.cpp: the /v1/responses event stream (see responses_stream.h).
#include "serve/responses_stream.h"

namespace gptoss::serve {

std::string ResponsesStream::event(Json j) {
  j["sequence_number"] = seq_++;
  return sse_event(j);
}

Json ResponsesStream::response_shell(const char* status) {
  return Json{{"id", m_.id},       {"object", "response"},    {"created_at", m_.created},
              {"status", status},  {"error", nullptr},        {"incomplete_details", nullptr},
              {"model", m_.model}, {"output", Json::array()}, {"usage", nullptr}};
}

std::string ResponsesStream::start() {
  std::string out =
      event(Json{{"type", "response.created"}, {"response", response_shell("in_progress")}});
  return out +
         event(Json{{"type", "response.in_progress"}, {"response", response_shell("in_progress")}});
}

std::string ResponsesStream::open(Item kind, const ReplyBuilder& r) {
  item_ = kind;
  ++index_;
  text_.clear();
  const std::string suffix = m_.id.substr(5) + std::to_string(index_);
  Json item;
  if (kind == Item::Reasoning) {
    item_id_ = "rs_" + suffix;
    item = Json{{"type", "reasoning"}, {"id", item_id_}, {"summary", Json::array()}};
  } else if (kind == Item::Message) {
    item_id_ = "msg_" + suffix;
    item = Json{{"type", "message"},
                {"id", item_id_},
                {"status", "in_progress"},
                {"role", "assistant"},
                {"content", Json::array()}};
  } else {
    item_id_ = "fc_" + suffix;
    const ToolCall& c = r.tool_calls.back();
    item = Json{{"type", "function_call"}, {"id", item_id_},  {"call_id", c.id},
                {"name", c.name},          {"arguments", ""}, {"status", "in_progress"}};
  }
  std::string out =
      event(Json{{"type", "response.output_item.added"}, {"output_index", index_}, {"item", item}});
  if (kind == Item::Message)
    out += event(
        Json{{"type", "response.content_part.added"},
             {"item_id", item_id_},
             {"output_index", index_},
             {"content_index", 0},
             {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", Json::array()}}}});
  return out;
}

std::string ResponsesStream::close(const ReplyBuilder& r) {
  std::string out;
  Json item;
  if (item_ == Item::Reasoning) {
    out += event(Json{{"type", "response.reasoning_text.done"},
                      {"item_id", item_id_},
                      {"output_index", index_},
                      {"content_index", 0},
                      {"text", text_}});
    item = Json{{"type", "reasoning"},
                {"id", item_id_},
                {"summary", Json::array()},
                {"content", Json::array({Json{{"type", "reasoning_text"}, {"text", text_}}})}};
  } else if (item_ == Item::Message) {
    Json part{{"type", "output_text"}, {"text", text_}, {"annotations", Json::array()}};
    out += event(Json{{"type", "response.output_text.done"},
                      {"item_id", item_id_},
                      {"output_index", index_},
                      {"content_index", 0},
                      {"text", text_}});
    out += event(Json{{"type", "response.content_part.done"},
                      {"item_id", item_id_},
                      {"output_index", index_},
                      {"content_index", 0},
                      {"part", part}});
    item = Json{{"type", "message"},
                {"id", item_id_},
                {"status", "completed"},
                {"role", "assistant"},
                {"content", Json::array({part})}};
  } else if (item_ == Item::Call) {
    const ToolCall& c = r.tool_calls.back();
    out += event(Json{{"type", "response.function_call_arguments.done"},
                      {"item_id", item_id_},
                      {"output_index", index_},
                      {"arguments", c.arguments}});
    item = Json{{"type", "function_call"}, {"id", item_id_},           {"call_id", c.id},
                {"name", c.name},          {"arguments", c.arguments}, {"status", "completed"}};
  } else {
    return out;
  }
  out +=
      event(Json{{"type", "response.output_item.done"}, {"output_index", index_}, {"item", item}});
  items_.push_back(item);
  item_ = Item::None;
  return out;
}

std::string ResponsesStream::delta(const Delta& d, const ReplyBuilder& r) {
  std::string out;
  if (!d.reasoning.empty()) {
    if (item_ != Item::Reasoning) {
      out += close(r);
      out += open(Item::Reasoning, r);
    }
    text_ += d.reasoning;
    out += event(Json{{"type", "response.reasoning_text.delta"},
                      {"item_id", item_id_},
                      {"output_index", index_},
                      {"content_index", 0},
                      {"delta", d.reasoning}});
  }
  if (!d.content.empty()) {
    if (item_ != Item::Message) {
      out += close(r);
      out += open(Item::Message, r);
    }
    text_ += d.content;
    out += event(Json{{"type", "response.output_text.delta"},
                      {"item_id", item_id_},
                      {"output_index", index_},
                      {"content_index", 0},
                      {"delta", d.content}});
  }
  if (d.tool_started) {
    out += close(r);
    out += open(Item::Call, r);
  }
  if (!d.tool_arguments.empty())
    out += event(Json{{"type", "response.function_call_arguments.delta"},
                      {"item_id", item_id_},
                      {"output_index", index_},
                      {"delta", d.tool_arguments}});
  return out;
}

std::string ResponsesStream::finish(const ReplyBuilder& r) {
  std::string out = close(r);
  if (items_.empty()) {  // an empty answer is a message too
    out += open(Item::Message, r);
    out += close(r);
  }
  Json full = responses_json(m_, r, g_);
  full["output"] = items_;  // the items as streamed, with their ids
  const bool incomplete = r.finish_reason == "length";
  out += event(Json{{"type", incomplete ? "response.incomplete" : "response.completed"},
                    {"response", full}});
  return out;
}

}  // namespace gptoss::serve
