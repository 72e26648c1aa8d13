#include "gateway/pipeline.h"

#include <openssl/rand.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <unordered_set>

#include "gateway/admin_keys.h"
#include "gateway/log.h"
#include "gateway/rate_limit_headers.h"
#include "policies/body_rules.h"
#include "policies/normalise.h"
#include "upstream/headers.h"
#include "upstream/secret_scan.h"
#include "upstream/upstream_auth.h"

namespace tollgate::gateway {

using Clock = std::chrono::steady_clock;

struct Pipeline::Context : upstream::StreamSink {
  Pipeline* pipeline = nullptr;
  std::shared_ptr<Exchange> exchange;
  loop::Loop* loop = nullptr;  // the loop this request runs on
  std::shared_ptr<const Snapshot> snapshot;
  Clock::time_point start;
  std::string request_id;
  AuditRecord audit;
  AuditLog::Slot audit_slot;  // reserved at admission: the record always has a place
  const config::Upstream* upstream = nullptr;
  const config::Caller* caller = nullptr;
  // When the caller's key stops working (the run-time key's expiry or the caller's `expires`):
  // within kKeyExpiryNotice of it, every answer says when (Tollgate-Key-Expires).
  std::optional<std::chrono::system_clock::time_point> key_expires;
  std::string key_kind;    // "config" or "run-time", for whoami
  bool key_known = false;  // the run-time key's id is a real key's (revoked, expired, wrong secret)
  const config::Rule* rule = nullptr;
  // The redactions of every allow rule that matched (owned by the snapshot's policy); empty on
  // routes without any.
  std::vector<const policies::Redactor*> redactors;
  std::string path;   // normalised, relative to the upstream ("/v3beta1/...")
  std::string query;  // raw
  policies::LimitDecision limit;
  std::vector<policies::BucketSpec> buckets;  // what the limit stage charged, for the headers
  uint64_t cost = 1;  // the rule's cost, or the one its body rules read from the body
  // Issue 14: the max_waiting places this request holds, and its wait's timer (0: not waiting).
  WaitingCallers::Places waiting;
  loop::Loop::TimerId wait_timer = 0;

  // The upstream transfer.
  upstream::StreamClient* client = nullptr;
  upstream::StreamClient::TransferId transfer = 0;
  std::shared_ptr<Context> self;  // keeps the context alive while the transfer runs
  bool buffered = false;          // a redacted route: the whole answer is collected first
  bool streaming = false;         // the caller has the status line; the body follows
  bool too_large = false;         // the buffered answer passed max_response_bytes
  std::string refused;            // why the upstream's head was refused (502), before any byte
  int body_failed = 0;            // the caller's streamed body broke off (its parse status)
  std::string ended_by;           // set when the gateway ends the transfer (caller gone, drain)
  int upstream_status = 0;
  upstream::HeaderList upstream_headers;    // buffered mode
  std::optional<uint64_t> upstream_length;  // the upstream's Content-Length
  std::string body;                         // buffered mode
  Clock::time_point answered;               // when the caller got the status line
  // What the answer may carry to the caller (no upstream secret value, no unscannable body).
  bool collect = false;  // a small answer with a Content-Length: collected whole, scanned
  std::string withheld;  // why the answer is withheld (502) before any byte of it was sent
  std::optional<upstream::SecretScan> scan;  // a streamed body's scan for secret values
  bool length_promised = false;  // streamed with the upstream's Content-Length: a secret cuts it
  std::string scanned;           // the scan's output for the current chunk (reused)
  bool secret_logged = false;    // the warning for this answer was written

