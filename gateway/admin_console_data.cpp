#include "gateway/admin_console_data.h"

#include <hiredis/hiredis.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "gateway/admin_keys.h"
#include "gateway/audit_log.h"
#include "gateway/http_server.h"
#include "gateway/pipeline.h"
#include "gateway/snapshot.h"
#include "keys/run_time_keys.h"
#include "policies/redis_loop_client.h"
#include "upstream/upstream_auth.h"

namespace tollgate::gateway {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
using Done = std::function<void(ConsoleAnswer)>;

// /refusals reads the stream newest first, a page at a time, and stops after this many entries
// even when fewer than `limit` refusals were among them: an answer costs Redis a bounded scan.
constexpr size_t kStreamPage = 500;
constexpr size_t kMaxStreamScan = 20000;
constexpr size_t kDefaultRefusals = 50;
constexpr size_t kMaxRefusals = 1000;

void String(Writer& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

void Time(Writer& w, SystemTime t) { String(w, FormatKeyTime(t)); }

void TimeOrNull(Writer& w, const std::optional<SystemTime>& t) {
  if (t) {
    Time(w, *t);
  } else {
    w.Null();
  }
}

std::string Text(const rapidjson::StringBuffer& buf) {
  return std::string(buf.GetString(), buf.GetSize());
}

ConsoleAnswer Ok(std::string body) {
  ConsoleAnswer a;
  a.body = std::move(body);
  return a;
}

ConsoleAnswer Error(int status, std::string reason, std::string message) {
  ConsoleAnswer a;
  a.status = status;
  a.reason = std::move(reason);
  a.message = std::move(message);
  return a;
}

SystemTime Now() { return keys::FromUnixMs(keys::ToUnixMs(std::chrono::system_clock::now())); }

void ConfigKey(Writer& w, const config::Caller& caller, const std::string& sha256, SystemTime now) {
  w.StartObject();
  w.Key("id");
  String(w, std::string_view(sha256).substr(0, 8));
  w.Key("kind");
  w.String("config");
  w.Key("state");
  w.String(caller.expires && *caller.expires <= now ? "expired" : "active");
  w.Key("expires_at");
  TimeOrNull(w, caller.expires);
  w.Key("created_at");
  w.Null();
  w.Key("last_used_at");
  w.Null();
  w.EndObject();
}

void RunTimeKey(Writer& w, const keys::KeyRecord& r, SystemTime now) {
  // Field by field: the record also holds the hash, which never leaves the gateway.
  w.StartObject();
  w.Key("id");
  String(w, r.id);
  w.Key("kind");
  w.String("run-time");
  w.Key("state");
  String(w, keys::StateName(keys::StateAt(r, now)));
  w.Key("expires_at");
  TimeOrNull(w, r.expires_at);
  w.Key("created_at");
  Time(w, r.created_at);
  w.Key("last_used_at");
  TimeOrNull(w, r.last_used_at);
  w.Key("revoked_at");
  TimeOrNull(w, r.revoked_at);
  w.EndObject();
}

// The audit lines of an XREVRANGE reply (each entry's "record" field), in the reply's order;
// `last_id` gets the last entry's id, `entries` how many entries the reply held.
std::vector<std::string> StreamRecords(const redisReply* reply, std::string* last_id,
                                       size_t* entries) {
  std::vector<std::string> out;
  *entries = 0;
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY) return out;
  *entries = reply->elements;
  for (size_t i = 0; i < reply->elements; ++i) {
    const redisReply* entry = reply->element[i];
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2) continue;
    const redisReply* id = entry->element[0];
    const redisReply* fields = entry->element[1];
    if (id->type == REDIS_REPLY_STRING) last_id->assign(id->str, id->len);
    if (fields->type != REDIS_REPLY_ARRAY) continue;
    for (size_t f = 0; f + 1 < fields->elements; f += 2) {
      const redisReply* name = fields->element[f];
      const redisReply* value = fields->element[f + 1];
      if (name->type == REDIS_REPLY_STRING && std::string_view(name->str, name->len) == "record" &&
          value->type == REDIS_REPLY_STRING) {
        out.emplace_back(value->str, value->len);
      }
    }
  }
  return out;
}

