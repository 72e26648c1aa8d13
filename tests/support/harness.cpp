#include "tests/support/harness.h"

#include <curl/curl.h>
#include <gtest/gtest.h>
#include <rapidjson/pointer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <strings.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <regex>
#include <sstream>
#include <thread>

namespace tollgate::testing {
namespace {

using Clock = std::chrono::steady_clock;

// Polls `done` every 20 ms until it is true or `timeout` passes.
bool WaitUntil(const std::function<bool()>& done, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
}

std::string Lower(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string Trim(const std::string& text) {
  size_t start = text.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return "";
  size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(start, end - start + 1);
}

// curl_global_init is not thread-safe; run it once before any handle exists.
void InitCurlOnce() {
  static const bool done = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
  (void)done;
}

// One transfer's state: the callbacks write here.
struct Transfer {
  HttpResponse response;
  curl_slist* header_list = nullptr;
  char error[CURL_ERROR_SIZE] = {0};

  ~Transfer() { curl_slist_free_all(header_list); }
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  static_cast<Transfer*>(user)->response.body.append(data, size * count);
  return size * count;
}

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  std::string line(data, size * count);
  // A new status line (after a 100 Continue) starts a new header block.
  if (line.rfind("HTTP/", 0) == 0) {
    transfer->response.headers.clear();
    return size * count;
  }
  size_t colon = line.find(':');
  if (colon != std::string::npos) {
    transfer->response.headers.emplace(Lower(Trim(line.substr(0, colon))),
                                       Trim(line.substr(colon + 1)));
  }
  return size * count;
}

void Configure(CURL* curl, Transfer* transfer, const HttpRequest& request, milliseconds timeout,
               const std::string& ca_file) {
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
  if (!ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, transfer->error);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, transfer);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, transfer);
  bool has_expect = false;
  for (const auto& [name, value] : request.headers) {
    if (strcasecmp(name.c_str(), "Expect") == 0) has_expect = true;
    // "Name;" is curl's syntax for a header with an empty value ("Name:" would remove it).
    std::string line = value.empty() ? name + ";" : name + ": " + value;
    transfer->header_list = curl_slist_append(transfer->header_list, line.c_str());
  }
  // Pistache never answers 100-continue: a body would wait a second for nothing.
  if (!has_expect) transfer->header_list = curl_slist_append(transfer->header_list, "Expect:");
  // A caller that sends Expect wants the server's 100 Continue: never send the body without it.
  if (has_expect) {
    curl_easy_setopt(curl, CURLOPT_EXPECT_100_TIMEOUT_MS, static_cast<long>(timeout.count()) * 2);
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, transfer->header_list);
  const std::string& m = request.method;
  if (m == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (m == "GET" && request.body.empty()) {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else {
    if (!request.body.empty() || m == "POST" || m == "PUT" || m == "PATCH") {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                       static_cast<curl_off_t>(request.body.size()));
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.c_str());
    }
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, m.c_str());
  }
}

void Finish(CURL* curl, CURLcode code, Transfer* transfer) {
  HttpResponse& r = transfer->response;
  curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &r.new_connections);
  if (code != CURLE_OK) {
    r.status = 0;
    r.error = transfer->error[0] ? transfer->error : curl_easy_strerror(code);
    return;
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
}

HttpResponse Perform(CURL* curl, const HttpRequest& request, milliseconds timeout,
                     const std::string& ca_file) {
  Transfer transfer;
  Configure(curl, &transfer, request, timeout, ca_file);
  CURLcode code = curl_easy_perform(curl);
  Finish(curl, code, &transfer);
  return std::move(transfer.response);
}

std::optional<std::string> FindIn(const HeaderList& headers, const std::string& name) {
  for (const auto& [key, value] : headers) {
    if (strcasecmp(key.c_str(), name.c_str()) == 0) return value;
  }
  return std::nullopt;
}

size_t CountIn(const HeaderList& headers, const std::string& name) {
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(), [&](const auto& h) {
    return strcasecmp(h.first.c_str(), name.c_str()) == 0;
  }));
}

