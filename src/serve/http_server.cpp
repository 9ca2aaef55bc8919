// http_server.cpp: routes, authentication, admission and the reply loops (see http_server.h).
#include "serve/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "common/error.h"
#include "serve/connection.h"
#include "serve/openai_json.h"
#include "serve/page.h"
#include "serve/responses_stream.h"
#include "tokenizer/tokenizer.h"

namespace gptoss::serve {

namespace {

constexpr auto kPoll = std::chrono::milliseconds(100);  // how often a waiting handler looks up
constexpr int kListenBacklog = 1024;  // connections the kernel holds before we accept them

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
double mono_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void send_json(httplib::Response& res, int status, const Json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  send_json(res, e.status, e.body());
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  if (e.status == 429 || e.status == 503) res.set_header("Retry-After", "1");
}

// One generation request from admission to its last byte: shared by the handler and, for a
// stream, the content provider and its releaser.
struct Flight {
  uint64_t id = 0;
  GenRequest g;
  ReplyMeta meta;
  std::shared_ptr<TokenStream> stream = std::make_shared<TokenStream>();
  std::unique_ptr<ReplyBuilder> reply;
  std::unique_ptr<ResponsesStream> rstream;
  int fd = -1;           // the client's socket (connection.h), -1 if not found
  bool started = false;  // stream: the opening chunk/events are sent
  bool ended = false;    // the reply is complete (or given up)
  bool cut = false;      // the engine cancelled it (shutdown)
  std::vector<int32_t> toks;
};

}  // namespace

struct HttpServer::Impl {
  Impl(const ServerConfig& c, const Tokenizer& t, Inbox& i, Metrics& m)
      : cfg(c), tk(t), inbox(i), metrics(m) {}

  ServerConfig cfg;
  const Tokenizer& tk;
  Inbox& inbox;
  Metrics& metrics;
  httplib::Server svr;
  std::thread thread;
  int bound_port = -1;
  int listen_fd = -1;  // the listening socket: the last one the socket-options hook saw
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> next_id{1};
  std::atomic<int> outstanding{0};  // admitted, reply not complete

  void routes();
  void generate(Endpoint e, const httplib::Request& req, httplib::Response& res);
  void reply_whole(Flight& f, httplib::Response& res);
  bool pump(Flight& f, httplib::DataSink& sink);  // one step of a stream
  void give_up(Flight& f);
  void release() { --outstanding; }
};

HttpServer::HttpServer(const ServerConfig& cfg, const Tokenizer& tk, Inbox& inbox, Metrics& metrics)
    : impl_(std::make_unique<Impl>(cfg, tk, inbox, metrics)) {}

HttpServer::~HttpServer() { stop(); }

int HttpServer::port() const { return impl_->bound_port; }
void HttpServer::drain() { impl_->draining = true; }

void HttpServer::start() {
  Impl& s = *impl_;
  const int threads = s.cfg.slots + s.cfg.max_queue + 8;
  s.svr.new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads));
  };
  // SO_REUSEADDR only: the library's default adds SO_REUSEPORT, which lets a second server bind a
  // port that one is already listening on (and the kernel split the connections between them).
  // The library tries each address in turn: the listening socket is the last one seen here.
  s.svr.set_socket_options([&s](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    s.listen_fd = sock;
  });
  s.svr.set_payload_max_length(s.cfg.max_body_bytes);
  s.svr.set_keep_alive_timeout(2);
  s.svr.set_read_timeout(30, 0);
  s.svr.set_write_timeout(30, 0);
  s.routes();
  if (s.cfg.port == 0) {
    s.bound_port = s.svr.bind_to_any_port(s.cfg.host);
    if (s.bound_port < 0) fail("serve: cannot listen on %s (any port)", s.cfg.host.c_str());
  } else {
    if (!s.svr.bind_to_port(s.cfg.host, s.cfg.port))
      fail("serve: cannot listen on %s:%d (address in use, or not an address of this machine)",
           s.cfg.host.c_str(), s.cfg.port);
    s.bound_port = s.cfg.port;
  }
  // Debian's packaged library is compiled with a listen backlog of 5 (its
  // CPPHTTPLIB_LISTEN_BACKLOG cannot be changed from here). 16 clients connecting at once
  // overflowed it (TcpExtListenOverflows): a dropped connection cost its client a 1 s SYN retry
  // or, now and then, the request ("transport: Read" in serve_load on CI). On Linux a second
  // listen() on a listening socket only sets its backlog; the kernel caps it at somaxconn.
  if (s.listen_fd >= 0 && ::listen(s.listen_fd, kListenBacklog) != 0)
    fail("serve: cannot set the listen backlog on %s:%d", s.cfg.host.c_str(), s.bound_port);
  s.thread = std::thread([&s] { s.svr.listen_after_bind(); });
}

