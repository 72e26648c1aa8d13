#include "gateway/server.h"

#include <pthread.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "config/loader.h"
#include "gateway/audit_log.h"
#include "gateway/http_server.h"
#include "gateway/log.h"
#include "gateway/metrics.h"
#include "gateway/pipeline.h"
#include "gateway/snapshot.h"
#include "policies/rate_limiter.h"
#include "upstream/upstream_client.h"

namespace tollgate::gateway {
namespace {

struct Loaded {
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<std::string> errors;
};

Loaded Load(const std::string& path) {
  Loaded out;
  config::LoadResult result = config::LoadConfigFile(path);
  if (!result.ok()) {
    for (const auto& e : result.errors) out.errors.push_back(config::FormatError(e));
    return out;
  }
  std::string error;
  out.snapshot = Snapshot::Build(result.config, &error);
  if (!out.snapshot) out.errors.push_back(error);
  return out;
}

// Settings read once at start; a reload that changes them is applied except for these, which
// need a restart (the reload says so in the log).
std::vector<std::string> RestartOnlyChanges(const config::Config& a, const config::Config& b) {
  std::vector<std::string> out;
  if (a.listen != b.listen) out.push_back("listen");
  if (a.admin_listen != b.admin_listen) out.push_back("admin_listen");
  if (a.threads != b.threads) out.push_back("threads");
  if (a.max_body_bytes != b.max_body_bytes) out.push_back("max_body_bytes");
  if (a.max_header_bytes != b.max_header_bytes) out.push_back("max_header_bytes");
  if (a.redis.has_value() != b.redis.has_value() ||
      (a.redis && (a.redis->url != b.redis->url || a.redis->on_error != b.redis->on_error ||
                   a.redis->timeout_ms != b.redis->timeout_ms))) {
    out.push_back("redis");
  }
  if (a.audit.file != b.audit.file || a.audit.redis_stream != b.audit.redis_stream) {
    out.push_back("audit");
  }
  if (a.client_header_timeout_ms != b.client_header_timeout_ms) {
    out.push_back("client_header_timeout_ms");
  }
  if (a.client_idle_timeout_ms != b.client_idle_timeout_ms) out.push_back("client_idle_timeout_ms");
  if (a.max_connections != b.max_connections) out.push_back("max_connections");
  if (a.max_response_bytes != b.max_response_bytes) out.push_back("max_response_bytes");
  return out;
}

HttpResponse Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = std::move(body);
  return r;
}

class Server {
 public:
  explicit Server(std::string path) : path_(std::move(path)) {}

  int Run() {
    Loaded loaded = Load(path_);
    if (!loaded.snapshot) {
      for (const auto& e : loaded.errors) LogError("config: " + e);
      return 2;
    }
    const config::Config& cfg = loaded.snapshot->config();

    // Signals are taken by sigwait() on this thread only; every thread started from here on
    // inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    signal(SIGPIPE, SIG_IGN);
    // Every caller connection and every upstream connection is an fd: take what the system
    // allows rather than the 1024 a login shell often sets.
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
      files.rlim_cur = files.rlim_max;
      setrlimit(RLIMIT_NOFILE, &files);
    }

    limiter_ = cfg.redis ? policies::MakeRedisLimiter(*cfg.redis) : policies::MakeMemoryLimiter();
    audit_ = std::make_unique<AuditLog>(cfg.audit, cfg.redis);
    metrics_.MarkConfigLoaded();
    PipelineDeps deps;
    deps.limiter = limiter_.get();
    deps.audit = audit_.get();
    deps.metrics = &metrics_;
    deps.upstream_options.max_response_bytes = cfg.max_response_bytes;
    deps.upstream_stats = &upstream_stats_;
    pipeline_ = std::make_unique<Pipeline>(std::move(deps));
    pipeline_->SetSnapshot(loaded.snapshot);