std::string JsonText(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return buffer.GetString();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (;;) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) break;  // a partial last line is still being written
    if (end > start) lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

}  // namespace

// ----------------------------------------------------------------------------------------- HTTP

std::optional<std::string> HttpResponse::FindHeader(const std::string& name) const {
  auto it = headers.find(Lower(name));
  if (it == headers.end()) return std::nullopt;
  return it->second;
}

std::string HttpResponse::Header(const std::string& name) const {
  return FindHeader(name).value_or("");
}

size_t HttpResponse::HeaderCount(const std::string& name) const {
  return headers.count(Lower(name));
}

HttpResponse Http(const std::string& method, const std::string& url, const HeaderList& headers,
                  const std::string& body, milliseconds timeout, const std::string& ca_file) {
  InitCurlOnce();
  CURL* curl = curl_easy_init();
  HttpResponse response = Perform(curl, HttpRequest{method, url, headers, body}, timeout, ca_file);
  curl_easy_cleanup(curl);
  return response;
}

std::vector<HttpResponse> HttpParallel(const std::vector<HttpRequest>& requests,
                                       milliseconds timeout, const std::string& ca_file) {
  InitCurlOnce();
  CURLM* multi = curl_multi_init();
  // Every request gets its own connection: the point is concurrency at the server.
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
  std::vector<std::unique_ptr<Transfer>> transfers;
  std::vector<CURL*> handles;
  for (const auto& request : requests) {
    transfers.push_back(std::make_unique<Transfer>());
    CURL* curl = curl_easy_init();
    Configure(curl, transfers.back().get(), request, timeout, ca_file);
    curl_easy_setopt(curl, CURLOPT_PRIVATE, transfers.back().get());
    curl_multi_add_handle(multi, curl);
    handles.push_back(curl);
  }
  int running = 1;
  while (running > 0) {
    if (curl_multi_perform(multi, &running) != CURLM_OK) break;
    int queued = 0;
    while (CURLMsg* message = curl_multi_info_read(multi, &queued)) {
      if (message->msg != CURLMSG_DONE) continue;
      Transfer* transfer = nullptr;
      curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &transfer);
      Finish(message->easy_handle, message->data.result, transfer);
    }
    if (running > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  std::vector<HttpResponse> responses;
  for (size_t i = 0; i < handles.size(); ++i) {
    curl_multi_remove_handle(multi, handles[i]);
    curl_easy_cleanup(handles[i]);
    responses.push_back(std::move(transfers[i]->response));
  }
  curl_multi_cleanup(multi);
  return responses;
}

HttpSession::HttpSession() {
  InitCurlOnce();
  curl_ = curl_easy_init();
}

HttpSession::~HttpSession() { curl_easy_cleanup(curl_); }

HttpResponse HttpSession::Request(const std::string& method, const std::string& url,
                                  const HeaderList& headers, const std::string& body,
                                  milliseconds timeout, const std::string& ca_file) {
  // Reset clears the options of the previous call but keeps its open connections.
  curl_easy_reset(curl_);
  HttpResponse response = Perform(curl_, HttpRequest{method, url, headers, body}, timeout, ca_file);
  total_connections_ += response.new_connections;
  return response;
}

// ----------------------------------------------------------------------------------------- JSON

Json Json::Parse(const std::string& text) {
  Json json;
  json.doc_ = std::make_shared<rapidjson::Document>();
  json.doc_->Parse(text.c_str(), text.size());
  json.ok_ = !json.doc_->HasParseError();
  return json;
}

const rapidjson::Value* Json::Get(const std::string& pointer) const {
  if (!ok_) return nullptr;
  rapidjson::Pointer p(pointer.c_str(), pointer.size());
  if (!p.IsValid()) return nullptr;
  return p.Get(*doc_);
}

std::string Json::String(const std::string& pointer, const std::string& fallback) const {
  const rapidjson::Value* v = Get(pointer);
  return v && v->IsString() ? std::string(v->GetString(), v->GetStringLength()) : fallback;
}

int64_t Json::Int(const std::string& pointer, int64_t fallback) const {
  const rapidjson::Value* v = Get(pointer);
  return v && v->IsInt64() ? v->GetInt64() : fallback;
}

bool Json::Bool(const std::string& pointer, bool fallback) const {
  const rapidjson::Value* v = Get(pointer);
  return v && v->IsBool() ? v->GetBool() : fallback;
}

size_t Json::Size(const std::string& pointer) const {
  const rapidjson::Value* v = Get(pointer);
  if (v && v->IsArray()) return v->Size();
  if (v && v->IsObject()) return v->MemberCount();
  return 0;
}

bool Json::IsNull(const std::string& pointer) const {
  const rapidjson::Value* v = Get(pointer);
  return v && v->IsNull();
}

// -------------------------------------------------------------------------------- fake upstream

std::string RecordedRequest::Header(const std::string& name) const {
  return FindIn(headers, name).value_or("");
}

bool RecordedRequest::HasHeader(const std::string& name) const {
  return FindIn(headers, name).has_value();
}

size_t RecordedRequest::HeaderCount(const std::string& name) const {
  return CountIn(headers, name);
}

FakeUpstream::FakeUpstream(FakeUpstreamOptions options) : options_(std::move(options)) {
  std::string log_path = dir_.path() + "/fake_upstream.log";
  std::map<std::string, std::string> env = {{"FAKE_DEVIN_TOKEN", options_.devin_token},
                                            {"FAKE_DEVO_TOKEN", options_.devo_token},
                                            {"FAKE_DEVO_HMAC_KEY", options_.devo_hmac_key},
                                            {"FAKE_DEVO_HMAC_SECRET", options_.devo_hmac_secret}};
  // A free port can be taken by someone else before the fake binds it: try a few.
  for (int attempt = 0; attempt < 3 && !started_; ++attempt) {
    port_ = FreePort();
    std::string ready = "fake_upstream listening on 127.0.0.1:" + std::to_string(port_);
    process_ = ChildProcess(
        {FAKE_UPSTREAM_BINARY, "--listen", "127.0.0.1:" + std::to_string(port_)}, env, log_path);
    // Waiting for the line, not probing the port, keeps Stats().connections exact.
    started_ =
        WaitUntil(
            [&] {
              return !process_.running() || ReadFile(log_path).find(ready) != std::string::npos;
            },
            milliseconds(10000)) &&
        process_.running();
  }
  if (!started_) ADD_FAILURE() << "fake_upstream did not start:\n" << log();
}

FakeUpstream::~FakeUpstream() = default;

std::string FakeUpstream::base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

std::string FakeUpstream::log() const { return ReadFile(dir_.path() + "/fake_upstream.log"); }

std::vector<RecordedRequest> FakeUpstream::Requests() const {
  std::vector<RecordedRequest> out;
  HttpResponse r = Http("GET", base_url() + "/_fake/requests");
  Json json = Json::Parse(r.body);
  if (r.status != 200 || !json.ok() || !json.root().IsArray()) {
    ADD_FAILURE() << "GET /_fake/requests failed: " << r.status << " " << r.error << " " << r.body;
    return out;
  }
  auto text = [](const rapidjson::Value& v, const char* name) {
    auto it = v.FindMember(name);
    return it != v.MemberEnd() && it->value.IsString()
               ? std::string(it->value.GetString(), it->value.GetStringLength())
               : std::string();
  };
  for (const auto& item : json.root().GetArray()) {
    RecordedRequest request{
        text(item, "method"), text(item, "path"), text(item, "query"), {}, text(item, "body")};
    for (const auto& header : item["headers"].GetArray()) {
      request.headers.emplace_back(text(header, "name"), text(header, "value"));
    }
    out.push_back(std::move(request));
  }
  return out;
}

void FakeUpstream::ClearRequests() const {
  HttpResponse r = Http("DELETE", base_url() + "/_fake/requests");
  if (r.status != 200) ADD_FAILURE() << "DELETE /_fake/requests failed: " << r.status;
}

std::vector<RecordedRequest> FakeUpstream::WaitForRequests(size_t count,
                                                           milliseconds timeout) const {
  std::vector<RecordedRequest> requests;
  WaitUntil([&] { return (requests = Requests()).size() >= count; }, timeout);
  return requests;
}

void FakeUpstream::SetBehaviour(const std::string& prefix, int delay_ms, int status,
                                std::optional<std::string> retry_after, int times) const {
  FakeBehaviour behaviour;
  behaviour.prefix = prefix;
  behaviour.delay_ms = delay_ms;
  behaviour.status = status;
  behaviour.retry_after = std::move(retry_after);
  behaviour.times = times;
  SetBehaviour(behaviour);
}

void FakeUpstream::SetBehaviour(const FakeBehaviour& behaviour) const {
  rapidjson::Document doc(rapidjson::kObjectType);
  auto& a = doc.GetAllocator();
  auto text = [&a](const std::string& s) {
    return rapidjson::Value(s.data(), static_cast<rapidjson::SizeType>(s.size()), a);
  };
  doc.AddMember("prefix", text(behaviour.prefix), a);
  doc.AddMember("delay_ms", behaviour.delay_ms, a);
  if (behaviour.status != 0) doc.AddMember("status", behaviour.status, a);
  if (behaviour.retry_after) doc.AddMember("retry_after", text(*behaviour.retry_after), a);
  if (behaviour.times > 0) doc.AddMember("times", behaviour.times, a);
  if (behaviour.body) doc.AddMember("body", text(*behaviour.body), a);
  if (behaviour.content_type) doc.AddMember("content_type", text(*behaviour.content_type), a);
  if (behaviour.hold) doc.AddMember("hold", true, a);
  if (!behaviour.headers.empty()) {
    rapidjson::Value headers(rapidjson::kArrayType);
    for (const auto& [name, value] : behaviour.headers) {
      rapidjson::Value header(rapidjson::kObjectType);
      header.AddMember("name", text(name), a);
      header.AddMember("value", text(value), a);
      headers.PushBack(header, a);
    }
    doc.AddMember("headers", headers, a);
  }
  HttpResponse r = Http("POST", base_url() + "/_fake/behaviour",
                        {{"Content-Type", "application/json"}}, JsonText(doc));
  if (r.status != 201) ADD_FAILURE() << "POST /_fake/behaviour failed: " << r.status << r.body;
}

void FakeUpstream::ClearBehaviour() const {
  HttpResponse r = Http("DELETE", base_url() + "/_fake/behaviour");
  if (r.status != 200) ADD_FAILURE() << "DELETE /_fake/behaviour failed: " << r.status;
}

int FakeUpstream::Release() const {
  HttpResponse r = Http("POST", base_url() + "/_fake/release");
  if (r.status != 200) ADD_FAILURE() << "POST /_fake/release failed: " << r.status << r.body;
  return static_cast<int>(Json::Parse(r.body).Int("/released", -1));
}

FakeStats FakeUpstream::Stats() const {
  HttpResponse r = Http("GET", base_url() + "/_fake/stats");
  Json json = Json::Parse(r.body);
  if (r.status != 200 || !json.ok()) ADD_FAILURE() << "GET /_fake/stats failed: " << r.status;
  return FakeStats{json.Int("/requests", 0), json.Int("/connections", 0),
                   json.Int("/in_flight", 0)};
}

std::string FakeStreamSpec::Query() const {
  std::string q = "fake_stream=" + mode;
  if (mode == "rows") q += "&fake_rows=" + std::to_string(rows);
  if (mode != "big") q += "&fake_interval_ms=" + std::to_string(interval_ms);
  if (keepalive_ms > 0) q += "&fake_keepalive_ms=" + std::to_string(keepalive_ms);
  if (mode == "big") q += "&fake_bytes=" + std::to_string(bytes);
  if (chunked) q += "&fake_chunked=1";
  if (seed != 0) q += "&fake_seed=" + std::to_string(seed);
  return q;
}

int64_t MonotonicMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

namespace {

std::optional<std::pair<int64_t, std::vector<FakeStreamRecord>>> ReadStreams(
    const std::string& base_url) {
  HttpResponse r = Http("GET", base_url + "/_fake/streams");
  Json json = Json::Parse(r.body);
  const rapidjson::Value* list = json.ok() ? json.Get("/streams") : nullptr;
  if (r.status != 200 || list == nullptr || !list->IsArray()) {
    ADD_FAILURE() << "GET /_fake/streams failed: " << r.status << " " << r.error << " " << r.body;
    return std::nullopt;
  }
  std::vector<FakeStreamRecord> out;
  for (rapidjson::SizeType i = 0; i < list->Size(); ++i) {
    std::string p = "/streams/" + std::to_string(i);
    FakeStreamRecord s;
    s.id = json.Int(p + "/id");
    s.mode = json.String(p + "/mode");
    s.path = json.String(p + "/path");
    s.query = json.String(p + "/query");
    s.content_length = json.Int(p + "/content_length");
    s.started_at_ms = json.Int(p + "/started_at_ms");
    s.bytes_written = json.Int(p + "/bytes_written");
    s.body_bytes = json.Int(p + "/body_bytes");
    s.rows_sent = json.Int(p + "/rows_sent");
    s.keepalives_sent = json.Int(p + "/keepalives_sent");
    s.blocked = json.Bool(p + "/blocked");
    s.ended = json.Bool(p + "/ended");
    s.ended_by = json.String(p + "/ended_by");
    s.ended_at_ms = json.Int(p + "/ended_at_ms");
    s.sha256 = json.String(p + "/sha256");
    out.push_back(std::move(s));
  }
  return std::make_pair(json.Int("/open", 0), std::move(out));
}

}  // namespace

std::vector<FakeStreamRecord> FakeUpstream::Streams() const {
  auto streams = ReadStreams(base_url());
  return streams ? streams->second : std::vector<FakeStreamRecord>{};
}

std::optional<FakeStreamRecord> FakeUpstream::Stream(int64_t id) const {
  for (auto& s : Streams()) {
    if (s.id == id) return s;
  }
  return std::nullopt;
}

std::optional<FakeStreamRecord> FakeUpstream::WaitForStream(
    int64_t id, const std::function<bool(const FakeStreamRecord&)>& done,
    milliseconds timeout) const {
  std::optional<FakeStreamRecord> last;
  WaitUntil([&] { return (last = Stream(id)).has_value() && done(*last); }, timeout);
  return last;
}

int64_t FakeUpstream::OpenStreams() const {
  auto streams = ReadStreams(base_url());
  return streams ? streams->first : -1;
}

void FakeUpstream::ClearStreams() const {
  HttpResponse r = Http("DELETE", base_url() + "/_fake/streams");
  if (r.status != 200) ADD_FAILURE() << "DELETE /_fake/streams failed: " << r.status;
}

int FakeUpstream::Stop() { return process_.Stop(); }

// -------------------------------------------------------------------------------------- gateway

std::string SubstitutePlaceholders(const std::string& text,
                                   const std::map<std::string, std::string>& values) {
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t start = text.find("${", pos);
    size_t end = start == std::string::npos ? start : text.find('}', start + 2);
    if (end == std::string::npos) break;
    auto it = values.find(text.substr(start + 2, end - start - 2));
    out += text.substr(pos, start - pos);
    out += it == values.end() ? text.substr(start, end - start + 1) : it->second;
    pos = end + 1;
  }
  return out + text.substr(pos);
}

