// test_harmony.cpp: harmony prompt building (token layout per gpt-oss-spec.md) and the output
// parser, with a byte-per-token fake tokenizer (id = byte value).
#include <gtest/gtest.h>

#include "run/harmony.h"

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
  static const std::string special = "<special>";
  return id < 256 ? table[id] : special;
}
std::vector<int32_t> cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> v;
  for (auto& p : parts) v.insert(v.end(), p.begin(), p.end());
  return v;
}

TEST(RunHarmony, SystemContentIsTheSpecText) {
  EXPECT_EQ(harmony_system_content("2026-11-26", "high"),
            "You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: "
            "2024-06\nCurrent date: 2026-11-26\n\nReasoning: high\n\n# Valid channels: analysis, "
            "commentary, final. Channel must be included for every message.");
}

TEST(RunHarmony, PreambleAndUserTurnLayout) {
  auto sys = harmony_system_content("2026-01-02", "medium");
  auto expect = cat({{kStart}, bytes_enc("system"), {kMessage}, bytes_enc(sys), {kEnd},
                     {kStart}, bytes_enc("developer"), {kMessage},
                     bytes_enc("# Instructions\n\nBe brief."), {kEnd}});
  EXPECT_EQ(harmony_preamble(bytes_enc, "2026-01-02", "medium", "Be brief."), expect);
  // No developer message without -y.
  EXPECT_EQ(harmony_preamble(bytes_enc, "2026-01-02", "medium", ""),
            cat({{kStart}, bytes_enc("system"), {kMessage}, bytes_enc(sys), {kEnd}}));
  EXPECT_EQ(harmony_user_turn(bytes_enc, "hi <|end|>"),
            cat({{kStart}, bytes_enc("user"), {kMessage}, bytes_enc("hi <|end|>"), {kEnd},
                 {kStart}, bytes_enc("assistant")}));
}

TEST(RunHarmony, TodayIsIsoDate) {
  std::string d = today_utc();
  ASSERT_EQ(d.size(), 10u);
  EXPECT_EQ(d[4], '-');
  EXPECT_EQ(d[7], '-');
}

using K = HarmonyParser::Kind;

TEST(RunHarmony, ParsesAnalysisThenFinal) {
  HarmonyParser p(byte_of);
  auto ids = cat({{kChannel}, bytes_enc("analysis"), {kMessage}, bytes_enc("think"), {kEnd},
                  {kStart}, bytes_enc("assistant"), {kChannel}, bytes_enc("final"), {kMessage},
                  bytes_enc("hi"), {kReturn}});
  std::string shown, hidden;
  std::vector<K> kinds;
  for (int32_t t : ids) {
    K k = p.feed(t);
    kinds.push_back(k);
    if (k == K::Content) (p.visible() ? shown : hidden) += byte_of(t);
    if (k == K::MessageEnd) {
      EXPECT_EQ(p.channel(), "analysis");
    }
  }
  EXPECT_EQ(shown, "hi");
  EXPECT_EQ(hidden, "think");
  EXPECT_EQ(kinds.back(), K::Done);
  EXPECT_EQ(p.channel(), "final");
  EXPECT_TRUE(p.saw_final());
  EXPECT_EQ(p.content_tokens(), 7);
  EXPECT_EQ(p.feed('x'), K::Done);  // stays done
}

TEST(RunHarmony, RecipientAndConstraintAreHeader) {
  HarmonyParser p(byte_of);
  auto ids = cat({{kChannel}, bytes_enc("commentary to=functions.get_weather "), {kConstrain},
                  bytes_enc("json"), {kMessage}, bytes_enc("{}"), {kCall}});
  std::string content;
  K last = K::None;
  for (int32_t t : ids) {
    last = p.feed(t);
    if (last == K::Content) content += byte_of(t);
  }
  EXPECT_EQ(p.channel(), "commentary");
  EXPECT_FALSE(p.visible());
  EXPECT_EQ(content, "{}");
  EXPECT_EQ(last, K::Done);
}

TEST(RunHarmony, UnstructuredOutputShowsNothingAndNeverEnds) {
  // A random-weight model: text and stray specials, no <|message|>: no content, not done.
  HarmonyParser p(byte_of);
  for (int32_t t : cat({bytes_enc("random words"), {kEnd, 200100, kStart}, bytes_enc("zz")}))
    EXPECT_EQ(p.feed(t), K::None);
  EXPECT_EQ(p.content_tokens(), 0);
  EXPECT_FALSE(p.saw_final());
  p.reset();
  // A message without a channel is shown; specials inside content are content.
  EXPECT_EQ(p.feed(kMessage), K::None);
  EXPECT_EQ(p.feed('a'), K::Content);
  EXPECT_EQ(p.feed(200100), K::Content);
  EXPECT_TRUE(p.visible());
  EXPECT_EQ(p.feed(kEnd), K::MessageEnd);
}

}  // namespace
}  // namespace gptoss