    HttpServerOptions main_options;
    main_options.listen = cfg.listen;
    main_options.threads = cfg.threads;
    main_options.max_header_bytes = cfg.max_header_bytes;
    main_options.max_body_bytes = cfg.max_body_bytes;
    main_options.request_timeout_ms = cfg.client_header_timeout_ms;
    main_options.idle_timeout_ms = cfg.client_idle_timeout_ms;
    main_options.max_connections = cfg.max_connections;
    std::string error;
    main_ = HttpServer::Start(
        main_options, [this](std::shared_ptr<Exchange> e) { pipeline_->Handle(std::move(e)); },
        &error);
    if (!main_) {
      LogError(error);
      return 1;
    }
    if (!cfg.admin_listen.empty()) {
      HttpServerOptions admin_options;
      admin_options.listen = cfg.admin_listen;
      admin_options.threads = 1;
      admin_ = HttpServer::Start(
          admin_options, [this](std::shared_ptr<Exchange> e) { OnAdminRequest(std::move(e)); },
          &error);
      if (!admin_) {
        LogError(error);
        main_->Shutdown();
        return 1;
      }
    }
    LogInfo("tollgate " TOLLGATE_VERSION " listening on " + cfg.listen +
            (cfg.admin_listen.empty() ? "" : ", admin on " + cfg.admin_listen) + ", limiter " +
            limiter_->Describe());

    for (;;) {
      int sig = 0;
      if (sigwait(&signals, &sig) != 0) continue;
      if (sig == SIGHUP) {
        std::string summary;
        Reload(&summary);
        audit_->Reopen();
        continue;
      }
      break;
    }
    return Shutdown();
  }

 private:
  void OnAdminRequest(std::shared_ptr<Exchange> exchange) {
    const HttpRequest& req = exchange->request();
    if (exchange->parse_error_status()) {
      exchange->Respond(ErrorResponse(exchange->parse_error_status(), "bad_request",
                                      exchange->parse_error(), ""));
      return;
    }
    std::string path = req.target.substr(0, req.target.find('?'));
    bool get = req.method == "GET" || req.method == "HEAD";
    if (path == "/healthz" && get) {
      exchange->Respond(Json(200, R"({"status":"ok"})"));
    } else if (path == "/readyz" && get) {
      bool config_ok = pipeline_->snapshot() != nullptr;
      bool limiter_ok = limiter_->Ready();
      bool ready = config_ok && limiter_ok && !pipeline_->draining();
      // No free audit place: new requests are being refused (503 audit_unavailable), so the
      // load balancer should send them elsewhere until the audit sink moves again.
      bool audit_ok = audit_->slots_used() < audit_->capacity();
      if (!audit_ok) ready = false;
      std::string body = std::string("{\"ready\":") + (ready ? "true" : "false") +
                         ",\"config\":" + (config_ok ? "true" : "false") +
                         ",\"limiter\":" + (limiter_ok ? "true" : "false") +
                         ",\"audit\":" + (audit_ok ? "true" : "false") +
                         ",\"draining\":" + (pipeline_->draining() ? "true" : "false") + "}";
      exchange->Respond(Json(ready ? 200 : 503, body));
    } else if (path == "/metrics" && get) {
      MetricsSnapshot m;
      m.in_flight = pipeline_->in_flight();
      m.audit_queue_depth = static_cast<int64_t>(audit_->queue_depth());
      m.audit_written = audit_->written();
      m.audit_stream_errors = audit_->stream_errors();
      m.audit_stream_dropped = audit_->stream_dropped();
      m.audit_file_dropped = audit_->file_dropped();
      m.audit_slots_used = static_cast<int64_t>(audit_->slots_used());
      m.limiter = &limiter_->stats();
      m.limiter_ready = limiter_->Ready();
      m.limiter_backend = limiter_->Describe();
      m.upstream = &upstream_stats_;
      m.upstream_in_flight = static_cast<size_t>(pipeline_->upstream_in_flight());
      m.open_streams = pipeline_->open_streams();
      m.connections_open = main_->connections_open();
      m.connections_refused = main_->connections_refused();
      HttpResponse r;
      r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
      r.body = metrics_.Render(m);
      exchange->Respond(std::move(r));
    } else if (path == "/reload" && req.method == "POST") {
      std::string summary;
      bool ok = Reload(&summary);
      exchange->Respond(Json(ok ? 200 : 400, summary));
    } else if (path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/reload") {
      exchange->Respond(ErrorResponse(405, "method_not_allowed", "method not allowed", ""));
    } else {
      exchange->Respond(ErrorResponse(404, "not_found", "no such admin endpoint", ""));
    }
  }

