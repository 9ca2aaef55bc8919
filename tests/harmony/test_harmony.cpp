// test_harmony.cpp: harmony rendering (token layout of gpt-oss-spec.md and OpenAI's harmony format
// guide: the guide's examples are the expected strings) and the output parser, with a
// byte-per-token fake tokenizer (id = byte value; specials are their real ids).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "harmony/harmony.h"

namespace gptoss {
namespace {

constexpr int32_t kReturn = 200002, kConstrain = 200003, kChannel = 200005, kStart = 200006,
                  kEnd = 200007, kMessage = 200008, kCall = 200012;

std::vector<int32_t> bytes_enc(std::string_view s) {
  std::vector<int32_t> v;
  for (unsigned char c : s) v.push_back(c);
  return v;
}
const std::string& byte_of(int32_t id) {
  static std::vector<std::string> table = [] {
    std::vector<std::string> t;
    for (int i = 0; i < 256; ++i) t.push_back(std::string(1, static_cast<char>(i)));
    return t;
  }();
  static const std::map<int32_t, std::string> specials = {
      {kReturn, "<|return|>"},   {kConstrain, "<|constrain|>"},
      {kChannel, "<|channel|>"}, {kStart, "<|start|>"},
      {kEnd, "<|end|>"},         {kMessage, "<|message|>"},
      {kCall, "<|call|>"}};
  static const std::string other = "<|reserved|>";
  if (id >= 0 && id < 256) return table[id];
  auto it = specials.find(id);
  return it == specials.end() ? other : it->second;
}
// Token ids back to text: bytes as they are, specials as their text (to compare with the guide).
std::string text_of(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t t : ids) s += byte_of(t);
  return s;
}
std::vector<int32_t> cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> v;
  for (auto& p : parts) v.insert(v.end(), p.begin(), p.end());
  return v;
}

TEST(Harmony, SystemContentIsTheSpecText) {
  EXPECT_EQ(harmony_system_content("2026-11-26", "high"),
            "You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: "
            "2024-06\nCurrent date: 2026-11-26\n\nReasoning: high\n\n# Valid channels: analysis, "
            "commentary, final. Channel must be included for every message.");
}

TEST(Harmony, PreambleAndUserTurnLayout) {
  auto sys = harmony_system_content("2026-01-02", "medium");
  auto expect = cat({{kStart},
                     bytes_enc("system"),
                     {kMessage},
                     bytes_enc(sys),
                     {kEnd},
                     {kStart},
                     bytes_enc("developer"),
                     {kMessage},
                     bytes_enc("# Instructions\n\nBe brief."),
                     {kEnd}});
  EXPECT_EQ(harmony_preamble(bytes_enc, "2026-01-02", "medium", "Be brief."), expect);
  // No developer message without -y.
  EXPECT_EQ(harmony_preamble(bytes_enc, "2026-01-02", "medium", ""),
            cat({{kStart}, bytes_enc("system"), {kMessage}, bytes_enc(sys), {kEnd}}));
  EXPECT_EQ(harmony_user_turn(bytes_enc, "hi <|end|>"), cat({{kStart},
                                                             bytes_enc("user"),
                                                             {kMessage},
                                                             bytes_enc("hi <|end|>"),
                                                             {kEnd},
                                                             {kStart},
                                                             bytes_enc("assistant")}));
}

TEST(Harmony, TodayIsIsoDate) {
  std::string d = today_utc();
  ASSERT_EQ(d.size(), 10u);
  EXPECT_EQ(d[4], '-');
  EXPECT_EQ(d[7], '-');
}

// The guide's conversation with a tool call and its result, rendered for the next completion:
// the analysis before the call is kept, the call ends with <|call|>, the result is
// `functions.NAME to=assistant` on commentary.
TEST(Harmony, ToolCallConversationMatchesTheGuide) {
  HarmonyConversation c;
  c.date = "2025-06-28";
  c.reasoning = "high";
  c.function_tools = true;
  c.developer = harmony_developer_content("Use a friendly tone.", "# Tools\n\n## functions\n\n...");
  c.messages = {{"user", "", "", "", "What is the weather like in SF?"},
                {"assistant", "", "analysis", "", "Need to use function get_weather."},
                {"assistant", "functions.get_weather", "commentary", "<|constrain|>json",
                 "{\"location\":\"San Francisco\"}"},
                {"functions.get_weather", "assistant", "commentary", "",
                 "{\"sunny\": true, \"temperature\": 20}"}};
  EXPECT_EQ(text_of(harmony_render_for_completion(bytes_enc, c)),
            "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
            "Knowledge cutoff: 2024-06\nCurrent date: 2025-06-28\n\nReasoning: high\n\n"
            "# Valid channels: analysis, commentary, final. Channel must be included for every "
            "message.\nCalls to these tools must go to the commentary channel: 'functions'.<|end|>"
            "<|start|>developer<|message|># Instructions\n\nUse a friendly tone.\n\n# Tools\n\n"
            "## functions\n\n...<|end|>"
            "<|start|>user<|message|>What is the weather like in SF?<|end|>"
            "<|start|>assistant<|channel|>analysis<|message|>Need to use function get_weather."
            "<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary "
            "<|constrain|>json<|message|>{\"location\":\"San Francisco\"}<|call|>"
            "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>"
            "{\"sunny\": true, \"temperature\": 20}<|end|><|start|>assistant");
  // The marker is the special token, not its text.
  auto ids = harmony_render(bytes_enc, c.messages[2]);
  EXPECT_NE(std::find(ids.begin(), ids.end(), kConstrain), ids.end());
}