GatewayProcess::GatewayProcess(const std::string& config, std::map<std::string, std::string> env,
                               const std::string& upstream, const std::string& redis)
    : GatewayProcess([&] {
        GatewayOptions options;
        options.config = config;
        options.env = std::move(env);
        options.upstream = upstream;
        options.redis = redis;
        return options;
      }()) {}

GatewayProcess::GatewayProcess(GatewayOptions options) : options_(std::move(options)) {
  listen_port_ = FreePort();
  do {
    admin_port_ = FreePort();
  } while (admin_port_ == listen_port_);
  audit_path_ = dir_.path() + "/audit.log";
  log_path_ = dir_.path() + "/gateway.log";
  WriteConfig(options_.config);
  std::vector<std::string> argv = {TOLLGATE_BINARY, "serve", "--config", config_path_};
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  process_ = ChildProcess(argv, options_.env, log_path_);
  if (!options_.wait_until_listening) return;
  bool uses_admin = options_.config.find("${ADMIN}") != std::string::npos;
  auto port_open = [](int port) { return WaitForPort(port, milliseconds(1)); };
  started_ = WaitUntil(
                 [&] {
                   return !process_.running() ||
                          (port_open(listen_port_) && (!uses_admin || port_open(admin_port_)));
                 },
                 options_.start_timeout) &&
             process_.running();
}

