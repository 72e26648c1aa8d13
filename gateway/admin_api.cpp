#include "gateway/admin_api.h"

#include <openssl/crypto.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <string_view>

#include "gateway/snapshot.h"
#include "upstream/upstream_auth.h"

namespace tollgate::gateway {
namespace {

using Clock = std::chrono::steady_clock;

struct Endpoint {
  std::string_view path;
  std::string_view action;  // the audit record's `action`
  bool post;                // POST only; otherwise GET and HEAD
  std::string_view scope;   // "" = open: no token, no audit record
};

constexpr Endpoint kEndpoints[] = {
    {"/healthz", "healthz", false, ""},
    {"/readyz", "readyz", false, ""},
    {"/metrics", "metrics", false, ""},
    {"/reload", "reload", true, "reload"},
};

const Endpoint* FindEndpoint(std::string_view path) {
  for (const Endpoint& e : kEndpoints) {
    if (e.path == path) return &e;
  }
  return nullptr;
}

// Why a request comes from a web page, or nullptr. Browsers send Origin with every POST and
// every cross-origin fetch, and Sec-Fetch-Site with every request; "none" there means the user
// typed the address (not a page), which may read /metrics like curl does. Tools (curl,
// Prometheus, the kubelet) send neither.
const char* FromABrowser(const HttpRequest& req) {
  if (req.Header("origin") != nullptr) {
    return "requests with an Origin header (from a web page) are refused on the admin listener";
  }
  const std::string* site = req.Header("sec-fetch-site");
  if (site != nullptr && *site != "none") {
    return "requests made by a web page (Sec-Fetch-Site) are refused on the admin listener";
  }
  return nullptr;
}

// The token of `Authorization: Bearer <token>` (scheme in any case), or "" when there is none.
std::string_view BearerToken(const std::string* authorization) {
  if (authorization == nullptr) return {};
  std::string_view v(*authorization);
  constexpr std::string_view kBearer = "bearer ";
  if (v.size() <= kBearer.size()) return {};
  for (size_t i = 0; i < kBearer.size(); ++i) {
    char c = v[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kBearer[i]) return {};
  }
  v.remove_prefix(kBearer.size());
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  return v;
}

// The configured token whose hash is SHA-256(token), or nullptr. Every configured hash is
// compared, each with CRYPTO_memcmp, so the time taken says nothing about which bytes matched.
const config::AdminToken* MatchToken(const std::vector<config::AdminToken>& tokens,
                                     std::string_view token) {
  const std::string digest = upstream::Sha256Hex(token);
  const config::AdminToken* match = nullptr;
  for (const config::AdminToken& t : tokens) {
    if (t.sha256.size() == digest.size() &&
        CRYPTO_memcmp(t.sha256.data(), digest.data(), digest.size()) == 0) {
      match = &t;
    }
  }
  return match;
}

HttpResponse JsonResponse(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = std::move(body);
  return r;
}

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string JoinErrors(const std::vector<std::string>& errors) {
  std::string out;
  for (const auto& e : errors) out += (out.empty() ? "" : "; ") + e;
  return out;
}

std::shared_ptr<AdminAction> ReloadAction(const ReloadOutcome& outcome, std::string admin) {
  auto action = std::make_shared<AdminAction>();
  action->admin = std::move(admin);
  action->action = "reload";
  action->applied = outcome.applied;
  action->changes = outcome.changes;
  action->restart_required = outcome.restart_required;
  return action;
}

std::string ReloadSummary(const ReloadOutcome& outcome) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  auto strings = [&w](const char* key, const std::vector<std::string>& items) {
    w.Key(key);
    w.StartArray();
    for (const auto& item : items) w.String(item.c_str());
    w.EndArray();
  };
  w.StartObject();
  w.Key("reloaded");
  w.Bool(outcome.applied);
  if (outcome.applied) {
    strings("restart_required", outcome.restart_required);
    strings("changes", outcome.changes);
  } else {
    strings("errors", outcome.errors);
  }
  w.EndObject();
  return buf.GetString();
}

}  // namespace

