// api.cpp: request checking and rendering (see api.h). Field checks first, then the prompt.
#include "serve/api.h"

#include <algorithm>
#include <map>

#include "harmony/harmony.h"
#include "harmony/harmony_tools.h"
#include "tokenizer/tokenizer.h"

namespace gptoss::serve {

ApiError::ApiError(int status_, std::string message, std::string param_, std::string code_,
                   std::string type_)
    : std::runtime_error(std::move(message)),
      status(status_),
      param(std::move(param_)),
      code(std::move(code_)),
      type(std::move(type_)) {
  if (type.empty())
    type = status == 401   ? "authentication_error"
           : status == 429 ? "rate_limit_error"
           : status == 503 ? "server_unavailable"
           : status >= 500 ? "server_error"
                           : "invalid_request_error";
}

Json ApiError::body() const {
  Json e = Json::object();
  e["message"] = what();
  e["type"] = type;
  e["param"] = param.empty() ? Json() : Json(param);
  e["code"] = code.empty() ? Json() : Json(code);
  return Json{{"error", e}};
}

const char* endpoint_name(Endpoint e) {
  switch (e) {
    case Endpoint::Completions:
      return "completions";
    case Endpoint::Chat:
      return "chat";
    case Endpoint::Responses:
      return "responses";
  }
  return "?";
}

Json parse_body(const std::string& body) {
  try {
    return Json::parse(body);
  } catch (const Json::parse_error& e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what(), "",
                   "invalid_json");
  } catch (const Json::exception& e) {  // e.g. a number too large for a double (1e400)
    throw ApiError(400, std::string("the request body cannot be read: ") + e.what(), "",
                   "invalid_json");
  }
}

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& msg,
                      const std::string& code = "") {
  throw ApiError(400, "'" + param + "' " + msg, param, code);
}

const char* type_name(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::binary:
      return "binary";
    case Json::value_t::discarded:
      return "nothing";
    default:
      return "a number";
  }
}

// The member, or nullptr when absent or null (OpenAI treats null as "not given").
const Json* field(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

double number_field(const Json& b, const char* key, double lo, double hi, double dflt) {
  const Json* v = field(b, key);
  if (!v) return dflt;
  if (!v->is_number()) bad(key, std::string("must be a number, got ") + type_name(*v));
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    bad(key, "must be in [" + Json(lo).dump() + ", " + Json(hi).dump() + "], got " + v->dump());
  return x;
}

int64_t int_field(const Json& b, const char* key, int64_t lo, int64_t hi, int64_t dflt) {
  const Json* v = field(b, key);
  if (!v) return dflt;
  if (!v->is_number_integer())
    bad(key, std::string("must be an integer, got ") +
                 v->dump(-1, ' ', false, Json::error_handler_t::replace).substr(0, 40));
  const int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)
                        ? INT64_MAX
                        : v->get<int64_t>();
  if (x < lo || x > hi)
    bad(key,
        "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v->dump());
  return x;
}

bool bool_field(const Json& b, const char* key, bool dflt) {
  const Json* v = field(b, key);
  if (!v) return dflt;
  if (!v->is_boolean()) bad(key, std::string("must be a boolean, got ") + type_name(*v));
  return v->get<bool>();
}

std::string string_field(const Json& b, const char* key, const std::string& dflt) {
  const Json* v = field(b, key);
  if (!v) return dflt;
  if (!v->is_string()) bad(key, std::string("must be a string, got ") + type_name(*v));
  return v->get<std::string>();
}

// Text of a message's content: a string, or an array of text parts; null/absent = "".
std::string content_text(const Json& m, const std::string& where, bool allow_null) {
  const Json* c = field(m, "content");
  if (!c) {
    if (allow_null) return "";
    bad(where + ".content", "is required");
  }
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array())
    bad(where + ".content",
        std::string("must be a string or an array of text parts, got ") + type_name(*c));
  std::string s;
  for (size_t i = 0; i < c->size(); ++i) {
    const Json& p = (*c)[i];
    const std::string at = where + ".content[" + std::to_string(i) + "]";
    if (!p.is_object()) bad(at, "must be an object");
    const std::string t = string_field(p, "type", "");
    if (t != "text" && t != "input_text" && t != "output_text")
      bad(at + ".type", "'" + t + "' is not supported: this model reads text only",
          "unsupported_content");
    const Json* text = field(p, "text");
    if (!text || !text->is_string()) bad(at + ".text", "must be a string");
    s += text->get<std::string>();
  }
  return s;
}

