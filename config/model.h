// The typed, immutable config model: what config/loader.cpp builds from the JSON document.
//
// A Config is built once per load and never mutated afterwards; the gateway shares it as
// std::shared_ptr<const Config>, so any number of threads may read it without synchronization.
// Secrets (upstream tokens, the Redis password) are resolved at load time from the environment
// or from files and live only in UpstreamAuth / RedisConfig; nothing else in the model holds one.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tollgate::config {

// "N/s", "N/min", "N/h", "N/day": `tokens` tokens every `period_seconds` seconds.
struct Rate {
  uint64_t tokens = 0;
  uint64_t period_seconds = 1;
};

enum class LimitScope { kShared, kCaller };

enum class QuotaPeriod { kDay, kWeek, kMonth };

// A quota on fixed UTC calendar windows (issue 12): `amount` per day/week/month, the window
// starting at `reset_hour_utc` (weeks on Monday, months on the 1st).
struct Quota {
  uint64_t amount = 0;
  QuotaPeriod period = QuotaPeriod::kMonth;
  int reset_hour_utc = 0;         // 0..23
  std::optional<double> warn_at;  // 0 < warn_at < 1: Tollgate-Quota-Warning past it
};

// A token bucket: `burst` tokens at most, refilled at `rate`; or, with `quota`, a calendar
// quota (then `rate` and `burst` are unused).
struct Limit {
  std::string name;
  Rate rate;
  uint64_t burst = 0;  // defaults to rate.tokens
  LimitScope scope = LimitScope::kShared;
  bool shadow = false;  // evaluated and audited (`would_limit`), never rejects
  std::optional<Quota> quota;
  // Issue 14: a token bucket may make a request wait up to wait_ms for its tokens instead of
  // refusing it (0: refuse); at most max_waiting requests of one caller wait on one replica.
  uint32_t wait_ms = 0;
  uint32_t max_waiting = 100;
};

// One body rule (issue 12): what a rule does to one field of a JSON request body, keyed by JSON
// pointer. Operators apply in this order: require, forbid, set, default, enum, min/max, append.
struct BodyRule {
  std::string pointer;  // RFC 6901, e.g. "/max_acu_limit", "/tags"
  std::optional<double> max;
  std::optional<double> min;
  bool clamp = false;                       // on_exceed: "clamp" (else "reject": 403)
  std::optional<std::string> default_json;  // a JSON value, as text
  std::vector<std::string> enum_json;       // JSON values, as text; empty = any
  bool forbid = false;
  bool require = false;
  // `set`: a JSON value as text, or a template: "{caller}" or "caller.<attribute>".
  std::optional<std::string> set;
  std::vector<std::string> append;  // strings, each may hold "{caller}"
};

enum class AuthType { kBearer, kHeader, kDevoHmac };

// Every upstream secret value is replaced in answers (upstream/secret_scan.h): a shorter one
// would match ordinary text, so the config refuses it.
inline constexpr size_t kMinUpstreamSecretLength = 8;

// How the gateway authenticates to an upstream. `secret` (and `key` for devo_hmac) hold the
// resolved secret values; they must never be logged, audited or returned.
struct UpstreamAuth {
  AuthType type = AuthType::kBearer;
  std::string header;         // kHeader: the header name, e.g. "standAloneToken"
  std::string secret;         // kBearer/kHeader: the token; kDevoHmac: the signing secret
  std::string key;            // kDevoHmac: the API key sent as x-logtrust-apikey
  std::string secret_source;  // "env:NAME" or "file:/path", for messages (never the value)
};

