// The admin listener's endpoints (`admin_listen`): who may call them, what they answer, and the
// audit record of every admin action.
//
// /healthz, /readyz and /metrics are open to whoever reaches the port (probes and scrapers carry
// no credential; the port is for a private network, see deploy/k8s/networkpolicy.yaml). Every
// other endpoint (POST /reload, scope "reload"; the run-time keys' POST /keys, GET /keys,
// DELETE /keys/{id} and POST /keys/{id}/rotate, scope "keys"; the console's, scope "read") needs
// `Authorization: Bearer <admin token>`:
// the token's SHA-256 is compared, in constant time, with every hash in `admin.tokens` of the
// running config, and the endpoint's scope must be one of the token's. A missing or unknown
// token gets 401 `unauthenticated` (`WWW-Authenticate: Bearer`), a token without the scope 403
// `forbidden`; with no admin token configured those endpoints answer 403 and only SIGHUP
// reloads.
//
// Browsers: the open endpoints refuse any request a web page makes (an `Origin` header, or a
// `Sec-Fetch-Site` other than `none`: "none" is an address the user typed), so no page, not
// even a DNS-rebinding one, reads /metrics. The endpoints that need a token (and an open page
// flagged Browser::kPage, the console) also take a page's request of this listener's own
// origin: `Sec-Fetch-Site: same-origin`, and an `Origin`, when sent, equal to "http://" + Host.
// A cross-site or same-site page is refused (403) whatever the endpoint. That is safe because
// a token endpoint's guard is the token, not the page: a browser never adds
// `Authorization: Bearer` by itself (it is no cookie), so another site's page cannot act with
// the admin's token, and a DNS-rebinding page (same-origin with itself, under its own host
// name) cannot read the token either: the console keeps it in this origin's sessionStorage.
// So a page cannot send a "simple" cross-site POST that acts, nor read /metrics.
//
// The console's data endpoints (scope "read", admin_console_data.h): GET /status, /callers,
// /limits[?caller=] and /refusals[?limit=N], audited as "console.status" and so on.
//
// Every call that is not an open endpoint answered gets one audit record, reserved before
// anything is done (no free place: 503 `audit_unavailable`, nothing done): `decision` "admin"
// for an action taken, "unauthenticated"/"forbidden" for one refused, with `admin` (the token's
// name) and `action` (AdminAction in audit_log.h).
//
// The key endpoints answer from the Redis reply's callback, on the listener's loop; a new key is
// in the 201 body and nowhere else (not in the audit record, a log line or an error). Without a
// `redis` section (deps.keys null) they answer 409 `conflict`.
//
// Thread-safety: Handle runs on the admin listener's reactor thread; the reload callback may
// also be run by the thread that takes SIGHUP (it serialises itself). Tokens are read from the
// pipeline's current snapshot, so a reload that changes them applies to the next call.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/admin_console_data.h"
#include "gateway/audit_log.h"
#include "gateway/http_server.h"
#include "gateway/metrics.h"
#include "gateway/pipeline.h"
#include "policies/rate_limiter.h"
#include "upstream/upstream_client.h"

namespace tollgate::keys {
class RunTimeKeys;
enum class StoreStatus;
}  // namespace tollgate::keys

namespace tollgate::usage {
class UsageService;
}  // namespace tollgate::usage

namespace tollgate::gateway {

// What a reload did.
struct ReloadOutcome {
  bool applied = false;
  std::vector<std::string> errors;            // why it was not applied (pointer: reason)
  std::vector<std::string> changes;           // config entries changed, e.g. "roles/ops"
  std::vector<std::string> restart_required;  // changed settings that wait for a restart
};

// The audit record of a reload by `admin` ("SIGHUP" for the signal). The caller fills in
// where it came from (request_id, client_ip, method, path) when it came over HTTP.
AuditRecord ReloadAuditRecord(const ReloadOutcome& outcome, std::string admin,
                              std::chrono::steady_clock::time_point start);

struct AdminApiDeps {
  Pipeline* pipeline = nullptr;
  policies::RateLimiter* limiter = nullptr;
  AuditLog* audit = nullptr;
  Metrics* metrics = nullptr;
  upstream::UpstreamClientStats* upstream_stats = nullptr;
  const HttpServer* main = nullptr;  // the front-end listener, for its connection counts
  std::function<ReloadOutcome()> reload;
  keys::RunTimeKeys* keys = nullptr;  // null: no redis section (the key endpoints answer 409)
  ConsoleData* console = nullptr;     // the console's data endpoints
  // GET /usage (scope "usage", usage/usage_report.h): reads it; null: the endpoint answers 409.
  usage::UsageService* usage = nullptr;
  // Where Redis commands go, for /metrics (issue 14); null without a redis section.
  policies::RedisTopology* redis_topology = nullptr;
};

class AdminApi {
 public:
  explicit AdminApi(AdminApiDeps deps) : deps_(std::move(deps)) {}
  AdminApi(const AdminApi&) = delete;
  AdminApi& operator=(const AdminApi&) = delete;

  // The admin listener's RequestHandler.
  void Handle(const std::shared_ptr<Exchange>& exchange);

 private:
  struct Call;
  void ServeReadyz(const std::shared_ptr<Exchange>& exchange);
  void ServeMetrics(const std::shared_ptr<Exchange>& exchange);
  // Reserves the call's audit place; false (after answering 503) when there is none.
  bool Begin(const std::shared_ptr<Exchange>& exchange, std::string_view action, Call* call);
  // True when the call's admin token holds `scope`; otherwise the call is answered and audited.
  bool Authorise(Call& call, const std::string& scope);
  void Reload(Call& call);
  // The run-time key endpoints. Each continues in the store's callback (on this loop) and
  // answers from there; `call` keeps the exchange and the audit place until then.
  void Keys(const std::shared_ptr<Call>& call, std::string_view action, const std::string& id);
  void CreateKey(const std::shared_ptr<Call>& call);
  void ListKeys(const std::shared_ptr<Call>& call);
  void RevokeKey(const std::shared_ptr<Call>& call, const std::string& id);
  void RotateKey(const std::shared_ptr<Call>& call, const std::string& id);
  // The console's data endpoints: answered by deps_.console, now or from a Redis reply.
  void Console(const std::shared_ptr<Call>& call, std::string_view action);
  // GET /usage: answers from the usage store's callback (Redis: later, on this loop).
  void Usage(const std::shared_ptr<Call>& call);
  // Runs `next` once the call's whole body is in (at once when it came with the head). A
  // body that breaks off, or a caller that leaves first, ends the call (audited) instead.
  void WithBody(const std::shared_ptr<Call>& call, std::function<void()> next);
  // Ends an authorised call with an error envelope (decision "admin", `message` as its error).
  void Refuse(Call& call, int status, std::string_view reason, const std::string& message);
  // The answer to a store that did not succeed; `conflict` words a kConflict; `writes`: the
  // operation changes Redis (a timeout leaves unknown whether it did).
  void StoreRefused(Call& call, keys::StoreStatus status, const std::string& conflict,
                    bool writes = false);
  // Ends a call that has an audit place: its record, then the answer.
  void Finish(Call& call, HttpResponse response, std::string decision, std::string error = "");

  AdminApiDeps deps_;
};

}  // namespace tollgate::gateway