AuditRecord ReloadAuditRecord(const ReloadOutcome& outcome, std::string admin,
                              Clock::time_point start) {
  AuditRecord r;
  r.ts = std::chrono::system_clock::now();
  r.request_id = NewRequestId();
  r.decision = "admin";
  r.status = outcome.applied ? 200 : 400;
  r.error = JoinErrors(outcome.errors);
  r.latency_ms = r.duration_ms = MsSince(start);
  r.admin = ReloadAction(outcome, std::move(admin));
  return r;
}

struct AdminApi::Call {
  std::shared_ptr<Exchange> exchange;
  AuditLog::Slot slot;
  Clock::time_point start;
  std::string request_id;
  AuditRecord record;
  std::shared_ptr<AdminAction> action;
};

void AdminApi::Handle(const std::shared_ptr<Exchange>& exchange) {
  const HttpRequest& req = exchange->request();
  if (exchange->parse_error_status()) {
    exchange->Respond(
        ErrorResponse(exchange->parse_error_status(), "bad_request", exchange->parse_error(), ""));
    return;
  }
  const std::string path = req.target.substr(0, req.target.find('?'));
  const Endpoint* endpoint = FindEndpoint(path);
  if (const char* why = FromABrowser(req)) {
    Call call;
    if (!Begin(exchange, endpoint ? endpoint->action : "none", &call)) return;
    Finish(call, ErrorResponse(403, "forbidden", why, call.request_id), "forbidden");
    return;
  }
  if (endpoint == nullptr) {
    exchange->Respond(ErrorResponse(404, "not_found", "no such admin endpoint", ""));
    return;
  }
  const bool method_ok =
      endpoint->post ? req.method == "POST" : req.method == "GET" || req.method == "HEAD";
  if (!method_ok) {
    exchange->Respond(ErrorResponse(405, "method_not_allowed", "method not allowed", ""));
    return;
  }
  if (endpoint->scope.empty()) {
    if (endpoint->path == "/healthz") {
      exchange->Respond(JsonResponse(200, R"({"status":"ok"})"));
    } else if (endpoint->path == "/readyz") {
      ServeReadyz(exchange);
    } else {
      ServeMetrics(exchange);
    }
    return;
  }
  Call call;
  if (!Begin(exchange, endpoint->action, &call)) return;
  if (!Authorise(call, std::string(endpoint->scope))) return;
  Reload(call);
}

bool AdminApi::Begin(const std::shared_ptr<Exchange>& exchange, std::string_view action,
                     Call* call) {
  const HttpRequest& req = exchange->request();
  const std::string* incoming_id = req.Header("x-request-id");
  call->request_id = incoming_id && IsValidRequestId(*incoming_id) ? *incoming_id : NewRequestId();
  call->slot = deps_.audit->Reserve();
  if (!call->slot) {
    // Nothing is done that cannot be audited.
    HttpResponse r =
        ErrorResponse(503, "audit_unavailable",
                      "the audit log cannot take more records (its sink is stalled); retry shortly",
                      call->request_id);
    r.headers.emplace_back("Retry-After", "1");
    r.headers.emplace_back("X-Request-Id", call->request_id);
    exchange->Respond(std::move(r));
    deps_.metrics->RecordAuditRefused();
    return false;
  }
  call->exchange = exchange;
  call->start = Clock::now();
  call->action = std::make_shared<AdminAction>();
  call->action->action = std::string(action);
  AuditRecord& a = call->record;
  a.ts = std::chrono::system_clock::now();
  a.request_id = call->request_id;
  if (const std::string* id = req.Header("x-request-id"); id && *id == call->request_id) {
    a.gateway_request_id = NewRequestId();  // the caller's id need not be unique; ours is
  }
  a.client_ip = exchange->client_ip();
  a.method = req.method;
  const size_t query = req.target.find('?');
  a.path = req.target.substr(0, query);
  if (query != std::string::npos) a.query = req.target.substr(query + 1);
  a.bytes_in = req.body.size();
  return true;
}