struct Upstream {
  std::string name;
  std::string base_url;  // no trailing slash
  UpstreamAuth auth;
  int timeout_ms = 30000;  // to the response headers
  int connect_timeout_ms = 3000;
  int read_idle_timeout_ms = 60000;  // longest silence between body bytes
  int max_duration_ms = 0;           // the whole answer; 0 = unbounded
  std::vector<Limit> limits;         // every call to this upstream
  // Caller headers forwarded on top of the built-in allowlist (upstream/headers.h): lower case,
  // sorted and unique, so a request's fields are looked up in O(log n).
  std::vector<std::string> forward_headers;
  // The gateway's own client-address headers, set from the peer address it saw (never the
  // caller's values): `client_ip_headers` ["x-forwarded-for", "forwarded"]; default none.
  bool send_x_forwarded_for = false;
  bool send_forwarded = false;
};

enum class Effect { kAllow, kDeny };

struct Rule {
  std::string role;     // the role this rule belongs to
  size_t index = 0;     // position in the role's rule list
  std::string pointer;  // JSON pointer of the rule in the document, e.g. /roles/x/rules/0
  std::string upstream;
  // Upper case. Empty: an allow rule allows GET, HEAD, POST, PUT, PATCH and DELETE (OPTIONS only
  // where listed); a deny rule denies every method.
  std::vector<std::string> methods;
  std::string path;  // the template text, e.g. /v3beta1/organizations/{org_id}/sessions
  Effect effect = Effect::kAllow;
  std::map<std::string, std::string>
      where;  // template param -> caller attribute name (no "caller."); "owner": the value
              // must be recorded as owned by the caller (or its owner_group), issue 12
  uint64_t cost = 1;
  std::string cost_pointer;    // "cost": "/max_acu_limit": read from the body (after its rules)
  std::vector<BodyRule> body;  // in the order written
  std::string record_owner;    // JSON pointer into a 2xx answer: the value is owned by the caller
  std::string owner_group;     // caller attribute: callers sharing a value share ownership
  std::map<std::string, std::string> query;  // forced query parameters ("{caller}" allowed)
  std::vector<Limit> limits;
  std::vector<std::string> redact;  // JSON pointers, `*` = every element / member
  // A body on GET, HEAD, DELETE or OPTIONS is forwarded only where this is set (else 400).
  bool allow_body = false;
};

struct Role {
  std::string name;
  std::vector<Rule> rules;
};

struct Caller {
  std::string name;
  std::string description;              // for people (the console shows it); "" = none
  std::vector<std::string> key_sha256;  // lower-case hex, 64 chars each
  std::vector<std::string> roles;
  std::map<std::string, std::vector<std::string>> attributes;
  std::vector<Limit> limits;
  std::optional<std::chrono::system_clock::time_point> expires;
  bool disabled = false;
};

enum class RedisOnError { kLocal, kDeny };

// A host:port as written in the config (a name is resolved once, off the loops).
struct RedisEndpoint {
  std::string host;
  int port = 0;
};

// `redis.sentinel`: the primary is whatever these sentinels say `master` is (issue 14).
struct RedisSentinelConfig {
  std::vector<RedisEndpoint> addresses;  // the sentinels, tried in order
  std::string master;                    // the monitored master's name
  std::string username;                  // the sentinels' ACL user (optional)
  std::string password;                  // the sentinels' own, from password_env; secret
};

// `redis.cluster`: seed nodes of a Redis Cluster; the slot map is read from them (CLUSTER SLOTS).
struct RedisClusterConfig {
  std::vector<RedisEndpoint> addresses;
};

struct RedisConfig {
  // As written, for messages (holds no password: that comes from password_env). With sentinel
  // or cluster: "sentinel:<master>@h:p,h:p" / "cluster:h:p,h:p", built by the loader.
  std::string url;
  // The one server (url mode). With sentinel or cluster: the first address (for messages only;
  // where commands go is policies::RedisTopology's answer).
  std::string host = "127.0.0.1";
  int port = 6379;
  int db = 0;  // always 0 with cluster (no SELECT there)
  std::optional<RedisSentinelConfig> sentinel;
  std::optional<RedisClusterConfig> cluster;
  std::string username;
  std::string password;  // resolved from password_env / password_file; secret
  int timeout_ms = 50;
  RedisOnError on_error = RedisOnError::kLocal;
  std::string key_prefix = "tollgate:";
};

