// responses_stream.h: the event stream of POST /v1/responses with "stream": true. Deltas become
// output items opened and closed in order: reasoning (response.reasoning_text.delta), message
// (response.output_text.delta), function call (response.function_call_arguments.delta), each
// framed by response.output_item.added / .done; the stream starts with response.created and
// response.in_progress and ends with response.completed (or .incomplete) holding the whole reply.
// Every event carries its sequence_number.
#pragma once
#include <string>

#include "serve/openai_json.h"

namespace gptoss::serve {

class ResponsesStream {
 public:
  ResponsesStream(const ReplyMeta& m, const GenRequest& g) : m_(m), g_(g) {}
  std::string start();
  // SSE text for one delta (r: the builder after it).
  std::string delta(const Delta& d, const ReplyBuilder& r);
  // The closing events once r is finished.
  std::string finish(const ReplyBuilder& r);

 private:
  enum class Item { None, Reasoning, Message, Call };
  std::string event(Json j);
  std::string open(Item kind, const ReplyBuilder& r);
  std::string close(const ReplyBuilder& r);
  Json response_shell(const char* status);

  ReplyMeta m_;
  GenRequest g_;
  int seq_ = 0, index_ = -1;  // sequence number, output index of the open item
  Item item_ = Item::None;
  std::string text_;  // text of the open item so far
  std::string item_id_;
  Json items_ = Json::array();  // closed items, for response.completed
};

}  // namespace gptoss::serve