void check_model(const Json& b, const ApiLimits& lim, GenRequest& g) {
  const Json* m = field(b, "model");
  if (!m) bad("model", "is required (GET /v1/models lists '" + lim.model_id + "')");
  if (!m->is_string()) bad("model", std::string("must be a string, got ") + type_name(*m));
  g.model = m->get<std::string>();
  if (g.model != lim.model_id)
    throw ApiError(
        400,
        "The model '" + g.model + "' does not exist: this server serves '" + lim.model_id + "'",
        "model", "model_not_found");
}

// Fields common to the three endpoints that no endpoint supports beyond their defaults.
void refuse_unsupported(const Json& b) {
  if (const Json* n = field(b, "n"); n && !(n->is_number_integer() && n->get<int64_t>() == 1))
    bad("n", "must be 1: one choice per request is supported", "unsupported_value");
  for (const char* k : {"presence_penalty", "frequency_penalty"})
    if (const Json* v = field(b, k)) {
      if (!v->is_number()) bad(k, std::string("must be a number, got ") + type_name(*v));
      if (v->get<double>() != 0) bad(k, "is not supported (only 0)", "unsupported_value");
    }
  if (const Json* v = field(b, "logit_bias"); v && !(v->is_object() && v->empty()))
    bad("logit_bias", "is not supported", "unsupported_value");
  if (const Json* v = field(b, "logprobs"); v && !(v->is_boolean() && !v->get<bool>()) &&
                                            !(v->is_number_integer() && v->get<int64_t>() == 0))
    bad("logprobs", "is not supported by this server", "unsupported_value");
  if (const Json* v = field(b, "top_logprobs");
      v && !(v->is_number_integer() && v->get<int64_t>() == 0))
    bad("top_logprobs", "is not supported by this server", "unsupported_value");
}

void parse_sampling(const Json& b, const ApiLimits& lim, GenRequest& g) {
  g.temperature = static_cast<float>(number_field(b, "temperature", 0, 2, lim.temperature));
  const double top_p = number_field(b, "top_p", 0, 1, lim.top_p);
  g.top_p = top_p > 0 ? static_cast<float>(top_p) : 1.0f;
  if (top_p == 0) g.temperature = 0;  // the nucleus of mass 0: the most likely token
  const int64_t k = int_field(b, "top_k", -1, lim.vocab, lim.top_k);
  g.top_k = k < 0 ? 0 : static_cast<int>(k);
  if (const Json* s = field(b, "seed")) {
    if (!s->is_number_integer())
      bad("seed", std::string("must be an integer, got ") + type_name(*s));
    g.seed =
        s->is_number_unsigned() ? s->get<uint64_t>() : static_cast<uint64_t>(s->get<int64_t>());
  }
}

void parse_stop(const Json& b, GenRequest& g) {
  const Json* s = field(b, "stop");
  if (!s) return;
  if (s->is_string()) {
    g.stop.push_back(s->get<std::string>());
  } else if (s->is_array()) {
    if (s->size() > 4) bad("stop", "takes at most 4 strings");
    for (const Json& x : *s) {
      if (!x.is_string()) bad("stop", "must be a string or an array of strings");
      g.stop.push_back(x.get<std::string>());
    }
  } else {
    bad("stop", std::string("must be a string or an array of strings, got ") + type_name(*s));
  }
  for (const std::string& x : g.stop)
    if (x.empty() || x.size() > 256) bad("stop", "strings must be 1 to 256 bytes long");
}