struct AuditConfig {
  std::string file = "-";    // "-" = stdout, "" = no file sink
  std::string redis_stream;  // empty = no stream sink
  uint64_t stream_maxlen = 1000000;
  size_t queue_capacity = 65536;  // records held before writers feel back-pressure
};

// An admin token (the admin listener's `Authorization: Bearer <token>`): only its SHA-256 is in
// the config. Scopes: "reload" (POST /reload), "keys", "usage", "read" (endpoints to come).
struct AdminToken {
  std::string name;                 // in audit records as `admin`
  std::string sha256;               // lower-case hex, 64 chars
  std::vector<std::string> scopes;  // as written, without repeats
  bool Allows(const std::string& scope) const {
    for (const auto& s : scopes) {
      if (s == scope) return true;
    }
    return false;
  }
};

struct AdminConfig {
  std::vector<AdminToken> tokens;  // none: the admin endpoints that act answer 403
};

// Run-time caller keys (`"keys"`; they need the `redis` section: without it the key endpoints
// answer 409 and only config keys exist). See keys/key_cache.h for what each setting bounds.
struct KeysConfig {
  int cache_ttl_seconds = 300;    // a verified key is trusted this long (Redis down: then refused)
  int negative_ttl_seconds = 10;  // an id Redis did not know is not looked up again this long
  double lookups_per_second = 100;  // lookups of ids this replica knows nothing of, per second
  double lookup_burst = 200;
  // The longest ttl_seconds POST /keys accepts (and the ttl of a key asked for without one);
  // 0 = no bound. Read from the running config on each call (the others need a restart).
  int max_ttl_seconds = 0;
};

// `"metrics"` (issue 13): per-caller Prometheus series. Off by default: each caller is a label
// value, so every caller multiplies the series a scraper stores (max_callers bounds them: later
// callers are counted as caller="other"). Restart-only.
struct MetricsConfig {
  bool per_caller = false;
  int max_callers = 200;
};

// Usage counters (issue 13, `"usage"`): flushed to Redis (or kept in memory without a `redis`
// section) at least every flush_interval_seconds; each day's counters kept retention_days.
struct UsageConfig {
  int flush_interval_seconds = 5;
  int retention_days = 400;
};

struct Config {
  std::string source_path;  // the file it was loaded from ("" when loaded from a string)
  std::string listen = "127.0.0.1:8080";
  std::string admin_listen;  // empty = no admin listener
  int threads = 2;
  uint64_t max_body_bytes = 1048576;
  uint64_t max_header_bytes = 16384;
  uint64_t max_response_bytes = uint64_t{64} << 20;  // larger upstream bodies give 502
  int drain_timeout_ms = 10000;  // graceful shutdown: how long in-flight calls may finish
  // A client that has not sent a whole request head this long after starting one gets 408; a
  // keep-alive connection idle this long is closed (slow or abandoned clients cannot pin
  // connections forever).
  int client_header_timeout_ms = 30000;
  int client_idle_timeout_ms = 120000;
  size_t max_connections = 10000;  // open caller connections; more are closed on arrival
  int upstream_threads = 2;  // libcurl multi event-loop threads (2 measured faster on 2 cores)
  std::optional<RedisConfig> redis;
  AuditConfig audit;
  std::map<std::string, Upstream> upstreams;
  std::map<std::string, Role> roles;
  std::map<std::string, Caller> callers;
  AdminConfig admin;
  KeysConfig keys;
  int ownership_ttl_days = 90;  // how long `record_owner` records live in Redis (issue 12)
  MetricsConfig metrics;
  UsageConfig usage;
  // A fingerprint (SHA-256 of its JSON text) of each top-level entry of the document: "listen",
  // "redis", each "upstreams/<name>", "roles/<name>", "callers/<name>", "admin/tokens/<name>".
  // A reload compares them to say which entries it changed, never their values.
  std::map<std::string, std::string> entry_digests;
};

}  // namespace tollgate::config