GatewayProcess::~GatewayProcess() = default;

std::string GatewayProcess::url() const {
  return "http://127.0.0.1:" + std::to_string(listen_port_);
}

std::string GatewayProcess::admin_url() const {
  return "http://127.0.0.1:" + std::to_string(admin_port_);
}

void GatewayProcess::WriteConfig(const std::string& config) {
  std::map<std::string, std::string> values = options_.vars;
  values["LISTEN"] = "127.0.0.1:" + std::to_string(listen_port_);
  values["ADMIN"] = "127.0.0.1:" + std::to_string(admin_port_);
  values["UPSTREAM"] = options_.upstream;
  values["REDIS"] = options_.redis;
  values["AUDIT"] = audit_path_;
  values["DIR"] = dir_.path();
  // Written aside and renamed, so a reload never reads a half-written file.
  std::string temp = dir_.Write("config.json.tmp", SubstitutePlaceholders(config, values));
  config_path_ = dir_.path() + "/config.json";
  std::rename(temp.c_str(), config_path_.c_str());
}

std::string GatewayProcess::log() const { return ReadFile(log_path_); }

bool GatewayProcess::WaitForLog(const std::string& text, milliseconds timeout) const {
  return WaitUntil([&] { return log().find(text) != std::string::npos; }, timeout);
}

