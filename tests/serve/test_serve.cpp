// test_serve.cpp: the harmony <-> OpenAI mapping of `run -m serve` on token sequences, with the
// real o200k_harmony tokenizer (GPTOSS_TEST_TOKENIZER):
//   requests -> prompts: chat messages, tools, tool calls and results, reasoning effort, render
//     exactly as the harmony conversation they stand for (src/harmony, tested against OpenAI's
//     harmony guide); malformed or unsupported fields are 400s naming the field;
//   tokens -> replies: reasoning, content, tool calls, raw text when the output is not harmony,
//     stop strings and finish reasons; streamed deltas add up to the whole reply.
#include <gtest/gtest.h>

#include <memory>

#include "harmony/harmony.h"
#include "harmony/harmony_tools.h"
#include "serve/api.h"
#include "serve/reply.h"
#include "tokenizer/tokenizer.h"

namespace gptoss::serve {
namespace {

const Tokenizer& tk() {
  static const std::unique_ptr<Tokenizer> t = std::make_unique<Tokenizer>(GPTOSS_TEST_TOKENIZER);
  return *t;
}

ApiLimits limits() {
  ApiLimits l;
  l.model_id = "tiny";
  l.ctx = 4096;
  l.date = "2026-01-02";
  return l;
}

std::vector<int32_t> special_ids(const std::string& text) { return tk().encode(text, true); }

std::vector<int32_t> render_conv(HarmonyConversation c) {
  TextEncoder enc = [](std::string_view t) { return tk().encode(t, false); };
  c.date = "2026-01-02";
  return harmony_render_for_completion(enc, c);
}

// --- requests ------------------------------------------------------------------------------------

TEST(ServeApi, ChatRendersSystemAndDeveloperIntoTheDeveloperMessage) {
  Json b = Json::parse(R"({"model":"tiny","reasoning_effort":"high","messages":[
      {"role":"system","content":"Be brief."},
      {"role":"developer","content":[{"type":"text","text":"Answer in French."}]},
      {"role":"user","content":"Hi <|end|>"}]})");
  GenRequest g = parse_chat_request(b, tk(), limits());
  HarmonyConversation c;
  c.reasoning = "high";
  c.developer = "# Instructions\n\nBe brief.\n\nAnswer in French.";
  c.messages = {{"user", "", "", "", "Hi <|end|>"}};
  EXPECT_EQ(g.prompt, render_conv(c));
  // User text cannot inject specials: "<|end|>" is plain text there.
  EXPECT_EQ(std::count(g.prompt.begin(), g.prompt.end(), harmony_id::kEnd), 3);
  EXPECT_TRUE(g.harmony);
  EXPECT_FALSE(g.tools);
  EXPECT_EQ(g.max_tokens, 4096 - static_cast<int>(g.prompt.size()));
}

