// harmony.h: the harmony chat format (gpt-oss-spec.md, "Harmony chat format") for `run -m chat`:
// prompt building (system, developer, user turns) and a token-level parser of the assistant's
// output stream <|channel|>NAME<|message|>text<|end|><|start|>assistant... ending at <|return|> or
// <|call|>. Text is passed around as token ids; decoding stays with the caller.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace gptoss {

// Encodes plain text (special-token texts are NOT recognised: user text cannot inject them).
using TextEncoder = std::function<std::vector<int32_t>(std::string_view)>;
// The raw bytes of one token id.
using TokenBytes = std::function<const std::string&(int32_t)>;

// "You are ChatGPT, ...Current date: DATE\n\nReasoning: EFFORT\n\n# Valid channels: ...".
std::string harmony_system_content(const std::string& date, const std::string& reasoning);
// <|start|>ROLE<|message|>CONTENT<|end|>
std::vector<int32_t> harmony_message(const TextEncoder& enc, std::string_view role,
                                     std::string_view content);
// System message, then the developer message if `developer` is not empty.
std::vector<int32_t> harmony_preamble(const TextEncoder& enc, const std::string& date,
                                      const std::string& reasoning, const std::string& developer);
// <|start|>user<|message|>TEXT<|end|><|start|>assistant
std::vector<int32_t> harmony_user_turn(const TextEncoder& enc, std::string_view text);
// Today's date, UTC, YYYY-MM-DD.
std::string today_utc();

class HarmonyParser {
 public:
  enum class Kind {
    None,        // header token (role, channel name, recipient, constraint): nothing to show
    Content,     // a token of message text on channel()
    MessageEnd,  // <|end|> closed the message on channel()
    Done,        // <|return|> or <|call|>: the turn is over
  };
  explicit HarmonyParser(TokenBytes bytes) : bytes_(std::move(bytes)) { reset(); }
  // Starts a turn: the prompt ended with <|start|>assistant, so the role is already given.
  void reset();
  Kind feed(int32_t id);
  // Channel of the current / just-closed message: first word of the text after <|channel|>
  // ("" if the message had no channel).
  const std::string& channel() const { return channel_; }
  // Final answers are shown; so is text of a message without a channel.
  bool visible() const { return channel_ == "final" || channel_.empty(); }
  // Tokens of message content seen this turn (all channels).
  int content_tokens() const { return content_tokens_; }
  bool saw_final() const { return saw_final_; }

 private:
  enum class State { Header, Channel, Constrain, Content, Done };
  TokenBytes bytes_;
  State state_ = State::Header;
  std::string channel_raw_, channel_;
  int content_tokens_ = 0;
  bool saw_final_ = false;
};

}  // namespace gptoss
