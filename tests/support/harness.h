// Test harness for integration tests: an HTTP client (libcurl), the fake upstream process
// (tests/fakes, FAKE_UPSTREAM_BINARY) and the gateway process (TOLLGATE_BINARY), plus a tiny
// JSON reader. Built on process.h: every process started here is stopped by its destructor.
//
// A typical test:
//
//   FakeUpstream upstream;                       // Devin + Devo fake on a free port
//   GatewayProcess gateway(R"({"listen": "${LISTEN}", "admin_listen": "${ADMIN}",
//       "audit": {"file": "${AUDIT}"},
//       "upstreams": {"devin": {"base_url": "${UPSTREAM}",
//                               "auth": {"type": "bearer", "secret_env": "DEVIN_TOKEN"}}}, ...})",
//       {{"DEVIN_TOKEN", upstream.options().devin_token}}, upstream.base_url());
//   ASSERT_TRUE(gateway.started()) << gateway.log();
//   HttpResponse r = Http("GET", gateway.url() + "/devin/v3beta1/enterprise/self",
//                         {{"Authorization", "Bearer " + key}});
//   EXPECT_EQ(r.status, 200);
//   auto seen = upstream.Requests();              // what the upstream received, byte for byte
//   EXPECT_EQ(seen.back().Header("Authorization"), "Bearer " + upstream.options().devin_token);
//
// Thread-safety: Http() and HttpParallel() may run on any thread. An HttpSession, a FakeUpstream
// and a GatewayProcess each belong to one thread at a time; their const methods only read.
// Waits poll a condition with a deadline (WaitFor*); none of them is a sleep-as-assertion.
#pragma once

#include <rapidjson/document.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/process.h"

typedef void CURL;

namespace tollgate::testing {

using std::chrono::milliseconds;

// ---------------------------------------------------------------------------------------------
// HTTP client (libcurl easy). Paths are sent as given (CURLOPT_PATH_AS_IS: "/a/../b" stays),
// proxies from the environment are ignored, and no "Expect: 100-continue" is sent unless the
// caller adds an Expect header; then the body waits for the server's 100 Continue as long as it
// takes (a server that never answers it makes the call time out). An https:// URL is verified
// (peer and host name) against `ca_file` when one is given, else against the system's store.

// Request headers in order; a pair with an empty value sends "Name:" with no value.
using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  long status = 0;    // 0: no HTTP answer (connection refused, timeout...): see `error`
  std::string error;  // curl's message when status == 0
  std::multimap<std::string, std::string> headers;  // names lower-cased; repeats kept
  std::string body;
  long new_connections = 0;  // TCP connections curl opened for this call (CURLINFO_NUM_CONNECTS)

  // The first value of a header (name in any case), or "" / nullopt if absent.
  std::string Header(const std::string& name) const;
  std::optional<std::string> FindHeader(const std::string& name) const;
  bool HasHeader(const std::string& name) const { return FindHeader(name).has_value(); }
  size_t HeaderCount(const std::string& name) const;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  HeaderList headers;
  std::string body;
};

// One request on a fresh connection.
HttpResponse Http(const std::string& method, const std::string& url, const HeaderList& headers = {},
                  const std::string& body = "", milliseconds timeout = milliseconds(10000),
                  const std::string& ca_file = "");

// All requests at once (libcurl multi, one connection each); answers in the order given.
std::vector<HttpResponse> HttpParallel(const std::vector<HttpRequest>& requests,
                                       milliseconds timeout = milliseconds(30000),
                                       const std::string& ca_file = "");

// One CURL handle reused across calls, so keep-alive connections are reused; total_connections()
// tells how many TCP connections the session opened so far.
class HttpSession {
 public:
  HttpSession();
  ~HttpSession();
  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;

  HttpResponse Request(const std::string& method, const std::string& url,
                       const HeaderList& headers = {}, const std::string& body = "",
                       milliseconds timeout = milliseconds(10000), const std::string& ca_file = "");
  long total_connections() const { return total_connections_; }

 private:
  CURL* curl_;
  long total_connections_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Prometheus text exposition (GET /metrics): the value of the sample named `name` whose label set
// is exactly `labels` (in any order); nullopt when there is none. `name` may carry labels as
// rendered, e.g. R"(tollgate_upstream_errors_total{upstream="devin",kind="too_large"})"; they
// join `labels`.
std::optional<double> MetricValue(const std::string& exposition, const std::string& name,
                                  const std::map<std::string, std::string>& labels = {});

// ---------------------------------------------------------------------------------------------
// JSON for assertions: parse a body, read members by JSON pointer ("/error/code", "/items/0/id").
// Copies share one parsed document.
class Json {
 public:
  static Json Parse(const std::string& text);
  bool ok() const { return ok_; }                                 // false: the text was not JSON
  const rapidjson::Value* Get(const std::string& pointer) const;  // nullptr when absent
  bool Has(const std::string& pointer) const { return Get(pointer) != nullptr; }
  // The value at `pointer`, or `fallback` when absent or of another type.
  std::string String(const std::string& pointer, const std::string& fallback = "") const;
  int64_t Int(const std::string& pointer, int64_t fallback = -1) const;
  bool Bool(const std::string& pointer, bool fallback = false) const;
  size_t Size(const std::string& pointer) const;  // array/object size, 0 when absent
  bool IsNull(const std::string& pointer) const;
  const rapidjson::Value& root() const { return *doc_; }