// One /refusals read of the stream, page after page.
struct StreamScan {
  policies::RedisLoopClient* redis;
  AuditLog* audit;
  std::string stream;
  size_t limit;
  Done done;
  std::vector<std::string> found;
  size_t scanned = 0;
};

void ScanStream(const std::shared_ptr<StreamScan>& scan, const std::string& before) {
  scan->redis->Command(
      scan->stream,
      {"XREVRANGE", scan->stream, before.empty() ? "+" : "(" + before, "-", "COUNT",
       std::to_string(kStreamPage)},
      [scan](const redisReply* reply) {
        if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) {
          // What this replica wrote is still worth showing while Redis is away.
          return scan->done(Ok(RefusalsJson("memory", scan->audit->RecentRefusals(scan->limit),
                                            "redis_unavailable")));
        }
        std::string last_id;
        size_t entries = 0;
        for (std::string& line : StreamRecords(reply, &last_id, &entries)) {
          if (scan->found.size() < scan->limit && IsRefusalLine(line)) {
            scan->found.push_back(std::move(line));
          }
        }
        scan->scanned += entries;
        if (scan->found.size() < scan->limit && entries == kStreamPage && !last_id.empty() &&
            scan->scanned < kMaxStreamScan) {
          return ScanStream(scan, last_id);
        }
        scan->done(Ok(RefusalsJson("stream", scan->found)));
      });
}

}  // namespace

std::string ConfigSha256(const config::Config& config) {
  std::string text;
  for (const auto& [name, digest] : config.entry_digests) {
    text += name;
    text.push_back('\0');
    text += digest;
    text.push_back('\n');
  }
  return upstream::Sha256Hex(text);
}

void ConfigHistory::Loaded(const config::Config& config, SystemTime at) {
  std::string sha256 = ConfigSha256(config);
  std::lock_guard<std::mutex> lock(mu_);
  view_.sha256 = std::move(sha256);
  view_.loaded_at = at;
}

void ConfigHistory::Reloaded(Reload reload) {
  std::lock_guard<std::mutex> lock(mu_);
  view_.last_reload = std::move(reload);
}

ConfigHistory::View ConfigHistory::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return view_;
}

std::string StatusJson(const StatusView& s) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("version");
  w.String(TOLLGATE_VERSION);
  w.Key("config");
  w.StartObject();
  w.Key("sha256");
  String(w, s.config.sha256);
  w.Key("loaded_at");
  Time(w, s.config.loaded_at);
  w.Key("last_reload");
  if (s.config.last_reload) {
    w.StartObject();
    w.Key("at");
    Time(w, s.config.last_reload->at);
    w.Key("applied");
    w.Bool(s.config.last_reload->applied);
    w.Key("errors");
    w.StartArray();
    for (const auto& e : s.config.last_reload->errors) String(w, e);
    w.EndArray();
    w.EndObject();
  } else {
    w.Null();
  }
  w.EndObject();
  w.Key("replica");
  w.StartObject();
  w.Key("id");
  String(w, s.replica_id);
  w.Key("started_at");
  Time(w, s.started_at);
  w.Key("ready");
  w.Bool(s.ready);
  w.Key("draining");
  w.Bool(s.draining);
  w.Key("redis");
  w.StartObject();
  w.Key("configured");
  w.Bool(s.redis_configured);
  w.Key("keys_subscribed");
  if (s.keys_subscribed) {
    w.Bool(*s.keys_subscribed);
  } else {
    w.Null();
  }
  w.EndObject();
  w.Key("limiter");
  w.StartObject();
  w.Key("backend");
  String(w, s.limiter_backend);
  w.Key("ready");
  w.Bool(s.limiter_ready);
  w.Key("fallback");
  w.Bool(s.limiter_fallback);
  w.Key("redis_errors");
  w.Uint64(s.limiter_redis_errors);
  w.Key("fallbacks");
  w.Uint64(s.limiter_fallbacks);
  w.EndObject();
  w.Key("in_flight");
  w.Int64(s.in_flight);
  w.Key("open_streams");
  w.Int64(s.open_streams);
  w.Key("connections");
  w.Int64(s.connections);
  w.Key("audit");
  w.StartObject();
  w.Key("queue_depth");
  w.Int64(s.audit_queue_depth);
  w.Key("slots_used");
  w.Uint64(s.audit_slots_used);
  w.Key("capacity");
  w.Uint64(s.audit_capacity);
  w.Key("written");
  w.Uint64(s.audit_written);
  w.Key("file_dropped");
  w.Uint64(s.audit_file_dropped);
  w.Key("stream_errors");
  w.Uint64(s.audit_stream_errors);
  w.Key("stream_dropped");
  w.Uint64(s.audit_stream_dropped);
  w.EndObject();
  w.Key("upstreams");
  w.StartArray();
  for (const auto& [name, cooldown] : s.upstreams) {
    w.StartObject();
    w.Key("name");
    String(w, name);
    w.Key("cooldown");
    w.Bool(cooldown);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  w.EndObject();
  return Text(buf);
}