TEST(ServeApi, ChatToolsAndAToolCallChainRenderAsHarmony) {
  Json b = Json::parse(R"({"model":"tiny","messages":[
      {"role":"user","content":"Old question"},
      {"role":"assistant","content":"Old answer","reasoning_content":"old thoughts"},
      {"role":"user","content":"Weather in Paris?"},
      {"role":"assistant","content":null,"reasoning_content":"Need the tool.",
       "tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"{\"sunny\":true}"}],
    "tools":[{"type":"function","function":{"name":"get_weather","description":"Gets the weather.",
      "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]})");
  GenRequest g = parse_chat_request(b, tk(), limits());
  EXPECT_TRUE(g.tools);
  HarmonyConversation c;
  c.function_tools = true;
  c.developer = harmony_functions_section(
      {{"get_weather", "Gets the weather.",
        Json::parse(
            R"({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]})")}});
  // The old turn's reasoning is dropped (it ended with a final answer); the ongoing chain's kept.
  c.messages = {{"user", "", "", "", "Old question"},
                {"assistant", "", "final", "", "Old answer"},
                {"user", "", "", "", "Weather in Paris?"},
                {"assistant", "", "analysis", "", "Need the tool."},
                {"assistant", "functions.get_weather", "commentary", "<|constrain|>json",
                 "{\"city\":\"Paris\"}"},
                {"functions.get_weather", "assistant", "commentary", "", "{\"sunny\":true}"}};
  EXPECT_EQ(g.prompt, render_conv(c));
  // tool_choice "none": the tools are not offered to the model.
  b["tool_choice"] = "none";
  GenRequest none = parse_chat_request(b, tk(), limits());
  EXPECT_FALSE(none.tools);
  EXPECT_LT(none.prompt.size(), g.prompt.size());
}

TEST(ServeApi, ResponsesInputItemsRenderLikeChat) {
  Json b = Json::parse(R"({"model":"tiny","instructions":"Be brief.","reasoning":{"effort":"low"},
    "input":[{"role":"user","content":[{"type":"input_text","text":"Weather?"}]},
             {"type":"function_call","call_id":"c1","name":"get_weather","arguments":"{}"},
             {"type":"function_call_output","call_id":"c1","output":"rainy"}],
    "tools":[{"type":"function","name":"get_weather","description":"w"}],"max_output_tokens":7})");
  GenRequest g = parse_responses_request(b, tk(), limits());
  HarmonyConversation c;
  c.reasoning = "low";
  c.function_tools = true;
  c.developer = harmony_developer_content(
      "Be brief.", harmony_functions_section({{"get_weather", "w", std::nullopt}}));
  c.messages = {{"user", "", "", "", "Weather?"},
                {"assistant", "functions.get_weather", "commentary", "<|constrain|>json", "{}"},
                {"functions.get_weather", "assistant", "commentary", "", "rainy"}};
  EXPECT_EQ(g.prompt, render_conv(c));
  EXPECT_EQ(g.max_tokens, 7);
}

TEST(ServeApi, CompletionsTakeTextWithSpecialsOrIds) {
  GenRequest g = parse_completion_request(
      Json::parse(
          R"({"model":"tiny","prompt":"<|start|>user","max_tokens":3,"stop":"x","seed":5})"),
      tk(), limits());
  EXPECT_EQ(g.prompt, special_ids("<|start|>user"));
  EXPECT_EQ(g.prompt[0], harmony_id::kStart);
  EXPECT_FALSE(g.harmony);
  EXPECT_EQ(g.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(g.seed, 5u);
  g = parse_completion_request(Json::parse(R"({"model":"tiny","prompt":[1,2,3]})"), tk(), limits());
  EXPECT_EQ(g.prompt, (std::vector<int32_t>{1, 2, 3}));
}

// Every bad request is an ApiError with status 400 naming the field (never another exception).
TEST(ServeApi, BadRequestsAre400NamingTheField) {
  struct Case {
    const char* body;
    const char* param;
  };
  const Case chat[] = {
      {R"({"messages":[{"role":"user","content":"x"}]})", "model"},
      {R"({"model":7,"messages":[{"role":"user","content":"x"}]})", "model"},
      {R"({"model":"gpt-4","messages":[{"role":"user","content":"x"}]})", "model"},
      {R"({"model":"tiny"})", "messages"},
      {R"({"model":"tiny","messages":[]})", "messages"},
      {R"({"model":"tiny","messages":"hi"})", "messages"},
      {R"({"model":"tiny","messages":[{"role":"wizard","content":"x"}]})", "messages[0].role"},
      {R"({"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url"}]}]})",
       "messages[0].content[0].type"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":"hot"})",
       "temperature"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":3})",
       "temperature"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"top_p":1.5})", "top_p"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":0})",
       "max_tokens"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":1.5})",
       "max_tokens"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":999999})",
       "max_tokens"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"n":2})", "n"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]})",
       "stop"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"stop":[""]})", "stop"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"stream":"yes"})", "stream"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}})",
       "stream_options"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"reasoning_effort":"max"})",
       "reasoning_effort"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"logprobs":true})",
       "logprobs"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"bad name"}}]})",
       "tools[0].function.name"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search"}]})",
       "tools[0].type"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"tool_choice":"required"})",
       "tool_choice"},
      {R"({"model":"tiny","messages":[{"role":"tool","tool_call_id":"nope","content":"x"}]})",
       "messages[0].tool_call_id"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}})",
       "response_format"},
      {R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"presence_penalty":0.5})",
       "presence_penalty"},
  };
  for (const Case& c : chat) {
    try {
      parse_chat_request(Json::parse(c.body), tk(), limits());
      ADD_FAILURE() << "accepted: " << c.body;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400) << c.body;
      EXPECT_EQ(e.param, c.param) << c.body << " -> " << e.what();
      EXPECT_EQ(e.body()["error"]["message"], e.what());
    }
  }
  // The whole context: a prompt that leaves no room.
  ApiLimits small = limits();
  small.ctx = 64;
  try {
    parse_completion_request(
        Json::parse(R"({"model":"tiny","prompt":")" + std::string(400, 'a') +
                    " b c d e f g h i j k l m n o p q r s t u v w x y z" + R"("})"),
        tk(), small);
    ADD_FAILURE() << "a prompt beyond the context was accepted";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "context_length_exceeded");
  }
  EXPECT_THROW(parse_body("{\"model\": "), ApiError);
  EXPECT_THROW(parse_chat_request(Json::parse("[1,2]"), tk(), limits()), ApiError);
  EXPECT_THROW(parse_responses_request(
                   Json::parse(R"({"model":"tiny","input":"x","previous_response_id":"r"})"), tk(),
                   limits()),
               ApiError);
}