  // Loads and validates the config; swaps it in only when valid. *summary gets a JSON result.
  bool Reload(std::string* summary) {
    std::lock_guard<std::mutex> lock(reload_mu_);
    Loaded loaded = Load(path_);
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    w.StartObject();
    w.Key("reloaded");
    w.Bool(loaded.snapshot != nullptr);
    if (!loaded.snapshot) {
      metrics_.RecordReload(false);
      LogError("reload failed; the running config stays in force");
      for (const auto& e : loaded.errors) LogError("config: " + e);
      w.Key("errors");
      w.StartArray();
      for (const auto& e : loaded.errors) w.String(e.c_str());
      w.EndArray();
    } else {
      auto old = pipeline_->snapshot();
      auto restart = RestartOnlyChanges(old->config(), loaded.snapshot->config());
      pipeline_->SetSnapshot(loaded.snapshot);
      metrics_.RecordReload(true);
      LogInfo("config reloaded from " + path_);
      w.Key("restart_required");
      w.StartArray();
      for (const auto& r : restart) {
        LogWarn("reload: a change to '" + r + "' takes effect only after a restart");
        w.String(r.c_str());
      }
      w.EndArray();
    }
    w.EndObject();
    *summary = buf.GetString();
    return loaded.snapshot != nullptr;
  }

  int Shutdown() {
    pipeline_->SetDraining();
    auto timeout = std::chrono::milliseconds(pipeline_->snapshot()->config().drain_timeout_ms);
    LogInfo("shutting down: draining " + std::to_string(pipeline_->in_flight()) +
            " in-flight request(s)");
    bool drained = pipeline_->Drain(timeout);
    if (!drained) {
      LogWarn("drain timeout: " + std::to_string(pipeline_->in_flight()) +
              " request(s) still in flight are cut off");
      // Each loop ends its own transfers (503 shutting_down, or a stream cut short), and the
      // answers get a moment to be written before the connections close.
      Pipeline* pipeline = pipeline_.get();
      main_->ForEachLoop([pipeline](loop::Loop& l) { pipeline->EndTransfersOn(l); });
      pipeline_->Drain(std::chrono::milliseconds(1000));
    }
    // Stopping the servers joins their reactor threads, then closes every connection still
    // open: an answer still streaming ends there (its transfer is aborted and audited
    // `draining`) and each loop's per-loop state (its StreamClient, its Redis connection) is
    // destroyed, on this thread. Nothing runs on a loop after this, so the components the loops
    // called into go next, in pipeline order, and the audit log last, flushed.
    main_->Shutdown();
    if (admin_) admin_->Shutdown();
    pipeline_.reset();
    limiter_.reset();
    audit_->Flush();
    audit_.reset();
    LogInfo("stopped");
    return 0;
  }

  std::string path_;
  std::unique_ptr<policies::RateLimiter> limiter_;
  upstream::UpstreamClientStats upstream_stats_;
  std::unique_ptr<AuditLog> audit_;
  Metrics metrics_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<HttpServer> main_;
  std::unique_ptr<HttpServer> admin_;
  std::mutex reload_mu_;
};

}  // namespace

int RunServe(const ServeOptions& options) {
  Server server(options.config_path);
  return server.Run();
}

}  // namespace tollgate::gateway