void parse_stream(const Json& b, GenRequest& g) {
  g.stream = bool_field(b, "stream", false);
  if (const Json* o = field(b, "stream_options")) {
    if (!o->is_object()) bad("stream_options", "must be an object");
    if (!g.stream) bad("stream_options", "is only allowed with 'stream': true");
    g.include_usage = bool_field(*o, "include_usage", false);
  }
}

// Prompt against the context, then max_tokens (named `key` in this endpoint).
void fit_context(const Json& b, const char* key, const char* alt_key, const ApiLimits& lim,
                 GenRequest& g) {
  const int64_t n = static_cast<int64_t>(g.prompt.size());
  if (n + 1 > lim.ctx)
    throw ApiError(400,
                   "This model's maximum context length is " + std::to_string(lim.ctx) +
                       " tokens; the prompt is " + std::to_string(n) +
                       " tokens (it must leave one position to generate)",
                   "messages", "context_length_exceeded");
  const int64_t room = lim.ctx - n;
  const char* given = field(b, key) ? key : alt_key && field(b, alt_key) ? alt_key : nullptr;
  if (!given) {
    g.max_tokens = static_cast<int>(
        lim.default_max_tokens > 0 ? std::min<int64_t>(room, lim.default_max_tokens) : room);
    return;
  }
  const int64_t m = int_field(b, given, 1, INT32_MAX, 1);
  if (m > room)
    throw ApiError(400,
                   std::string("'") + given + "' is too large: " + std::to_string(m) +
                       " new tokens after a prompt of " + std::to_string(n) +
                       " do not fit the context of " + std::to_string(lim.ctx) + " (at most " +
                       std::to_string(room) + ")",
                   given, "context_length_exceeded");
  g.max_tokens = static_cast<int>(m);
}

// --- harmony conversation from chat messages / responses items ----------------------------------

struct Tools {
  std::vector<HarmonyFunction> functions;
  bool offered = false;  // rendered into the prompt (tool_choice is not "none")
};

bool valid_tool_name(const std::string& n) {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  return true;
}

HarmonyFunction function_of(const Json& f, const std::string& where) {
  if (!f.is_object()) bad(where, "must be an object");
  HarmonyFunction h;
  h.name = string_field(f, "name", "");
  if (!valid_tool_name(h.name)) bad(where + ".name", "must be 1 to 64 letters, digits, '_' or '-'");
  h.description = string_field(f, "description", "");
  if (const Json* p = field(f, "parameters")) {
    if (!p->is_object()) bad(where + ".parameters", "must be a JSON Schema object");
    h.parameters = *p;
  }
  return h;
}

// Chat: [{"type":"function","function":{...}}]. Responses: [{"type":"function","name",...}].
Tools parse_tools(const Json& b, bool responses) {
  Tools t;
  bool none = false;
  if (const Json* c = field(b, "tool_choice")) {
    none = c->is_string() && c->get<std::string>() == "none";
    if (!none && !(c->is_string() && c->get<std::string>() == "auto"))
      bad("tool_choice",
          "only 'auto' and 'none' are supported (the model decides whether to call a tool)",
          "unsupported_value");
  }
  const Json* tools = field(b, "tools");
  if (!tools) return t;
  if (!tools->is_array()) bad("tools", "must be an array");
  for (size_t i = 0; i < tools->size(); ++i) {
    const Json& x = (*tools)[i];
    const std::string at = "tools[" + std::to_string(i) + "]";
    if (!x.is_object()) bad(at, "must be an object");
    const std::string type = string_field(x, "type", "function");
    if (type != "function")
      bad(at + ".type", "'" + type + "' is not supported: only function tools",
          "unsupported_value");
    if (responses) {
      t.functions.push_back(function_of(x, at));
    } else {
      const Json* f = field(x, "function");
      if (!f) bad(at + ".function", "is required");
      t.functions.push_back(function_of(*f, at + ".function"));
    }
  }
  t.offered = !t.functions.empty() && !none;
  return t;
}