std::string CallersJson(const config::Config& config, const std::vector<keys::KeyRecord>* run_time,
                        bool keys_error, SystemTime now) {
  std::map<std::string, std::vector<const keys::KeyRecord*>> by_caller;
  if (run_time != nullptr) {
    for (const keys::KeyRecord& r : *run_time) by_caller[r.caller].push_back(&r);
  }
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("items");
  w.StartArray();
  for (const auto& [name, caller] : config.callers) {
    w.StartObject();
    w.Key("name");
    String(w, name);
    w.Key("description");
    if (caller.description.empty()) {
      w.Null();
    } else {
      String(w, caller.description);
    }
    w.Key("roles");
    w.StartArray();
    for (const auto& role : caller.roles) String(w, role);
    w.EndArray();
    w.Key("disabled");
    w.Bool(caller.disabled);
    w.Key("expires");
    TimeOrNull(w, caller.expires);
    w.Key("attributes");
    w.StartObject();
    for (const auto& [attribute, values] : caller.attributes) {
      w.Key(attribute.data(), static_cast<rapidjson::SizeType>(attribute.size()));
      w.StartArray();
      for (const auto& v : values) String(w, v);
      w.EndArray();
    }
    w.EndObject();
    w.Key("keys");
    w.StartArray();
    for (const std::string& sha256 : caller.key_sha256) ConfigKey(w, caller, sha256, now);
    if (auto it = by_caller.find(name); it != by_caller.end()) {
      for (const keys::KeyRecord* r : it->second) RunTimeKey(w, *r, now);
    }
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  if (keys_error) {
    w.Key("keys_error");
    w.String("redis_unavailable");
  }
  w.EndObject();
  return Text(buf);
}

std::string LimitsJson(const std::vector<CallerLimits>& callers, bool one, bool fallback,
                       SystemTime now) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  auto items = [&](const CallerLimits& c) {
    w.Key("caller");
    String(w, c.caller);
    w.Key("items");
    w.StartArray();
    for (size_t i = 0; i < c.buckets.size() && i < c.levels.size(); ++i) {
      const policies::BucketSpec& b = c.buckets[i];
      const policies::BucketLevel& l = c.levels[i];
      w.StartObject();
      w.Key("name");
      String(w, b.name);
      w.Key("kind");
      w.String(b.quota ? "quota" : "bucket");
      w.Key("scope");
      // MakeBucket names a per-caller bucket after the caller, a shared one "_shared".
      const bool shared = b.key.size() >= 8 && b.key.compare(b.key.size() - 8, 8, ":_shared") == 0;
      w.String(shared ? "shared" : "caller");
      w.Key("limit");
      w.Uint64(b.burst);
      if (!b.quota) {
        w.Key("rate");
        String(w,
               std::to_string(b.rate.tokens) + "/" + std::to_string(b.rate.period_seconds) + "s");
      } else {
        w.Key("used");
        w.Uint64(l.used);
      }
      w.Key("remaining");
      w.Double(std::floor(l.remaining * 1000) / 1000);
      w.Key("reset_at");
      Time(w, now + std::chrono::milliseconds(
                        static_cast<int64_t>(std::ceil(std::max(l.reset_seconds, 0.0) * 1000))));
      w.Key("shadow");
      w.Bool(b.shadow);
      if (i < c.upstreams.size() && !c.upstreams[i].empty()) {
        w.Key("upstream");
        String(w, c.upstreams[i]);
      }
      w.EndObject();
    }
    w.EndArray();
  };
  w.StartObject();
  if (one && !callers.empty()) {
    items(callers.front());
  } else {
    w.Key("callers");
    w.StartArray();
    for (const CallerLimits& c : callers) {
      w.StartObject();
      items(c);
      w.EndObject();
    }
    w.EndArray();
  }
  w.Key("fallback");
  w.Bool(fallback);
  w.EndObject();
  return Text(buf);
}