 private:
  std::shared_ptr<rapidjson::Document> doc_;
  bool ok_ = false;
};

// ---------------------------------------------------------------------------------------------
// The fake upstream (tests/fakes): Devin v3beta1/v3, Devo tokens v2 and Devo /search/query on
// one port. Defaults give every credential a test value, so most tests need no options.
struct FakeUpstreamOptions {
  std::string devin_token = "fake-devin-token";
  std::string devo_token = "fake-devo-token";
  std::string devo_hmac_key = "fake-devo-key";
  std::string devo_hmac_secret = "fake-devo-secret";
};

// A behaviour rule (see FakeUpstream::SetBehaviour). Unset optionals leave the answer as it was.
struct FakeBehaviour {
  std::string prefix;
  int delay_ms = 0;
  int status = 0;  // 0: the model's status
  std::optional<std::string> retry_after;
  int times = -1;                           // -1: forever
  std::optional<std::string> body;          // sent instead of the answer's body
  std::optional<std::string> content_type;  // replaces the answer's Content-Type
  HeaderList headers;                       // added to the answer as given (repeats kept)
  bool hold = false;  // the answer waits for FakeUpstream::Release() (delay_ms is ignored)
};

// A request as the fake received it: path and raw query byte for byte, every header in order.
struct RecordedRequest {
  std::string method;
  std::string path;
  std::string query;
  HeaderList headers;
  std::string body;

  std::string Header(const std::string& name) const;  // first value, any case; "" if absent
  bool HasHeader(const std::string& name) const;
  size_t HeaderCount(const std::string& name) const;
  std::string target() const { return query.empty() ? path : path + "?" + query; }
};

struct FakeStats {
  int64_t requests = 0;     // API requests received since start (control calls not counted)
  int64_t connections = 0;  // TCP connections accepted since start
  int64_t in_flight = 0;    // API requests received and not yet answered
};

// A streamed answer (tests/fakes/fake_stream.h): Query() gives the query parameters that ask
// for it, to append to any /stream/... path (or an authenticated Devin/Devo one).
struct FakeStreamSpec {
  std::string mode = "rows";  // rows | continuous | big
  int64_t rows = 10;          // rows: how many, then the answer ends
  int64_t interval_ms = 100;  // rows and continuous: between rows (the first at once)
  int64_t keepalive_ms = 0;   // continuous: 4-space chunks this often; 0: one halfway
  int64_t bytes = 0;          // big: body size
  bool chunked = false;       // big: chunked instead of Content-Length
  uint64_t seed = 0;          // big: pattern seed (tests/fakes/pattern.h)
  std::string Query() const;  // "fake_stream=rows&fake_rows=10&..."
};

// What the fake did for one streamed answer (GET /_fake/streams). Times are CLOCK_MONOTONIC ms,
// the clock of std::chrono::steady_clock, so they compare with the test's own (MonotonicMs()).
struct FakeStreamRecord {
  int64_t id = 0;  // also sent as the answer's x-fake-stream-id header
  std::string mode;
  std::string path;
  std::string query;
  int64_t content_length = -1;  // -1: chunked
  int64_t started_at_ms = 0;
  int64_t bytes_written = 0;  // to the socket so far: head, chunk framing and body
  int64_t body_bytes = 0;     // body bytes written so far
  int64_t rows_sent = 0;
  int64_t keepalives_sent = 0;
  bool blocked = false;  // its last write found the socket full (the reader is not reading)
  bool ended = false;
  std::string ended_by;  // complete | client_closed | shutdown
  int64_t ended_at_ms = -1;
  std::string sha256;  // hex SHA-256 of the body bytes written, once ended
};

int64_t MonotonicMs();  // std::chrono::steady_clock now, in ms

class FakeUpstream {
 public:
  // Starts the binary on a free port (credentials passed through the environment) and waits for
  // its "listening" line; ADD_FAILURE()s if it cannot start.
  explicit FakeUpstream(FakeUpstreamOptions options = {});
  ~FakeUpstream();
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  const FakeUpstreamOptions& options() const { return options_; }
  int port() const { return port_; }
  std::string base_url() const;  // "http://127.0.0.1:PORT", no trailing slash
  bool started() const { return started_; }
  std::string log() const;  // the fake's stdout/stderr

  std::vector<RecordedRequest> Requests() const;
  void ClearRequests() const;
  // Waits until at least `count` requests were recorded; returns them (fewer on timeout).
  std::vector<RecordedRequest> WaitForRequests(size_t count,
                                               milliseconds timeout = milliseconds(10000)) const;

