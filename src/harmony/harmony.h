// harmony.h: the harmony chat format of gpt-oss (gpt-oss-spec.md, "Harmony chat format", and
// OpenAI's harmony format guide), shared by `run -m chat` and `run -m serve`:
//   - rendering: one message is <|start|>ROLE[ to=RECIPIENT][<|channel|>CHANNEL][ CONTENT_TYPE]
//     <|message|>CONTENT<|end|> (an assistant message to a tool ends with <|call|>); a
//     conversation is the system message, the developer message, the messages, <|start|>assistant;
//   - parsing: a token-level parser of the assistant's output stream
//     <|channel|>NAME[ to=R][ <|constrain|>TYPE]<|message|>text<|end|><|start|>assistant... ending
//     at <|return|> or <|call|>, which says when the output stops being harmony (random weights).
// Text is passed around as token ids; encoding and decoding stay with the caller. The tools
// section of the developer message (JSON Schema -> TypeScript) is in harmony_tools.h.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace gptoss {

// Ids of the o200k_harmony specials the format uses (the same values as tok:: in
// tokenizer/tokenizer.h; this library does not need the tokenizer).
namespace harmony_id {
inline constexpr int32_t kFirstSpecial = 199998, kEndOfText = 199999, kReturn = 200002,
                         kConstrain = 200003, kChannel = 200005, kStart = 200006, kEnd = 200007,
                         kMessage = 200008, kCall = 200012;
}

// Encodes plain text (special-token texts are NOT recognised: user text cannot inject them).
using TextEncoder = std::function<std::vector<int32_t>(std::string_view)>;
// The raw bytes of one token id (specials: their text, e.g. "<|channel|>").
using TokenBytes = std::function<const std::string&(int32_t)>;

// One message. Roles: system, developer, user, assistant, or for a tool's result the tool's name
// ("functions.get_weather") with recipient "assistant".
struct HarmonyMessage {
  std::string role;
  std::string recipient;     // "functions.NAME" on an assistant tool call; "" = none
  std::string channel;       // analysis | commentary | final; "" = none
  std::string content_type;  // "<|constrain|>json" (the marker is the special token) or "" = none
  std::string content;
};

// "You are ChatGPT, ...Current date: DATE\n\nReasoning: EFFORT\n\n# Valid channels: ...", plus
// the line that sends function calls to the commentary channel when the developer message
// defines functions.
std::string harmony_system_content(const std::string& date, const std::string& reasoning,
                                   bool function_tools = false);
// The developer message's content: "# Instructions\n\nTEXT" and/or the tools section (either may
// be empty; both empty = no developer message).
std::string harmony_developer_content(const std::string& instructions,
                                      const std::string& tools_section);
// One message as above.
std::vector<int32_t> harmony_render(const TextEncoder& enc, const HarmonyMessage& m);
// <|start|>ROLE<|message|>CONTENT<|end|>
std::vector<int32_t> harmony_message(const TextEncoder& enc, std::string_view role,
                                     std::string_view content);

// A conversation to complete: system message (date, reasoning effort), developer message (if its
// content is not empty), the messages in order, then <|start|>assistant.
struct HarmonyConversation {
  std::string date;                  // YYYY-MM-DD
  std::string reasoning = "medium";  // low | medium | high
  bool function_tools = false;       // the developer content defines the functions namespace
  std::string developer;             // harmony_developer_content(...), "" = none
  std::vector<HarmonyMessage> messages;
};
std::vector<int32_t> harmony_render_for_completion(const TextEncoder& enc,
                                                   const HarmonyConversation& c);

// chat mode's pieces: system message then the developer message if `developer` (instructions)
// is not empty; a user turn <|start|>user<|message|>TEXT<|end|><|start|>assistant.
std::vector<int32_t> harmony_preamble(const TextEncoder& enc, const std::string& date,
                                      const std::string& reasoning, const std::string& developer);
std::vector<int32_t> harmony_user_turn(const TextEncoder& enc, std::string_view text);
// Today's date, UTC, YYYY-MM-DD.
std::string today_utc();

// Parses the assistant's output of one turn, token by token.
//
// Valid output is a sequence of messages: a header (for the first one, after the prompt's
// <|start|>assistant; later ones after <|start|>assistant), <|message|>, content tokens, then
// <|end|> (another message follows) or <|return|> / <|call|> (the turn is over). A header names
// a channel (analysis, commentary or final) and may name a recipient (to=...) in the role or the
// channel section and a content type (<|constrain|>json). Special tokens inside content are
// content.
//
// Anything else (a header longer than kMaxHeaderTokens tokens or kMaxHeaderBytes bytes, a header
// without a valid channel or with a role other than assistant, a special token where a header or
// <|start|> belongs) is not harmony: from that token on every token is Raw (the rest of the turn
// is plain text to the caller), and raw_tokens() gives the not-yet-shown tokens that became raw.
// The header is the only buffered text, so the parser's memory is bounded whatever the model does.
class HarmonyParser {
 public:
  enum class Kind {
    None,          // a header token: nothing to show yet
    MessageStart,  // <|message|> opened a message: channel(), recipient(), content_type() are set
    Content,       // a token of message text on channel()
    MessageEnd,    // <|end|> closed the message on channel()
    Done,          // <|return|> or <|call|>: the turn is over (also in raw mode)
    Raw,           // not harmony: raw_tokens() are plain text to show
  };
  static constexpr size_t kMaxHeaderTokens = 64, kMaxHeaderBytes = 512;

  explicit HarmonyParser(TokenBytes bytes) : bytes_(std::move(bytes)) { reset(); }
  // Starts a turn: the prompt ended with <|start|>assistant, so the role is already given.
  void reset();
  Kind feed(int32_t id);

  // Header of the current / just-closed message. channel(): "" before the first <|message|>.
  const std::string& channel() const { return channel_; }
  const std::string& recipient() const { return recipient_; }        // "" = none
  const std::string& content_type() const { return content_type_; }  // e.g. "<|constrain|>json"
  // Final answers are shown; so is raw output.
  bool visible() const { return raw_ || channel_ == "final"; }
  // Tokens of message content seen this turn (all channels; raw tokens not counted).
  int content_tokens() const { return content_tokens_; }
  bool saw_final() const { return saw_final_; }
  // True once the output stopped being harmony.
  bool raw() const { return raw_; }
  // After a Raw result: the tokens that became plain text with it (on the first Raw the header
  // buffered so far, then this token; after that just this token).
  const std::vector<int32_t>& raw_tokens() const { return raw_tokens_; }
  // Tokens of a header not yet closed by <|message|> (a turn cut mid-header: the caller shows
  // them as plain text).
  const std::vector<int32_t>& pending_header() const { return header_ids_; }
  // True between <|end|> and the next <|start|>, or inside a header: no message is open.
  bool in_content() const { return state_ == State::Content; }

 private:
  enum class State { Header, AfterEnd, Content, Done };
  Kind to_raw(int32_t id);
  bool parse_header();

  TokenBytes bytes_;
  State state_ = State::Header;
  bool first_message_ = true;  // its role came with the prompt
  bool raw_ = false;
  std::vector<int32_t> header_ids_;  // [<= kMaxHeaderTokens] header tokens since <|start|>
  std::string header_text_;          // [<= kMaxHeaderBytes] their bytes
  std::string channel_, recipient_, content_type_;
  std::vector<int32_t> raw_tokens_;
  int content_tokens_ = 0;
  bool saw_final_ = false;
};

}  // namespace gptoss
