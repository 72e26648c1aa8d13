// The admin console's data endpoints (scope "read"): GET /status, /callers, /limits and
// /refusals on the admin listener (admin_api.h routes, authorises and audits them; this file
// builds their answers).
//
// Nothing here writes a key, a key hash, a token or an upstream secret: callers are listed by
// name with their key ids (a config key's id is the first 8 hex characters of its SHA-256, as
// the audit record's key_id), limits by name, refusals as the audit log wrote them.
//
// /limits reads the levels with RateLimiter::Peek (nothing is taken); /callers reads the run-time
// keys from the key store, /refusals the audit stream (XREVRANGE, a bounded scan) when
// audit.redis_stream is set, else the audit log's in-memory ring (AuditLog::RecentRefusals).
//
// Thread-safety: ConfigHistory may be used from any thread. ConsoleData::Serve runs on the admin
// listener's loop and answers on it (inline, or later from a Redis reply); the Json functions
// are pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"
#include "keys/key_record.h"
#include "policies/rate_limiter.h"

namespace tollgate::policies {
class RedisLoopClient;
}
namespace tollgate::keys {
class RunTimeKeys;
}

namespace tollgate::gateway {

class AuditLog;
class HttpServer;
class Pipeline;

using SystemTime = std::chrono::system_clock::time_point;

// SHA-256 (hex) over the config's entry fingerprints (Config::entry_digests): equal for two
// loads of the same document, different when any entry changed.
std::string ConfigSha256(const config::Config& config);

// What this replica loaded and when; the last reload's outcome. Written by the thread that
// (re)loads, read by the admin loop.
class ConfigHistory {
 public:
  struct Reload {
    SystemTime at;
    bool applied = false;
    std::vector<std::string> errors;
  };
  struct View {
    std::string sha256;
    SystemTime loaded_at;
    std::optional<Reload> last_reload;
  };
  // The config in force from `at` on (at start, or after an applied reload).
  void Loaded(const config::Config& config, SystemTime at);
  void Reloaded(Reload reload);
  View Get() const;

 private:
  mutable std::mutex mu_;
  View view_;
};

// What GET /status reports (StatusJson); the replica's counters read when it is asked.
struct StatusView {
  ConfigHistory::View config;
  std::string replica_id;
  SystemTime started_at;
  bool ready = false;
  bool draining = false;
  bool redis_configured = false;
  std::string limiter_backend;  // RateLimiter::Describe()
  bool limiter_ready = false;
  bool limiter_fallback = false;  // the breaker is open: decisions are made locally
  uint64_t limiter_redis_errors = 0;
  uint64_t limiter_fallbacks = 0;
  std::optional<bool> keys_subscribed;  // run-time keys' event subscription; nullopt = no keys
  int64_t in_flight = 0;
  int64_t open_streams = 0;
  int64_t connections = 0;
  int64_t audit_queue_depth = 0;
  uint64_t audit_slots_used = 0;
  uint64_t audit_capacity = 0;
  uint64_t audit_written = 0;
  uint64_t audit_file_dropped = 0;
  uint64_t audit_stream_errors = 0;
  uint64_t audit_stream_dropped = 0;
  std::vector<std::pair<std::string, bool>> upstreams;  // name, in a 429 cooldown
};
std::string StatusJson(const StatusView& status);

// GET /callers: every caller of `config` with its config keys and, when `run_time` is set, its
// run-time keys (records of callers the config no longer has are left out); `keys_error` adds
// "keys_error": "redis_unavailable" (the run-time keys could not be read).
std::string CallersJson(const config::Config& config, const std::vector<keys::KeyRecord>* run_time,
                        bool keys_error, SystemTime now);

// One caller's limits for GET /limits: the buckets whoami shows, the upstream each belongs to
// ("" = the caller's own), and their levels (Peek's, same order).
struct CallerLimits {
  std::string caller;
  std::vector<policies::BucketSpec> buckets;
  std::vector<std::string> upstreams;
  std::vector<policies::BucketLevel> levels;
};
// {"caller", "items": [...]} for one caller (`one`), else {"callers": [{"caller", "items"}]};
// "fallback": true when the levels are this replica's local ones (Redis failed).
std::string LimitsJson(const std::vector<CallerLimits>& callers, bool one, bool fallback,
                       SystemTime now);

// GET /refusals: `lines` are audit records as the log wrote them (JSON objects), newest first.
// `stream_error` ("" = none): why the audit stream was not read (the lines are then this
// replica's own, source "memory").
std::string RefusalsJson(std::string_view source, const std::vector<std::string>& lines,
                         std::string_view stream_error = "");
// True for an audit line whose "status" is 401, 403 or 429.
bool IsRefusalLine(std::string_view line);
// The `limit` of ?limit=N (1..1000, default 50); "" or the error message.
std::string ParseRefusalsQuery(std::string_view query, size_t* limit);

struct ConsoleDeps {
  Pipeline* pipeline = nullptr;
  policies::RateLimiter* limiter = nullptr;
  AuditLog* audit = nullptr;
  const HttpServer* main = nullptr;
  keys::RunTimeKeys* keys = nullptr;                 // null: no redis section
  policies::RedisLoopClient* audit_redis = nullptr;  // null: no audit stream to read
  std::string audit_stream;                          // audit.redis_stream
  const ConfigHistory* history = nullptr;
  std::string replica_id;
  SystemTime started_at;
};

// An endpoint's answer: 200 with `body`, or an error envelope (status, reason, message).
struct ConsoleAnswer {
  int status = 200;
  std::string body;
  std::string reason;
  std::string message;
};

class ConsoleData {
 public:
  explicit ConsoleData(ConsoleDeps deps) : deps_(std::move(deps)) {}

  // Answers `action` ("console.status", "console.callers", "console.limits",
  // "console.refusals") for the raw `query`; `done` runs once, on this loop.
  void Serve(std::string_view action, std::string_view query,
             std::function<void(ConsoleAnswer)> done);

 private:
  void Status(std::function<void(ConsoleAnswer)> done);
  void Callers(std::function<void(ConsoleAnswer)> done);
  void Limits(std::string_view query, std::function<void(ConsoleAnswer)> done);
  void Refusals(std::string_view query, std::function<void(ConsoleAnswer)> done);

  ConsoleDeps deps_;
};

}  // namespace tollgate::gateway