  void OnHeaders(int status, upstream::HeaderList headers) override {
    pipeline->OnUpstreamHeaders(*this, status, std::move(headers));
  }
  bool OnData(const char* data, size_t len) override {
    return pipeline->OnUpstreamData(*this, data, len);
  }
  void OnEnd(const upstream::StreamEnd& end) override { pipeline->OnUpstreamEnd(*this, end); }
};

namespace {

// A key that stops working within this long says so on every answer (Tollgate-Key-Expires), so
// a team sees it coming in its own logs.
constexpr std::chrono::hours kKeyExpiryNotice{24 * 7};

void AddKeyExpiry(const Pipeline::Context& ctx, HeaderList* headers) {
  if (ctx.caller == nullptr || !ctx.key_expires) return;
  if (*ctx.key_expires - std::chrono::system_clock::now() >= kKeyExpiryNotice) return;
  headers->emplace_back("Tollgate-Key-Expires", FormatKeyTime(*ctx.key_expires));
}

// The transfers running on one loop (a Loop local), for ending them at shutdown.
struct ActiveTransfers {
  std::unordered_set<Pipeline::Context*> contexts;
};

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

// POST, PUT and PATCH carry a body by definition; GET, HEAD, DELETE and OPTIONS only where a
// rule opts in (`allow_body`).
bool MethodTakesBody(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

// An answer up to this long, with a Content-Length, is collected whole and sent with its exact
// length after the scan for secret values; a longer one streams (and is cut if one shows up).
constexpr uint64_t kCollectLimit = 64 * 1024;

bool IsIdentityEncoding(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  return value.empty() || upstream::HeaderNameEquals(value, "identity");
}

// Counts the secret values replaced in an answer, and warns once per answer (never the value).
void NoteSecrets(Metrics* metrics, Pipeline::Context& ctx, size_t count) {
  if (count == 0) return;
  metrics->RecordSecretsRedacted(ctx.upstream->name, count);
  if (ctx.secret_logged) return;
  ctx.secret_logged = true;
  LogWarn("upstream '" + ctx.upstream->name +
          "' answered with an upstream secret value; it was replaced by [redacted] or withheld "
          "(request_id " +
          ctx.request_id + ")");
}

std::string RequestIdOf(const HttpRequest& req) {
  const std::string* incoming_id = req.Header("x-request-id");
  return incoming_id && IsValidRequestId(*incoming_id) ? *incoming_id : NewRequestId();
}

// The gateway's own id for a request whose request_id is `request_id`: a new one when the caller
// chose it (it need not be unique), else "" (the audit writes request_id, already ours).
std::string GatewayRequestIdOf(const HttpRequest& req, const std::string& request_id) {
  const std::string* incoming_id = req.Header("x-request-id");
  return incoming_id && *incoming_id == request_id ? NewRequestId() : std::string();
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
  // 32 lowercase hex digits, written directly (snprintf's format parsing cost more than the rest).
  static constexpr char kHex[] = "0123456789abcdef";
  const uint64_t halves[2] = {rng(), rng()};
  std::string id(32, '0');
  for (size_t h = 0; h < 2; ++h) {
    for (size_t i = 0; i < 16; ++i) id[h * 16 + 15 - i] = kHex[(halves[h] >> (4 * i)) & 0xF];
  }
  return id;
}

Pipeline::Pipeline(PipelineDeps deps) : deps_(std::move(deps)) {}

Pipeline::~Pipeline() {
  // Its per-loop StreamClient ends what is in flight, calling back into this pipeline.
  fallback_loop_.reset();
}

void Pipeline::SetSnapshot(std::shared_ptr<const Snapshot> snapshot) {
  std::atomic_store(&snapshot_, std::move(snapshot));
}

std::shared_ptr<const Snapshot> Pipeline::snapshot() const { return std::atomic_load(&snapshot_); }

bool Pipeline::Drain(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(drain_mu_);
  return drained_.wait_for(lock, timeout, [this] { return in_flight_.load() == 0; });
}

void Pipeline::Handle(std::shared_ptr<Exchange> exchange) {
  loop::Loop* loop = exchange->loop();
  if (loop == nullptr) loop = loop::Loop::Current();
  if (loop == nullptr) {
    // A connection-less exchange from a thread without a loop (tests): run it on one.
    loop::LoopThread* thread;
    {
      std::lock_guard<std::mutex> lock(fallback_mu_);
      if (!fallback_loop_) fallback_loop_ = std::make_unique<loop::LoopThread>("tollgate-pipe");
      thread = fallback_loop_.get();
    }
    thread->loop().Post([this, exchange] { Handle(exchange); });
    return;
  }
  // 0. admit: the audit record's place is reserved before anything else happens, so nothing is
  // forwarded without its record and Finish never waits for the audit writer.
  AuditLog::Slot slot = deps_.audit->Reserve();
  if (!slot) {
    Refuse(exchange);
    return;
  }
  in_flight_.fetch_add(1);
  auto ctx = std::make_shared<Context>();
  ctx->pipeline = this;
  ctx->loop = loop;
  ctx->exchange = std::move(exchange);
  ctx->audit_slot = std::move(slot);
  ctx->snapshot = snapshot();
  ctx->start = Clock::now();
  const HttpRequest& req = ctx->exchange->request();
  ctx->request_id = RequestIdOf(req);
  AuditRecord& a = ctx->audit;
  a.ts = std::chrono::system_clock::now();
  a.request_id = ctx->request_id;
  a.gateway_request_id = GatewayRequestIdOf(req, ctx->request_id);
  a.client_ip = ctx->exchange->client_ip();
  a.method = req.method;
  a.bytes_in = req.body.size();

  // 1. parse
  if (int status = ctx->exchange->parse_error_status()) {
    std::string_view reason = status == 413   ? "payload_too_large"
                              : status == 431 ? "headers_too_large"
                              : status == 408 ? "request_timeout"
                              : status == 501 ? "not_implemented"
                              : status == 417 ? "expectation_failed"
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

void Pipeline::OnLoop(const std::shared_ptr<Context>& ctx, std::function<void()> fn) {
  if (ctx->loop->InLoopThread()) {
    fn();
    return;
  }
  // A limiter that answers on a thread of its own: the request goes on on its own loop. A loop
  // that is stopping drops `fn`; the exchange then answers 500 when it is destroyed.
  ctx->loop->Post(std::move(fn));
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
  Authenticate(ctx, &Pipeline::Authorise);
}

void Pipeline::Authenticate(const std::shared_ptr<Context>& ctx, Stage next) {
  const auto now = std::chrono::system_clock::now();
  AuthResult auth =
      ctx->snapshot->Authenticate(ctx->exchange->request().Header("authorization"), now);
  if (auth.run_time_key.empty() || deps_.keys == nullptr) {
    if (auth.outcome == AuthResult::Outcome::kOk) ctx->key_kind = "config";
    Authenticated(ctx, auth, next);
    return;
  }
  ctx->audit.key_id = auth.key_id;
  ctx->key_kind = "run-time";
  // The answer comes on this loop: at once from the cache, else when Redis answers.
  deps_.keys->Authenticate(auth.key_digest, auth.key_id, [this, ctx, next](keys::KeyAuth key) {
    OnLoop(ctx, [this, ctx, next, key = std::move(key)] { KeyAuthenticated(ctx, key, next); });
  });
}

void Pipeline::KeyAuthenticated(const std::shared_ptr<Context>& ctx, const keys::KeyAuth& key,
                                Stage next) {
  using Outcome = keys::KeyAuth::Outcome;
  if (key.outcome == Outcome::kUnavailable || key.outcome == Outcome::kBusy) {
    const bool busy = key.outcome == Outcome::kBusy;
    ctx->audit.decision = "unauthenticated";
    ctx->audit.error = key.message;
    HttpResponse r = ErrorResponse(503, busy ? "key_lookup_busy" : "redis_unavailable", key.message,
                                   ctx->request_id);
    r.headers.emplace_back("Retry-After", "1");
    Finish(ctx, std::move(r));
    return;
  }
  const auto now = std::chrono::system_clock::now();
  AuthResult auth;
  if (key.outcome == Outcome::kOk) {
    auth = ctx->snapshot->AuthenticateCaller(key.record.caller, now);
    if (auth.outcome == AuthResult::Outcome::kOk && key.record.expires_at &&
        (!auth.key_expires || *key.record.expires_at < *auth.key_expires)) {
      auth.key_expires = key.record.expires_at;
    }
  } else {
    ctx->key_known = key.outcome != Outcome::kUnknown || key.id_known;
    auth.outcome = key.outcome == Outcome::kRevoked   ? AuthResult::Outcome::kDisabled
                   : key.outcome == Outcome::kExpired ? AuthResult::Outcome::kExpired
                                                      : AuthResult::Outcome::kUnknown;
    auth.message = key.message;
  }
  Authenticated(ctx, auth, next);
}

void Pipeline::Authenticated(const std::shared_ptr<Context>& ctx, const AuthResult& auth,
                             Stage next) {
  AuditRecord& a = ctx->audit;
  if (!auth.key_id.empty()) a.key_id = auth.key_id;
  if (auth.outcome != AuthResult::Outcome::kOk) {
    if (auth.caller) a.caller = auth.caller->name;
    Fail(ctx, 401, "unauthenticated", "unauthenticated", auth.message);
    return;
  }
  ctx->caller = auth.caller;
  ctx->key_expires = auth.key_expires;
  a.caller = auth.caller->name;
  (this->*next)(ctx);
}

void Pipeline::Authorise(const std::shared_ptr<Context>& ctx) {
  const HttpRequest& req = ctx->exchange->request();
  AuditRecord& a = ctx->audit;
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
  ctx->redactors = std::move(decision.redactors);
  a.rule = decision.rule->path;
  if (req.has_body && !ctx->rule->allow_body && !MethodTakesBody(req.method)) {
    // An upstream that ignores a body on GET (many do) would read it as the next request on the
    // pooled connection: a request nobody authorised, sent with the service secret. Refused
    // before any token is taken and before a byte of the body is read.
    Fail(ctx, 400, "body_not_allowed", "bad_request",
         "a " + req.method + " request may not carry a body here (its rule does not set " +
             "\"allow_body\": true)");
    return;
  }
  ctx->cost = ctx->rule->cost;
  if (!decision.owner_values.empty()) {
    CheckOwners(ctx, std::move(decision.owner_values), 0);
    return;
  }
  Owned(ctx);
}

// Past authorisation and ownership: the body rules (when the rule has any), then the limiter.
void Pipeline::Owned(const std::shared_ptr<Context>& ctx) {
  if (policies::NeedsBody(*ctx->rule)) {
    ApplyBody(ctx);
    return;
  }
  Limit(ctx);
}

// The body is collected whole first (max_body_bytes bounds it), rewritten once, and forwarded
// buffered: its new length and (devo_hmac) its signature are the rewritten body's. A refusal
// takes no token and forwards nothing.
void Pipeline::ApplyBody(const std::shared_ptr<Context>& ctx) {
  if (ctx->exchange->body_pending()) {
    ctx->exchange->CollectBody([this, ctx] {
      if (int status = ctx->exchange->body_error_status()) {
        FailBody(ctx, status);
        return;
      }
      ApplyBody(ctx);
    });
    return;
  }
  policies::BodyRulesOutcome out =
      policies::ApplyBodyRules(*ctx->rule, ctx->exchange->request().body, *ctx->caller);
  if (out.status != 0) {
    Fail(ctx, out.status, "body_rule", out.status == 403 ? "forbidden" : "bad_request",
         std::move(out.message));
    return;
  }
  ctx->audit.body_rules = std::move(out.changed);
  if (out.rewritten) ctx->exchange->ReplaceBody(std::move(out.body));
  if (out.has_cost) ctx->cost = out.cost;
  Limit(ctx);
}

// Issue 12: ownership. Checked before the limiter (a refused request takes no tokens); never
// allowed when the store cannot answer.
void Pipeline::CheckOwners(const std::shared_ptr<Context>& ctx, std::vector<std::string> values,
                           size_t next) {
  if (next == values.size()) {
    Owned(ctx);
    return;
  }
  if (deps_.ownership == nullptr) {
    Fail(ctx, 503, "redis_unavailable", "error", "ownership cannot be checked now; retry shortly");
    return;
  }
  const std::string value = values[next];
  deps_.ownership->Lookup(
      ctx->upstream->name, value,
      [this, ctx, values = std::move(values), next](bool ok,
                                                    std::optional<std::string> owner) mutable {
        OnLoop(ctx, [this, ctx, values = std::move(values), next, ok,
                     owner = std::move(owner)]() mutable {
          const config::Caller& caller = *ctx->caller;
          if (!ok) {
            Fail(ctx, 503, "redis_unavailable", "error",
                 "ownership cannot be checked now (its store is unavailable); retry shortly");
            return;
          }
          bool owned = owner && *owner == caller.name;
          const std::string& group = ctx->rule->owner_group;
          const config::Caller* other =
              owner && !owned && !group.empty() ? ctx->snapshot->FindCaller(*owner) : nullptr;
          if (other != nullptr) {
            auto mine = caller.attributes.find(group);
            auto theirs = other->attributes.find(group);
            if (mine != caller.attributes.end() && theirs != other->attributes.end()) {
              for (const std::string& v : mine->second) {
                if (std::find(theirs->second.begin(), theirs->second.end(), v) !=
                    theirs->second.end()) {
                  owned = true;
                  break;
                }
              }
            }
          }
          if (!owned) {
            Fail(ctx, 403, "forbidden", "forbidden",
                 "caller '" + caller.name + "' does not own '" + values[next] + "' on " +
                     ctx->upstream->name);
            return;
          }
          CheckOwners(ctx, std::move(values), next + 1);
        });
      });
}

void Pipeline::Internal(const std::shared_ptr<Context>& ctx, std::string_view path) {
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
  Authenticate(ctx, &Pipeline::Whoami);
}

void Pipeline::Whoami(const std::shared_ptr<Context>& ctx) {
  auto buckets = ctx->snapshot->BucketsOfCaller(*ctx->caller);
  deps_.limiter->Peek(buckets, [this, ctx, buckets](policies::LimitDecision levels) {
    OnLoop(ctx, [this, ctx, buckets, levels = std::move(levels)] {
      rapidjson::StringBuffer buf;
      rapidjson::Writer<rapidjson::StringBuffer> w(buf);
      w.StartObject();
      w.Key("caller");
      WriteJsonString(w, ctx->caller->name);
      w.Key("roles");
      w.StartArray();
      for (const auto& r : ctx->caller->roles) WriteJsonString(w, r);
      w.EndArray();
      // The key's id (never the key), its kind and when it stops working.
      w.Key("key");
      w.StartObject();
      w.Key("id");
      WriteJsonString(w, ctx->audit.key_id);
      w.Key("kind");
      WriteJsonString(w, ctx->key_kind);
      w.Key("expires_at");
      if (ctx->key_expires) {
        WriteJsonString(w, FormatKeyTime(*ctx->key_expires));
      } else {
        w.Null();
      }
      w.EndObject();
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
        if (l.quota) {  // a calendar quota: what its window used and has left
          w.Key("quota");
          w.Bool(true);
          w.Key("used");
          w.Uint64(l.used);
        } else {
          w.Key("rate");
          WriteJsonString(w, std::to_string(buckets[i].rate.tokens) + "/" +
                                 std::to_string(buckets[i].rate.period_seconds) + "s");
        }
        w.Key("remaining");
        w.Double(std::floor(l.remaining * 1000) / 1000);
        w.Key("reset_seconds");
        w.Double(std::ceil(l.reset_seconds * 1000) / 1000);
        w.Key("shadow");
        w.Bool(buckets[i].shadow);
        w.EndObject();
      }
      w.EndArray();
      // The kind of limiter only ("redis", "memory"): where Redis lives is not the caller's.
      const std::string limiter = deps_.limiter->Describe();
      w.Key("limiter");
      WriteJsonString(w, std::string_view(limiter).substr(0, limiter.find(' ')));
      w.EndObject();
      HttpResponse r;
      r.headers.emplace_back("Content-Type", "application/json");
      r.body.assign(buf.GetString(), buf.GetSize());
      ctx->audit.decision = "allowed";
      Finish(ctx, std::move(r));
    });
  });
}

void Pipeline::Limit(const std::shared_ptr<Context>& ctx) {
  policies::LimitRequest request;
  request.buckets = ctx->snapshot->BucketsFor(*ctx->upstream, ctx->rule, *ctx->caller, ctx->cost);
  request.cooldown_upstream = ctx->upstream->name;
  request.slot_tag = ctx->snapshot->SlotTagOf(ctx->upstream->name);
  for (policies::BucketSpec& b : request.buckets) {
    // A caller with max_waiting requests waiting on a limit here may not wait on it: refused.
    if (b.wait_ms > 0 &&
        !waiting_.TryEnter(b.name, ctx->caller->name, b.max_waiting, &ctx->waiting)) {
      b.wait_ms = 0;
    }
  }
  ctx->buckets = request.buckets;  // kept for the response headers
  deps_.limiter->Acquire(std::move(request), [this, ctx](policies::LimitDecision d) {
    OnLoop(ctx, [this, ctx, d = std::move(d)]() mutable {
      ctx->limit = std::move(d);
      if (ctx->limit.outcome != policies::LimitDecision::Outcome::kAllowed ||
          ctx->limit.wait_us <= 0) {
        ctx->waiting.Release();
      }
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
          // Quotas past warn_at (the answer says so: AddRateLimitHeaders).
          for (size_t i = 0; i < ctx->limit.levels.size() && i < specs.size(); ++i) {
            const auto& l = ctx->limit.levels[i];
            if (!l.warn) continue;
            deps_.metrics->RecordLimit(l.name, "quota_warning");
            if (specs[i].quota) {
              deps_.metrics->RecordQuotaWarning(l.name, ctx->caller->name, *specs[i].quota);
            }
          }
          if (ctx->limit.wait_us > 0) {
            WaitThenForward(ctx);
            return;
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
          const bool quota = !cooldown && std::any_of(specs.begin(), specs.end(), [&](auto& s) {
            return s.quota && s.name == ctx->limit.limited_by;
          });
          if (quota) message = "quota '" + ctx->limit.limited_by + "' exhausted for this window";
          Fail(ctx, 429, quota ? "quota_exceeded" : "rate_limited", "rate_limited", message);
          return;
        }
        case policies::LimitDecision::Outcome::kUnavailable:
          Fail(ctx, 503, "redis_unavailable", "error",
               "rate limiter unavailable: " + ctx->limit.error);
          return;
      }
    });
  });
}

void Pipeline::WaitThenForward(const std::shared_ptr<Context>& ctx) {
  const int64_t wait_us = ctx->limit.wait_us;
  ctx->audit.waited_ms = static_cast<double>(wait_us) / 1000.0;  // as the limiter reserved it
  deps_.metrics->RecordWait(ctx->limit.wait_bucket, static_cast<double>(wait_us) / 1e6);
  deps_.metrics->AddWaiting(1);
  // Listed with the loop's transfers, so a drain past its timeout answers it (EndTransfersOn).
  ctx->self = ctx;
  ctx->loop
      ->Local<ActiveTransfers>(&upstream_in_flight_,
                               [] { return std::make_shared<ActiveTransfers>(); })
      ->contexts.insert(ctx.get());
  std::weak_ptr<Context> weak = ctx;
  ctx->exchange->SetStreamCallbacks(nullptr, [this, weak] {
    auto c = weak.lock();
    if (!c || c->wait_timer == 0) return;
    EndWait(*c);
    c->audit.decision = "allowed";
    c->audit.error =
        "the caller closed the connection while waiting for its tokens (they stay "
        "spent: other requests were already given the ones after them)";
    c->ended_by = "client_closed";
    FinishStream(c, "client_closed");
  });
  const auto delay = std::chrono::milliseconds((wait_us + 999) / 1000);
  ctx->wait_timer = ctx->loop->After(delay, [this, weak] {
    auto c = weak.lock();
    if (!c || c->wait_timer == 0) return;
    c->wait_timer = 0;  // fired: nothing to cancel
    EndWait(*c);
    Forward(c);
  });
}

void Pipeline::EndWait(Context& ctx) {
  if (ctx.wait_timer != 0) ctx.loop->Cancel(ctx.wait_timer);
  ctx.wait_timer = 0;
  ctx.waiting.Release();
  deps_.metrics->AddWaiting(-1);
  ctx.exchange->SetStreamCallbacks(nullptr, nullptr);
  ctx.loop
      ->Local<ActiveTransfers>(&upstream_in_flight_,
                               [] { return std::make_shared<ActiveTransfers>(); })
      ->contexts.erase(&ctx);
  ctx.self.reset();  // the caller holds its own reference
}

// The body source of a request whose body streams from the caller to the upstream.
class ExchangeBody : public upstream::BodySource {
 public:
  explicit ExchangeBody(std::shared_ptr<Exchange> exchange) : exchange_(std::move(exchange)) {}
  size_t Read(char* buffer, size_t max, bool* done, bool* failed) override {
    return exchange_->ReadBody(buffer, max, done, failed);
  }

 private:
  std::shared_ptr<Exchange> exchange_;
};

void Pipeline::Forward(const std::shared_ptr<Context>& ctx) {
  const HttpRequest& req = ctx->exchange->request();
  const config::Upstream& up = *ctx->upstream;
  if (ctx->exchange->caller_gone()) {
    // The caller closed (or half-closed: HTTP callers do not, so it is taken as leaving) while
    // its request waited for the limiter: nobody would get the answer.
    ctx->audit.decision = "allowed";
    ctx->audit.error = "the caller closed the connection before the request was forwarded";
    ctx->ended_by = "client_closed";
    FinishStream(ctx, "client_closed");
    return;
  }
  const bool stream_body = ctx->exchange->body_pending();
  if (stream_body && up.auth.type == config::AuthType::kDevoHmac) {
    // The signature covers the whole body: it is collected first (max_body_bytes bounds it).
    ctx->exchange->CollectBody([this, ctx] {
      if (int status = ctx->exchange->body_error_status()) {
        FailBody(ctx, status);
        return;
      }
      Forward(ctx);
    });
    return;
  }
  upstream::UpstreamRequest out;
  out.method = req.method;
  out.url.reserve(up.base_url.size() + ctx->path.size() + ctx->query.size() + 1);
  out.url.append(up.base_url).append(ctx->path);
  if (!ctx->rule->query.empty()) {
    // Issue 12: the rule's forced parameters replace whatever the caller sent for them.
    out.url.append("?").append(
        policies::ForceQuery(ctx->query, ctx->rule->query, ctx->caller->name));
  } else if (!ctx->query.empty()) {
    out.url.append("?").append(ctx->query);
  }
  // A route with redactions has its answer collected whole, and no byte range of it is asked
  // for (FilterRequestHeaders drops Range and If-Range there).
  ctx->buffered = !ctx->redactors.empty() || !ctx->rule->record_owner.empty();
  upstream::RequestHeaderDrops dropped;
  out.headers = upstream::FilterRequestHeaders(req.headers, up, ctx->exchange->client_ip(),
                                               ctx->buffered, &dropped);
  deps_.metrics->RecordRequestHeadersDropped(up.name, dropped);
  out.headers.emplace_back("X-Request-Id", ctx->request_id);
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  upstream::InjectUpstreamAuth(up.auth, req.body, now_ms, &out.headers);
  if (stream_body) {
    // The body streams as it arrives: with the caller's Content-Length, else chunked.
    out.body_source = std::make_shared<ExchangeBody>(ctx->exchange);
    const std::string* length = req.Header("content-length");
    out.body_length =
        length ? static_cast<int64_t>(std::strtoull(length->c_str(), nullptr, 10)) : int64_t{-1};
  } else {
    out.body = ctx->exchange->TakeBody();  // moved, not copied: the request is done with it
  }
  out.timeout_ms = up.timeout_ms;
  out.connect_timeout_ms = up.connect_timeout_ms;
  out.read_idle_timeout_ms = up.read_idle_timeout_ms;
  out.max_duration_ms = up.max_duration_ms;
  loop::Loop* loop = ctx->loop;
  ctx->client = loop->Local<upstream::StreamClient>(this, [this, loop] {
    return std::make_shared<upstream::StreamClient>(loop, deps_.upstream_options,
                                                    deps_.upstream_stats);
  });
  // The caller going away ends the transfer at once (and frees what it holds).
  std::weak_ptr<Context> weak = ctx;
  ctx->exchange->SetStreamCallbacks(nullptr, [this, weak] {
    auto c = weak.lock();
    if (!c || c->transfer == 0) return;
    c->ended_by = draining_.load() ? "draining" : "client_closed";
    c->client->Abort(c->transfer);
  });
  if (stream_body) {
    ctx->exchange->SetBodyCallback([weak] {
      auto c = weak.lock();
      if (!c || c->transfer == 0) return;
      if (c->exchange->body_error_status() != 0) {
        // The caller's body broke off (bad framing, over the limit): the upstream must not take
        // a truncated body as whole.
        c->body_failed = c->exchange->body_error_status();
        c->client->Abort(c->transfer);
        return;
      }
      c->client->ResumeSend(c->transfer);
    });
  }
  ctx->self = ctx;
  loop->Local<ActiveTransfers>(&upstream_in_flight_,
                               [] { return std::make_shared<ActiveTransfers>(); })
      ->contexts.insert(ctx.get());
  upstream_in_flight_.fetch_add(1, std::memory_order_relaxed);
  ctx->transfer = ctx->client->Start(std::move(out), ctx.get());
}

void Pipeline::EndTransfersOn(loop::Loop& loop) {
  auto* active = loop.Local<ActiveTransfers>(&upstream_in_flight_,
                                             [] { return std::make_shared<ActiveTransfers>(); });
  std::vector<std::shared_ptr<Context>> running;
  for (Context* c : active->contexts) running.push_back(c->self);
  for (auto& ctx : running) {
    if (ctx->wait_timer != 0) {
      // Still waiting for its reserved tokens when the drain timed out: not forwarded.
      EndWait(*ctx);
      ctx->ended_by = "draining";
      Fail(ctx, 503, "shutting_down", "error",
           "the gateway is shutting down (the request was waiting for its rate-limit tokens)");
      continue;
    }
    if (ctx->transfer == 0) continue;
    ctx->ended_by = "draining";
    ctx->client->Abort(ctx->transfer);
  }
}

void Pipeline::OnUpstreamHeaders(Context& c, int status, upstream::HeaderList headers) {
  std::shared_ptr<Context> ctx = c.self;
  AuditRecord& a = ctx->audit;
  const config::Upstream& up = *ctx->upstream;
  ctx->upstream_status = status;
  a.upstream_status = status;
  a.ttfb_ms = std::chrono::duration<double, std::milli>(Clock::now() - ctx->start).count();
  deps_.metrics->RecordUpstream(up.name, status, a.ttfb_ms / 1000.0);
  if (const std::string* cid = FindHeader(headers, "x-devo-cid")) {
    a.upstream_request_id = *cid;
  } else if (const std::string* rid = FindHeader(headers, "x-request-id")) {
    a.upstream_request_id = *rid;
  }
  // No upstream's secret value reaches the caller (nor the audit record), in any header.
  const upstream::SecretScanner& secrets = ctx->snapshot->secrets();
  size_t replaced = secrets.ReplaceAll(&a.upstream_request_id);
  if (std::string refused = upstream::RefusedResponseHead(headers); !refused.empty()) {
    ctx->refused = std::move(refused);  // OnUpstreamEnd (run by Abort) answers 502
    ctx->client->Abort(ctx->transfer);
    return;
  }
  HeaderList out = upstream::FilterResponseHeaders(headers, up);
  for (auto& header : out) replaced += secrets.ReplaceAll(&header.second);
  NoteSecrets(deps_.metrics, *ctx, replaced);
  if (status == 429) {
    // The upstream's own quota is spent: pause this upstream for every replica, so the shared
    // quota is not burnt further by callers who would only get the same 429.
    int64_t seconds = ParseRetryAfterSeconds(FindHeader(headers, "retry-after"),
                                             std::chrono::system_clock::now());
    deps_.limiter->StartCooldown(up.name, seconds * 1000, ctx->snapshot->SlotTagOf(up.name));
    deps_.metrics->RecordUpstreamCooldown(up.name);
    if (!FindHeader(out, "retry-after")) out.emplace_back("Retry-After", std::to_string(seconds));
  }
  std::optional<uint64_t> length;
  if (const std::string* value = FindHeader(headers, "content-length")) {
    length = std::strtoull(value->c_str(), nullptr, 10);
  }
  ctx->upstream_length = length;
  // Withheld before anything is sent: an encoded body cannot be scanned for secret values (nor
  // redacted), and on a redacted route a slice of the body could carry what the redactor would
  // have removed from the whole.
  for (const auto& [name, value] : headers) {
    if (upstream::HeaderNameEquals(name, "content-encoding") && !IsIdentityEncoding(value)) {
      ctx->withheld = "the upstream answered with Content-Encoding '" + value +
                      "', which cannot be scanned for secret values";
    } else if (ctx->buffered && upstream::HeaderNameEquals(name, "content-range")) {
      ctx->withheld = "the upstream answered with Content-Range on a route with redactions";
    }
  }
  if (ctx->buffered && status == 206) {
    ctx->withheld = "the upstream answered 206 (a part of the body) on a route with redactions";
  }
  if (!ctx->withheld.empty()) {
    secrets.ReplaceAll(&ctx->withheld);  // it quotes the upstream, and goes to the audit record
    ctx->client->Abort(ctx->transfer);   // ends the request (OnUpstreamEnd) before returning
    return;
  }
  const bool no_body =
      ctx->exchange->request().method == "HEAD" || status < 200 || status == 204 || status == 304;
  ctx->collect =
      !ctx->buffered && !no_body && !secrets.empty() && length && *length <= kCollectLimit;
  if (ctx->buffered || ctx->collect) {
    ctx->upstream_headers = std::move(out);
    if (length)
      ctx->body.reserve(std::min<uint64_t>(*length, deps_.upstream_options.max_response_bytes));
    return;
  }
  if (!no_body && !secrets.empty()) {
    ctx->scan.emplace(&secrets);
    ctx->length_promised = length.has_value();
  }
  out.emplace_back("X-Request-Id", ctx->request_id);
  AddKeyExpiry(*ctx, &out);
  if (!ctx->buckets.empty() && ctx->limit.levels.size() == ctx->buckets.size()) {
    AddRateLimitHeaders(ctx->buckets, ctx->limit.levels, &out);
  }
  a.decision = "allowed";
  a.status = status;
  ctx->streaming = true;
  ctx->answered = Clock::now();
  open_streams_.fetch_add(1, std::memory_order_relaxed);
  std::weak_ptr<Context> weak = ctx;
  ctx->exchange->SetStreamCallbacks(
      [weak] {
        if (auto c = weak.lock(); c && c->transfer != 0) c->client->Resume(c->transfer);
      },
      [this, weak] {
        auto c = weak.lock();
        if (!c || c->transfer == 0) return;
        c->ended_by = draining_.load() ? "draining" : "client_closed";
        c->client->Abort(c->transfer);
      });
  ctx->exchange->StartStream(status, out, length);
}

bool Pipeline::OnUpstreamData(Context& ctx, const char* data, size_t len) {
  if (ctx.scan) {
    ctx.scanned.clear();
    size_t first = 0;
    const size_t marks = ctx.scan->Feed(std::string_view(data, len), &ctx.scanned, &first);
    NoteSecrets(deps_.metrics, ctx, marks);
    if (marks > 0 && ctx.length_promised) {
      // The caller was promised the upstream's length: the stream is cut before the secret (the
      // scan held its first byte back), never sent with a length that no longer holds.
      if (first > 0) ctx.exchange->Write(std::string_view(ctx.scanned.data(), first));
      ctx.ended_by = "secret_withheld";
      ctx.client->Abort(ctx.transfer);  // ends the request: ctx may be gone
      return false;
    }
    return ctx.scanned.empty() || ctx.exchange->Write(ctx.scanned);
  }
  if (!ctx.buffered && !ctx.collect) return ctx.exchange->Write(std::string_view(data, len));
  const uint64_t cap = ctx.buffered ? deps_.upstream_options.max_response_bytes : kCollectLimit;
  if (ctx.body.size() + len > cap) {
    // The redactor (or the scan) needs the whole body and it is over the cap: withheld (502).
    ctx.too_large = true;
    ctx.client->Abort(ctx.transfer);
    return false;
  }
  ctx.body.append(data, len);
  return true;
}

void Pipeline::OnUpstreamEnd(Context& c, const upstream::StreamEnd& end) {
  std::shared_ptr<Context> ctx = std::move(c.self);
  ctx->transfer = 0;
  ctx->loop
      ->Local<ActiveTransfers>(&upstream_in_flight_,
                               [] { return std::make_shared<ActiveTransfers>(); })
      ->contexts.erase(ctx.get());
  upstream_in_flight_.fetch_sub(1, std::memory_order_relaxed);
  AuditRecord& a = ctx->audit;
  a.upstream_ms = end.total_ms;
  using R = upstream::StreamEndReason;
  if (ctx->streaming) {
    open_streams_.fetch_sub(1, std::memory_order_relaxed);
    std::string ended_by = !ctx->ended_by.empty()              ? ctx->ended_by
                           : end.reason == R::kComplete        ? "complete"
                           : end.reason == R::kReadIdleTimeout ? "read_idle_timeout"
                           : end.reason == R::kMaxDuration     ? "max_duration"
                           : end.reason == R::kShutdown        ? "draining"
                                                               : "upstream_closed";
    if (ended_by == "complete" && ctx->scan) {
      // What the scan held back (a tail that could have begun a secret) goes out now.
      ctx->scanned.clear();
      size_t first = 0;
      const size_t marks = ctx->scan->Finish(&ctx->scanned, &first);
      NoteSecrets(deps_.metrics, *ctx, marks);
      if (marks > 0 && ctx->length_promised) {
        ctx->exchange->Write(std::string_view(ctx->scanned.data(), first));
        ended_by = "secret_withheld";
      } else {
        ctx->exchange->Write(ctx->scanned);
      }
    }
    if (ended_by == "complete") {
      ctx->exchange->EndStream();
    } else {
      if (ended_by == "secret_withheld") {
        deps_.metrics->RecordUpstreamError(ctx->upstream->name, ended_by);
        a.error =
            "the answer carried an upstream secret value; it was cut before it (the caller had "
            "been promised the upstream's Content-Length)";
      } else if (ended_by != "client_closed" && ended_by != "draining") {
        deps_.metrics->RecordUpstreamError(ctx->upstream->name, ended_by);
        a.error = "the answer was cut short: " + ended_by +
                  (end.error_message.empty() ? "" : " (" + end.error_message + ")");
      } else if (ended_by == "draining") {
        a.error = "the gateway shut down before the answer ended";
      }
      ctx->exchange->AbortStream();
    }
    FinishStream(ctx, ended_by);
    return;
  }
  if (ctx->body_failed != 0 && !ctx->streaming) {
    FailBody(ctx, ctx->body_failed);
    return;
  }
  if (ctx->ended_by == "draining" && !ctx->exchange->caller_gone()) {
    Fail(ctx, 503, "shutting_down", "error",
         "the gateway shut down before the upstream answered; retry");
    return;
  }
  if (!ctx->ended_by.empty()) {
    // The caller left (or the gateway is shutting down) before any answer: nobody to answer.
    a.decision = "allowed";
    a.error = ctx->ended_by == "draining" ? "the gateway shut down before the upstream answered"
                                          : "the caller closed the connection before the answer";
    FinishStream(ctx, ctx->ended_by);
    return;
  }
  if (!ctx->refused.empty()) {
    a.upstream_status = 0;  // its answer was not taken
    deps_.metrics->RecordUpstreamError(ctx->upstream->name, "bad_header");
    Fail(ctx, 502, "upstream_unavailable", "error",
         "upstream '" + ctx->upstream->name + "' is unavailable", ctx->refused);
    return;
  }
  if (!ctx->withheld.empty()) {
    deps_.metrics->RecordUpstreamError(ctx->upstream->name, "withheld");
    Fail(ctx, 502, "upstream_unavailable", "error",
         "upstream '" + ctx->upstream->name +
             "' answered with what the gateway cannot pass on; it was withheld",
         ctx->withheld + "; it was withheld");
    return;
  }
  if (ctx->too_large) {
    a.upstream_status = 0;  // its answer was not taken
    deps_.metrics->RecordUpstreamError(ctx->upstream->name, "too_large");
    Fail(ctx, 502, "upstream_unavailable", "error",
         "upstream '" + ctx->upstream->name + "' is unavailable",
         "response body larger than " +
             std::to_string(ctx->buffered ? deps_.upstream_options.max_response_bytes
                                          : kCollectLimit) +
             " bytes");
    return;
  }
  if (end.reason != R::kComplete) {
    OnUpstreamFailure(ctx, end);
    return;
  }
  if (!ctx->rule->record_owner.empty() && ctx->upstream_status / 100 == 2) {
    RecordOwner(ctx);
    return;
  }
  FinishBuffered(ctx);
}

// Issue 12: recorded before the answer is released, so the caller's next call finds it. A
// record that fails is logged and counted, and the answer still goes out: what was created
// upstream exists either way, and the caller had better know its id.
void Pipeline::RecordOwner(const std::shared_ptr<Context>& ctx) {
  std::optional<std::string> value = policies::OwnedValueAt(ctx->body, ctx->rule->record_owner);
  if (!value || deps_.ownership == nullptr) {
    deps_.metrics->RecordOwnershipFailure();
    LogWarn("upstream '" + ctx->upstream->name + "' answered " +
            std::to_string(ctx->upstream_status) + " on " + ctx->path +
            " without a string or integer at " + ctx->rule->record_owner + " (request " +
            ctx->request_id + "); no owner recorded");
    FinishBuffered(ctx);
    return;
  }
  deps_.ownership->Record(ctx->upstream->name, *value, ctx->caller->name, [this, ctx](bool ok) {
    OnLoop(ctx, [this, ctx, ok] {
      if (!ok) {
        deps_.metrics->RecordOwnershipFailure();
        LogWarn("the owner of what request " + ctx->request_id +
                " created could not be recorded (the ownership store "
                "is unavailable); the answer goes out regardless");
      }
      FinishBuffered(ctx);
    });
  });
}

void Pipeline::OnUpstreamFailure(const std::shared_ptr<Context>& ctx,
                                 const upstream::StreamEnd& end) {
  const config::Upstream& up = *ctx->upstream;
  using R = upstream::StreamEndReason;
  ctx->audit.upstream_status = 0;
  if (end.reason == R::kTimeout || end.reason == R::kMaxDuration ||
      end.reason == R::kReadIdleTimeout) {
    deps_.metrics->RecordUpstreamError(up.name, "timeout");
    Fail(ctx, 504, "upstream_timeout", "error",
         "upstream '" + up.name + "' did not answer within " + std::to_string(up.timeout_ms) +
             " ms");
    return;
  }
  deps_.metrics->RecordUpstreamError(up.name, end.reason == R::kConnect ? "connect" : "other");
  // libcurl's text names internal hosts and ports: it goes to the audit record only.
  Fail(ctx, 502, "upstream_unavailable", "error", "upstream '" + up.name + "' is unavailable",
       end.error_message.empty() ? std::string(upstream::StreamEndReasonName(end.reason))
                                 : end.error_message);
}

void Pipeline::FailBody(const std::shared_ptr<Context>& ctx, int status) {
  std::string_view reason = status == 413   ? "payload_too_large"
                            : status == 431 ? "headers_too_large"
                                            : "bad_request";
  ctx->audit.upstream_status = 0;
  Fail(ctx, status, reason, "bad_request", ctx->exchange->body_error());
}

void Pipeline::FinishBuffered(const std::shared_ptr<Context>& ctx) {
  HttpResponse out;
  out.status = ctx->upstream_status;
  out.headers = std::move(ctx->upstream_headers);
  out.body = std::move(ctx->body);
  // A HEAD answer carries no length here: the upstream's would be that of the unredacted body
  // (a token's length, on a redacted route), and no other is known.
  out.head_length_withheld = ctx->exchange->request().method == "HEAD";
  if (ctx->buffered && !out.body.empty()) {
    // Whatever the status: an error page can carry the token as well as a 200 can. Every
    // matching rule's redactions apply (a JSON body stays JSON after the first).
    bool not_json = false;
    for (const policies::Redactor* redactor : ctx->redactors) {
      not_json = not_json || redactor->Apply(&out.body) == policies::Redactor::Outcome::kNotJson;
    }
    if (not_json) {
      Fail(ctx, 502, "upstream_unavailable", "error",
           "the upstream answered with a body that is not JSON on a route with redactions; "
           "it was withheld",
           "the upstream answered " + std::to_string(ctx->upstream_status) +
               " with a body that is not JSON on a route with redactions; it was withheld");
      return;
    }
  }
  // After the redaction (whose output is what is sent): the length sent is the scanned one.
  NoteSecrets(deps_.metrics, *ctx, ctx->snapshot->secrets().ReplaceAll(&out.body));
  ctx->audit.decision = "allowed";
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
  AddKeyExpiry(*ctx, &response.headers);
  if (!ctx->buckets.empty() && ctx->limit.levels.size() == ctx->buckets.size()) {
    AddRateLimitHeaders(ctx->buckets, ctx->limit.levels, &response.headers);
  }
  AuditRecord& a = ctx->audit;
  const bool gone = ctx->exchange->caller_gone();
  // A caller that left before its answer got nothing: 499 (nginx's "client closed request"),
  // not the status it would have had.
  a.status = gone ? 499 : response.status;
  a.bytes_out = gone || ctx->exchange->request().method == "HEAD" ? 0 : response.body.size();
  a.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - ctx->start).count();
  a.duration_ms = a.latency_ms;
  a.ended_by = !ctx->ended_by.empty()         ? ctx->ended_by
               : ctx->exchange->caller_gone() ? "client_closed"
                                              : "complete";
  ctx->exchange->Respond(std::move(response));
  Done(ctx);
}

void Pipeline::FinishStream(const std::shared_ptr<Context>& ctx, std::string_view ended_by) {
  AuditRecord& a = ctx->audit;
  auto now = Clock::now();
  if (ctx->streaming) {
    a.latency_ms = std::chrono::duration<double, std::milli>(ctx->answered - ctx->start).count();
  } else {
    // Nothing was answered: the status says why (499: the caller closed the request, nginx's
    // convention; 503 when the gateway was shutting down).
    a.status = ended_by == "draining" ? 503 : 499;
    a.latency_ms = std::chrono::duration<double, std::milli>(now - ctx->start).count();
  }
  a.duration_ms = std::chrono::duration<double, std::milli>(now - ctx->start).count();
  a.bytes_out = ctx->exchange->body_bytes_sent();
  a.ended_by = std::string(ended_by);
  Done(ctx);
}

// Once per admitted request: metrics, the audit record into its reserved place, in-flight.
void Pipeline::Done(const std::shared_ptr<Context>& ctx) {
  AuditRecord& a = ctx->audit;
  a.bytes_in = std::max<uint64_t>(a.bytes_in, ctx->exchange->body_bytes_received());
  deps_.metrics->RecordRequest(a.upstream, a.decision, a.status, a.duration_ms / 1000.0);
  deps_.metrics->callers().Record(a.caller ? std::string_view(*a.caller) : std::string_view(),
                                  a.upstream, a.decision, ctx->buckets, ctx->limit);
  if (deps_.usage != nullptr) {
    // Usage counts what the audit record says; a made-up key's id is never a usage field.
    usage::UsageEvent e;
    e.when = a.ts;
    if (a.caller && ctx->caller) e.caller = *a.caller;  // "" = unauthenticated
    e.upstream = a.upstream;
    e.decision = a.decision;
    e.status = a.status;
    e.bytes_in = a.bytes_in;
    e.bytes_out = a.bytes_out;
    if (ctx->key_known) e.unauthenticated_key = a.key_id;
    // What the limiter took: the request was let through by every (non-shadow) bucket.
    if (ctx->limit.outcome == policies::LimitDecision::Outcome::kAllowed && !ctx->buckets.empty() &&
        ctx->limit.levels.size() == ctx->buckets.size()) {
      for (const auto& b : ctx->buckets) {
        if (!b.shadow && b.cost > 0) e.costs.emplace_back(b.name, b.cost);
      }
    }
    deps_.usage->Record(e);
  }
  deps_.audit->Submit(std::move(ctx->audit_slot), std::move(ctx->audit));
  if (in_flight_.fetch_sub(1) == 1) {
    std::lock_guard<std::mutex> lock(drain_mu_);
    drained_.notify_all();
  }
}

}  // namespace tollgate::gateway
