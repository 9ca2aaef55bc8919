// bench_serve.cpp: `bench-serve`, the load generator of `run -m serve` (docs/server.md). Sends N
// streamed requests at concurrency C to a running server and prints one JSON object: requests/s,
// output tokens/s, time to first token and inter-token latency (p50, p99, mean), failures.
// Prompts: a getp prompt file (--prompts IN: line 1 N, then one prompt per line; request i takes
// prompt i mod N) or built-in ones. --endpoint completions sends the prompt as raw text, as
// `run -m getp` reads it, so the two can be compared on the same prompts; chat wraps it in a user
// message. --out FILE writes each request's text (JSON lines, by index) to compare runs.
//   bench-serve --url http://127.0.0.1:8080 -n 200 -c 16 --max-tokens 32
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <thread>

#include "serve/api.h"

namespace {

using gptoss::serve::Json;
using Clock = std::chrono::steady_clock;

struct Result {
  bool ok = false;
  std::string error, text, finish_reason;
  int completion_tokens = 0;
  double ttft_s = -1, total_s = 0;
  std::vector<double> gaps_s;  // between successive chunks carrying tokens
};

struct Options {
  std::string url = "http://127.0.0.1:8080", endpoint = "completions", prompts_path, api_key, model,
              out_path;
  int n = 200, concurrency = 16, max_tokens = 64;
  double temperature = 0, timeout_s = 600;
};

std::vector<std::string> load_prompts(const std::string& path) {
  if (path.empty()) {
    std::vector<std::string> p;
    for (int i = 0; i < 64; ++i)
      p.push_back("Prompt number " + std::to_string(i) + ": tell me about the quick brown fox " +
                  std::string(static_cast<size_t>(i % 7), '!'));
    return p;
  }
  std::ifstream f(path);
  if (!f) throw std::runtime_error(path + ": cannot open");
  std::string line;
  std::getline(f, line);
  std::vector<std::string> p;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) p.push_back(line);
  }
  if (p.empty()) throw std::runtime_error(path + ": no prompts");
  return p;
}

// The model's id from GET /v1/models.
std::string first_model(httplib::Client& cli, const httplib::Headers& h) {
  auto r = cli.Get("/v1/models", h);
  if (!r) throw std::runtime_error("cannot reach the server: " + httplib::to_string(r.error()));
  if (r->status != 200)
    throw std::runtime_error("GET /v1/models: HTTP " + std::to_string(r->status) + ": " + r->body);
  return Json::parse(r->body).at("data").at(0).at("id").get<std::string>();
}

Result one_request(const Options& o, const std::string& model, const std::string& prompt) {
  Result res;
  httplib::Client cli(o.url);
  cli.set_read_timeout(static_cast<time_t>(o.timeout_s), 0);
  cli.set_connection_timeout(10, 0);
  Json body{{"model", model},
            {"stream", true},
            {"stream_options", {{"include_usage", true}}},
            {"max_tokens", o.max_tokens},
            {"temperature", o.temperature}};
  const bool chat = o.endpoint == "chat";
  if (chat)
    body["messages"] = Json::array({Json{{"role", "user"}, {"content", prompt}}});
  else
    body["prompt"] = prompt;
  httplib::Request req;
  req.method = "POST";
  req.path = chat ? "/v1/chat/completions" : "/v1/completions";
  req.headers = {{"Content-Type", "application/json"}};
  if (!o.api_key.empty()) req.headers.emplace("Authorization", "Bearer " + o.api_key);
  req.body = body.dump();
  std::string buf;
  bool done = false;
  const auto t0 = Clock::now();
  auto last = t0;
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    buf.append(data, len);
    size_t cut;
    while ((cut = buf.find("\n\n")) != std::string::npos) {
      std::string ev = buf.substr(0, cut);
      buf.erase(0, cut + 2);
      if (ev.rfind("data: ", 0) != 0) continue;
      ev.erase(0, 6);
      if (ev == "[DONE]") {
        done = true;
        continue;
      }
      Json j = Json::parse(ev, nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("error")) {
        res.error = j["error"].value("message", "error event");
        continue;
      }
      if (j.contains("usage") && j["usage"].is_object())
        res.completion_tokens = j["usage"].value("completion_tokens", 0);
      if (!j.contains("choices") || j["choices"].empty()) continue;
      const Json& c = j["choices"][0];
      std::string piece;
      if (chat) {
        const Json& d = c.value("delta", Json::object());
        piece = d.value("content", std::string()) + d.value("reasoning_content", std::string());
        if (d.contains("tool_calls")) piece += " ";
      } else {
        piece = c.value("text", std::string());
      }
      if (c.contains("finish_reason") && c["finish_reason"].is_string())
        res.finish_reason = c["finish_reason"].get<std::string>();
      if (piece.empty()) continue;
      const auto now = Clock::now();
      if (res.ttft_s < 0)
        res.ttft_s = std::chrono::duration<double>(now - t0).count();
      else
        res.gaps_s.push_back(std::chrono::duration<double>(now - last).count());
      last = now;
      if (!chat || !c["delta"].contains("reasoning_content")) res.text += piece;
    }
    return true;
  };
  httplib::Response resp;
  httplib::Error err = httplib::Error::Success;
  const bool sent = cli.send(req, resp, err);
  res.total_s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!sent)
    res.error = "transport: " + httplib::to_string(err);
  else if (resp.status != 200)
    res.error = "HTTP " + std::to_string(resp.status) + ": " + resp.body;
  else if (!done && res.error.empty())
    res.error = "stream ended without [DONE]";
  res.ok = res.error.empty();
  return res;
}

