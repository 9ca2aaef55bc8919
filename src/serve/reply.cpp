// reply.cpp: generated tokens -> content, reasoning and tool calls (see reply.h).
#include "serve/reply.h"

#include <algorithm>
#include <random>

namespace gptoss::serve {

std::string new_call_id() {
  static const char kAlnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlnum[rng() % 62];
  return id;
}

ReplyBuilder::ReplyBuilder(const Tokenizer& tk, const GenRequest& req,
                           std::vector<int32_t> stop_ids)
    : tk_(tk),
      req_(req),
      stop_ids_(std::move(stop_ids)),
      parser_([&tk](int32_t id) -> const std::string& { return tk.token_bytes(id); }),
      msg_dec_(tk),
      raw_dec_(tk) {
  for (const std::string& s : req_.stop) max_stop_ = std::max(max_stop_, s.size());
}

void ReplyBuilder::emit(Route r, const std::string& text, Delta& d) {
  if (text.empty()) return;
  switch (r) {
    case Route::Content:
      emit_content(text, d, false);
      break;
    case Route::Reasoning:
      reasoning += text;
      d.reasoning += text;
      break;
    case Route::Tool:
      tool_calls.back().arguments += text;
      d.tool_arguments += text;
      break;
    case Route::Drop:
      break;
  }
}

// Content goes out unless it may be the start of a stop string: the last (longest stop - 1)
// bytes wait (cut back to a UTF-8 character boundary) until more text or the end decides.
void ReplyBuilder::emit_content(const std::string& text, Delta& d, bool final_flush) {
  if (stopped_) return;
  if (req_.stop.empty()) {
    content += text;
    d.content += text;
    return;
  }
  held_ += text;
  size_t first = std::string::npos;
  for (const std::string& s : req_.stop) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    content.append(held_, 0, first);
    d.content.append(held_, 0, first);
    held_.clear();
    stopped_ = true;
    return;
  }
  size_t keep = final_flush ? 0 : std::min(held_.size(), max_stop_ - 1);
  size_t cut = held_.size() - keep;
  while (cut > 0 && cut < held_.size() && (static_cast<unsigned char>(held_[cut]) & 0xC0) == 0x80)
    --cut;  // never split a character
  content.append(held_, 0, cut);
  d.content.append(held_, 0, cut);
  held_.erase(0, cut);
}

void ReplyBuilder::close_message(Delta& d) { emit(route_, msg_dec_.flush(), d); }

void ReplyBuilder::start_tool(Delta& d) {
  ToolCall c;
  c.id = new_call_id();
  c.name = parser_.recipient().substr(std::string("functions.").size());
  tool_calls.push_back(std::move(c));
  d.tool_started = true;
}

void ReplyBuilder::push(int32_t token, Delta& d) {
  if (finished_ || stopped_) return;
  ++completion_tokens;
  const bool stop_id = std::find(stop_ids_.begin(), stop_ids_.end(), token) != stop_ids_.end();
  if (!req_.harmony) {
    if (!stop_id) emit_content(raw_dec_.push(token), d, false);
    return;
  }
  if (stop_id && token != harmony_id::kReturn && token != harmony_id::kCall)
    return;  // e.g. <|endoftext|>
  if (token == harmony_id::kCall) last_was_call_ = parser_.in_content() && route_ == Route::Tool;
  switch (parser_.feed(token)) {
    case HarmonyParser::Kind::None:
      break;
    case HarmonyParser::Kind::MessageStart: {
      const std::string& ch = parser_.channel();
      const std::string& to = parser_.recipient();
      if (ch == "commentary" && to.rfind("functions.", 0) == 0 && to.size() > 10) {
        route_ = Route::Tool;
        start_tool(d);
      } else if (ch == "final" || (ch == "commentary" && to.empty())) {
        route_ = Route::Content;  // the answer, or a preamble meant for the user
      } else {
        route_ = Route::Reasoning;  // analysis, and calls to tools this server does not offer
      }
      break;
    }
    case HarmonyParser::Kind::Content:
      if (route_ == Route::Reasoning) ++reasoning_tokens;
      emit(route_, msg_dec_.push(token), d);
      break;
    case HarmonyParser::Kind::MessageEnd:
    case HarmonyParser::Kind::Done:
      close_message(d);
      break;
    case HarmonyParser::Kind::Raw: {
      std::string text;
      for (int32_t t : parser_.raw_tokens()) text += raw_dec_.push(t);
      emit_content(text, d, false);
      break;
    }
  }
}

void ReplyBuilder::finish(EndKind why, Delta& d) {
  if (finished_) return;
  if (!stopped_) {
    if (req_.harmony) {
      if (parser_.in_content()) close_message(d);  // cut inside a message
      // A turn cut inside a header (or ended by a stop token there): what was generated is text.
      std::string text;
      for (int32_t t : parser_.pending_header()) text += raw_dec_.push(t);
      emit_content(text, d, false);
    }
    emit_content(raw_dec_.flush(), d, true);
  }
  finished_ = true;
  if (stopped_)
    finish_reason = "stop";
  else if (why == EndKind::Length)
    finish_reason = "length";
  else if (why == EndKind::Cancelled)
    finish_reason = "cancelled";
  else
    finish_reason = last_was_call_ && !tool_calls.empty() ? "tool_calls" : "stop";
}

}  // namespace gptoss::serve
