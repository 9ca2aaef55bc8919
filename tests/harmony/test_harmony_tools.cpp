// test_harmony_tools.cpp: the functions namespace of the developer message: the three functions
// of OpenAI's harmony format guide must render exactly as the guide shows them, and the other
// schema forms (nested objects, arrays, unions, nullable, titles, examples) as the renderer's
// layout rules say.
#include <gtest/gtest.h>

#include "harmony/harmony_tools.h"

namespace gptoss {
namespace {

using Json = nlohmann::ordered_json;

TEST(HarmonyTools, TheGuidesFunctions) {
  std::vector<HarmonyFunction> f = {
      {"get_location", "Gets the location of the user.", std::nullopt},
      {"get_current_weather", "Gets the current weather in the provided location.",
       Json::parse(R"({"type":"object","properties":{
          "location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"},
          "format":{"type":"string","enum":["celsius","fahrenheit"],"default":"celsius"}},
          "required":["location"]})")},
      {"get_multiple_weathers", "Gets the current weather in the provided list of locations.",
       Json::parse(R"({"type":"object","properties":{
          "locations":{"type":"array","items":{"type":"string"},
                       "description":"List of city and state, e.g. [\"San Francisco, CA\", \"New York, NY\"]"},
          "format":{"type":"string","enum":["celsius","fahrenheit"],"default":"celsius"}},
          "required":["locations"]})")}};
  EXPECT_EQ(harmony_functions_section(f),
            "# Tools\n\n## functions\n\nnamespace functions {\n\n"
            "// Gets the location of the user.\ntype get_location = () => any;\n\n"
            "// Gets the current weather in the provided location.\n"
            "type get_current_weather = (_: {\n"
            "// The city and state, e.g. San Francisco, CA\n"
            "location: string,\n"
            "format?: \"celsius\" | \"fahrenheit\", // default: celsius\n"
            "}) => any;\n\n"
            "// Gets the current weather in the provided list of locations.\n"
            "type get_multiple_weathers = (_: {\n"
            "// List of city and state, e.g. [\"San Francisco, CA\", \"New York, NY\"]\n"
            "locations: string[],\n"
            "format?: \"celsius\" | \"fahrenheit\", // default: celsius\n"
            "}) => any;\n\n"
            "} // namespace functions");
  EXPECT_EQ(harmony_functions_section({}), "");
}

TEST(HarmonyTools, SchemaForms) {
  // Property order is the request's (ordered_json), not alphabetical.
  Json s = Json::parse(R"({"type":"object","description":"the args","properties":{
      "zeta":{"type":"integer","default":3},
      "alpha":{"title":"Alpha","type":["string","null"],"examples":["x","y"]},
      "maybe":{"type":"string","nullable":true,"default":"d"},
      "nested":{"type":"object","properties":{"k":{"type":"boolean"}},"required":["k"]},
      "list":{"type":"array"},
      "anything":{},
      "either":{"description":"one or other","default":20,
                "oneOf":[{"type":"string","default":"s"},{"type":"number","description":"num"}]}},
      "required":["zeta"]})");
  EXPECT_EQ(harmony_schema_typescript(s),
            "// the args\n{\n"
            "zeta: number, // default: 3\n"
            "// Alpha\n//\n// Examples:\n// - \"x\"\n// - \"y\"\n"
            "alpha?: string | null,\n"
            "maybe?: string | null, // default: \"d\"\n"
            "nested?: {\n    k: boolean,\n    },\n"
            "list?: Array<any>,\n"
            "anything?: any,\n"
            "// one or other\n// default: 20\neither?:\n"
            " | string // default: \"s\"\n"
            " | number // num\n"
            ",\n"
            "}");
  EXPECT_EQ(harmony_schema_typescript(Json::parse(R"({"type":"string","enum":["a","b"]})")),
            "\"a\" | \"b\"");
  EXPECT_EQ(
      harmony_schema_typescript(Json::parse(R"({"type":"array","items":{"type":"integer"}})")),
      "number[]");
  EXPECT_EQ(harmony_schema_typescript(Json::parse(R"("not a schema")")), "any");
}

TEST(HarmonyTools, MultiLineDescriptionsAreCommentLines) {
  EXPECT_EQ(harmony_functions_section({{"f", "line one\r\nline two\n", std::nullopt}}),
            "# Tools\n\n## functions\n\nnamespace functions {\n\n// line one\n// line two\n"
            "type f = () => any;\n\n} // namespace functions");
}

}  // namespace
}  // namespace gptoss