std::string RefusalsJson(std::string_view source, const std::vector<std::string>& lines,
                         std::string_view stream_error) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("source");
  String(w, source);
  w.Key("items");
  w.StartArray();
  for (const std::string& line : lines) {
    // The audit writer's own lines; a stream entry that is not one JSON object is left out
    // (the stream is writable by whoever reaches Redis).
    rapidjson::Document doc;
    if (doc.Parse(line.data(), line.size()).HasParseError() || !doc.IsObject()) continue;
    w.RawValue(line.data(), line.size(), rapidjson::kObjectType);
  }
  w.EndArray();
  if (!stream_error.empty()) {
    w.Key("stream_error");
    String(w, stream_error);
  }
  w.EndObject();
  return Text(buf);
}

bool IsRefusalLine(std::string_view line) {
  // The writer puts `"status":` once, as a number; a parse would cost more than the line.
  constexpr std::string_view kStatus = "\"status\":";
  const size_t at = line.find(kStatus);
  if (at == std::string_view::npos) return false;
  const std::string_view v = line.substr(at + kStatus.size(), 4);
  return v == "401," || v == "403," || v == "429," || v == "401}" || v == "403}" || v == "429}";
}

std::string ParseRefusalsQuery(std::string_view query, size_t* limit) {
  *limit = kDefaultRefusals;
  bool seen = false;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    const size_t eq = param.find('=');
    const std::string_view name = param.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
    if (name != "limit") return "unknown query parameter " + EchoName(name) + " (only limit)";
    if (seen) return "query parameter \"limit\" is given twice";
    seen = true;
    size_t n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size() || n < 1 || n > kMaxRefusals) {
      return "query parameter \"limit\" must be a whole number from 1 to " +
             std::to_string(kMaxRefusals);
    }
    *limit = n;
  }
  return "";
}

void ConsoleData::Serve(std::string_view action, std::string_view query, Done done) {
  if (action == "console.status") return Status(std::move(done));
  if (action == "console.callers") return Callers(std::move(done));
  if (action == "console.limits") return Limits(query, std::move(done));
  Refusals(query, std::move(done));
}

void ConsoleData::Status(Done done) {
  auto status = std::make_shared<StatusView>();
  StatusView& s = *status;
  Pipeline& pipeline = *deps_.pipeline;
  const std::shared_ptr<const Snapshot> snapshot = pipeline.snapshot();
  AuditLog& audit = *deps_.audit;
  s.config = deps_.history->Get();
  s.replica_id = deps_.replica_id;
  s.started_at = deps_.started_at;
  s.draining = pipeline.draining();
  s.limiter_ready = deps_.limiter->Ready();
  const bool audit_ok = audit.slots_used() < audit.capacity();
  // As /readyz decides.
  s.ready = snapshot != nullptr && s.limiter_ready && !s.draining && audit_ok;
  s.redis_configured = snapshot->config().redis.has_value();
  s.limiter_backend = deps_.limiter->Describe();
  const policies::LimiterStats& stats = deps_.limiter->stats();
  s.limiter_fallback = stats.breaker_backoff_ms.load() > 0;
  s.limiter_redis_errors = stats.redis_errors.load();
  s.limiter_fallbacks = stats.fallbacks.load();
  if (deps_.keys != nullptr) s.keys_subscribed = deps_.keys->subscribed();
  s.in_flight = pipeline.in_flight();
  s.open_streams = pipeline.open_streams();
  s.connections = deps_.main->connections_open();
  s.audit_queue_depth = audit.queue_depth();
  s.audit_slots_used = audit.slots_used();
  s.audit_capacity = audit.capacity();
  s.audit_written = audit.written();
  s.audit_file_dropped = audit.file_dropped();
  s.audit_stream_errors = audit.stream_errors();
  s.audit_stream_dropped = audit.stream_dropped();
  for (const auto& [name, upstream] : snapshot->config().upstreams) {
    s.upstreams.emplace_back(name, false);
  }
  if (s.upstreams.empty()) return done(Ok(StatusJson(s)));
  // A cooldown is the limiter's to tell: an Acquire of no bucket takes nothing and answers
  // kCooldown while the upstream's 429 cooldown lasts (in Redis, for every replica).
  auto left = std::make_shared<size_t>(s.upstreams.size());
  auto finish = std::make_shared<Done>(std::move(done));
  for (size_t i = 0; i < s.upstreams.size(); ++i) {
    policies::LimitRequest request;
    request.cooldown_upstream = s.upstreams[i].first;
    deps_.limiter->Acquire(
        std::move(request), [status, left, finish, i](policies::LimitDecision d) {
          status->upstreams[i].second = d.outcome == policies::LimitDecision::Outcome::kCooldown;
          if (--*left == 0) (*finish)(Ok(StatusJson(*status)));
        });
  }
}

