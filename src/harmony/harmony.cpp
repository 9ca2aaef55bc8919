// harmony.cpp: harmony rendering (messages, conversations) and the assistant output parser.
#include "harmony/harmony.h"

#include <ctime>

namespace gptoss {

using namespace harmony_id;

namespace {
constexpr std::string_view kConstrainText = "<|constrain|>", kChannelText = "<|channel|>";

void append(std::vector<int32_t>& out, const std::vector<int32_t>& more) {
  out.insert(out.end(), more.begin(), more.end());
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::vector<std::string> split_spaces(const std::string& s) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) parts.push_back(s.substr(i, j - i));
    i = j;
  }
  return parts;
}
}  // namespace

std::string harmony_system_content(const std::string& date, const std::string& reasoning,
                                   bool function_tools) {
  std::string s =
      "You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: "
      "2024-06\nCurrent date: " +
      date + "\n\nReasoning: " + reasoning +
      "\n\n# Valid channels: analysis, commentary, final. Channel must be included for "
      "every message.";
  if (function_tools) s += "\nCalls to these tools must go to the commentary channel: 'functions'.";
  return s;
}

std::string harmony_developer_content(const std::string& instructions,
                                      const std::string& tools_section) {
  std::string s;
  if (!instructions.empty()) s = "# Instructions\n\n" + instructions;
  if (!tools_section.empty()) s += (s.empty() ? "" : "\n\n") + tools_section;
  return s;
}

std::vector<int32_t> harmony_render(const TextEncoder& enc, const HarmonyMessage& m) {
  std::vector<int32_t> out{kStart};
  append(out, enc(m.role));
  if (!m.recipient.empty()) append(out, enc(" to=" + m.recipient));
  if (!m.channel.empty()) {
    out.push_back(kChannel);
    append(out, enc(m.channel));
  }
  if (!m.content_type.empty()) {
    std::string_view ct = m.content_type;
    if (ct.substr(0, kConstrainText.size()) == kConstrainText) {
      append(out, enc(" "));
      out.push_back(kConstrain);
      ct.remove_prefix(kConstrainText.size());
      if (!ct.empty()) append(out, enc(ct));
    } else {
      append(out, enc(" " + m.content_type));
    }
  }
  out.push_back(kMessage);
  append(out, enc(m.content));
  out.push_back(m.role == "assistant" && !m.recipient.empty() ? kCall : kEnd);
  return out;
}

std::vector<int32_t> harmony_message(const TextEncoder& enc, std::string_view role,
                                     std::string_view content) {
  return harmony_render(enc, HarmonyMessage{std::string(role), "", "", "", std::string(content)});
}

std::vector<int32_t> harmony_render_for_completion(const TextEncoder& enc,
                                                   const HarmonyConversation& c) {
  std::vector<int32_t> out =
      harmony_message(enc, "system", harmony_system_content(c.date, c.reasoning, c.function_tools));
  if (!c.developer.empty()) append(out, harmony_message(enc, "developer", c.developer));
  for (const HarmonyMessage& m : c.messages) append(out, harmony_render(enc, m));
  out.push_back(kStart);
  append(out, enc("assistant"));
  return out;
}

std::vector<int32_t> harmony_preamble(const TextEncoder& enc, const std::string& date,
                                      const std::string& reasoning, const std::string& developer) {
  std::vector<int32_t> out =
      harmony_message(enc, "system", harmony_system_content(date, reasoning));
  if (!developer.empty())
    append(out, harmony_message(enc, "developer", harmony_developer_content(developer, "")));
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

// --- parser ------------------------------------------------------------------------------------

void HarmonyParser::reset() {
  state_ = State::Header;
  first_message_ = true;
  raw_ = false;
  header_ids_.clear();
  header_text_.clear();
  channel_.clear();
  recipient_.clear();
  content_type_.clear();
  raw_tokens_.clear();
  content_tokens_ = 0;
  saw_final_ = false;
}

HarmonyParser::Kind HarmonyParser::to_raw(int32_t id) {
  raw_ = true;
  raw_tokens_ = std::move(header_ids_);
  raw_tokens_.push_back(id);
  header_ids_.clear();
  header_text_.clear();
  return Kind::Raw;
}

// The header text as OpenAI's renderer writes it: ROLE[ to=R]<|channel|>CHANNEL[ to=R]
// [ <|constrain|>TYPE | TYPE]. The role is absent on the turn's first message (the prompt gave it).
bool HarmonyParser::parse_header() {
  const std::string& h = header_text_;
  const size_t at = h.find(kChannelText);
  if (at == std::string::npos) return false;
  size_t b = at + kChannelText.size(), e = b;
  while (e < h.size() && !is_space(h[e]) && h[e] != '<') ++e;
  std::string channel = h.substr(b, e - b);
  if (channel != "analysis" && channel != "commentary" && channel != "final") return false;
  // Without the channel, and a space before each <|constrain|> so "to=x<|constrain|>json" splits.
  std::string rest;
  for (size_t i = 0; i < h.size(); ++i) {
    if (i == at) {
      rest += ' ';
      i = e - 1;
      continue;
    }
    if (h.compare(i, kConstrainText.size(), kConstrainText) == 0) rest += ' ';
    rest += h[i];
  }
  std::vector<std::string> parts = split_spaces(rest);
  size_t i = 0;
  if (!parts.empty() && parts[0] == "assistant")
    ++i;
  else if (!first_message_)
    return false;  // a later message must be the assistant's
  std::string recipient, content_type;
  for (; i < parts.size(); ++i) {
    if (parts[i].rfind("to=", 0) == 0) {
      if (!recipient.empty() || parts[i].size() == 3) return false;
      recipient = parts[i].substr(3);
    } else if (content_type.empty()) {
      content_type = parts[i];
    } else {
      return false;
    }
  }
  if (content_type == kConstrainText) return false;  // a marker without a type
  channel_ = std::move(channel);
  recipient_ = std::move(recipient);
  content_type_ = std::move(content_type);
  return true;
}

HarmonyParser::Kind HarmonyParser::feed(int32_t id) {
  if (state_ == State::Done) return Kind::Done;
  if (id == kReturn || id == kCall) {
    state_ = State::Done;
    return Kind::Done;
  }
  if (raw_) {
    raw_tokens_.assign(1, id);
    return Kind::Raw;
  }
  switch (state_) {
    case State::Content:
      if (id == kEnd) {
        state_ = State::AfterEnd;
        first_message_ = false;
        return Kind::MessageEnd;
      }
      ++content_tokens_;
      if (channel_ == "final") saw_final_ = true;
      return Kind::Content;  // any other id, specials included, is message text
    case State::AfterEnd:
      if (id != kStart) return to_raw(id);
      state_ = State::Header;
      return Kind::None;
    case State::Header: {
      if (id == kMessage) {
        if (!parse_header()) return to_raw(id);
        header_ids_.clear();
        header_text_.clear();
        state_ = State::Content;
        return Kind::MessageStart;
      }
      if (id >= kFirstSpecial && id != kChannel && id != kConstrain) return to_raw(id);
      const std::string& b = bytes_(id);
      if (header_ids_.size() + 1 > kMaxHeaderTokens ||
          header_text_.size() + b.size() > kMaxHeaderBytes)
        return to_raw(id);
      header_ids_.push_back(id);
      header_text_ += b;
      return Kind::None;
    }
    case State::Done:
      break;
  }
  return Kind::Done;
}

}  // namespace gptoss
