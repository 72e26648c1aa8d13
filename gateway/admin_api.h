// The admin listener's endpoints (`admin_listen`): who may call them, what they answer, and the
// audit record of every admin action.
//
// /healthz, /readyz and /metrics are open to whoever reaches the port (probes and scrapers carry
// no credential; the port is for a private network, see deploy/k8s/networkpolicy.yaml). Every
// other endpoint acts (today POST /reload) and needs `Authorization: Bearer <admin token>`:
// the token's SHA-256 is compared, in constant time, with every hash in `admin.tokens` of the
// running config, and the endpoint's scope must be one of the token's. A missing or unknown
// token gets 401 `unauthenticated` (`WWW-Authenticate: Bearer`), a token without the scope 403
// `forbidden`; with no admin token configured those endpoints answer 403 and only SIGHUP
// reloads.
//
// A browser never reaches the listener: a request with an `Origin` header, or a `Sec-Fetch-Site`
// other than `none` (a page's own request, including a DNS-rebinding page's same-origin GET), is
// refused with 403 whatever the endpoint. So a page cannot send a "simple" cross-site POST that
// acts, nor read /metrics.
//
// Every call that is not an open endpoint answered gets one audit record, reserved before
// anything is done (no free place: 503 `audit_unavailable`, nothing done): `decision` "admin"
// for an action taken, "unauthenticated"/"forbidden" for one refused, with `admin` (the token's
// name) and `action` (AdminAction in audit_log.h).
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

#include "gateway/audit_log.h"
#include "gateway/http_server.h"
#include "gateway/metrics.h"
#include "gateway/pipeline.h"
#include "policies/rate_limiter.h"
#include "upstream/upstream_client.h"

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
  // Ends a call that has an audit place: its record, then the answer.
  void Finish(Call& call, HttpResponse response, std::string decision, std::string error = "");

  AdminApiDeps deps_;
};

}  // namespace tollgate::gateway