Json percentiles_ms(std::vector<double> v) {
  if (v.empty()) return Json{{"p50", nullptr}, {"p99", nullptr}, {"mean", nullptr}};
  std::sort(v.begin(), v.end());
  auto at = [&](double q) {
    return 1e3 * v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
  };
  double sum = 0;
  for (double x : v) sum += x;
  return Json{
      {"p50", at(0.50)}, {"p99", at(0.99)}, {"mean", 1e3 * sum / static_cast<double>(v.size())}};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"bench-serve: load generator for `run -m serve`; prints one JSON object on stdout",
               "bench-serve"};
  app.add_option("--url", o.url, "Server base URL")->capture_default_str();
  app.add_option("-n,--requests", o.n, "Requests in all")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  app.add_option("-c,--concurrency", o.concurrency, "Requests in flight at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--max-tokens", o.max_tokens, "max_tokens of each request")
      ->capture_default_str()
      ->check(CLI::Range(1, 131072));
  app.add_option("--endpoint", o.endpoint, "completions (raw prompt, as getp) | chat")
      ->capture_default_str()
      ->check(CLI::IsMember({"completions", "chat"}));
  app.add_option("--prompts", o.prompts_path, "getp prompt file (default: built-in prompts)");
  app.add_option("-T,--temperature", o.temperature, "Sampling temperature")->capture_default_str();
  app.add_option("--api-key", o.api_key, "Bearer key");
  app.add_option("--model", o.model, "Model id (default: the server's)");
  app.add_option("--out", o.out_path,
                 "Write each request's text as JSON lines {index, text, finish_reason}");
  app.add_option("--timeout", o.timeout_s, "Seconds a request may take")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    const std::vector<std::string> prompts = load_prompts(o.prompts_path);
    httplib::Headers h;
    if (!o.api_key.empty()) h.emplace("Authorization", "Bearer " + o.api_key);
    httplib::Client probe(o.url);
    const std::string model = o.model.empty() ? first_model(probe, h) : o.model;
    std::vector<Result> results(static_cast<size_t>(o.n));
    std::atomic<int> next{0};
    const auto t0 = Clock::now();
    std::vector<std::thread> workers;
    for (int w = 0; w < std::min(o.concurrency, o.n); ++w)
      workers.emplace_back([&] {
        for (int i; (i = next++) < o.n;)
          results[static_cast<size_t>(i)] =
              one_request(o, model, prompts[static_cast<size_t>(i) % prompts.size()]);
      });
    for (auto& t : workers) t.join();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    int failed = 0;
    long long tokens = 0;
    std::vector<double> ttft, itl, e2e;
    std::string first_error;
    for (const Result& r : results) {
      if (!r.ok) {
        if (first_error.empty()) first_error = r.error;
        ++failed;
        continue;
      }
      tokens += r.completion_tokens;
      if (r.ttft_s >= 0) ttft.push_back(r.ttft_s);
      itl.insert(itl.end(), r.gaps_s.begin(), r.gaps_s.end());
      e2e.push_back(r.total_s);
    }
    if (!o.out_path.empty()) {
      std::ofstream f(o.out_path);
      for (size_t i = 0; i < results.size(); ++i)
        f << Json{{"index", i},
                  {"ok", results[i].ok},
                  {"text", results[i].text},
                  {"finish_reason", results[i].finish_reason},
                  {"completion_tokens", results[i].completion_tokens}}
                 .dump(-1, ' ', false, Json::error_handler_t::replace)
          << "\n";
    }
    Json report{{"url", o.url},
                {"endpoint", o.endpoint},
                {"model", model},
                {"requests", o.n},
                {"concurrency", o.concurrency},
                {"max_tokens", o.max_tokens},
                {"failed", failed},
                {"first_error", first_error.empty() ? Json() : Json(first_error)},
                {"duration_s", wall},
                {"requests_per_s", (o.n - failed) / wall},
                {"output_tokens", tokens},
                {"output_tok_per_s", static_cast<double>(tokens) / wall},
                {"ttft_ms", percentiles_ms(ttft)},
                {"itl_ms", percentiles_ms(itl)},
                {"e2e_ms", percentiles_ms(e2e)}};
    std::printf("%s\n", report.dump(2, ' ', false, Json::error_handler_t::replace).c_str());
    return failed ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-serve: error: %s\n", e.what());
    return 1;
  }
}