  // Requests whose path starts with `prefix` (longest prefix wins) are answered `delay_ms` later;
  // with `status` != 0 they get that status (Devin: problem+json, Devo: error envelope) instead of
  // the model's answer; `retry_after` is sent as Retry-After; `times` > 0 limits the rule to the
  // next `times` matching requests (-1: forever). Rules do not stop recording.
  void SetBehaviour(const std::string& prefix, int delay_ms, int status = 0,
                    std::optional<std::string> retry_after = std::nullopt, int times = -1) const;
  // The same, plus a replacement body and/or Content-Type (applied after a forced status, so a
  // test can send e.g. a 200 text/html page or a 404 with its own body).
  void SetBehaviour(const FakeBehaviour& behaviour) const;
  void ClearBehaviour() const;
  // Sends every answer a `hold` rule is keeping back; returns how many.
  int Release() const;
  FakeStats Stats() const;

  // Every streamed answer so far (oldest first), and one by id (nullopt if unknown).
  std::vector<FakeStreamRecord> Streams() const;
  std::optional<FakeStreamRecord> Stream(int64_t id) const;
  // Polls stream `id` until `done(record)` holds; the last record read (nullopt if never seen).
  std::optional<FakeStreamRecord> WaitForStream(
      int64_t id, const std::function<bool(const FakeStreamRecord&)>& done,
      milliseconds timeout = milliseconds(10000)) const;
  int64_t OpenStreams() const;  // streams not yet ended
  void ClearStreams() const;    // forgets ended streams

  int Stop();  // SIGTERM; returns the waitpid status (the destructor also stops it)
  pid_t pid() const { return process_.pid(); }

 private:
  FakeUpstreamOptions options_;
  TempDir dir_;
  int port_ = 0;
  bool started_ = false;
  ChildProcess process_;
};

// ---------------------------------------------------------------------------------------------
// The gateway binary (`tollgate serve --config FILE`) with a config written from a template.
//
// Placeholders in the config text: ${LISTEN} and ${ADMIN} ("127.0.0.1:<free port>"), ${UPSTREAM}
// (GatewayOptions::upstream), ${REDIS} (GatewayOptions::redis), ${AUDIT} (a file in the temp
// dir), ${DIR} (the temp dir), and any GatewayOptions::vars entry ${NAME}.
struct GatewayOptions {
  std::string config;                       // JSON text with placeholders
  std::map<std::string, std::string> env;   // added to the environment: secrets go here
  std::string upstream;                     // ${UPSTREAM}, e.g. FakeUpstream::base_url()
  std::string redis;                        // ${REDIS}, e.g. RedisServer::url()
  std::map<std::string, std::string> vars;  // more placeholders: {"DEVO", url} -> ${DEVO}
  std::vector<std::string> extra_args;      // appended after `serve --config FILE`
  bool wait_until_listening = true;         // false: a test expecting startup to fail
  milliseconds start_timeout = milliseconds(15000);
};

// Replaces every ${NAME} in `text` whose NAME is in `values`; other text is left as is.
std::string SubstitutePlaceholders(const std::string& text,
                                   const std::map<std::string, std::string>& values);

class GatewayProcess {
 public:
  explicit GatewayProcess(GatewayOptions options);
  GatewayProcess(const std::string& config, std::map<std::string, std::string> env = {},
                 const std::string& upstream = "", const std::string& redis = "");
  ~GatewayProcess();
  GatewayProcess(const GatewayProcess&) = delete;
  GatewayProcess& operator=(const GatewayProcess&) = delete;

  // True once the listen port (and the admin port, when the config uses ${ADMIN}) accept.
  bool started() const { return started_; }
  std::string url() const;        // "http://127.0.0.1:<listen port>"
  std::string admin_url() const;  // "http://127.0.0.1:<admin port>"
  int listen_port() const { return listen_port_; }
  int admin_port() const { return admin_port_; }
  const std::string& config_path() const { return config_path_; }
  const std::string& audit_path() const { return audit_path_; }
  const TempDir& dir() const { return dir_; }

  // Rewrites the config file from a new template (same ports and placeholders), e.g. before
  // POST /reload or SIGHUP.
  void WriteConfig(const std::string& config);

  std::string log() const;  // the gateway's stdout/stderr so far
  // Waits until the log contains `text`; false on timeout.
  bool WaitForLog(const std::string& text, milliseconds timeout = milliseconds(10000)) const;
  // Complete lines of the ${AUDIT} file, each parsed (a bad line gives Json::ok() == false).
  std::vector<Json> AuditLines() const;
  // Waits until the audit file has at least `count` lines; returns them (fewer on timeout).
  std::vector<Json> WaitForAuditLines(size_t count,
                                      milliseconds timeout = milliseconds(10000)) const;

  void Signal(int signo) { process_.Signal(signo); }
  int Stop(milliseconds grace = milliseconds(10000)) { return process_.Stop(grace); }
  // Waits for the process to exit by itself (e.g. a bad config); the waitpid status or -1.
  int Wait(milliseconds timeout) { return process_.Wait(timeout); }
  bool running() { return process_.running(); }
  pid_t pid() const { return process_.pid(); }

 private:
  GatewayOptions options_;
  TempDir dir_;
  int listen_port_ = 0;
  int admin_port_ = 0;
  std::string config_path_;
  std::string audit_path_;
  std::string log_path_;
  bool started_ = false;
  ChildProcess process_;
};

}  // namespace tollgate::testing
