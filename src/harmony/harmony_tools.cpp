// harmony_tools.cpp: JSON Schema -> the TypeScript-like tool descriptions of harmony. The rules
// (which keys become comments, where "?" and "| null" go, how oneOf unions are laid out) follow
// the layout of OpenAI's harmony renderer so the model sees what it was trained on.
#include "harmony/harmony_tools.h"

#include <algorithm>

namespace gptoss {

namespace {

using Json = nlohmann::ordered_json;

const Json* member(const Json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string str_of(const Json* j) { return j && j->is_string() ? j->get<std::string>() : ""; }
bool has_str(const Json* j) { return j && j->is_string(); }

bool is_enum(const Json& s) {
  const Json* e = member(s, "enum");
  return e && e->is_array() && !e->empty();
}

bool nullable(const Json& s) {
  const Json* n = member(s, "nullable");
  return n && n->is_boolean() && n->get<bool>();
}

// "default: \"text\"" for a string default of a non-enum, "default: VALUE" otherwise.
std::string default_comment(const Json& s, const Json& d) {
  if (d.is_string()) {
    const std::string v = d.get<std::string>();
    return is_enum(s) ? "default: " + v : "default: \"" + v + "\"";
  }
  return "default: " + d.dump();
}

std::string with_null(const Json& s, std::string t) {
  if (nullable(s) && t.find("null") == std::string::npos) t += " | null";
  return t;
}

// Lines of a property whose schema is a oneOf union.
void one_of_property(const std::string& key, const Json& val, const Json& variants, bool required,
                     const std::string& indent, std::string& out) {
  const Json* pdesc = member(val, "description");
  const std::string property_desc = str_of(pdesc);
  bool skip_desc = false;
  if (has_str(pdesc) && !variants.empty() && has_str(member(variants[0], "description")))
    skip_desc = str_of(member(variants[0], "description")) == property_desc;
  bool desc_above = false;
  if (has_str(pdesc) && !skip_desc) {
    out += indent + "// " + property_desc + "\n";
    desc_above = true;
  }
  if (const Json* d = member(val, "default"))
    out += indent + "// " + default_comment(val, *d) + "\n";
  out += indent + key + (required ? "" : "?") + ":\n";
  for (size_t i = 0; i < variants.size(); ++i) {
    const Json& v = variants[i];
    out += indent + " | " + with_null(v, harmony_schema_typescript(v, indent + "   "));
    std::vector<std::string> comments;
    const Json* vdesc = member(v, "description");
    if (!(i == 0 && desc_above) && has_str(vdesc) &&
        !(has_str(pdesc) && str_of(vdesc) == property_desc))
      comments.push_back(str_of(vdesc));
    if (const Json* d = member(v, "default")) comments.push_back(default_comment(v, *d));
    if (!comments.empty()) {
      out += " // " + comments[0];
      for (size_t k = 1; k < comments.size(); ++k) out += " " + comments[k];
    }
    out += "\n";
  }
  out += indent + ",\n";
}

std::string object_type(const Json& s, const std::string& indent) {
  std::string out;
  if (has_str(member(s, "description")))
    out += indent + "// " + str_of(member(s, "description")) + "\n";
  out += "{\n";
  const Json* props = member(s, "properties");
  if (props && props->is_object()) {
    std::vector<std::string> required;
    if (const Json* r = member(s, "required"); r && r->is_array())
      for (const Json& x : *r)
        if (x.is_string()) required.push_back(x.get<std::string>());
    for (auto it = props->begin(); it != props->end(); ++it) {
      const std::string& key = it.key();
      const Json& val = it.value();
      const bool req = std::find(required.begin(), required.end(), key) != required.end();
      if (has_str(member(val, "title")))
        out += indent + "// " + str_of(member(val, "title")) + "\n" + indent + "//\n";
      const Json* one_of = member(val, "oneOf");
      if (!one_of && has_str(member(val, "description")))
        out += indent + "// " + str_of(member(val, "description")) + "\n";
      if (const Json* ex = member(val, "examples"); ex && ex->is_array() && !ex->empty()) {
        out += indent + "// Examples:\n";
        for (const Json& e : *ex)
          if (e.is_string()) out += indent + "// - \"" + e.get<std::string>() + "\"\n";
      }
      if (one_of && one_of->is_array()) {
        one_of_property(key, val, *one_of, req, indent, out);
        continue;
      }
      out += indent + key + (req ? "" : "?") + ": " +
             with_null(val, harmony_schema_typescript(val, indent + "    ")) + ",";
      if (!one_of)
        if (const Json* d = member(val, "default")) out += " // " + default_comment(val, *d);
      out += "\n";
    }
  }
  out += indent + "}";
  return out;
}

}  // namespace

std::string harmony_schema_typescript(const Json& s, const std::string& indent) {
  if (const Json* one_of = member(s, "oneOf"); one_of && one_of->is_array()) {
    std::string out;
    for (const Json& v : *one_of) {
      out += "\n" + indent + " | " + with_null(v, harmony_schema_typescript(v, indent + "   "));
      std::vector<std::string> comments;
      if (has_str(member(v, "description"))) comments.push_back(str_of(member(v, "description")));
      if (const Json* d = member(v, "default")) comments.push_back(default_comment(v, *d));
      if (!comments.empty()) {
        out += " // " + comments[0];
        for (size_t k = 1; k < comments.size(); ++k) out += " " + comments[k];
      }
    }
    return out;
  }
  const Json* type = member(s, "type");
  if (type && type->is_array()) {
    std::string out;
    for (const Json& t : *type) {
      if (!t.is_string()) continue;
      const std::string n = t.get<std::string>();
      out += (out.empty() ? "" : " | ") + (n == "integer" ? std::string("number") : n);
    }
    if (!out.empty()) return out;
  }
  if (!type || !type->is_string()) return "any";
  const std::string t = type->get<std::string>();
  if (t == "object") return object_type(s, indent);
  if (t == "string") {
    if (is_enum(s)) {
      std::string out;
      for (const Json& e : *member(s, "enum"))
        if (e.is_string()) out += (out.empty() ? "\"" : " | \"") + e.get<std::string>() + "\"";
      if (!out.empty()) return out;
    }
    return "string";
  }
  if (t == "number" || t == "integer") return "number";
  if (t == "boolean") return "boolean";
  if (t == "array") {
    const Json* items = member(s, "items");
    return items ? harmony_schema_typescript(*items, indent) + "[]" : "Array<any>";
  }
  return "any";
}

std::string harmony_functions_section(const std::vector<HarmonyFunction>& functions) {
  if (functions.empty()) return "";
  std::string out = "# Tools\n\n## functions\n\nnamespace functions {\n";
  for (const HarmonyFunction& f : functions) {
    size_t b = 0;
    while (b < f.description.size()) {  // one comment line per line of the description
      size_t e = f.description.find('\n', b);
      if (e == std::string::npos) e = f.description.size();
      size_t len = e - b;
      if (len > 0 && f.description[b + len - 1] == '\r') --len;
      out += "\n// " + f.description.substr(b, len);
      b = e + 1;
    }
    out += "\ntype " + f.name + " = " +
           (f.parameters ? "(_: " + harmony_schema_typescript(*f.parameters) + ") => any;\n"
                         : std::string("() => any;\n"));
  }
  out += "\n} // namespace functions";
  return out;
}

}  // namespace gptoss
