#include "gateway/server.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "config/loader.h"
#include "config/slot_tags.h"
#include "gateway/admin_api.h"
#include "gateway/admin_console_data.h"
#include "gateway/audit_log.h"
#include "gateway/http_server.h"
#include "gateway/log.h"
#include "gateway/metrics.h"
#include "gateway/pipeline.h"
#include "gateway/snapshot.h"
#include "keys/run_time_keys.h"
#include "policies/ownership.h"
#include "policies/policy_warnings.h"
#include "policies/rate_limiter.h"
#include "policies/redis_loop_client.h"
#include "policies/redis_topology.h"
#include "upstream/upstream_client.h"
#include "usage/usage_service.h"

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
  if (!out.snapshot) {
    out.errors.push_back(error);
    return out;
  }
  // What check-config warns of, at start and on every reload (the config still loads).
  for (const auto& warning : policies::FindNarrowDenies(*result.config)) {
    LogWarn("config: " + warning.message);
  }
  return out;
}

// Whether two `redis` sections differ in anything the clients read once at start: where (url,
// sentinel, cluster, which the url names), as whom (credentials, compared, never printed), how
// (timeout, on_error) and under which key prefix.
bool RedisChanged(const std::optional<config::RedisConfig>& a,
                  const std::optional<config::RedisConfig>& b) {
  if (a.has_value() != b.has_value()) return true;
  if (!a) return false;
  auto sentinel_user = [](const config::RedisConfig& r) {
    return r.sentinel ? std::make_pair(r.sentinel->username, r.sentinel->password)
                      : std::make_pair(std::string(), std::string());
  };
  return a->url != b->url || a->db != b->db || a->username != b->username ||
         a->password != b->password || sentinel_user(*a) != sentinel_user(*b) ||
         a->on_error != b->on_error || a->timeout_ms != b->timeout_ms ||
         a->key_prefix != b->key_prefix;
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
  if (RedisChanged(a.redis, b.redis)) out.push_back("redis");
  if (a.audit.file != b.audit.file || a.audit.redis_stream != b.audit.redis_stream) {
    out.push_back("audit");
  }
  if (a.client_header_timeout_ms != b.client_header_timeout_ms) {
    out.push_back("client_header_timeout_ms");
  }
  if (a.client_idle_timeout_ms != b.client_idle_timeout_ms) out.push_back("client_idle_timeout_ms");
  if (a.max_connections != b.max_connections) out.push_back("max_connections");
  if (a.max_response_bytes != b.max_response_bytes) out.push_back("max_response_bytes");
  if (a.ownership_ttl_days != b.ownership_ttl_days) out.push_back("ownership_ttl_days");
  if (a.metrics.per_caller != b.metrics.per_caller ||
      a.metrics.max_callers != b.metrics.max_callers) {
    out.push_back("metrics");  // per-caller series: configured once, at start
  }
  if (a.usage.flush_interval_seconds != b.usage.flush_interval_seconds ||
      a.usage.retention_days != b.usage.retention_days) {
    out.push_back("usage");
  }
  const config::KeysConfig& ka = a.keys;
  const config::KeysConfig& kb = b.keys;
  if (ka.cache_ttl_seconds != kb.cache_ttl_seconds ||
      ka.negative_ttl_seconds != kb.negative_ttl_seconds ||
      ka.lookups_per_second != kb.lookups_per_second || ka.lookup_burst != kb.lookup_burst) {
    out.push_back("keys");
  }
  return out;
}