// --- replies ------------------------------------------------------------------------------------

const std::vector<int32_t> kStops{199999, 200002, 200012};

struct Fed {
  std::unique_ptr<ReplyBuilder> r;
  std::string content, reasoning, args;  // concatenated deltas
  int tool_starts = 0;
};

// Feeds `ids` one at a time (as a stream does), then finishes with `why`.
Fed feed(const GenRequest& g, const std::vector<int32_t>& ids, EndKind why) {
  Fed run;
  run.r = std::make_unique<ReplyBuilder>(tk(), g, kStops);
  auto take = [&](const Delta& d) {
    run.content += d.content;
    run.reasoning += d.reasoning;
    run.args += d.tool_arguments;
    run.tool_starts += d.tool_started;
  };
  for (int32_t t : ids) {
    Delta d;
    run.r->push(t, d);
    take(d);
    if (run.r->stopped()) break;
  }
  Delta d;
  run.r->finish(why, d);
  take(d);
  // Streamed deltas add up to the whole reply.
  EXPECT_EQ(run.content, run.r->content);
  EXPECT_EQ(run.reasoning, run.r->reasoning);
  if (!run.r->tool_calls.empty()) {
    EXPECT_EQ(run.args, run.r->tool_calls.back().arguments);
  }
  return run;
}

GenRequest chat_req() {
  GenRequest g;
  g.endpoint = Endpoint::Chat;
  g.harmony = true;
  return g;
}

TEST(ServeReply, AnalysisIsReasoningAndFinalIsContent) {
  Fed r = feed(chat_req(),
               special_ids("<|channel|>analysis<|message|>Think: 2+2.<|end|><|start|>assistant"
                           "<|channel|>final<|message|>It is 4. Ünïcödé ✓<|return|>"),
               EndKind::Stop);
  EXPECT_EQ(r.r->reasoning, "Think: 2+2.");
  EXPECT_EQ(r.r->content, "It is 4. Ünïcödé ✓");
  EXPECT_EQ(r.r->finish_reason, "stop");
  EXPECT_TRUE(r.r->tool_calls.empty());
  EXPECT_GT(r.r->reasoning_tokens, 0);
}

TEST(ServeReply, CommentaryToAFunctionIsAToolCall) {
  Fed r = feed(chat_req(),
               special_ids("<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant"
                           "<|channel|>commentary to=functions.get_weather <|constrain|>json"
                           "<|message|>{\"location\":\"Paris\"}<|call|>"),
               EndKind::Stop);
  ASSERT_EQ(r.r->tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_starts, 1);
  EXPECT_EQ(r.r->tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.r->tool_calls[0].arguments, "{\"location\":\"Paris\"}");
  EXPECT_EQ(r.r->tool_calls[0].id.rfind("call_", 0), 0u);
  EXPECT_EQ(r.r->tool_calls[0].id.size(), 29u);
  EXPECT_EQ(r.r->content, "");
  EXPECT_EQ(r.r->finish_reason, "tool_calls");
  // The recipient in the role section, and a preamble before the call (shown as content).
  r = feed(chat_req(),
           special_ids(
               "<|channel|>commentary<|message|>Checking.<|end|><|start|>assistant to=functions.f"
               "<|channel|>commentary json<|message|>{}<|call|>"),
           EndKind::Stop);
  EXPECT_EQ(r.r->content, "Checking.");
  ASSERT_EQ(r.r->tool_calls.size(), 1u);
  EXPECT_EQ(r.r->tool_calls[0].name, "f");
  EXPECT_EQ(r.r->finish_reason, "tool_calls");
}