void HttpServer::stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  // Replies still being written (a cut stream's error event, a finished request's last bytes) get
  // up to 3 s to go out first: once stopping, the library abandons chunked replies mid-way, and
  // a client lost its error event that way (serve_api_limits under ASan).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (s.outstanding.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  s.svr.stop();
  s.thread.join();
}

void HttpServer::Impl::routes() {
  // /v1/* needs the key when one is set; the page, /health and /metrics do not.
  svr.set_pre_routing_handler([this](const httplib::Request& req,
                                     httplib::Response& res) -> httplib::Server::HandlerResponse {
    if (cfg.api_key.empty() || req.path.rfind("/v1/", 0) != 0)
      return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + cfg.api_key)
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", "",
                             "invalid_api_key"));
    metrics.request_done("auth", 401);
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors the library answers itself (no route, body too large, bad HTTP) get an error object.
  svr.set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req,
             httplib::Response& res) -> httplib::Server::HandlerResponse {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string msg = res.status == 404   ? "no such endpoint: " + req.method + " " + req.path
                          : res.status == 413 ? "the request body is larger than " +
                                                    std::to_string(cfg.max_body_bytes) + " bytes"
                                              : "bad HTTP request";
        send_error(res, ApiError(res.status, msg));
        metrics.request_done("other", res.status);
        return httplib::Server::HandlerResponse::Handled;
      }));
  svr.set_exception_handler(
      [this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        std::fprintf(stderr, "serve: internal error: %s\n", what.c_str());
        send_error(res, ApiError(500, "internal error: " + what));
        metrics.request_done("other", 500);
      });

  svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, draining ? 503 : 200, Json{{"status", draining ? "draining" : "ok"}});
  });
  auto model_json = [this] {
    return Json{{"id", cfg.limits.model_id},
                {"object", "model"},
                {"created", 0},
                {"owned_by", "gptoss"},
                {"max_model_len", cfg.limits.ctx}};
  };
  svr.Get("/v1/models", [this, model_json](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, Json{{"object", "list"}, {"data", Json::array({model_json()})}});
    metrics.request_done("models", 200);
  });
  svr.Get(R"(/v1/models/(.+))", [this, model_json](const httplib::Request& req,
                                                   httplib::Response& res) {
    if (req.matches[1] == cfg.limits.model_id) {
      send_json(res, 200, model_json());
      metrics.request_done("models", 200);
    } else {
      send_error(res,
                 ApiError(404, "The model '" + std::string(req.matches[1]) + "' does not exist",
                          "model", "model_not_found"));
      metrics.request_done("models", 404);
    }
  });
  svr.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& r) {
    generate(Endpoint::Completions, q, r);
  });
  svr.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& r) {
    generate(Endpoint::Chat, q, r);
  });
  svr.Post("/v1/responses", [this](const httplib::Request& q, httplib::Response& r) {
    generate(Endpoint::Responses, q, r);
  });
  svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.prometheus_text(mono_now()), "text/plain; version=0.0.4");
  });
  svr.Get(R"(/|/[A-Za-z0-9_.-]+)", [](const httplib::Request& req, httplib::Response& res) {
    const PageFile* f = find_page_file(req.path == "/" ? "/index.html" : req.path);
    if (!f) return;  // 404 through the error handler
    res.set_content(reinterpret_cast<const char*>(f->data), f->size, f->type);
    res.set_header("Cache-Control", "no-cache");
  });
}

// Generation: check, admit, then answer whole or as a stream.
void HttpServer::Impl::generate(Endpoint e, const httplib::Request& req, httplib::Response& res) {
  auto f = std::make_shared<Flight>();
  try {
    const Json body = parse_body(req.body);
    f->g = e == Endpoint::Completions ? parse_completion_request(body, tk, cfg.limits)
           : e == Endpoint::Chat      ? parse_chat_request(body, tk, cfg.limits)
                                      : parse_responses_request(body, tk, cfg.limits);
    if (draining) throw ApiError(503, "the server is shutting down", "", "server_shutting_down");
    int now = outstanding.load();
    const int cap = cfg.slots + cfg.max_queue;
    do {
      if (now >= cap)
        throw ApiError(429,
                       "too many requests: " + std::to_string(cfg.slots) + " running and " +
                           std::to_string(cfg.max_queue) + " waiting (--max-queue); retry later",
                       "", "rate_limit_exceeded");
    } while (!outstanding.compare_exchange_weak(now, now + 1));
  } catch (const ApiError& err) {
    send_error(res, err);
    metrics.request_done(endpoint_name(e), err.status);
    return;
  }
  f->id = next_id++;
  f->meta =
      ReplyMeta{new_reply_id(e), unix_now(), f->g.model, static_cast<int>(f->g.prompt.size())};
  f->reply = std::make_unique<ReplyBuilder>(tk, f->g, cfg.stop_ids);
  f->fd = find_connection_socket(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
  Job j;
  j.id = f->id;
  j.prompt = f->g.prompt;
  j.max_tokens = f->g.max_tokens;
  j.temperature = f->g.temperature;
  j.top_p = f->g.top_p;
  j.top_k = f->g.top_k;
  j.seed = f->g.seed;
  j.out = f->stream;
  if (!inbox.submit(std::move(j))) {
    release();
    send_error(res, ApiError(503, "the server is shutting down", "", "server_shutting_down"));
    metrics.request_done(endpoint_name(e), 503);
    return;
  }
  if (!f->g.stream) {
    reply_whole(*f, res);
    release();
    metrics.request_done(endpoint_name(e), res.status);
    return;
  }
  metrics.request_done(endpoint_name(e), 200);
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream", [this, f](size_t, httplib::DataSink& sink) { return pump(*f, sink); },
      [this, f](bool) {  // the response is over, whatever happened: free what is still held
        if (!f->ended) give_up(*f);
        release();
      });
}

