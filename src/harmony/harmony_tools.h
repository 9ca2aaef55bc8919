// harmony_tools.h: the functions namespace of the harmony developer message. Function tools are
// described to the model in a TypeScript-like syntax (OpenAI's harmony format guide, "Function
// calling"): one `type NAME = (_: {...}) => any;` per function, its argument object's JSON Schema
// written as an inline TypeScript type with descriptions, examples and defaults as comments.
// Property order is the schema's own (parse requests with nlohmann::ordered_json).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace gptoss {

struct HarmonyFunction {
  std::string name;
  std::string description;  // "" = none
  std::optional<nlohmann::ordered_json>
      parameters;  // JSON Schema of the argument; none = no argument
};

// "# Tools\n\n## functions\n\nnamespace functions {\n\n// DESCRIPTION\ntype NAME = ...;\n\n...
// } // namespace functions" ("" for no functions).
std::string harmony_functions_section(const std::vector<HarmonyFunction>& functions);
// One JSON Schema as a TypeScript type; `indent` prefixes the lines of nested objects.
std::string harmony_schema_typescript(const nlohmann::ordered_json& schema,
                                      const std::string& indent = "");

}  // namespace gptoss
