// http_server.h: the HTTP side of `run -m serve` (cpp-httplib, Debian's libcpp-httplib-dev).
// Endpoints (docs/server.md): GET /health, GET /v1/models[/ID], POST /v1/completions,
// POST /v1/chat/completions, POST /v1/responses, GET /metrics, and the chat page at / (files
// built into the binary). Handlers run on the library's worker threads: they check and render a
// request (api.h), hand it to the engine thread through the Inbox (bridge.h) and turn its tokens
// into the reply (reply.h, openai_json.h), streamed as server-sent events when asked.
// Limits: --api-key (401 on /v1/* without "Authorization: Bearer KEY"), a request body limit
// (413), at most -b running plus --max-queue waiting requests (429 beyond), 503 while shutting
// down. A client that goes away is noticed within 100 ms and its request cancelled.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "serve/api.h"
#include "serve/bridge.h"
#include "serve/metrics.h"

namespace gptoss {
class Tokenizer;
}

namespace gptoss::serve {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;      // 0: any free port (port() says which)
  std::string api_key;  // "" = no authentication
  int slots = 1;        // sequences running at once (-b)
  int max_queue = 64;   // requests waiting beyond them
  size_t max_body_bytes = 8u << 20;
  ApiLimits limits;
  std::vector<int32_t> stop_ids;  // the scheduler's stop tokens (never shown as text)
};

class HttpServer {
 public:
  HttpServer(const ServerConfig& cfg, const Tokenizer& tk, Inbox& inbox, Metrics& metrics);
  ~HttpServer();
  // Binds host:port (Error with a one-line message if it cannot) and serves on a thread of its own.
  void start();
  int port() const;
  // From now on generation requests get 503 (requests in flight go on); /health says "draining".
  void drain();
  // Stops listening and joins the worker threads (streams still open are cut).
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gptoss::serve