void ConsoleData::Callers(Done done) {
  std::shared_ptr<const Snapshot> snapshot = deps_.pipeline->snapshot();
  if (deps_.keys == nullptr) {
    return done(Ok(CallersJson(snapshot->config(), nullptr, false, Now())));
  }
  deps_.keys->store().List("", [snapshot, done = std::move(done)](
                                   keys::StoreStatus status, std::vector<keys::KeyRecord> records) {
    const bool ok = status == keys::StoreStatus::kOk;
    done(Ok(CallersJson(snapshot->config(), ok ? &records : nullptr, !ok, Now())));
  });
}

void ConsoleData::Limits(std::string_view query, Done done) {
  std::string name;
  std::string error = ParseListKeysQuery(query, &name);
  if (!error.empty()) return done(Error(400, "bad_request", error));
  std::shared_ptr<const Snapshot> snapshot = deps_.pipeline->snapshot();
  auto callers = std::make_shared<std::vector<CallerLimits>>();
  std::vector<policies::BucketSpec> all;
  for (const auto& [caller_name, caller] : snapshot->config().callers) {
    if (!name.empty() && caller_name != name) continue;
    CallerLimits c;
    c.caller = caller_name;
    c.buckets = snapshot->BucketsOfCaller(caller, &c.upstreams);
    all.insert(all.end(), c.buckets.begin(), c.buckets.end());
    callers->push_back(std::move(c));
  }
  const bool one = !name.empty();
  if (one && callers->empty()) {
    return done(Error(404, "not_found", "unknown caller " + EchoName(name)));
  }
  // A Peek of no bucket is not asked (Redis refuses an MGET of no key).
  if (all.empty()) return done(Ok(LimitsJson(*callers, one, false, Now())));
  deps_.limiter->Peek(std::move(all), [callers, one,
                                       done = std::move(done)](policies::LimitDecision d) {
    if (d.outcome == policies::LimitDecision::Outcome::kUnavailable) {
      return done(Error(503, "redis_unavailable", "the limiter could not read the levels; retry"));
    }
    size_t next = 0;
    for (CallerLimits& c : *callers) {
      for (size_t i = 0; i < c.buckets.size() && next < d.levels.size(); ++i) {
        c.levels.push_back(d.levels[next++]);
      }
    }
    done(Ok(LimitsJson(*callers, one, d.fallback, Now())));
  });
}

void ConsoleData::Refusals(std::string_view query, Done done) {
  size_t limit = 0;
  std::string error = ParseRefusalsQuery(query, &limit);
  if (!error.empty()) return done(Error(400, "bad_request", error));
  if (deps_.audit_redis != nullptr && !deps_.audit_stream.empty()) {
    auto scan = std::make_shared<StreamScan>();
    scan->redis = deps_.audit_redis;
    scan->audit = deps_.audit;
    scan->stream = deps_.audit_stream;
    scan->limit = limit;
    scan->done = std::move(done);
    return ScanStream(scan, "");
  }
  done(Ok(RefusalsJson("memory", deps_.audit->RecentRefusals(limit))));
}

}  // namespace tollgate::gateway