// In a Redis Cluster an upstream's limiting state lives under its group's hash tag
// (config/slot_tags.h): a reload that moves an upstream to another group starts its buckets,
// quotas and cooldown afresh under the new tag. Said in the log, naming what moved.
void WarnOfRegroupedSlots(const config::Config& before, const config::Config& after) {
  if (!before.redis || !before.redis->cluster || !after.redis || !after.redis->cluster) return;
  const config::SlotTags old_tags = config::ComputeSlotTags(before);
  const config::SlotTags new_tags = config::ComputeSlotTags(after);
  for (const auto& [upstream, tag] : new_tags.of_upstream) {
    auto was = old_tags.of_upstream.find(upstream);
    if (was == old_tags.of_upstream.end() || was->second == tag) continue;
    LogWarn("reload: upstream '" + upstream + "' moved from Redis Cluster slot group {" +
            was->second + "} to {" + tag +
            "}: its buckets, quotas and cooldown start afresh under the new hash tag");
  }
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

    // One per redis section, shared by every client built from it; kept here for /metrics.
    if (cfg.redis) redis_topology_ = policies::RedisTopology::For(*cfg.redis);
    limiter_ = cfg.redis ? policies::MakeRedisLimiter(*cfg.redis) : policies::MakeMemoryLimiter();
    audit_ = std::make_unique<AuditLog>(cfg.audit, cfg.redis);
    // Run-time keys live in Redis: without it, only the config's keys exist.
    if (cfg.redis) keys_ = std::make_unique<keys::RunTimeKeys>(*cfg.redis, cfg.keys);
    ownership_ = policies::MakeOwnershipStore(cfg);
    usage_ = std::make_unique<usage::UsageService>(cfg.usage, cfg.redis);
    metrics_.MarkConfigLoaded();
    metrics_.callers().Configure(cfg.metrics);
    history_.Loaded(cfg, started_at_);
    PipelineDeps deps;
    deps.limiter = limiter_.get();
    deps.audit = audit_.get();
    deps.metrics = &metrics_;
    deps.upstream_options.max_response_bytes = cfg.max_response_bytes;
    deps.upstream_stats = &upstream_stats_;
    deps.keys = keys_.get();
    deps.ownership = ownership_.get();
    deps.usage = &usage_->recorder();
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
      AdminApiDeps admin_deps;
      admin_deps.pipeline = pipeline_.get();
      admin_deps.limiter = limiter_.get();
      admin_deps.audit = audit_.get();
      admin_deps.metrics = &metrics_;
      admin_deps.upstream_stats = &upstream_stats_;
      admin_deps.main = main_.get();
      admin_deps.reload = [this] { return Reload(); };
      admin_deps.keys = keys_.get();
      admin_deps.console = StartConsole(cfg);
      admin_deps.usage = usage_.get();
      admin_deps.redis_topology = redis_topology_.get();
      admin_api_ = std::make_unique<AdminApi>(std::move(admin_deps));
      HttpServerOptions admin_options;
      admin_options.listen = cfg.admin_listen;
      admin_options.threads = 1;
      AdminApi* api = admin_api_.get();
      admin_ = HttpServer::Start(
          admin_options, [api](std::shared_ptr<Exchange> e) { api->Handle(e); }, &error);
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
        ReloadOnSignal();
        audit_->Reopen();
        continue;
      }
      break;
    }
    return Shutdown();
  }

 private:
  // The console's data endpoints (admin_console_data.h); the audit stream, when there is one, is
  // read through a connection of the admin loop's own (a listing may take a while: the keys'
  // admin deadline).
  ConsoleData* StartConsole(const config::Config& cfg) {
    ConsoleDeps deps;
    deps.pipeline = pipeline_.get();
    deps.limiter = limiter_.get();
    deps.audit = audit_.get();
    deps.main = main_.get();
    deps.keys = keys_.get();
    if (cfg.redis && !cfg.audit.redis_stream.empty()) {
      config::RedisConfig redis = *cfg.redis;
      redis.timeout_ms = std::max(redis.timeout_ms, keys::RunTimeKeys::kAdminTimeoutMs);
      audit_redis_ = std::make_unique<policies::RedisLoopClient>(redis);
      deps.audit_redis = audit_redis_.get();
      deps.audit_stream = cfg.audit.redis_stream;
    }
    deps.history = &history_;
    char host[256] = {};
    deps.replica_id = gethostname(host, sizeof(host) - 1) == 0 ? host : "";
    deps.replica_id += (deps.replica_id.empty() ? "pid " : "/") + std::to_string(getpid());
    deps.started_at = started_at_;
    console_ = std::make_unique<ConsoleData>(std::move(deps));
    return console_.get();
  }

  // Loads and validates the config; swaps it in only when valid. What it did is kept for
  // GET /status.
  ReloadOutcome Reload() {
    std::lock_guard<std::mutex> lock(reload_mu_);
    ReloadOutcome outcome = ReloadLocked();
    const auto at = std::chrono::system_clock::now();
    if (outcome.applied) history_.Loaded(pipeline_->snapshot()->config(), at);
    history_.Reloaded({at, outcome.applied, outcome.errors});
    return outcome;
  }

  ReloadOutcome ReloadLocked() {
    ReloadOutcome outcome;
    Loaded loaded = Load(path_);
    if (!loaded.snapshot) {
      metrics_.RecordReload(false);
      LogError("reload failed; the running config stays in force");
      for (const auto& e : loaded.errors) LogError("config: " + e);
      outcome.errors = std::move(loaded.errors);
      return outcome;
    }
    auto old = pipeline_->snapshot();
    outcome.restart_required = RestartOnlyChanges(old->config(), loaded.snapshot->config());
    outcome.changes = config::ChangedEntries(old->config(), loaded.snapshot->config());
    if (RedisChanged(old->config().redis, loaded.snapshot->config().redis)) {
      // The clients stay on the running Redis until a restart, so the snapshot must name its
      // keys as the running mode does (a cluster's hash tags, or none).
      auto effective = std::make_shared<config::Config>(loaded.snapshot->config());
      effective->redis = old->config().redis;
      std::string error;
      if (auto rebuilt = Snapshot::Build(effective, &error)) loaded.snapshot = std::move(rebuilt);
    }
    WarnOfRegroupedSlots(old->config(), loaded.snapshot->config());
    pipeline_->SetSnapshot(loaded.snapshot);
    outcome.applied = true;
    metrics_.RecordReload(true);
    LogInfo("config reloaded from " + path_);
    for (const auto& r : outcome.restart_required) {
      LogWarn("reload: a change to '" + r + "' takes effect only after a restart");
    }
    return outcome;
  }

  // SIGHUP: a reload on record like POST /reload's, by the admin "SIGHUP". With no free audit
  // place (a stalled sink) the config is not reloaded: no admin action goes unaudited.
  void ReloadOnSignal() {
    const auto start = std::chrono::steady_clock::now();
    AuditLog::Slot slot = audit_->Reserve();
    if (!slot) {
      metrics_.RecordAuditRefused();
      LogError(
          "SIGHUP: not reloading: the audit log cannot take the reload's record (its sink "
          "is stalled); the running config stays in force");
      return;
    }
    ReloadOutcome outcome = Reload();
    audit_->Submit(std::move(slot), ReloadAuditRecord(outcome, "SIGHUP", start));
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
    // Every request is done (the loops are stopped): the last counts are flushed now.
    usage_->Stop();
    usage_.reset();
    keys_.reset();
    ownership_.reset();
    limiter_.reset();
    audit_->Flush();
    audit_.reset();
    LogInfo("stopped");
    return 0;
  }

  std::string path_;
  std::shared_ptr<policies::RedisTopology> redis_topology_;
  std::unique_ptr<policies::RateLimiter> limiter_;
  std::unique_ptr<keys::RunTimeKeys> keys_;
  std::unique_ptr<policies::OwnershipStore> ownership_;
  std::unique_ptr<usage::UsageService> usage_;
  upstream::UpstreamClientStats upstream_stats_;
  std::unique_ptr<AuditLog> audit_;
  Metrics metrics_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<HttpServer> main_;
  const std::chrono::system_clock::time_point started_at_ = std::chrono::system_clock::now();
  ConfigHistory history_;
  std::unique_ptr<policies::RedisLoopClient> audit_redis_;  // used on the admin loop only
  std::unique_ptr<ConsoleData> console_;
  std::unique_ptr<AdminApi> admin_api_;
  std::unique_ptr<HttpServer> admin_;
  std::mutex reload_mu_;
};

}  // namespace

int RunServe(const ServeOptions& options) {
  Server server(options.config_path);
  return server.Run();
}

}  // namespace tollgate::gateway