std::string reasoning_effort(const std::string& e, const char* key) {
  if (e != "low" && e != "medium" && e != "high")
    bad(key, "must be low, medium or high, got '" + e + "'");
  return e;
}

void check_response_format(const Json& b) {
  if (const Json* f = field(b, "response_format")) {
    if (!(f->is_object() && string_field(*f, "type", "") == "text"))
      bad("response_format", "only {\"type\": \"text\"} is supported", "unsupported_value");
  }
}

std::vector<int32_t> render(const Tokenizer& tk, HarmonyConversation& conv, const Tools& tools,
                            const std::vector<std::string>& instructions, const ApiLimits& lim) {
  std::string instr;
  for (const std::string& s : instructions) instr += (instr.empty() ? "" : "\n\n") + s;
  conv.date = lim.date.empty() ? today_utc() : lim.date;
  conv.function_tools = tools.offered;
  conv.developer = harmony_developer_content(
      instr, tools.offered ? harmony_functions_section(tools.functions) : "");
  TextEncoder enc = [&](std::string_view t) { return tk.encode(t, /*allow_special=*/false); };
  return harmony_render_for_completion(enc, conv);
}

}  // namespace

GenRequest parse_completion_request(const Json& b, const Tokenizer& tk, const ApiLimits& lim) {
  if (!b.is_object()) throw ApiError(400, "the request body must be a JSON object");
  GenRequest g;
  g.endpoint = Endpoint::Completions;
  check_model(b, lim, g);
  refuse_unsupported(b);
  if (const Json* v = field(b, "best_of"); v && !(v->is_number_integer() && v->get<int64_t>() == 1))
    bad("best_of", "must be 1", "unsupported_value");
  if (bool_field(b, "echo", false)) bad("echo", "is not supported", "unsupported_value");
  if (field(b, "suffix")) bad("suffix", "is not supported", "unsupported_value");
  parse_sampling(b, lim, g);
  parse_stop(b, g);
  parse_stream(b, g);
  const Json* p = field(b, "prompt");
  if (!p) bad("prompt", "is required");
  // A string (special-token texts such as <|start|> are recognised, as in `run -m generate`),
  // an array of one string, or an array of token ids.
  const Json* text = p->is_string()                                             ? p
                     : (p->is_array() && p->size() == 1 && (*p)[0].is_string()) ? &(*p)[0]
                                                                                : nullptr;
  if (text) {
    g.prompt = tk.encode(text->get<std::string>(), /*allow_special=*/true);
  } else if (p->is_array() && !p->empty() && (*p)[0].is_number()) {
    for (const Json& x : *p) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= lim.vocab)
        bad("prompt", "token ids must be integers in [0, " + std::to_string(lim.vocab) + ")");
      g.prompt.push_back(static_cast<int32_t>(x.get<int64_t>()));
    }
  } else if (p->is_array() && p->size() > 1) {
    bad("prompt", "one prompt per request is supported (n = 1)", "unsupported_value");
  } else {
    bad("prompt", "must be a string, an array of one string or an array of token ids");
  }
  if (g.prompt.empty()) bad("prompt", "is empty");
  fit_context(b, "max_tokens", nullptr, lim, g);
  return g;
}

