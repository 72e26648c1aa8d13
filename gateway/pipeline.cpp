#include "gateway/pipeline.h"

#include <openssl/rand.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "gateway/rate_limit_headers.h"
#include "policies/normalise.h"
#include "upstream/headers.h"
#include "upstream/upstream_auth.h"

namespace tollgate::gateway {

using Clock = std::chrono::steady_clock;

struct Pipeline::Context {
  std::shared_ptr<Exchange> exchange;
  std::shared_ptr<const Snapshot> snapshot;
  Clock::time_point start;
  std::string request_id;
  AuditRecord audit;
  AuditLog::Slot audit_slot;  // reserved at admission: the record always has a place
  const config::Upstream* upstream = nullptr;
  const config::Caller* caller = nullptr;
  const config::Rule* rule = nullptr;
  const policies::Redactor* redactor = nullptr;  // owned by the snapshot's policy
  std::string path;   // normalised, relative to the upstream ("/v3beta1/...")
  std::string query;  // raw
  policies::LimitDecision limit;
  std::vector<policies::BucketSpec> buckets;  // what the limit stage charged, for the headers
};

namespace {

void WriteJsonString(rapidjson::Writer<rapidjson::StringBuffer>& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

std::string_view FirstSegment(std::string_view path, std::string_view* rest) {
  // path starts with '/'
  size_t slash = path.find('/', 1);
  if (slash == std::string_view::npos) {
    *rest = std::string_view();
    return path.substr(1);
  }
  *rest = path.substr(slash);
  return path.substr(1, slash - 1);
}

const std::string* FindHeader(const upstream::HeaderList& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (upstream::HeaderNameEquals(k, name)) return &v;
  }
  return nullptr;
}

std::string RequestIdOf(const HttpRequest& req) {
  const std::string* incoming_id = req.Header("x-request-id");
  return incoming_id && IsValidRequestId(*incoming_id) ? *incoming_id : NewRequestId();
}

}  // namespace

HttpResponse ErrorResponse(int status, std::string_view reason, std::string_view message,
                           std::string_view request_id, const RateLimitDetails* rate_limit) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("error");
  w.StartObject();
  w.Key("code");
  w.Int(status);
  w.Key("reason");
  WriteJsonString(w, reason);
  w.Key("message");
  WriteJsonString(w, message);
  w.Key("request_id");
  WriteJsonString(w, request_id);
  if (rate_limit != nullptr) {
    w.Key("bucket");
    WriteJsonString(w, rate_limit->bucket);
    w.Key("retry_after_ms");
    w.Int64(rate_limit->retry_after_ms);
  }
  w.EndObject();
  w.EndObject();
  HttpResponse r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body.assign(buf.GetString(), buf.GetSize());
  return r;
}

bool IsValidRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

