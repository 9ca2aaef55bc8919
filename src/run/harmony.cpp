// harmony.cpp: harmony prompt building and the assistant output parser.
#include "run/harmony.h"

#include <ctime>

#include "common/error.h"

namespace gptoss {

namespace {
// Ids of o200k_harmony (same values as tok:: in tokenizer/tokenizer.h; this file does not need
// the tokenizer library).
constexpr int32_t kReturn = 200002, kConstrain = 200003, kChannel = 200005, kStart = 200006,
                  kEnd = 200007, kMessage = 200008, kCall = 200012;

void append(std::vector<int32_t>& out, const std::vector<int32_t>& more) {
  out.insert(out.end(), more.begin(), more.end());
}
}  // namespace

std::string harmony_system_content(const std::string& date, const std::string& reasoning) {
  return "You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n"
         "Current date: " + date + "\n\nReasoning: " + reasoning +
         "\n\n# Valid channels: analysis, commentary, final. Channel must be included for every "
         "message.";
}

std::vector<int32_t> harmony_message(const TextEncoder& enc, std::string_view role,
                                     std::string_view content) {
  std::vector<int32_t> out{kStart};
  append(out, enc(role));
  out.push_back(kMessage);
  append(out, enc(content));
  out.push_back(kEnd);
  return out;
}

std::vector<int32_t> harmony_preamble(const TextEncoder& enc, const std::string& date,
                                      const std::string& reasoning, const std::string& developer) {
  std::vector<int32_t> out = harmony_message(enc, "system", harmony_system_content(date, reasoning));
  if (!developer.empty()) append(out, harmony_message(enc, "developer", "# Instructions\n\n" + developer));
  return out;
}

std::vector<int32_t> harmony_user_turn(const TextEncoder& enc, std::string_view text) {
  std::vector<int32_t> out = harmony_message(enc, "user", text);
  out.push_back(kStart);
  append(out, enc("assistant"));
  return out;
}

std::string today_utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

void HarmonyParser::reset() {
  state_ = State::Header;
  channel_raw_.clear();
  channel_.clear();
  content_tokens_ = 0;
  saw_final_ = false;
}

HarmonyParser::Kind HarmonyParser::feed(int32_t id) {
  if (state_ == State::Done) return Kind::Done;
  if (id == kReturn || id == kCall) {
    state_ = State::Done;
    return Kind::Done;
  }
  switch (state_) {
    case State::Content:
      if (id == kEnd) {
        state_ = State::Header;
        return Kind::MessageEnd;
      }
      ++content_tokens_;
      if (channel_ == "final") saw_final_ = true;
      return Kind::Content;  // any other id, specials included, is message text
    case State::Header:
    case State::Channel:
    case State::Constrain:
      if (id == kStart) {  // a new message header
        state_ = State::Header;
        channel_raw_.clear();
        channel_.clear();
      } else if (id == kChannel) {
        state_ = State::Channel;
        channel_raw_.clear();
      } else if (id == kConstrain) {
        state_ = State::Constrain;
      } else if (id == kMessage) {
        // Channel name = first word of what followed <|channel|> (" to=..." may follow it).
        size_t b = channel_raw_.find_first_not_of(" ");
        size_t e = b == std::string::npos ? b : channel_raw_.find_first_of(" <", b);
        channel_ = b == std::string::npos ? "" : channel_raw_.substr(b, e == std::string::npos ? e : e - b);
        state_ = State::Content;
      } else if (state_ == State::Channel) {
        channel_raw_ += bytes_(id);
      }
      return Kind::None;
    case State::Done:
      break;
  }
  return Kind::Done;
}

}  // namespace gptoss