GenRequest parse_chat_request(const Json& b, const Tokenizer& tk, const ApiLimits& lim) {
  if (!b.is_object()) throw ApiError(400, "the request body must be a JSON object");
  GenRequest g;
  g.endpoint = Endpoint::Chat;
  g.harmony = true;
  check_model(b, lim, g);
  refuse_unsupported(b);
  check_response_format(b);
  parse_sampling(b, lim, g);
  parse_stop(b, g);
  parse_stream(b, g);
  Tools tools = parse_tools(b, false);
  g.tools = tools.offered;
  HarmonyConversation conv;
  conv.reasoning =
      reasoning_effort(string_field(b, "reasoning_effort", lim.reasoning), "reasoning_effort");
  const Json* msgs = field(b, "messages");
  if (!msgs) bad("messages", "is required");
  if (!msgs->is_array() || msgs->empty()) bad("messages", "must be a non-empty array");
  size_t last_user = 0;
  for (size_t i = 0; i < msgs->size(); ++i)
    if ((*msgs)[i].is_object() && string_field((*msgs)[i], "role", "") == "user") last_user = i;
  std::vector<std::string> instructions;
  std::map<std::string, std::string> call_names;  // tool_call_id -> function name
  for (size_t i = 0; i < msgs->size(); ++i) {
    const Json& m = (*msgs)[i];
    const std::string at = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(at, "must be an object");
    const std::string role = string_field(m, "role", "");
    if (role == "system" || role == "developer") {
      instructions.push_back(content_text(m, at, false));
    } else if (role == "user") {
      conv.messages.push_back({"user", "", "", "", content_text(m, at, false)});
    } else if (role == "assistant") {
      // Reasoning is kept only in the ongoing tool-call chain (harmony drops it after a final).
      std::string reasoning =
          string_field(m, "reasoning_content", string_field(m, "reasoning", ""));
      if (!reasoning.empty() && i > last_user)
        conv.messages.push_back({"assistant", "", "analysis", "", reasoning});
      const std::string text = content_text(m, at, true);
      const Json* calls = field(m, "tool_calls");
      if (calls && (!calls->is_array())) bad(at + ".tool_calls", "must be an array");
      if (calls && !calls->empty()) {
        if (!text.empty()) conv.messages.push_back({"assistant", "", "commentary", "", text});
        for (size_t k = 0; k < calls->size(); ++k) {
          const Json& c = (*calls)[k];
          const std::string cat = at + ".tool_calls[" + std::to_string(k) + "]";
          if (!c.is_object()) bad(cat, "must be an object");
          const Json* f = field(c, "function");
          if (!f || !f->is_object()) bad(cat + ".function", "is required");
          const std::string name = string_field(*f, "name", "");
          if (!valid_tool_name(name))
            bad(cat + ".function.name", "must be 1 to 64 letters, digits, '_' or '-'");
          call_names[string_field(c, "id", "")] = name;
          conv.messages.push_back({"assistant", "functions." + name, "commentary",
                                   "<|constrain|>json", string_field(*f, "arguments", "{}")});
        }
      } else if (!text.empty()) {
        conv.messages.push_back({"assistant", "", "final", "", text});
      }
    } else if (role == "tool") {
      const std::string id = string_field(m, "tool_call_id", "");
      auto it = call_names.find(id);
      std::string name = it != call_names.end() ? it->second : string_field(m, "name", "");
      if (name.empty())
        bad(at + ".tool_call_id",
            "'" + id + "' matches no tool call of an earlier assistant message");
      conv.messages.push_back(
          {"functions." + name, "assistant", "commentary", "", content_text(m, at, false)});
    } else {
      bad(at + ".role", "must be system, developer, user, assistant or tool, got '" + role + "'");
    }
  }
  g.prompt = render(tk, conv, tools, instructions, lim);
  fit_context(b, "max_completion_tokens", "max_tokens", lim, g);
  return g;
}