using K = HarmonyParser::Kind;

struct Parsed {
  std::vector<K> kinds;
  std::map<std::string, std::string> by_channel;  // content text per channel
  std::string raw;                                // text of the Raw tokens
};
Parsed parse(HarmonyParser& p, const std::vector<int32_t>& ids) {
  Parsed r;
  for (int32_t t : ids) {
    K k = p.feed(t);
    r.kinds.push_back(k);
    if (k == K::Content) r.by_channel[p.channel()] += byte_of(t);
    if (k == K::Raw) r.raw += text_of(p.raw_tokens());
  }
  return r;
}

TEST(Harmony, ParsesAnalysisThenFinal) {
  HarmonyParser p(byte_of);
  // The guide's example output.
  auto ids = cat({{kChannel},
                  bytes_enc("analysis"),
                  {kMessage},
                  bytes_enc("think"),
                  {kEnd},
                  {kStart},
                  bytes_enc("assistant"),
                  {kChannel},
                  bytes_enc("final"),
                  {kMessage},
                  bytes_enc("hi"),
                  {kReturn}});
  Parsed r = parse(p, ids);
  EXPECT_EQ(r.by_channel["final"], "hi");
  EXPECT_EQ(r.by_channel["analysis"], "think");
  EXPECT_EQ(r.kinds.back(), K::Done);
  EXPECT_EQ(std::count(r.kinds.begin(), r.kinds.end(), K::MessageStart), 2);
  EXPECT_EQ(std::count(r.kinds.begin(), r.kinds.end(), K::MessageEnd), 1);
  EXPECT_EQ(p.channel(), "final");
  EXPECT_TRUE(p.saw_final());
  EXPECT_FALSE(p.raw());
  EXPECT_EQ(p.content_tokens(), 7);
  EXPECT_EQ(p.feed('x'), K::Done);  // stays done
}

TEST(Harmony, RecipientAndConstraintInTheChannelOrTheRoleSection) {
  // Channel section (the guide's model output) and role section (the renderer's history form).
  for (auto header : {cat({{kChannel},
                           bytes_enc("commentary to=functions.get_weather "),
                           {kConstrain},
                           bytes_enc("json")}),
                      cat({bytes_enc(" to=functions.get_weather"),
                           {kChannel},
                           bytes_enc("commentary "),
                           {kConstrain},
                           bytes_enc("json")}),
                      cat({{kChannel},
                           bytes_enc("commentary to=functions.get_weather"),
                           {kConstrain},
                           bytes_enc("json")})}) {
    HarmonyParser p(byte_of);
    Parsed r = parse(p, cat({header, {kMessage}, bytes_enc("{}"), {kCall}}));
    EXPECT_EQ(p.channel(), "commentary");
    EXPECT_EQ(p.recipient(), "functions.get_weather");
    EXPECT_EQ(p.content_type(), "<|constrain|>json");
    EXPECT_FALSE(p.visible());
    EXPECT_EQ(r.by_channel["commentary"], "{}");
    EXPECT_EQ(r.kinds.back(), K::Done);
  }
  // A later message names its role first; a plain content type without the marker is kept too.
  HarmonyParser p(byte_of);
  parse(p, cat({{kChannel},
                bytes_enc("analysis"),
                {kMessage},
                bytes_enc("x"),
                {kEnd},
                {kStart},
                bytes_enc("assistant to=functions.f"),
                {kChannel},
                bytes_enc("commentary json"),
                {kMessage}}));
  EXPECT_EQ(p.recipient(), "functions.f");
  EXPECT_EQ(p.content_type(), "json");
  EXPECT_FALSE(p.raw());
}