// The client left (or the stream broke): cancel the request in the engine.
void HttpServer::Impl::give_up(Flight& f) {
  f.ended = true;
  inbox.cancel(f.id);
}

void HttpServer::Impl::reply_whole(Flight& f, httplib::Response& res) {
  ReplyBuilder& r = *f.reply;
  Delta d;
  for (;;) {
    f.toks.clear();
    const std::optional<EndKind> end = f.stream->take(f.toks, kPoll);
    for (int32_t t : f.toks) r.push(t, d);
    if (r.stopped()) {  // a stop string: the text is complete, free the slot
      inbox.cancel(f.id);
      r.finish(EndKind::Stop, d);
      break;
    }
    if (end) {
      r.finish(*end, d);
      f.cut = *end == EndKind::Cancelled;
      break;
    }
    if (peer_gone(f.fd)) {
      give_up(f);
      res.status = 499;  // nginx's "client closed request": for the metrics only
      return;
    }
  }
  f.ended = true;
  if (f.cut) {
    send_error(res, ApiError(503,
                             "the server shut down before the request finished (" +
                                 std::to_string(r.completion_tokens) + " tokens generated)",
                             "", "server_shutting_down"));
    return;
  }
  const Json j = f.g.endpoint == Endpoint::Completions ? completion_json(f.meta, r)
                 : f.g.endpoint == Endpoint::Chat      ? chat_json(f.meta, r)
                                                       : responses_json(f.meta, r, f.g);
  send_json(res, 200, j);
}

// One call of the stream's content provider: send what arrived within kPoll, and the end.
bool HttpServer::Impl::pump(Flight& f, httplib::DataSink& sink) {
  ReplyBuilder& r = *f.reply;
  const bool chat = f.g.endpoint == Endpoint::Chat, resp = f.g.endpoint == Endpoint::Responses;
  std::string out;
  if (!f.started) {
    f.started = true;
    if (resp) {
      f.rstream = std::make_unique<ResponsesStream>(f.meta, f.g);
      out += f.rstream->start();
    } else if (chat) {
      out += sse(chat_chunk(f.meta, Delta{}, r, true, nullptr, f.g.include_usage));
    }
  }
  f.toks.clear();
  const std::optional<EndKind> end = f.stream->take(f.toks, kPoll);
  Delta d;
  for (int32_t t : f.toks) r.push(t, d);
  bool final = false;
  if (r.stopped()) {
    inbox.cancel(f.id);
    r.finish(EndKind::Stop, d);
    final = true;
  } else if (end) {
    r.finish(*end, d);
    f.cut = *end == EndKind::Cancelled;
    final = true;
  }
  if (!d.empty()) {
    if (resp)
      out += f.rstream->delta(d, r);
    else if (chat)
      out += sse(chat_chunk(f.meta, d, r, false, nullptr, f.g.include_usage));
    else
      out += sse(completion_chunk(f.meta, d.content, nullptr));
  }
  if (final) {
    f.ended = true;
    if (f.cut) {
      Json err = ApiError(503, "the server shut down before the request finished", "",
                          "server_shutting_down")
                     .body();
      out += resp ? sse_event(Json{{"type", "error"},
                                   {"code", "server_shutting_down"},
                                   {"message", err["error"]["message"]}})
                  : sse(err);
    } else if (resp) {
      out += f.rstream->finish(r);
    } else {
      const char* why = r.finish_reason.c_str();
      out += chat ? sse(chat_chunk(f.meta, Delta{}, r, false, why, f.g.include_usage))
                  : sse(completion_chunk(f.meta, "", why));
      if (f.g.include_usage) out += sse(usage_chunk(f.meta, r, chat));
      out += "data: [DONE]\n\n";
    }
  }
  if (!out.empty() && !sink.write(out.data(), out.size())) {
    if (!f.ended) give_up(f);
    return false;
  }
  if (final) {
    sink.done();
    return true;
  }
  if (out.empty() && peer_gone(f.fd)) {
    give_up(f);
    return false;
  }
  return true;
}

}  // namespace gptoss::serve