std::string NewRequestId() {
  // A per-thread generator seeded from OpenSSL: unique ids without a syscall per request.
  thread_local std::mt19937_64 rng = [] {
    uint64_t seed[2] = {0, 0};
    RAND_bytes(reinterpret_cast<unsigned char*>(seed), sizeof seed);
    std::seed_seq seq{seed[0], seed[1]};
    return std::mt19937_64(seq);
  }();
  uint64_t a = rng(), b = rng();
  char out[33];
  std::snprintf(out, sizeof out, "%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  return std::string(out, 32);
}

Pipeline::Pipeline(PipelineDeps deps) : deps_(deps) {}

void Pipeline::SetSnapshot(std::shared_ptr<const Snapshot> snapshot) {
  std::atomic_store(&snapshot_, std::move(snapshot));
}

std::shared_ptr<const Snapshot> Pipeline::snapshot() const { return std::atomic_load(&snapshot_); }

bool Pipeline::Drain(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(drain_mu_);
  return drained_.wait_for(lock, timeout, [this] { return in_flight_.load() == 0; });
}

void Pipeline::Handle(std::shared_ptr<Exchange> exchange) {
  // 0. admit: the audit record's place is reserved before anything else happens, so nothing is
  // forwarded without its record and Finish never waits for the audit writer.
  AuditLog::Slot slot = deps_.audit->Reserve();
  if (!slot) {
    Refuse(exchange);
    return;
  }
  in_flight_.fetch_add(1);
  auto ctx = std::make_shared<Context>();
  ctx->exchange = std::move(exchange);
  ctx->audit_slot = std::move(slot);
  ctx->snapshot = snapshot();
  ctx->start = Clock::now();
  const HttpRequest& req = ctx->exchange->request();
  ctx->request_id = RequestIdOf(req);
  AuditRecord& a = ctx->audit;
  a.ts = std::chrono::system_clock::now();
  a.request_id = ctx->request_id;
  a.client_ip = ctx->exchange->client_ip();
  a.method = req.method;
  a.bytes_in = req.body.size();

  // 1. parse
  if (int status = ctx->exchange->parse_error_status()) {
    std::string_view reason = status == 413   ? "payload_too_large"
                              : status == 431 ? "headers_too_large"
                              : status == 408 ? "request_timeout"
                                              : "bad_request";
    a.path = req.target.substr(0, req.target.find('?'));
    Fail(ctx, status, reason, "bad_request", ctx->exchange->parse_error());
    return;
  }
  if (draining_.load()) {
    // Stop taking new work while in-flight calls finish; the client retries elsewhere.
    a.path = req.target.substr(0, req.target.find('?'));
    Fail(ctx, 503, "shutting_down", "error", "the gateway is shutting down");
    return;
  }
  Route(ctx);
}

void Pipeline::Refuse(const std::shared_ptr<Exchange>& exchange) {
  const Clock::time_point start = Clock::now();
  const HttpRequest& req = exchange->request();
  const std::string request_id = RequestIdOf(req);
  HttpResponse r;
  if (exchange->parse_error_status() == 0 &&
      std::string_view(req.target).substr(0, req.target.find('?')) == "/_tollgate/health") {
    // Liveness on the main listener keeps answering (it forwards nothing); this answer has no
    // audit record, as there is no place for one.
    r.headers.emplace_back("Content-Type", "application/json");
    r.body = R"({"status":"ok"})";
    r.headers.emplace_back("X-Request-Id", request_id);
    exchange->Respond(std::move(r));
    return;
  }
  r = ErrorResponse(503, "audit_unavailable",
                    "the audit log cannot take more records (its sink is stalled); retry shortly",
                    request_id);
  r.headers.emplace_back("Retry-After", "1");
  r.headers.emplace_back("X-Request-Id", request_id);
  exchange->Respond(std::move(r));
  // Not audited (there is no place for the record): counted instead.
  deps_.metrics->RecordAuditRefused();
  deps_.metrics->RecordRequest("", "error", 503,
                               std::chrono::duration<double>(Clock::now() - start).count());
}

void Pipeline::Route(const std::shared_ptr<Context>& ctx) {
  const HttpRequest& req = ctx->exchange->request();
  AuditRecord& a = ctx->audit;
  // 3. normalise (before routing, so the upstream name itself can't be smuggled)
  policies::NormalisedTarget target = policies::NormaliseTarget(req.target);
  if (!target.ok) {
    a.path = req.target.substr(0, req.target.find('?'));
    Fail(ctx, 400, "bad_request", "bad_request", "invalid request target: " + target.error);
    return;
  }
  ctx->query = std::move(target.query);
  a.query = ctx->query;
  // 2. route
  std::string_view rest;
  std::string_view first = FirstSegment(target.path, &rest);
  if (first == "_tollgate") {
    a.path = target.path;
    Internal(ctx, rest);
    return;
  }
  ctx->upstream = ctx->snapshot->FindUpstream(first);
  ctx->path = rest.empty() ? std::string("/") : std::string(rest);
  a.path = ctx->path;
  if (ctx->upstream == nullptr) {
    a.path = target.path;
    Fail(ctx, 404, "not_found", "not_found",
         "no upstream named '" + std::string(first) + "' (paths are /{upstream}/...)");
    return;
  }
  a.upstream = ctx->upstream->name;
  // 4. authenticate
  AuthResult auth =
      ctx->snapshot->Authenticate(req.Header("authorization"), std::chrono::system_clock::now());
  if (auth.outcome != AuthResult::Outcome::kOk) {
    if (auth.caller) a.caller = auth.caller->name;
    Fail(ctx, 401, "unauthenticated", "unauthenticated", auth.message);
    return;
  }
  ctx->caller = auth.caller;
  a.caller = auth.caller->name;
  // 5. authorise
  policies::PolicyDecision decision =
      ctx->snapshot->policy().Decide(*ctx->caller, req.method, ctx->upstream->name, ctx->path);
  if (!decision.allowed()) {
    if (decision.rule) a.rule = decision.rule->path;
    Fail(ctx, 403, "forbidden", "forbidden",
         "caller '" + ctx->caller->name + "' may not " + req.method + " " + ctx->path + " on " +
             ctx->upstream->name);
    return;
  }
  ctx->rule = decision.rule;
  ctx->redactor = decision.redactor;
  a.rule = decision.rule->path;
  Limit(ctx);
}

void Pipeline::Internal(const std::shared_ptr<Context>& ctx, std::string_view path) {
  const HttpRequest& req = ctx->exchange->request();
  if (path == "/health") {
    HttpResponse r;
    r.headers.emplace_back("Content-Type", "application/json");
    r.body = R"({"status":"ok"})";
    ctx->audit.decision = "allowed";
    Finish(ctx, std::move(r));
    return;
  }
  if (path != "/whoami") {
    Fail(ctx, 404, "not_found", "not_found", "no such gateway endpoint");
    return;
  }
  AuthResult auth =
      ctx->snapshot->Authenticate(req.Header("authorization"), std::chrono::system_clock::now());
  if (auth.outcome != AuthResult::Outcome::kOk) {
    if (auth.caller) ctx->audit.caller = auth.caller->name;
    Fail(ctx, 401, "unauthenticated", "unauthenticated", auth.message);
    return;
  }
  ctx->caller = auth.caller;
  ctx->audit.caller = auth.caller->name;
  auto buckets = ctx->snapshot->BucketsOfCaller(*auth.caller);
  deps_.limiter->Peek(buckets, [this, ctx, buckets](policies::LimitDecision levels) {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    w.StartObject();
    w.Key("caller");
    WriteJsonString(w, ctx->caller->name);
    w.Key("roles");
    w.StartArray();
    for (const auto& r : ctx->caller->roles) WriteJsonString(w, r);
    w.EndArray();
    w.Key("buckets");
    w.StartArray();
    for (size_t i = 0; i < buckets.size() && i < levels.levels.size(); ++i) {
      const auto& l = levels.levels[i];
      w.StartObject();
      w.Key("name");
      WriteJsonString(w, buckets[i].name);
      w.Key("key");
      WriteJsonString(w, buckets[i].key);
      w.Key("burst");
      w.Uint64(buckets[i].burst);
      w.Key("rate");
      WriteJsonString(w, std::to_string(buckets[i].rate.tokens) + "/" +
                             std::to_string(buckets[i].rate.period_seconds) + "s");
      w.Key("remaining");
      w.Double(std::floor(l.remaining * 1000) / 1000);
      w.Key("reset_seconds");
      w.Double(std::ceil(l.reset_seconds * 1000) / 1000);
      w.Key("shadow");
      w.Bool(buckets[i].shadow);
      w.EndObject();
    }
    w.EndArray();
    w.Key("limiter");
    WriteJsonString(w, deps_.limiter->Describe());
    w.EndObject();
    HttpResponse r;
    r.headers.emplace_back("Content-Type", "application/json");
    r.body.assign(buf.GetString(), buf.GetSize());
    ctx->audit.decision = "allowed";
    Finish(ctx, std::move(r));
  });
}

void Pipeline::Limit(const std::shared_ptr<Context>& ctx) {
  policies::LimitRequest request;
  request.buckets = ctx->snapshot->BucketsFor(*ctx->upstream, ctx->rule, *ctx->caller);
  request.cooldown_upstream = ctx->upstream->name;
  ctx->buckets = request.buckets;  // kept for the response headers
  deps_.limiter->Acquire(std::move(request), [this, ctx](policies::LimitDecision d) {
    ctx->limit = std::move(d);
    const auto& specs = ctx->buckets;
    AuditRecord& a = ctx->audit;
    a.fallback = ctx->limit.fallback;
    for (size_t i = 0; i < ctx->limit.levels.size() && i < specs.size(); ++i) {
      const auto& l = ctx->limit.levels[i];
      if (l.shadow && l.retry_after_seconds > 0) {
        a.would_limit.push_back(l.name);
        deps_.metrics->RecordLimit(l.name, "would_limit");
      }
    }
    if (auto tight = TightestBucket(specs, ctx->limit.levels)) {
      a.bucket = specs[*tight].name;
      a.remaining = std::floor(ctx->limit.levels[*tight].remaining);
    }
    switch (ctx->limit.outcome) {
      case policies::LimitDecision::Outcome::kAllowed:
        for (const auto& s : specs) {
          if (!s.shadow) deps_.metrics->RecordLimit(s.name, "allowed");
        }
        Forward(ctx);
        return;
      case policies::LimitDecision::Outcome::kLimited:
      case policies::LimitDecision::Outcome::kCooldown: {
        bool cooldown = ctx->limit.outcome == policies::LimitDecision::Outcome::kCooldown;
        a.bucket = cooldown ? "upstream:" + ctx->limit.limited_by : ctx->limit.limited_by;
        deps_.metrics->RecordLimit(a.bucket, "limited");
        std::string message =
            cooldown ? "upstream '" + ctx->limit.limited_by +
                           "' answered 429; calls are paused until its Retry-After passes"
                     : "rate limit '" + ctx->limit.limited_by + "' exceeded";
        Fail(ctx, 429, "rate_limited", "rate_limited", message);
        return;
      }
      case policies::LimitDecision::Outcome::kUnavailable:
        Fail(ctx, 503, "redis_unavailable", "error",
             "rate limiter unavailable: " + ctx->limit.error);
        return;
    }
  });
}

void Pipeline::Forward(const std::shared_ptr<Context>& ctx) {
  const HttpRequest& req = ctx->exchange->request();
  const config::Upstream& up = *ctx->upstream;
  upstream::UpstreamRequest out;
  out.method = req.method;
  out.url.reserve(up.base_url.size() + ctx->path.size() + ctx->query.size() + 1);
  out.url.append(up.base_url).append(ctx->path);
  if (!ctx->query.empty()) out.url.append("?").append(ctx->query);
  out.headers = upstream::FilterRequestHeaders(req.headers);
  if (ctx->redactor != nullptr && !ctx->redactor->empty()) {
    // Redaction needs the whole, unencoded JSON body: a byte range of it could carry a secret
    // the redactor cannot recognise, and a compressed one cannot be rewritten. (Every allowed
    // request has a redactor; only a rule with a `redact` list has a non-empty one.)
    out.headers.erase(std::remove_if(out.headers.begin(), out.headers.end(),
                                     [](const auto& h) {
                                       return upstream::HeaderNameEquals(h.first, "range") ||
                                              upstream::HeaderNameEquals(h.first, "if-range") ||
                                              upstream::HeaderNameEquals(h.first,
                                                                         "accept-encoding");
                                     }),
                      out.headers.end());
  }
  out.headers.emplace_back("X-Request-Id", ctx->request_id);
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  upstream::InjectUpstreamAuth(up.auth, req.body, now_ms, &out.headers);
  out.body = req.body;
  out.timeout_ms = up.timeout_ms;
  out.connect_timeout_ms = up.connect_timeout_ms;
  deps_.upstream->Send(std::move(out), [this, ctx](upstream::UpstreamResponse response) {
    OnUpstreamResponse(ctx, std::move(response));
  });
}

void Pipeline::OnUpstreamResponse(const std::shared_ptr<Context>& ctx,
                                  upstream::UpstreamResponse response) {
  AuditRecord& a = ctx->audit;
  const config::Upstream& up = *ctx->upstream;
  using E = upstream::UpstreamResponse::Error;
  if (response.error != E::kNone) {
    a.upstream_ms = response.total_ms;
    if (response.error == E::kTimeout) {
      deps_.metrics->RecordUpstreamError(up.name, "timeout");
      Fail(ctx, 504, "upstream_timeout", "error",
           "upstream '" + up.name + "' did not answer within " + std::to_string(up.timeout_ms) +
               " ms");
    } else {
      deps_.metrics->RecordUpstreamError(up.name, response.error == E::kConnect    ? "connect"
                                                  : response.error == E::kTooLarge ? "too_large"
                                                                                   : "other");
      // libcurl's text names internal hosts and ports: it goes to the audit record only.
      Fail(ctx, 502, "upstream_unavailable", "error", "upstream '" + up.name + "' is unavailable",
           response.error_message);
    }
    return;
  }
  a.upstream_status = response.status;
  a.upstream_ms = response.total_ms;
  deps_.metrics->RecordUpstream(up.name, response.status, response.total_ms / 1000.0);
  if (const std::string* cid = FindHeader(response.headers, "x-devo-cid")) {
    a.upstream_request_id = *cid;
  } else if (const std::string* rid = FindHeader(response.headers, "x-request-id")) {
    a.upstream_request_id = *rid;
  }

  HttpResponse out;
  out.status = response.status;
  if (ctx->exchange->request().method == "HEAD") {
    if (const std::string* length = FindHeader(response.headers, "content-length")) {
      out.head_content_length = std::strtoull(length->c_str(), nullptr, 10);
    }
  }
  out.headers = upstream::FilterResponseHeaders(response.headers, up.base_url, up.name);
  out.body = std::move(response.body);

  if (response.status == 429) {
    // The upstream's own quota is spent: pause this upstream for every replica, so the shared
    // quota is not burnt further by callers who would only get the same 429.
    int64_t seconds = ParseRetryAfterSeconds(FindHeader(response.headers, "retry-after"),
                                             std::chrono::system_clock::now());
    deps_.limiter->StartCooldown(up.name, seconds * 1000);
    deps_.metrics->RecordUpstreamCooldown(up.name);
    if (!FindHeader(out.headers, "retry-after")) {
      out.headers.emplace_back("Retry-After", std::to_string(seconds));
    }
  }

  if (const policies::Redactor* redactor = ctx->redactor;
      redactor && response.status >= 200 && response.status < 300) {
    if (redactor->Apply(&out.body) == policies::Redactor::Outcome::kNotJson) {
      Fail(ctx, 502, "upstream_unavailable", "error",
           "the upstream answered with a body that is not JSON on a route with redactions; "
           "it was withheld");
      return;
    }
  }
  a.decision = "allowed";
  Finish(ctx, std::move(out));
}

void Pipeline::Fail(const std::shared_ptr<Context>& ctx, int status, std::string_view reason,
                    std::string_view decision, std::string message, std::string audit_error) {
  ctx->audit.decision = std::string(decision);
  ctx->audit.error = audit_error.empty() ? message : std::move(audit_error);
  HttpResponse r;
  if (status == 429) {
    double retry = ctx->limit.retry_after_seconds > 0 ? ctx->limit.retry_after_seconds : 1;
    RateLimitDetails details{ctx->audit.bucket, static_cast<int64_t>(std::ceil(retry * 1000))};
    r = ErrorResponse(status, reason, message, ctx->request_id, &details);
    r.headers.emplace_back("Retry-After", std::to_string(static_cast<int64_t>(std::ceil(retry))));
  } else {
    r = ErrorResponse(status, reason, message, ctx->request_id);
    if (status == 503 && reason == "shutting_down") r.headers.emplace_back("Retry-After", "1");
  }
  Finish(ctx, std::move(r));
}

void Pipeline::Finish(const std::shared_ptr<Context>& ctx, HttpResponse response) {
  response.headers.emplace_back("X-Request-Id", ctx->request_id);
  if (!ctx->buckets.empty() && ctx->limit.levels.size() == ctx->buckets.size()) {
    AddRateLimitHeaders(ctx->buckets, ctx->limit.levels, &response.headers);
  }
  AuditRecord& a = ctx->audit;
  a.status = response.status;
  a.bytes_out = ctx->exchange->request().method == "HEAD" ? 0 : response.body.size();
  double seconds = std::chrono::duration<double>(Clock::now() - ctx->start).count();
  a.latency_ms = seconds * 1000.0;
  std::string upstream_name = a.upstream;
  std::string decision = a.decision;
  int status = response.status;
  ctx->exchange->Respond(std::move(response));
  deps_.metrics->RecordRequest(upstream_name, decision, status, seconds);
  deps_.audit->Submit(std::move(ctx->audit_slot), std::move(ctx->audit));
  if (in_flight_.fetch_sub(1) == 1) {
    std::lock_guard<std::mutex> lock(drain_mu_);
    drained_.notify_all();
  }
}

}  // namespace tollgate::gateway
