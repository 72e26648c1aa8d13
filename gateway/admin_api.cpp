#include "gateway/admin_api.h"

#include <openssl/crypto.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <string_view>

#include "gateway/admin_keys.h"
#include "gateway/console_assets.h"
#include "gateway/snapshot.h"
#include "keys/key_format.h"
#include "keys/run_time_keys.h"
#include "upstream/upstream_auth.h"
#include "usage/usage_report.h"
#include "usage/usage_service.h"

namespace tollgate::gateway {
namespace {

using Clock = std::chrono::steady_clock;

enum class Method { kGet, kPost, kDelete };  // kGet: GET and HEAD

// Which web pages may call an endpoint (the rule is in admin_api.h).
enum class Browser {
  kByScope,  // open endpoints: no page at all; token endpoints: a page of this origin
  kPage,     // an open page (the console): typed in, or asked for by a page of this origin
};

struct Endpoint {
  std::string_view path;  // a "{id}" segment matches any one non-empty segment
  Method method;
  std::string_view action;  // the audit record's `action`
  std::string_view scope;   // "" = open: no token, no audit record
  Browser browser = Browser::kByScope;
};

constexpr Endpoint kEndpoints[] = {
    {"/healthz", Method::kGet, "healthz", ""},
    {"/readyz", Method::kGet, "readyz", ""},
    {"/metrics", Method::kGet, "metrics", ""},
    {"/reload", Method::kPost, "reload", "reload"},
    {"/keys", Method::kPost, "keys.create", "keys"},
    {"/keys", Method::kGet, "keys.list", "keys"},
    {"/keys/{id}", Method::kDelete, "keys.revoke", "keys"},
    {"/keys/{id}/rotate", Method::kPost, "keys.rotate", "keys"},
    {"/status", Method::kGet, "console.status", "read"},
    {"/callers", Method::kGet, "console.callers", "read"},
    {"/limits", Method::kGet, "console.limits", "read"},
    {"/refusals", Method::kGet, "console.refusals", "read"},
    {"/usage", Method::kGet, "usage", "usage"},
};

bool MethodMatches(Method method, std::string_view m) {
  switch (method) {
    case Method::kGet:
      return m == "GET" || m == "HEAD";
    case Method::kPost:
      return m == "POST";
    case Method::kDelete:
      return m == "DELETE";
  }
  return false;
}

// True when `path` matches `pattern` segment by segment; *param is what "{id}" matched.
bool PathMatches(std::string_view pattern, std::string_view path, std::string_view* param) {
  constexpr std::string_view kParamSegment = "/{id}";
  while (!pattern.empty() && !path.empty()) {
    const size_t p_end = pattern.find('/', 1);
    const size_t end = path.find('/', 1);
    const std::string_view p_segment = pattern.substr(0, p_end);
    const std::string_view segment = path.substr(0, end);
    if (p_segment == kParamSegment) {
      if (segment.size() < 2) return false;
      *param = segment.substr(1);
    } else if (p_segment != segment) {
      return false;
    }
    pattern = p_end == std::string_view::npos ? std::string_view() : pattern.substr(p_end);
    path = end == std::string_view::npos ? std::string_view() : path.substr(end);
  }
  return pattern.empty() && path.empty();
}

struct Route {
  const Endpoint* endpoint = nullptr;  // the one for this path and method
  const Endpoint* on_path = nullptr;   // the first for this path (any method)
  std::string_view param;              // the "{id}" segment
};

Route FindRoute(std::string_view method, std::string_view path) {
  Route route;
  for (const Endpoint& e : kEndpoints) {
    std::string_view param;
    if (!PathMatches(e.path, path, &param)) continue;
    if (route.on_path == nullptr) {
      route.on_path = &e;
      route.param = param;
    }
    if (MethodMatches(e.method, method)) {
      route.endpoint = &e;
      break;
    }
  }
  return route;
}

// Why a web page may not make this request, or nullptr. Browsers send Origin with every POST and
// every cross-origin fetch, and Sec-Fetch-Site with every request; "none" there means the user
// typed the address (not a page), which may read /metrics like curl does. Tools (curl,
// Prometheus, the kubelet) send neither. `same_origin`: a page of the listener's own origin
// (Sec-Fetch-Site "same-origin", and an Origin, when sent, of "http://" + Host) may call.
const char* BrowserRefusal(const HttpRequest& req, bool same_origin) {
  const std::string* origin = req.Header("origin");
  const std::string* site = req.Header("sec-fetch-site");
  if (origin == nullptr && (site == nullptr || *site == "none")) return nullptr;
  if (!same_origin) {
    if (origin != nullptr) {
      return "requests with an Origin header (from a web page) are refused on the admin listener";
    }
    return "requests made by a web page (Sec-Fetch-Site) are refused on the admin listener";
  }
  if (site == nullptr || *site != "same-origin") {
    return "requests made by a page of another site are refused on the admin listener";
  }
  const std::string* host = req.Header("host");
  if (origin != nullptr && (host == nullptr || *origin != "http://" + *host)) {
    return "requests whose Origin is not this listener's are refused on the admin listener";
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

// `text` with every run of key characters that starts like a caller key or an admin token
// ("tg_", "tga_") replaced by "[key]": a key pasted into a path or a query by mistake is not
// written into the audit record.
std::string ScrubKeys(std::string_view text) {
  auto is_key_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  };
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const bool starts_run = i == 0 || !is_key_char(text[i - 1]);
    if (starts_run && (text.substr(i, 3) == "tg_" || text.substr(i, 4) == "tga_")) {
      size_t end = i;
      while (end < text.size() && is_key_char(text[end])) ++end;
      out += "[key]";
      i = end;
      continue;
    }
    out.push_back(text[i++]);
  }
  return out;
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
  bool finished = false;
};

void AdminApi::Handle(const std::shared_ptr<Exchange>& exchange) {
  const HttpRequest& req = exchange->request();
  if (exchange->parse_error_status()) {
    exchange->Respond(
        ErrorResponse(exchange->parse_error_status(), "bad_request", exchange->parse_error(), ""));
    return;
  }
  const std::string path = req.target.substr(0, req.target.find('?'));
  // The console's static files: no token, no data, no audit record (console_assets.h).
  if (IsConsolePath(path)) {
    exchange->Respond(ConsoleResponse(req, path));
    return;
  }
  const Route route = FindRoute(req.method, path);
  // Audit records name a key by its id only: a path segment that is not one (a whole key
  // pasted by mistake, say) is not written down.
  const std::string id(route.param);
  auto begin = [&](std::string_view action, Call* call) {
    if (!Begin(exchange, action, call)) return false;
    if (!route.param.empty()) {
      if (keys::IsValidKeyId(id)) {
        call->record.key_id = id;
      } else {
        call->record.path = std::string(route.on_path->path);
      }
    }
    return true;
  };
  const Endpoint* named = route.endpoint ? route.endpoint : route.on_path;
  const bool same_origin =
      named != nullptr && (!named->scope.empty() || named->browser == Browser::kPage);
  if (const char* why = BrowserRefusal(req, same_origin)) {
    Call call;
    if (!begin(named ? named->action : "none", &call)) return;
    Finish(call, ErrorResponse(403, "forbidden", why, call.request_id), "forbidden");
    return;
  }
  if (route.on_path == nullptr) {
    exchange->Respond(ErrorResponse(404, "not_found", "no such admin endpoint", ""));
    return;
  }
  const Endpoint* endpoint = route.endpoint;
  if (endpoint == nullptr) {
    if (route.on_path->scope.empty()) {
      exchange->Respond(ErrorResponse(405, "method_not_allowed", "method not allowed", ""));
      return;
    }
    // A wrong method on an endpoint that acts is on record too (someone tried something).
    Call call;
    if (!begin(route.on_path->action, &call)) return;
    Finish(call, ErrorResponse(405, "method_not_allowed", "method not allowed", call.request_id),
           "bad_request");
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
  auto call = std::make_shared<Call>();
  if (!begin(endpoint->action, call.get())) return;
  if (!Authorise(*call, std::string(endpoint->scope))) return;
  if (endpoint->action == "reload") {
    Reload(*call);
  } else if (endpoint->action.substr(0, 8) == "console.") {
    Console(call, endpoint->action);
  } else if (endpoint->action == "usage") {
    Usage(call);
  } else {
    Keys(call, endpoint->action, id);
  }
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
  a.path = ScrubKeys(req.target.substr(0, query));
  if (query != std::string::npos) a.query = ScrubKeys(req.target.substr(query + 1));
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

namespace {

// Times as Redis keeps them (whole milliseconds), so an answer's times equal a later listing's.
keys::TimePoint KeyNow() {
  return keys::FromUnixMs(keys::ToUnixMs(std::chrono::system_clock::now()));
}

// The 404 for a path segment that cannot be a key id; it never echoes the segment.
std::string NotAnIdMessage(std::string_view segment) {
  std::string_view id;
  if (keys::ParseRunTimeKey(segment, &id)) {
    return "that is a whole key, not its id: name the key by the 12 characters after \"tg_\" "
           "(and treat the key as exposed)";
  }
  return "no such key (a key id is 12 characters of a-z and 0-9)";
}

std::string_view RotationConflict(keys::KeyState state) {
  switch (state) {
    case keys::KeyState::kRevoked:
      return "the key is revoked";
    case keys::KeyState::kExpired:
      return "the key has expired";
    case keys::KeyState::kGrace:
      return "the key was already rotated";
    case keys::KeyState::kActive:
      break;
  }
  return "";
}

}  // namespace

void AdminApi::Keys(const std::shared_ptr<Call>& call, std::string_view action,
                    const std::string& id) {
  if (deps_.keys == nullptr) {
    Refuse(*call, 409, "conflict",
           "run-time keys need the redis section (this gateway has none: only the callers' "
           "key_sha256 keys exist)");
  } else if (action == "keys.create") {
    CreateKey(call);
  } else if (action == "keys.list") {
    ListKeys(call);
  } else if (!keys::IsValidKeyId(id)) {
    Refuse(*call, 404, "not_found", NotAnIdMessage(id));
  } else if (action == "keys.revoke") {
    RevokeKey(call, id);
  } else {
    RotateKey(call, id);
  }
}

void AdminApi::CreateKey(const std::shared_ptr<Call>& call) {
  WithBody(call, [this, call] {
    CreateKeyRequest req;
    std::string error =
        ParseCreateKeyBody(call->exchange->request().body,
                           deps_.pipeline->snapshot()->config().keys.max_ttl_seconds, &req);
    if (!error.empty()) return Refuse(*call, 400, "bad_request", error);
    // A run-time key is a credential for a caller the running config defines.
    if (deps_.pipeline->snapshot()->FindCaller(req.caller) == nullptr) {
      return Refuse(*call, 400, "bad_request", "unknown caller " + EchoName(req.caller));
    }
    keys::NewKey key = keys::GenerateKey();
    if (key.id.empty()) {
      return Refuse(*call, 500, "internal", "the system random generator failed; nothing stored");
    }
    keys::KeyRecord record;
    record.id = key.id;
    record.caller = req.caller;
    record.sha256 = key.sha256;
    record.created_at = KeyNow();
    if (req.ttl_seconds)
      record.expires_at = record.created_at + std::chrono::seconds(*req.ttl_seconds);
    record.note = req.note;
    record.created_by = call->action->admin;
    deps_.keys->store().Create(
        record, [this, call, record, secret = std::move(key.key)](keys::StoreStatus status) {
          if (status != keys::StoreStatus::kOk) {
            return StoreRefused(*call, status, "a key with the new id exists; retry", true);
          }
          deps_.keys->Changed(record.id);
          call->record.key_id = record.id;
          HttpResponse r = JsonResponse(201, CreatedKeyJson(record, secret));
          r.headers.emplace_back("Cache-Control", "no-store");
          Finish(*call, std::move(r), "admin");
        });
  });
}

void AdminApi::ListKeys(const std::shared_ptr<Call>& call) {
  std::string caller;
  std::string error = ParseListKeysQuery(call->record.query, &caller);
  if (!error.empty()) return Refuse(*call, 400, "bad_request", error);
  deps_.keys->store().List(
      caller, [this, call](keys::StoreStatus status, std::vector<keys::KeyRecord> records) {
        if (status != keys::StoreStatus::kOk) return StoreRefused(*call, status, "");
        HttpResponse r = JsonResponse(200, KeyListJson(records, KeyNow()));
        r.headers.emplace_back("Cache-Control", "no-store");
        Finish(*call, std::move(r), "admin");
      });
}

void AdminApi::RevokeKey(const std::shared_ptr<Call>& call, const std::string& id) {
  deps_.keys->store().Revoke(
      id, KeyNow(), [this, call, id](keys::StoreStatus status, std::optional<keys::KeyRecord>) {
        if (status != keys::StoreStatus::kOk) return StoreRefused(*call, status, "", true);
        // This replica drops the key at once; the others when the store's event reaches them.
        deps_.keys->Changed(id);
        HttpResponse r;
        r.status = 204;
        Finish(*call, std::move(r), "admin");
      });
}

void AdminApi::RotateKey(const std::shared_ptr<Call>& call, const std::string& id) {
  WithBody(call, [this, call, id] {
    RotateKeyRequest req;
    const int max_ttl = deps_.pipeline->snapshot()->config().keys.max_ttl_seconds;
    std::string error = ParseRotateKeyBody(call->exchange->request().body, max_ttl, &req);
    if (!error.empty()) return Refuse(*call, 400, "bad_request", error);
    deps_.keys->store().Get(id, [this, call, id, req, max_ttl](keys::StoreStatus status,
                                                               std::optional<keys::KeyRecord> old) {
      if (status != keys::StoreStatus::kOk || !old) return StoreRefused(*call, status, "");
      const keys::TimePoint now = KeyNow();
      // The store's script checks the state again, atomically; this answers the common case
      // before a key is made for nothing.
      if (std::string_view why = RotationConflict(keys::StateAt(*old, now)); !why.empty()) {
        return Refuse(*call, 409, "conflict", std::string(why));
      }
      if (deps_.pipeline->snapshot()->FindCaller(old->caller) == nullptr) {
        return Refuse(*call, 409, "conflict",
                      "the key's caller " + EchoName(old->caller) + " is no longer in the config");
      }
      keys::NewKey key = keys::GenerateKey();
      if (key.id.empty()) {
        return Refuse(*call, 500, "internal",
                      "the system random generator failed; nothing changed");
      }
      const keys::KeyRecord replacement =
          RotationReplacement(*old, key, now, req.ttl_seconds, max_ttl, call->action->admin);
      const keys::TimePoint grace_end = now + std::chrono::seconds(req.grace_seconds);
      deps_.keys->store().Rotate(
          id, replacement, grace_end, now,
          [this, call, id, replacement, secret = std::move(key.key), previous = *old, grace_end](
              keys::StoreStatus status, std::optional<keys::KeyRecord> after) {
            if (status != keys::StoreStatus::kOk) {
              return StoreRefused(*call, status,
                                  "the key was revoked, expired or rotated meanwhile", true);
            }
            deps_.keys->Changed(id);
            deps_.keys->Changed(replacement.id);
            call->action->new_key_id = replacement.id;
            keys::KeyRecord replaced = after ? *after : previous;
            if (!after && (!replaced.expires_at || grace_end < *replaced.expires_at)) {
              replaced.expires_at = grace_end;
            }
            HttpResponse r = JsonResponse(201, RotatedKeyJson(replacement, secret, replaced));
            r.headers.emplace_back("Cache-Control", "no-store");
            Finish(*call, std::move(r), "admin");
          });
    });
  });
}

void AdminApi::Console(const std::shared_ptr<Call>& call, std::string_view action) {
  deps_.console->Serve(action, call->record.query, [this, call](ConsoleAnswer answer) {
    if (answer.status != 200) return Refuse(*call, answer.status, answer.reason, answer.message);
    HttpResponse r = JsonResponse(200, std::move(answer.body));
    r.headers.emplace_back("Cache-Control", "no-store");
    Finish(*call, std::move(r), "admin");
  });
}

void AdminApi::Usage(const std::shared_ptr<Call>& call) {
  if (deps_.usage == nullptr) return Refuse(*call, 409, "conflict", "usage is not counted here");
  const std::string& target = call->exchange->request().target;
  const size_t q = target.find('?');
  usage::UsageQuery query;
  const int retention = deps_.pipeline->snapshot()->config().usage.retention_days;
  std::string error = usage::ParseUsageQuery(
      q == std::string::npos ? std::string_view() : std::string_view(target).substr(q + 1),
      usage::DayOf(std::chrono::system_clock::now()), retention, &query);
  if (!error.empty()) return Refuse(*call, 400, "bad_request", error);
  deps_.usage->Read(query.from, query.to, [this, call, query](bool ok, usage::UsageTable table) {
    if (!ok) return Refuse(*call, 503, "redis_unavailable", "Redis did not answer; retry");
    const std::vector<usage::UsageRow> rows = usage::BuildUsageRows(query, table);
    HttpResponse r;
    if (query.csv) {
      r.headers.emplace_back("Content-Type", "text/csv; charset=utf-8");
      r.body = usage::UsageCsv(query, rows);
    } else {
      r = JsonResponse(200, usage::UsageJson(query, rows));
    }
    r.headers.emplace_back("Cache-Control", "no-store");
    Finish(*call, std::move(r), "admin");
  });
}

void AdminApi::WithBody(const std::shared_ptr<Call>& call, std::function<void()> next) {
  Exchange& exchange = *call->exchange;
  if (!exchange.body_pending()) {
    next();
    return;
  }
  std::weak_ptr<Call> weak = call;
  exchange.SetStreamCallbacks(nullptr, [this, weak] {
    std::shared_ptr<Call> c = weak.lock();
    if (!c) return;
    // The collector below holds the call, which holds the exchange: drop it, or neither ends.
    c->exchange->CollectBody(nullptr);
    c->record.ended_by = "client_closed";
    Refuse(*c, 400, "bad_request", "the connection closed before the request body ended");
  });
  exchange.CollectBody([this, call, next = std::move(next)] {
    Exchange& ex = *call->exchange;
    ex.SetStreamCallbacks(nullptr, nullptr);
    call->record.bytes_in = ex.request().body.size();
    if (int status = ex.body_error_status()) {
      return Refuse(*call, status, status == 413 ? "payload_too_large" : "bad_request",
                    ex.body_error());
    }
    next();
  });
}

void AdminApi::Refuse(Call& call, int status, std::string_view reason, const std::string& message) {
  HttpResponse r = ErrorResponse(status, reason, message, call.request_id);
  if (status == 503) r.headers.emplace_back("Retry-After", "1");
  Finish(call, std::move(r), "admin", message);
}

void AdminApi::StoreRefused(Call& call, keys::StoreStatus status, const std::string& conflict,
                            bool writes) {
  switch (status) {
    case keys::StoreStatus::kNotFound:
      return Refuse(call, 404, "not_found", "no such key");
    case keys::StoreStatus::kConflict:
      return Refuse(call, 409, "conflict", conflict);
    case keys::StoreStatus::kOk:  // not a refusal; only a record that failed to parse gets here
    case keys::StoreStatus::kUnavailable:
      break;
  }
  Refuse(call, 503, "redis_unavailable",
         std::string("Redis did not answer; retry") +
             (writes ? " (the change may or may not have been made: list the keys to see)" : ""));
}

void AdminApi::Finish(Call& call, HttpResponse response, std::string decision, std::string error) {
  if (call.finished) return;
  call.finished = true;
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
  if (deps_.usage != nullptr) {
    m.usage_flush_ok = deps_.usage->flushes_ok();
    m.usage_flush_failed = deps_.usage->flushes_failed();
  }
  if (deps_.keys != nullptr) {
    m.keys = &deps_.keys->stats();
    m.key_counts = deps_.keys->counts();
    m.key_events_subscribed = deps_.keys->subscribed();
  }
  if (deps_.redis_topology != nullptr) m.redis_topology = &deps_.redis_topology->stats();
  HttpResponse r;
  r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
  r.body = deps_.metrics->Render(m);
  exchange->Respond(std::move(r));
}

}  // namespace tollgate::gateway
