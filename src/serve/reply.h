// reply.h: the output side of one request: generated token ids -> what the client sees.
//   completions: the decoded text (the stop token that ended it is not text);
//   chat / responses: the harmony stream (src/harmony) mapped to OpenAI's fields: analysis ->
//     reasoning, final -> content, commentary to=functions.NAME -> a tool call (id, name, JSON
//     arguments), commentary without a recipient (a preamble) -> content; output that is not
//     harmony -> content, as generated (special tokens as their text), from the point where it
//     stopped being harmony.
// Stop strings cut the content (chat) or the text (completions) at their first match; text that
// could be the start of a match is held back until it cannot. finish_reason is honest: "stop"
// (a stop token or string), "length" (max tokens or the context), "tool_calls" (the turn ended
// with <|call|> on a tool call).
// Deltas are what a stream sends; the accumulated fields are what a non-streamed reply holds:
// the concatenated deltas always equal the accumulated fields.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "harmony/harmony.h"
#include "serve/api.h"
#include "tokenizer/tokenizer.h"

namespace gptoss::serve {

struct ToolCall {
  std::string id;  // "call_" + 24 letters and digits
  std::string name;
  std::string arguments;  // as generated (JSON when the model wrote JSON)
};

struct Delta {
  std::string content, reasoning;
  bool tool_started = false;   // a tool call began here (tool_calls.back() has id and name)
  std::string tool_arguments;  // more arguments of tool_calls.back()
  bool empty() const {
    return content.empty() && reasoning.empty() && !tool_started && tool_arguments.empty();
  }
};

enum class EndKind { Stop, Length, Cancelled };

class ReplyBuilder {
 public:
  ReplyBuilder(const Tokenizer& tk, const GenRequest& req, std::vector<int32_t> stop_ids);
  // One generated token (in order); what became visible is appended to d.
  void push(int32_t token, Delta& d);
  // The sequence ended (the scheduler's reason); flushes everything held back into d.
  void finish(EndKind why, Delta& d);
  // A stop string matched: the text ends there and the request should be cancelled.
  bool stopped() const { return stopped_; }
  bool finished() const { return finished_; }

  std::string content, reasoning;
  std::vector<ToolCall> tool_calls;
  std::string finish_reason;  // set by finish(): stop | length | tool_calls
  int completion_tokens = 0;  // tokens generated (stop token included)
  int reasoning_tokens = 0;   // of which analysis content

 private:
  enum class Route { Content, Reasoning, Tool, Drop };
  void emit(Route r, const std::string& text, Delta& d);
  void emit_content(const std::string& text, Delta& d, bool final_flush);
  void close_message(Delta& d);
  void start_tool(Delta& d);

  const Tokenizer& tk_;
  GenRequest req_;
  std::vector<int32_t> stop_ids_;
  HarmonyParser parser_;
  StreamDecoder msg_dec_, raw_dec_;
  Route route_ = Route::Content;
  std::string held_;     // content held back: it may be the start of a stop string
  size_t max_stop_ = 0;  // longest stop string, bytes
  bool stopped_ = false, finished_ = false;
  bool last_was_call_ = false;  // the turn ended with <|call|> on a tool-call message
};

// "call_" + 24 random letters and digits.
std::string new_call_id();

}  // namespace gptoss::serve
