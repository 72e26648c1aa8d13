#include "config/model_builder.h"

#include <algorithm>
#include <string_view>

#include "config/schema_check.h"
#include "config/secrets.h"
#include "config/syntax.h"
#include "upstream/header_names.h"

namespace tollgate::config {
namespace {

using rapidjson::Value;
using syntax::JoinPointer;

std::string Quoted(const std::string& text) { return "\"" + text + "\""; }

// "h:p,h:p": how a sentinel or cluster section is named in RedisConfig::url (for messages).
std::string JoinRedisAddresses(const std::vector<RedisEndpoint>& addresses) {
  std::string joined;
  for (const RedisEndpoint& address : addresses) {
    if (!joined.empty()) joined += ",";
    joined += address.host + ":" + std::to_string(address.port);
  }
  return joined;
}

std::string StringOr(const Value& object, const char* key, const std::string& fallback) {
  auto it = object.FindMember(key);
  return it == object.MemberEnd() ? fallback : it->value.GetString();
}

int IntOr(const Value& object, const char* key, int fallback) {
  auto it = object.FindMember(key);
  return it == object.MemberEnd() ? fallback : it->value.GetInt();
}

uint64_t Uint64Or(const Value& object, const char* key, uint64_t fallback) {
  auto it = object.FindMember(key);
  return it == object.MemberEnd() ? fallback : it->value.GetUint64();
}

bool BoolOr(const Value& object, const char* key, bool fallback) {
  auto it = object.FindMember(key);
  return it == object.MemberEnd() ? fallback : it->value.GetBool();
}

// The `keys` section (types and ranges were checked by the schema).
void BuildKeys(const Value& keys, KeysConfig* result, std::vector<ConfigError>* errors) {
  result->cache_ttl_seconds = IntOr(keys, "cache_ttl_seconds", result->cache_ttl_seconds);
  result->negative_ttl_seconds = IntOr(keys, "negative_ttl_seconds", result->negative_ttl_seconds);
  result->max_ttl_seconds = IntOr(keys, "max_ttl_seconds", result->max_ttl_seconds);
  if (auto it = keys.FindMember("lookups_per_second"); it != keys.MemberEnd()) {
    result->lookups_per_second = it->value.GetDouble();
    // The schema says >= 0 (draft 4 cannot word "> 0" well): no refill would refuse every key
    // not yet cached, once the burst is spent, until a restart.
    if (!(result->lookups_per_second > 0)) {
      errors->push_back({"/keys/lookups_per_second",
                         "must be greater than 0 (lookups of keys this replica has not cached, "
                         "per second)"});
    }
  }
  if (auto it = keys.FindMember("lookup_burst"); it != keys.MemberEnd()) {
    result->lookup_burst = it->value.GetDouble();
  }
}

bool SameSettings(const Limit& a, const Limit& b) {
  if (a.quota.has_value() != b.quota.has_value()) return false;
  if (a.quota && (a.quota->amount != b.quota->amount || a.quota->period != b.quota->period ||
                  a.quota->reset_hour_utc != b.quota->reset_hour_utc ||
                  a.quota->warn_at != b.quota->warn_at)) {
    return false;
  }
  return a.rate.tokens == b.rate.tokens && a.rate.period_seconds == b.rate.period_seconds &&
         a.burst == b.burst && a.scope == b.scope && a.shadow == b.shadow &&
         a.wait_ms == b.wait_ms && a.max_waiting == b.max_waiting;
}

LimitScope ScopeOf(const Value& value, LimitScope default_scope) {
  std::string scope = StringOr(value, "scope", "");
  return scope.empty() ? default_scope
                       : (scope == "caller" ? LimitScope::kCaller : LimitScope::kShared);
}

// "N/day", "N/week" or "N/month", N a positive integer below 2^53 (exact in Redis's Lua).
std::optional<Quota> ParseQuota(const std::string& text) {
  const size_t slash = text.find('/');
  if (slash == std::string::npos || slash == 0 || slash > 16) return std::nullopt;
  uint64_t amount = 0;
  for (size_t i = 0; i < slash; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    amount = amount * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  if (amount == 0 || amount >= (uint64_t{1} << 53)) return std::nullopt;
  Quota quota;
  quota.amount = amount;
  const std::string period = text.substr(slash + 1);
  if (period == "day") {
    quota.period = QuotaPeriod::kDay;
  } else if (period == "week") {
    quota.period = QuotaPeriod::kWeek;
  } else if (period == "month") {
    quota.period = QuotaPeriod::kMonth;
  } else {
    return std::nullopt;
  }
  return quota;
}

}  // namespace

bool ModelBuilder::WasRemoved(const std::string& pointer) const {
  return config::WasRemoved(removed_, pointer);
}

Config ModelBuilder::Build(const Value& root) {
  Config config;
  BuildServer(root, &config);
  if (root.HasMember("redis")) BuildRedis(root["redis"], &config);
  if (root.HasMember("audit")) BuildAudit(root["audit"], &config);
  if (!config.redis && !config.audit.redis_stream.empty()) {
    Error("/audit/redis_stream", "needs a \"redis\" section to write the stream to");
  }

  if (root.HasMember("keys")) {
    BuildKeys(root["keys"], &config.keys, errors_);
    // Like the audit stream: settings for something that cannot run are a mistake to point out.
    if (!config.redis && !WasRemoved("/redis")) {
      Error("/keys",
            "run-time keys live in Redis: they need a \"redis\" section (without one, only the "
            "callers' key_sha256 keys exist)");
    }
  }
  if (root.HasMember("admin")) BuildAdmin(root["admin"], &config);
  config.ownership_ttl_days = IntOr(root, "ownership_ttl_days", config.ownership_ttl_days);
  if (auto it = root.FindMember("metrics"); it != root.MemberEnd()) {  // issue 13
    config.metrics.per_caller = BoolOr(it->value, "per_caller", config.metrics.per_caller);
    config.metrics.max_callers = IntOr(it->value, "max_callers", config.metrics.max_callers);
  }
  if (auto usage = root.FindMember("usage"); usage != root.MemberEnd()) {
    UsageConfig& u = config.usage;
    u.flush_interval_seconds =
        IntOr(usage->value, "flush_interval_seconds", u.flush_interval_seconds);
    u.retention_days = IntOr(usage->value, "retention_days", u.retention_days);
  }
  config.entry_digests = DigestEntries(root);

  auto upstreams = root.FindMember("upstreams");
  if (upstreams != root.MemberEnd()) {
    for (const auto& member : upstreams->value.GetObject()) {
      std::string name = member.name.GetString();
      std::string pointer = JoinPointer("/upstreams", name);
      if (!syntax::IsValidName(name)) {
        Error(pointer,
              "upstream name must hold only letters, digits, '.', '_' and '-', and start with a "
              "letter or digit (it is the first path segment callers use)");
      }
      config.upstreams[name] = BuildUpstream(name, member.value, pointer);
    }
  }
  if (config.upstreams.empty() && !WasRemoved("/upstreams")) {
    Error(upstreams == root.MemberEnd() ? "" : "/upstreams",
          "needs at least one upstream in \"upstreams\"");
  }

  auto roles = root.FindMember("roles");
  if (roles != root.MemberEnd()) {
    for (const auto& member : roles->value.GetObject()) {
      std::string name = member.name.GetString();
      config.roles[name] = BuildRole(name, member.value, JoinPointer("/roles", name), config);
    }
  }
  auto callers = root.FindMember("callers");
  if (callers != root.MemberEnd()) {
    for (const auto& member : callers->value.GetObject()) {
      std::string name = member.name.GetString();
      config.callers[name] = BuildCaller(name, member.value, JoinPointer("/callers", name), config);
    }
  }
  return config;
}

void ModelBuilder::BuildServer(const Value& root, Config* config) {
  config->listen = StringOr(root, "listen", config->listen);
  if (!syntax::IsHostPort(config->listen)) {
    Error("/listen", "must be host:port, e.g. 127.0.0.1:8080");
  }
  config->admin_listen = StringOr(root, "admin_listen", config->admin_listen);
  if (!config->admin_listen.empty()) {
    if (!syntax::IsHostPort(config->admin_listen)) {
      Error("/admin_listen", "must be host:port, e.g. 127.0.0.1:9090 (or \"\" for none)");
    } else if (config->admin_listen == config->listen) {
      Error("/admin_listen", "must differ from \"listen\"");
    }
  }
  config->threads = IntOr(root, "threads", config->threads);
  config->max_body_bytes = Uint64Or(root, "max_body_bytes", config->max_body_bytes);
  config->max_response_bytes = Uint64Or(root, "max_response_bytes", config->max_response_bytes);
  config->max_header_bytes = Uint64Or(root, "max_header_bytes", config->max_header_bytes);
  config->drain_timeout_ms = IntOr(root, "drain_timeout_ms", config->drain_timeout_ms);
  config->client_header_timeout_ms =
      IntOr(root, "client_header_timeout_ms", config->client_header_timeout_ms);
  config->client_idle_timeout_ms =
      IntOr(root, "client_idle_timeout_ms", config->client_idle_timeout_ms);
  config->upstream_threads = IntOr(root, "upstream_threads", config->upstream_threads);
  config->max_connections = static_cast<size_t>(
      Uint64Or(root, "max_connections", static_cast<uint64_t>(config->max_connections)));
  if (root.HasMember("tls")) {
    // Pistache 0.0.5 does the TLS handshake on its one accept thread with no timeout, so a client
    // that connects and never speaks stalls every new connection: the listener's TLS was dropped
    // (0.2.0) rather than offered with that hole. It can come back with a non-blocking handshake.
    Error("/tls",
          "TLS on the listener is not supported: terminate TLS in front of tollgate (a load "
          "balancer, an ingress or stunnel) and keep \"listen\" on loopback or a private network");
  }
}

// "host:port" entries of a sentinel or cluster address list (schema: an array of strings).
std::vector<RedisEndpoint> ModelBuilder::BuildRedisAddresses(const Value& list,
                                                             const std::string& pointer) {
  std::vector<RedisEndpoint> endpoints;
  for (rapidjson::SizeType i = 0; i < list.Size(); ++i) {
    const std::string text = list[i].GetString();
    const size_t colon = text.rfind(':');
    if (!syntax::IsHostPort(text) || text.front() == '[') {
      Error(JoinPointer(pointer, i),
            "must be host:port (an IPv4 address or a name), e.g. "
            "127.0.0.1:26379");
      continue;
    }
    endpoints.push_back(RedisEndpoint{text.substr(0, colon), std::stoi(text.substr(colon + 1))});
  }
  return endpoints;
}

void ModelBuilder::BuildRedis(const Value& redis, Config* config) {
  RedisConfig result;
  const bool has_url = redis.HasMember("url");
  const bool has_sentinel = redis.HasMember("sentinel");
  const bool has_cluster = redis.HasMember("cluster");
  const int modes = int{has_url} + int{has_sentinel} + int{has_cluster};
  if (modes > 1 || (modes == 0 && !WasRemoved("/redis/url") && !WasRemoved("/redis/sentinel") &&
                    !WasRemoved("/redis/cluster"))) {
    Error("/redis", "needs exactly one of \"url\", \"sentinel\" or \"cluster\"");
  }
  if (has_url) {
    result.url = redis["url"].GetString();
    std::string error;
    if (auto address = syntax::ParseRedisUrl(result.url, &error)) {
      result.host = address->host;
      result.port = address->port;
      result.db = address->db;
    } else {
      Error("/redis/url", error);
    }
  }
  if (has_sentinel) {
    const Value& sentinel = redis["sentinel"];
    RedisSentinelConfig parsed;
    parsed.master = sentinel["master"].GetString();
    parsed.addresses = BuildRedisAddresses(sentinel["addresses"], "/redis/sentinel/addresses");
    parsed.username = StringOr(sentinel, "username", "");
    result.db = IntOr(sentinel, "db", 0);
    parsed.password =
        ResolveSecret(sentinel, "/redis/sentinel", "password", /*optional=*/true, secrets_, errors_)
            .value;
    if (!parsed.username.empty() && !sentinel.HasMember("password_env") &&
        !sentinel.HasMember("password_file")) {
      Error("/redis/sentinel/username",
            "a sentinel ACL user needs \"password_env\" or \"password_file\"");
    }
    result.url = "sentinel:" + parsed.master + "@" + JoinRedisAddresses(parsed.addresses) +
                 (result.db != 0 ? "/" + std::to_string(result.db) : "");
    if (!parsed.addresses.empty()) {
      result.host = parsed.addresses.front().host;
      result.port = parsed.addresses.front().port;
    }
    result.sentinel = std::move(parsed);
  }
  if (has_cluster) {
    RedisClusterConfig parsed;
    parsed.addresses =
        BuildRedisAddresses(redis["cluster"]["addresses"], "/redis/cluster/addresses");
    result.url = "cluster:" + JoinRedisAddresses(parsed.addresses);
    if (!parsed.addresses.empty()) {
      result.host = parsed.addresses.front().host;
      result.port = parsed.addresses.front().port;
    }
    result.cluster = std::move(parsed);
  }
  result.username = StringOr(redis, "username", "");
  ResolvedSecret password =
      ResolveSecret(redis, "/redis", "password", /*optional=*/true, secrets_, errors_);
  result.password = std::move(password.value);
  if (!result.username.empty() && !redis.HasMember("password_env") &&
      !redis.HasMember("password_file")) {
    Error("/redis/username", "a Redis ACL user needs \"password_env\" or \"password_file\"");
  }
  result.timeout_ms = IntOr(redis, "timeout_ms", result.timeout_ms);
  result.on_error =
      StringOr(redis, "on_error", "local") == "deny" ? RedisOnError::kDeny : RedisOnError::kLocal;
  result.key_prefix = StringOr(redis, "key_prefix", result.key_prefix);
  if (result.cluster && result.key_prefix.find_first_of("{}") != std::string::npos) {
    // The hash tags the gateway adds must be each key's first {...}: braces in the prefix would
    // put every key on one slot, or ({}) hash each whole key and refuse every decision.
    Error("/redis/key_prefix", "must not contain '{' or '}' with a Redis Cluster");
  }
  config->redis = std::move(result);
}

void ModelBuilder::BuildAudit(const Value& audit, Config* config) {
  AuditConfig& result = config->audit;
  result.file = StringOr(audit, "file", result.file);
  result.redis_stream = StringOr(audit, "redis_stream", result.redis_stream);
  result.stream_maxlen = Uint64Or(audit, "stream_maxlen", result.stream_maxlen);
  result.queue_capacity = Uint64Or(audit, "queue_capacity", result.queue_capacity);
}

Upstream ModelBuilder::BuildUpstream(const std::string& name, const Value& value,
                                     const std::string& pointer) {
  Upstream upstream;
  upstream.name = name;
  std::string error;
  if (auto url = syntax::NormaliseBaseUrl(value["base_url"].GetString(), &error)) {
    upstream.base_url = *url;
  } else {
    Error(JoinPointer(pointer, "base_url"), error);
  }
  upstream.auth = BuildAuth(value["auth"], JoinPointer(pointer, "auth"));
  upstream.timeout_ms = IntOr(value, "timeout_ms", upstream.timeout_ms);
  upstream.connect_timeout_ms = IntOr(value, "connect_timeout_ms", upstream.connect_timeout_ms);
  upstream.read_idle_timeout_ms =
      IntOr(value, "read_idle_timeout_ms", upstream.read_idle_timeout_ms);
  upstream.max_duration_ms = IntOr(value, "max_duration_ms", upstream.max_duration_ms);
  upstream.limits = BuildLimits(value, pointer, LimitScope::kShared);
  BuildForwarding(value, pointer, &upstream);
  return upstream;
}

void ModelBuilder::BuildForwarding(const Value& value, const std::string& pointer,
                                   Upstream* upstream) {
  if (auto list = value.FindMember("forward_headers"); list != value.MemberEnd()) {
    const std::string base = JoinPointer(pointer, "forward_headers");
    const std::string auth_header =
        upstream->auth.type == AuthType::kHeader ? upstream->auth.header : std::string();
    for (rapidjson::SizeType i = 0; i < list->value.Size(); ++i) {
      std::string name = list->value[i].GetString();
      std::string_view why = upstream::NeverForwardedReason(name, auth_header);
      if (!why.empty()) {
        // The name is shown only when it is a token: anything else could be any bytes.
        Error(JoinPointer(base, i), (upstream::IsHeaderToken(name) ? Quoted(name) + " " : "") +
                                        "cannot be forwarded: it " + std::string(why));
        continue;
      }
      for (char& c : name) c = upstream::LowerAscii(c);
      upstream->forward_headers.push_back(std::move(name));
    }
    std::vector<std::string>& names = upstream->forward_headers;
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
  }
  if (auto list = value.FindMember("client_ip_headers"); list != value.MemberEnd()) {
    for (const auto& item : list->value.GetArray()) {
      const std::string_view name = item.GetString();
      (name == "forwarded" ? upstream->send_forwarded : upstream->send_x_forwarded_for) = true;
    }
  }
}

UpstreamAuth ModelBuilder::BuildAuth(const Value& auth, const std::string& pointer) {
  UpstreamAuth result;
  std::string type = auth["type"].GetString();
  result.type = type == "header"      ? AuthType::kHeader
                : type == "devo_hmac" ? AuthType::kDevoHmac
                                      : AuthType::kBearer;
  if (result.type == AuthType::kHeader) {
    result.header = StringOr(auth, "header", "");
    if (!auth.HasMember("header")) {
      Error(pointer, "type \"header\" needs \"header\", the header name (e.g. standAloneToken)");
    } else if (!upstream::IsHeaderToken(result.header)) {
      Error(JoinPointer(pointer, "header"), "is not a valid HTTP header name");
    }
  } else if (auth.HasMember("header")) {
    Error(JoinPointer(pointer, "header"), "is only used with type \"header\"");
  }
  if (result.type != AuthType::kDevoHmac) {
    for (const char* key : {"key_env", "key_file"}) {
      if (auth.HasMember(key))
        Error(JoinPointer(pointer, key), "is only used with type \"devo_hmac\"");
    }
  }

  ResolvedSecret secret = ResolveSecret(auth, pointer, "secret", false, secrets_, errors_);
  result.secret = std::move(secret.value);
  result.secret_source = std::move(secret.source);
  if (result.type == AuthType::kDevoHmac) {
    result.key = ResolveSecret(auth, pointer, "key", false, secrets_, errors_).value;
  }
  // Answers are scanned for these values (and they are replaced): a short one would match
  // ordinary text everywhere.
  for (const auto& [prefix, value] :
       {std::pair<const char*, const std::string*>{"secret", &result.secret},
        {"key", &result.key}}) {
    if (value->empty() || value->size() >= kMinUpstreamSecretLength) continue;
    const std::string source =
        std::string(prefix) +
        (auth.HasMember((std::string(prefix) + "_env").c_str()) ? "_env" : "_file");
    Error(JoinPointer(pointer, source), "the secret is " + std::to_string(value->size()) +
                                            " bytes long; upstream secrets must have at least " +
                                            std::to_string(kMinUpstreamSecretLength) +
                                            " (answers are scanned for them)");
  }
  return result;
}

bool ModelBuilder::BuildQuota(const Value& value, const std::string& at, Limit* limit) {
  if (!value.HasMember("quota")) {
    for (const char* key : {"reset_hour_utc", "warn_at"}) {
      if (value.HasMember(key)) {
        Error(JoinPointer(at, key), std::string("\"") + key + "\" applies only to a \"quota\"");
        return false;
      }
    }
    return true;
  }
  for (const char* key : {"rate", "burst"}) {
    if (value.HasMember(key)) {
      Error(JoinPointer(at, key), std::string("a limit with \"quota\" takes no \"") + key +
                                      "\" (a quota is not a token bucket: use two limits)");
      return false;
    }
  }
  for (const char* key : {"wait_ms", "max_waiting"}) {
    if (value.HasMember(key)) {
      Error(JoinPointer(at, key),
            std::string("a quota never waits (its next unit comes when its window ends): \"") +
                key + "\" applies only to a limit with \"rate\"");
      return false;
    }
  }
  const std::string text = value["quota"].GetString();
  std::optional<Quota> quota = ParseQuota(text);
  if (!quota) {
    Error(JoinPointer(at, "quota"),
          "malformed quota " + Quoted(text) +
              ": expected N/day, N/week or N/month, N a positive integer below 2^53");
    return false;
  }
  if (value.HasMember("reset_hour_utc")) {
    const Value& hour = value["reset_hour_utc"];
    if (!hour.IsInt() || hour.GetInt() < 0 || hour.GetInt() > 23) {
      Error(JoinPointer(at, "reset_hour_utc"), "must be an hour 0..23");
      return false;
    }
    quota->reset_hour_utc = hour.GetInt();
  }
  if (value.HasMember("warn_at")) {
    const Value& warn = value["warn_at"];
    if (!warn.IsNumber() || !(warn.GetDouble() > 0 && warn.GetDouble() < 1)) {
      Error(JoinPointer(at, "warn_at"), "must be a fraction of the quota: 0 < warn_at < 1");
      return false;
    }
    quota->warn_at = warn.GetDouble();
  }
  limit->quota = quota;
  return true;
}

bool ModelBuilder::BuildWait(const Value& value, const std::string& at, Limit* limit) {
  if (value.HasMember("wait_ms")) limit->wait_ms = value["wait_ms"].GetUint();
  if (value.HasMember("max_waiting")) {
    if (limit->wait_ms == 0) {
      Error(JoinPointer(at, "max_waiting"),
            "\"max_waiting\" applies only with \"wait_ms\" above 0");
      return false;
    }
    limit->max_waiting = value["max_waiting"].GetUint();
  }
  if (limit->wait_ms > 0 && limit->shadow) {
    Error(JoinPointer(at, "wait_ms"), "a shadow limit never refuses, so it never waits");
    return false;
  }
  return true;
}

std::vector<Limit> ModelBuilder::BuildLimits(const Value& owner, const std::string& pointer,
                                             LimitScope default_scope) {
  std::vector<Limit> limits;
  auto list = owner.FindMember("limits");
  if (list == owner.MemberEnd()) return limits;
  const std::string base = JoinPointer(pointer, "limits");
  for (rapidjson::SizeType i = 0; i < list->value.Size(); ++i) {
    const Value& value = list->value[i];
    const std::string at = JoinPointer(base, i);
    Limit limit;
    limit.name = value["name"].GetString();
    if (!BuildQuota(value, at, &limit)) continue;
    if (limit.quota) {
      limit.burst = limit.quota->amount;  // what one call may cost at most (CheckCost)
      limit.scope = ScopeOf(value, default_scope);
      limit.shadow = BoolOr(value, "shadow", false);
      auto [seen, inserted] = limits_by_name_.emplace(limit.name, SeenLimit{limit, at});
      if (!inserted && !SameSettings(seen->second.limit, limit)) {
        Error(at, "limit " + Quoted(limit.name) +
                      " is already defined with different settings at " + seen->second.pointer);
        continue;
      }
      limits.push_back(std::move(limit));
      continue;
    }
    if (!value.HasMember("rate")) {
      Error(at, "a limit needs \"rate\" (a token bucket) or \"quota\" (a calendar quota)");
      continue;
    }
    std::string rate_text = value["rate"].GetString();
    std::optional<Rate> rate = ParseRate(rate_text);
    if (!rate) {
      Error(JoinPointer(at, "rate"),
            "malformed rate " + Quoted(rate_text) +
                ": expected N/s, N/min, N/h or N/day, N a positive integer");
      continue;
    }
    limit.rate = *rate;
    limit.burst = Uint64Or(value, "burst", rate->tokens);
    std::string scope = StringOr(value, "scope", "");
    limit.scope = scope.empty() ? default_scope
                                : (scope == "caller" ? LimitScope::kCaller : LimitScope::kShared);
    limit.shadow = BoolOr(value, "shadow", false);
    if (!BuildWait(value, at, &limit)) continue;

    // The limiter keeps buckets in micro-tokens per second of period, as Lua numbers (doubles)
    // in Redis: beyond 2^53 they stop being exact and refills would drift.
    constexpr uint64_t kExactLimit = 1ULL << 53;
    const uint64_t unit = limit.rate.period_seconds * 1000000ULL;
    if (limit.burst > (kExactLimit - 1) / unit) {
      Error(JoinPointer(at, value.HasMember("burst") ? "burst" : "rate"),
            "burst " + std::to_string(limit.burst) + " over a " +
                std::to_string(limit.rate.period_seconds) +
                " s period is too large for exact bucket arithmetic (burst * period_seconds * 1e6 "
                "must stay below 2^53); use a smaller burst or a shorter period");
      continue;
    }
    // Waiting requests take the level down to -wait_ms * 1000 * rate.tokens units.
    if (limit.wait_ms > 0 &&
        limit.rate.tokens > (kExactLimit - 1 - limit.burst * unit) / (limit.wait_ms * 1000ULL)) {
      Error(JoinPointer(at, "wait_ms"),
            "wait_ms " + std::to_string(limit.wait_ms) + " at " +
                std::to_string(limit.rate.tokens) +
                " tokens per period is too large for exact bucket arithmetic; use a shorter wait");
      continue;
    }

    auto [seen, inserted] = limits_by_name_.emplace(limit.name, SeenLimit{limit, at});
    if (!inserted && !SameSettings(seen->second.limit, limit)) {
      Error(at, "limit " + Quoted(limit.name) + " is already defined with different settings at " +
                    seen->second.pointer +
                    " (a name is one bucket: use the same settings or another name)");
      continue;
    }
    limits.push_back(std::move(limit));
  }
  return limits;
}

}  // namespace tollgate::config