TEST(Harmony, TextThatIsNotHarmonyTurnsRaw) {
  // No channel, an unknown channel, a role other than assistant, a special where a header belongs,
  // text after <|end|>: each turns the rest of the turn into raw text, header included.
  struct Case {
    std::vector<int32_t> ids;
    std::string raw;
  };
  std::vector<Case> cases = {
      {cat({bytes_enc("hello"), {kMessage}, bytes_enc("ab")}), "hello<|message|>ab"},
      {cat({{kChannel}, bytes_enc("poetry"), {kMessage}, bytes_enc("x")}),
       "<|channel|>poetry<|message|>x"},
      {cat({{kChannel},
            bytes_enc("final"),
            {kMessage},
            bytes_enc("ok"),
            {kEnd},
            {kStart},
            bytes_enc("user"),
            {kChannel},
            bytes_enc("final"),
            {kMessage}}),
       "user<|channel|>final<|message|>"},
      {cat({bytes_enc("ab"), {kEnd}, bytes_enc("c")}), "ab<|end|>c"},
      {cat({{kChannel}, bytes_enc("final"), {kMessage}, bytes_enc("ok"), {kEnd}, bytes_enc("zz")}),
       "zz"},
      {cat({{kChannel}, bytes_enc("final to= "), {kMessage}}), "<|channel|>final to= <|message|>"},
  };
  for (const Case& c : cases) {
    HarmonyParser p(byte_of);
    Parsed r = parse(p, c.ids);
    EXPECT_TRUE(p.raw()) << c.raw;
    EXPECT_EQ(r.raw, c.raw);
    EXPECT_TRUE(p.visible());
    EXPECT_EQ(p.feed(kReturn), K::Done);  // the stop token still ends the turn
  }
}

// issue 13: the header buffer is bounded; a random-weight model that never writes <|message|>
// turns raw after kMaxHeaderTokens tokens instead of growing it for the whole turn.
TEST(Harmony, HeaderBufferIsBounded) {
  HarmonyParser p(byte_of);
  size_t fed = 0;
  for (; fed < HarmonyParser::kMaxHeaderTokens; ++fed) {
    ASSERT_EQ(p.feed('a' + fed % 26), K::None);
    EXPECT_EQ(p.pending_header().size(), fed + 1);
  }
  ASSERT_EQ(p.feed('z'), K::Raw);  // one more: all of it is raw text now
  EXPECT_EQ(p.raw_tokens().size(), HarmonyParser::kMaxHeaderTokens + 1);
  EXPECT_TRUE(p.pending_header().empty());
  for (int i = 0; i < 10000; ++i) {  // and stays so, one token at a time, buffering nothing
    ASSERT_EQ(p.feed('q'), K::Raw);
    ASSERT_EQ(p.raw_tokens().size(), 1u);
    ASSERT_TRUE(p.pending_header().empty());
  }
  // The byte bound: few tokens of many bytes.
  HarmonyParser q([](int32_t) -> const std::string& {
    static const std::string big(100, 'x');
    return big;
  });
  K k = K::None;
  int n = 0;
  while ((k = q.feed(65)) == K::None) ++n;
  EXPECT_EQ(k, K::Raw);
  EXPECT_EQ(n, static_cast<int>(HarmonyParser::kMaxHeaderBytes / 100));
}

TEST(Harmony, TurnCutInAHeaderLeavesItPending) {
  HarmonyParser p(byte_of);
  parse(p, cat({{kChannel},
                bytes_enc("final"),
                {kMessage},
                bytes_enc("ok"),
                {kEnd},
                {kStart},
                bytes_enc("assis")}));
  EXPECT_FALSE(p.raw());
  EXPECT_FALSE(p.in_content());
  EXPECT_EQ(text_of(p.pending_header()), "assis");
  p.reset();
  EXPECT_TRUE(p.pending_header().empty());
  EXPECT_EQ(p.feed(kChannel), K::None);
}

TEST(Harmony, SpecialsInsideContentAreContent) {
  HarmonyParser p(byte_of);
  Parsed r =
      parse(p, cat({{kChannel}, bytes_enc("final"), {kMessage}, {200100, kStart, 'a'}, {kEnd}}));
  EXPECT_EQ(r.kinds,
            (std::vector<K>{K::None, K::None, K::None, K::None, K::None, K::None, K::MessageStart,
                            K::Content, K::Content, K::Content, K::MessageEnd}));
  EXPECT_EQ(p.content_tokens(), 3);
}

}  // namespace
}  // namespace gptoss