TEST(ServeReply, OutputThatIsNotHarmonyIsContentAsGenerated) {
  // Random weights: text without any header ends at max tokens.
  std::vector<int32_t> ids = tk().encode("random words and more words", false);
  Fed r = feed(chat_req(), ids, EndKind::Length);
  EXPECT_EQ(r.r->content, "random words and more words");
  EXPECT_EQ(r.r->finish_reason, "length");
  EXPECT_EQ(r.r->completion_tokens, static_cast<int>(ids.size()));
  // Beyond the header bound: raw from there on, specials as their text; the stop token is not text.
  ids.clear();
  for (int i = 0; i < 80; ++i) ids.push_back(1000 + i);
  ids.push_back(200005);
  ids.push_back(200002);
  std::vector<int32_t> shown(ids.begin(), ids.end() - 1);
  r = feed(chat_req(), ids, EndKind::Stop);
  EXPECT_EQ(r.r->content, utf8_sanitize(tk().decode(shown)));
  EXPECT_EQ(r.r->finish_reason, "stop");
  // A valid message, then garbage: reasoning kept, the garbage is content.
  r = feed(chat_req(), special_ids("<|channel|>analysis<|message|>ok<|end|>zz<|end|>"),
           EndKind::Length);
  EXPECT_EQ(r.r->reasoning, "ok");
  EXPECT_EQ(r.r->content, "zz<|end|>");
  // <|call|> without a tool call is a plain stop.
  r = feed(chat_req(), special_ids("<|channel|>final<|message|>hi<|call|>"), EndKind::Stop);
  EXPECT_EQ(r.r->finish_reason, "stop");
  // Cut inside a header by max tokens: what was generated is content.
  r = feed(chat_req(), special_ids("<|channel|>final<|message|>hi<|end|><|start|>assist"),
           EndKind::Length);
  EXPECT_EQ(r.r->content, "hiassist");
}

TEST(ServeReply, StopStringsCutTheContentEvenAcrossTokens) {
  GenRequest g = chat_req();
  g.stop = {"STOP", "zz"};
  Fed r = feed(g,
               special_ids("<|channel|>analysis<|message|>STOP in reasoning is fine<|end|>"
                           "<|start|>assistant<|channel|>final<|message|>one two ST"),
               EndKind::Length);
  EXPECT_EQ(r.r->content, "one two ST");  // not a match yet: held back text is flushed at the end
  EXPECT_EQ(r.r->reasoning, "STOP in reasoning is fine");
  std::vector<int32_t> ids = special_ids("<|channel|>final<|message|>one two ST");
  for (int32_t t : tk().encode("OP three", false)) ids.push_back(t);
  r = feed(g, ids, EndKind::Length);
  EXPECT_TRUE(r.r->stopped());
  EXPECT_EQ(r.r->content, "one two ");
  EXPECT_EQ(r.r->finish_reason, "stop");
  // Completions: on the raw text.
  GenRequest c;
  c.endpoint = Endpoint::Completions;
  c.stop = {"\n\n"};
  r = feed(c, tk().encode("line one\n\nline two", false), EndKind::Length);
  EXPECT_EQ(r.r->content, "line one");
  EXPECT_EQ(r.r->finish_reason, "stop");
}

TEST(ServeReply, CompletionsTextLeavesOutTheStopToken) {
  GenRequest c;
  c.endpoint = Endpoint::Completions;
  std::vector<int32_t> ids = tk().encode("Hello there", false);
  ids.push_back(199999);
  Fed r = feed(c, ids, EndKind::Stop);
  EXPECT_EQ(r.r->content, "Hello there");
  EXPECT_EQ(r.r->finish_reason, "stop");
  EXPECT_EQ(r.r->completion_tokens, static_cast<int>(ids.size()));
}

}  // namespace
}  // namespace gptoss::serve