GenRequest parse_responses_request(const Json& b, const Tokenizer& tk, const ApiLimits& lim) {
  if (!b.is_object()) throw ApiError(400, "the request body must be a JSON object");
  GenRequest g;
  g.endpoint = Endpoint::Responses;
  g.harmony = true;
  check_model(b, lim, g);
  refuse_unsupported(b);
  if (field(b, "previous_response_id"))
    bad("previous_response_id",
        "is not supported: the server keeps no responses; send the whole conversation as 'input'",
        "unsupported_value");
  if (const Json* t = field(b, "text")) {
    const Json* f = t->is_object() ? field(*t, "format") : nullptr;
    if (!t->is_object() || (f && !(f->is_object() && string_field(*f, "type", "") == "text")))
      bad("text", "only the text format is supported", "unsupported_value");
  }
  parse_sampling(b, lim, g);
  parse_stream(b, g);
  Tools tools = parse_tools(b, true);
  g.tools = tools.offered;
  HarmonyConversation conv;
  conv.reasoning = lim.reasoning;
  if (const Json* r = field(b, "reasoning")) {
    if (!r->is_object()) bad("reasoning", "must be an object");
    conv.reasoning =
        reasoning_effort(string_field(*r, "effort", lim.reasoning), "reasoning.effort");
  }
  std::vector<std::string> instructions;
  if (std::string ins = string_field(b, "instructions", ""); !ins.empty())
    instructions.push_back(ins);
  const Json* in = field(b, "input");
  if (!in) bad("input", "is required");
  if (in->is_string()) {
    conv.messages.push_back({"user", "", "", "", in->get<std::string>()});
  } else if (in->is_array() && !in->empty()) {
    size_t last_user = 0;
    for (size_t i = 0; i < in->size(); ++i)
      if ((*in)[i].is_object() && string_field((*in)[i], "role", "") == "user") last_user = i;
    std::map<std::string, std::string> call_names;
    for (size_t i = 0; i < in->size(); ++i) {
      const Json& it = (*in)[i];
      const std::string at = "input[" + std::to_string(i) + "]";
      if (!it.is_object()) bad(at, "must be an object");
      const std::string type = string_field(it, "type", "message");
      if (type == "message") {
        const std::string role = string_field(it, "role", "");
        const std::string text = content_text(it, at, false);
        if (role == "system" || role == "developer")
          instructions.push_back(text);
        else if (role == "user")
          conv.messages.push_back({"user", "", "", "", text});
        else if (role == "assistant")
          conv.messages.push_back({"assistant", "", "final", "", text});
        else
          bad(at + ".role", "must be system, developer, user or assistant, got '" + role + "'");
      } else if (type == "reasoning") {
        std::string text;
        if (const Json* c = field(it, "content"); c && c->is_array())
          for (const Json& p : *c)
            if (p.is_object()) text += string_field(p, "text", "");
        if (!text.empty() && i > last_user)
          conv.messages.push_back({"assistant", "", "analysis", "", text});
      } else if (type == "function_call") {
        const std::string name = string_field(it, "name", "");
        if (!valid_tool_name(name))
          bad(at + ".name", "must be 1 to 64 letters, digits, '_' or '-'");
        call_names[string_field(it, "call_id", "")] = name;
        conv.messages.push_back({"assistant", "functions." + name, "commentary",
                                 "<|constrain|>json", string_field(it, "arguments", "{}")});
      } else if (type == "function_call_output") {
        const std::string id = string_field(it, "call_id", "");
        auto c = call_names.find(id);
        if (c == call_names.end())
          bad(at + ".call_id", "'" + id + "' matches no earlier function_call item");
        const Json* out = field(it, "output");
        std::string text = !out ? "" : out->is_string() ? out->get<std::string>() : out->dump();
        conv.messages.push_back({"functions." + c->second, "assistant", "commentary", "", text});
      } else {
        bad(at + ".type",
            "'" + type +
                "' is not supported (message, reasoning, function_call, function_call_output)",
            "unsupported_value");
      }
    }
  } else {
    bad("input", "must be a string or a non-empty array of items");
  }
  g.prompt = render(tk, conv, tools, instructions, lim);
  fit_context(b, "max_output_tokens", nullptr, lim, g);
  return g;
}

}  // namespace gptoss::serve