bool AdminApi::Authorise(Call& call, const std::string& scope) {
  // The snapshot is the running config's: a reload that changes the tokens applies from the
  // next call on.
  const std::shared_ptr<const Snapshot> snapshot = deps_.pipeline->snapshot();
  const std::vector<config::AdminToken>& tokens = snapshot->config().admin.tokens;
  if (tokens.empty()) {
    Finish(call,
           ErrorResponse(403, "forbidden",
                         "no admin token is configured (\"admin\": {\"tokens\": [...]}), so this "
                         "endpoint is off; send SIGHUP to reload",
                         call.request_id),
           "forbidden");
    return false;
  }
  const std::string_view token = BearerToken(call.exchange->request().Header("authorization"));
  const config::AdminToken* admin = token.empty() ? nullptr : MatchToken(tokens, token);
  if (admin == nullptr) {
    HttpResponse r =
        ErrorResponse(401, "unauthenticated",
                      token.empty() ? "missing admin token: send Authorization: Bearer <token>"
                                    : "unknown admin token",
                      call.request_id);
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    Finish(call, std::move(r), "unauthenticated");
    return false;
  }
  call.action->admin = admin->name;
  if (!admin->Allows(scope)) {
    Finish(call,
           ErrorResponse(403, "forbidden",
                         "admin token \"" + admin->name + "\" lacks the scope \"" + scope + "\"",
                         call.request_id),
           "forbidden");
    return false;
  }
  return true;
}

void AdminApi::Reload(Call& call) {
  const ReloadOutcome outcome = deps_.reload();
  call.action = ReloadAction(outcome, call.action->admin);
  Finish(call, JsonResponse(outcome.applied ? 200 : 400, ReloadSummary(outcome)), "admin",
         JoinErrors(outcome.errors));
}

void AdminApi::Finish(Call& call, HttpResponse response, std::string decision, std::string error) {
  response.headers.emplace_back("X-Request-Id", call.request_id);
  AuditRecord& a = call.record;
  a.decision = std::move(decision);
  a.status = response.status;
  a.error = std::move(error);
  a.bytes_out = response.body.size();
  a.latency_ms = a.duration_ms = MsSince(call.start);
  a.admin = std::move(call.action);
  // The record goes first: once the caller has its answer, the action is on record.
  deps_.audit->Submit(std::move(call.slot), std::move(a));
  call.exchange->Respond(std::move(response));
}

void AdminApi::ServeReadyz(const std::shared_ptr<Exchange>& exchange) {
  Pipeline& pipeline = *deps_.pipeline;
  bool config_ok = pipeline.snapshot() != nullptr;
  bool limiter_ok = deps_.limiter->Ready();
  bool ready = config_ok && limiter_ok && !pipeline.draining();
  // No free audit place: new requests are being refused (503 audit_unavailable), so the
  // load balancer should send them elsewhere until the audit sink moves again.
  bool audit_ok = deps_.audit->slots_used() < deps_.audit->capacity();
  if (!audit_ok) ready = false;
  std::string body = std::string("{\"ready\":") + (ready ? "true" : "false") +
                     ",\"config\":" + (config_ok ? "true" : "false") +
                     ",\"limiter\":" + (limiter_ok ? "true" : "false") +
                     ",\"audit\":" + (audit_ok ? "true" : "false") +
                     ",\"draining\":" + (pipeline.draining() ? "true" : "false") + "}";
  exchange->Respond(JsonResponse(ready ? 200 : 503, body));
}

void AdminApi::ServeMetrics(const std::shared_ptr<Exchange>& exchange) {
  AuditLog& audit = *deps_.audit;
  MetricsSnapshot m;
  m.in_flight = deps_.pipeline->in_flight();
  m.audit_queue_depth = static_cast<int64_t>(audit.queue_depth());
  m.audit_written = audit.written();
  m.audit_stream_errors = audit.stream_errors();
  m.audit_stream_dropped = audit.stream_dropped();
  m.audit_file_dropped = audit.file_dropped();
  m.audit_slots_used = static_cast<int64_t>(audit.slots_used());
  m.limiter = &deps_.limiter->stats();
  m.limiter_ready = deps_.limiter->Ready();
  m.limiter_backend = deps_.limiter->Describe();
  m.upstream = deps_.upstream_stats;
  m.upstream_in_flight = static_cast<size_t>(deps_.pipeline->upstream_in_flight());
  m.open_streams = deps_.pipeline->open_streams();
  m.connections_open = deps_.main->connections_open();
  m.connections_refused = deps_.main->connections_refused();
  HttpResponse r;
  r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  r.body = deps_.metrics->Render(m);
  exchange->Respond(std::move(r));
}

}  // namespace tollgate::gateway