std::vector<Json> GatewayProcess::AuditLines() const {
  std::vector<Json> out;
  for (const auto& line : Lines(ReadFile(audit_path_))) out.push_back(Json::Parse(line));
  return out;
}

std::vector<Json> GatewayProcess::WaitForAuditLines(size_t count, milliseconds timeout) const {
  std::vector<Json> lines;
  WaitUntil([&] { return (lines = AuditLines()).size() >= count; }, timeout);
  return lines;
}

namespace {

// Adds the labels of a rendered label set ({a="b",c="d"}) to *out.
void ParseLabels(const std::string& rendered, std::map<std::string, std::string>* out) {
  static const std::regex kLabel(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)")re");
  for (std::sregex_iterator it(rendered.begin(), rendered.end(), kLabel), end; it != end; ++it) {
    (*out)[(*it)[1]] = (*it)[2];
  }
}

}  // namespace

std::optional<double> MetricValue(const std::string& exposition, const std::string& name,
                                  const std::map<std::string, std::string>& labels) {
  std::string bare = name.substr(0, name.find('{'));
  std::map<std::string, std::string> want = labels;
  if (bare.size() < name.size()) ParseLabels(name.substr(bare.size()), &want);
  size_t pos = 0;
  while (pos < exposition.size()) {
    size_t eol = exposition.find('\n', pos);
    if (eol == std::string::npos) eol = exposition.size();
    std::string line = exposition.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty() || line[0] == '#') continue;
    size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    std::string series = line.substr(0, space);
    size_t brace = series.find('{');
    if (series.substr(0, brace) != bare) continue;
    std::map<std::string, std::string> found;
    if (brace != std::string::npos) ParseLabels(series.substr(brace), &found);
    if (found == want) return std::stod(line.substr(space + 1));
  }
  return std::nullopt;
}

}  // namespace tollgate::testing
