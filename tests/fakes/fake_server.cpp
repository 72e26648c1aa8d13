#include "tests/fakes/fake_server.h"

#include <fcntl.h>
#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <pistache/http_headers.h>
#include <pistache/net.h>
#include <pistache/peer.h>
#include <pistache/tcp.h>
#include <strings.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <functional>
#include <mutex>
#include <vector>

#include "tests/fakes/delay_queue.h"
#include "tests/fakes/fake_control.h"
#include "tests/fakes/fake_devin.h"
#include "tests/fakes/fake_http.h"
#include "tests/fakes/fake_stream.h"

namespace tollgate::fake {

namespace Http = Pistache::Http;
namespace Tcp = Pistache::Tcp;

namespace {

// Pistache 0.0.5 keeps Http::Handler::onInput/onConnection private, so a subclass can neither
// extend them nor call the originals. The fake needs both (the raw request head, because
// request.query() is an unordered map; a connection counter), so RecordingHandler wraps a plain
// Http::Handler and forwards to it through the public Tcp::Handler interface. That inner handler
// needs the transport, which only the private Tcp::Handler::associateTransport sets: it is named
// through an explicit instantiation, where access is not checked ([temp.spec]/6).
struct AssociateTransportTag {
  using type = void (Tcp::Handler::*)(Tcp::Transport*);
};
AssociateTransportTag::type Get(AssociateTransportTag);
template <typename Tag, typename Tag::type Member>
struct PrivateMember {
  friend typename Tag::type Get(Tag) { return Member; }
};
template struct PrivateMember<AssociateTransportTag, &Tcp::Handler::associateTransport>;

constexpr char kRawHeadKey[] = "tollgate.fake.raw_head";
constexpr size_t kMaxRawHead = 1 << 20;
constexpr size_t kMaxRequestBytes = 8 << 20;
// Pistache's header timer also runs while an answer is pending; a delayed answer must outlive it.
constexpr std::chrono::minutes kHeaderTimeout(10);

// The bytes of the current request up to and including the blank line after its headers.
struct RawHead {
  std::string bytes;
  bool complete = false;
  bool wants_continue = false;  // the head asked for 100-continue and no body followed it yet

  // Returns true when this chunk completed the head.
  bool Append(const char* data, size_t len) {
    if (complete || bytes.size() > kMaxRawHead) return false;
    size_t search_from = bytes.size() >= 3 ? bytes.size() - 3 : 0;
    bytes.append(data, len);
    size_t end = bytes.find("\r\n\r\n", search_from);
    if (end == std::string::npos) return false;
    bool body_arrived = bytes.size() > end + 4;
    bytes.resize(end + 4);
    complete = true;
    std::string lower = bytes;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    wants_continue =
        !body_arrived && lower.find("\r\nexpect: 100-continue\r\n") != std::string::npos;
    return true;
  }
};

// Fills method, path, query and headers from a raw request head; false if it is not one.
bool ParseRawHead(const std::string& head, FakeRequest* out) {
  size_t line_end = head.find("\r\n");
  if (line_end == std::string::npos) return false;
  std::string line = head.substr(0, line_end);
  size_t sp1 = line.find(' ');
  size_t sp2 = line.rfind(' ');
  if (sp1 == std::string::npos || sp2 == sp1) return false;
  out->method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  size_t question = target.find('?');
  out->path = target.substr(0, question);
  out->query = question == std::string::npos ? "" : target.substr(question + 1);
  out->headers.clear();
  size_t pos = line_end + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string::npos || end == pos) break;
    std::string header = head.substr(pos, end - pos);
    size_t colon = header.find(':');
    if (colon != std::string::npos) {
      size_t value_start = header.find_first_not_of(" \t", colon + 1);
      size_t value_end = header.find_last_not_of(" \t");
      std::string value = value_start == std::string::npos || value_end < value_start
                              ? ""
                              : header.substr(value_start, value_end - value_start + 1);
      out->headers.emplace_back(header.substr(0, colon), value);
    }
    pos = end + 2;
  }
  return true;
}

// addRaw() headers are silently not sent by Pistache 0.0.5; a Header subclass is.
class RawHeader : public Http::Header::Header {
 public:
  RawHeader(std::string name, std::string value)
      : name_(std::move(name)), value_(std::move(value)) {}
  const char* name() const override { return name_.c_str(); }
  void write(std::ostream& stream) const override { stream << value_; }
#ifdef SAFE_HEADER_CAST
  uint64_t hash() const override { return std::hash<std::string>()(name_); }
#endif

 private:
  std::string name_;
  std::string value_;
};

}  // namespace

struct FakeServer::Impl {
  explicit Impl(const FakeServerOptions& options, int bound_port)
      // "localhost", not 127.0.0.1: another origin than the API's, as S3 is Devin's, so the
      // gateway passes the Location on unchanged; it still reaches this server.
      : devin(options.devin_token, "http://localhost:" + std::to_string(bound_port)),
        devo(options.devo, "http://127.0.0.1:" + std::to_string(bound_port)) {}

  // Answers one request; `writer` may be answered now or from the delay queue. `peer_fd` is the
  // connection's socket, which a streamed answer takes over (a dup), or -1.
  void Serve(FakeRequest request, std::shared_ptr<Http::ResponseWriter> writer, bool head_only,
             int peer_fd);
  void Send(Http::ResponseWriter& writer, const FakeResponse& response, bool head_only);

  FakeState state;
  FakeDevin devin;
  FakeDevo devo;
  DelayQueue delays;
  Streamer streams;
  std::mutex held_mu;
  std::vector<std::function<void()>> held;  // answers of `hold` rules, sent by /_fake/release
  std::unique_ptr<Pistache::Http::Endpoint> endpoint;
  bool running = false;
};

void FakeServer::Impl::Serve(FakeRequest request, std::shared_ptr<Http::ResponseWriter> writer,
                             bool head_only, int peer_fd) {
  if (request.path == "/_fake/release" && request.method == "POST") {
    std::vector<std::function<void()>> answers;
    {
      std::lock_guard<std::mutex> lock(held_mu);
      answers.swap(held);
    }
    for (auto& answer : answers) answer();
    FakeResponse released;
    released.headers.emplace_back("Content-Type", "application/json");
    released.body = "{\"released\":" + std::to_string(answers.size()) + "}";
    Send(*writer, released, head_only);
    return;
  }
  if (request.path == "/_fake/streams" && (request.method == "GET" || request.method == "DELETE")) {
    if (request.method == "DELETE") streams.Clear();
    FakeResponse answer;
    answer.headers.emplace_back("Content-Type", "application/json");
    answer.body = streams.StreamsJson();
    Send(*writer, answer, head_only);
    return;
  }
  if (request.path.rfind("/_fake/", 0) == 0) {
    Send(*writer, state.HandleControl(request), head_only);
    return;
  }
  state.Record(request);
  state.RequestStarted();
  bool devo_path = FakeDevo::Owns(request.path);
  FakeResponse response;
  // The models answer HEAD as GET; Send() leaves the body out.
  FakeRequest as_get = request;
  if (head_only) as_get.method = "GET";
  if (FakeDevin::Owns(request.path)) {
    response = devin.Handle(as_get);
  } else if (FakeDevin::IsPresigned(request.path)) {
    response = devin.HandlePresigned(as_get);
  } else if (devo_path) {
    response = devo.Handle(as_get);
  } else if (request.path == "/stream" || request.path.rfind("/stream/", 0) == 0) {
    response.headers.emplace_back("Content-Type", "application/json");  // see fake_stream.h
  } else {
    response = ProblemResponse(404, "no such endpoint: " + request.path);
  }
  Behaviour rule;
  if (!state.TakeBehaviour(request.path, &rule)) rule.delay_ms = 0;
  if (rule.status != 0) {
    std::string message = "forced by a /_fake/behaviour rule";
    response =
        devo_path ? DevoErrorResponse(rule.status, message) : ProblemResponse(rule.status, message);
    if (devo_path) response.headers.emplace_back("x-devo-cid", RandomHex(16));
  }
  if (rule.has_retry_after) response.headers.emplace_back("Retry-After", rule.retry_after);
  if (rule.has_body) response.body = rule.body;
  if (rule.has_content_type) {
    // Replaced, not added: Pistache collapses repeated names to the first, the model's own.
    auto& h = response.headers;
    h.erase(std::remove_if(
                h.begin(), h.end(),
                [](const auto& kv) { return strcasecmp(kv.first.c_str(), "Content-Type") == 0; }),
            h.end());
    h.emplace_back("Content-Type", rule.content_type);
  }
  for (const auto& header : rule.headers) response.headers.push_back(header);
  StreamSpec spec;
  std::string spec_error;
  bool streamed = ParseStreamSpec(request.query, &spec, &spec_error);
  if (!spec_error.empty()) response = ProblemResponse(400, spec_error);
  if (streamed && !head_only && rule.status == 0 && !rule.hold && response.status / 100 == 2 &&
      peer_fd >= 0) {
    // The connection's socket is shared with Pistache, which keeps reading it (and so notices a
    // client that leaves) but never writes to it again: no answer goes through `writer`.
    int fd = fcntl(peer_fd, F_DUPFD_CLOEXEC, 0);
    if (fd >= 0) {
      writer->timeout().disarm();  // else Pistache's header timer would write a 408 mid-stream
      spec.head_delay_ms = rule.delay_ms;
      state.RequestFinished();
      streams.Start(fd, spec, response.headers, request);
      return;
    }
    response = ProblemResponse(500, "cannot take over the connection for a stream");
  }
  if (rule.hold) {
    std::lock_guard<std::mutex> lock(held_mu);
    held.push_back([this, writer, response, head_only] {
      state.RequestFinished();
      Send(*writer, response, head_only);
    });
    return;
  }
  // in_flight drops before the answer is sent, so a client holding the answer sees it dropped.
  if (rule.delay_ms <= 0) {
    state.RequestFinished();
    Send(*writer, response, head_only);
    return;
  }
  delays.Schedule(std::chrono::milliseconds(rule.delay_ms), [this, writer, response, head_only] {
    state.RequestFinished();
    Send(*writer, response, head_only);
  });
}

void FakeServer::Impl::Send(Http::ResponseWriter& writer, const FakeResponse& response,
                            bool head_only) {
  for (const auto& [name, value] : response.headers) {
    writer.headers().add(std::make_shared<RawHeader>(name, value));
  }
  // A HEAD answer must not carry the body Pistache would otherwise write.
  writer.send(static_cast<Http::Code>(response.status), head_only ? "" : response.body)
      .then([](ssize_t) {}, [](std::exception_ptr) { /* the client went away */ });
}

namespace {

// Parses with Pistache's own code; RecordingHandler forwards every event to it.
class InnerHandler : public Http::Handler {
 public:
  HTTP_PROTOTYPE(InnerHandler)
  explicit InnerHandler(FakeServer::Impl* impl) : impl_(impl) {}

  void onRequest(const Http::Request& request, Http::ResponseWriter response) override {
    namespace Header = Http::Header;
    FakeRequest fake;
    auto peer = response.peer();
    std::shared_ptr<void> data = peer ? peer->tryGetData(kRawHeadKey) : nullptr;
    auto* raw = static_cast<RawHead*>(data.get());
    if (raw == nullptr || !raw->complete || !ParseRawHead(raw->bytes, &fake)) {
      fake.method = Http::methodString(request.method());
      fake.path = request.resource();
      fake.query = request.query().as_str();
      if (!fake.query.empty()) fake.query.erase(0, 1);
    }
    if (raw != nullptr) *raw = RawHead();  // the next bytes on this connection are a new request
    fake.body = request.body();
    // Pistache answers "Connection: Close" unless the request said keep-alive explicitly, but
    // HTTP/1.1 is persistent by default; the gateway's connection reuse must be observable.
    if (request.version() == Http::Version::Http11 &&
        !request.headers().has<Header::Connection>()) {
      response.headers().remove<Header::Connection>();
      response.headers().add<Header::Connection>(Http::ConnectionControl::KeepAlive);
    }
    bool head_only = request.method() == Http::Method::Head;
    int peer_fd = peer ? peer->fd() : -1;
    impl_->Serve(std::move(fake), std::make_shared<Http::ResponseWriter>(std::move(response)),
                 head_only, peer_fd);
  }

 private:
  FakeServer::Impl* impl_;
};

class RecordingHandler : public Http::Handler {
 public:
  HTTP_PROTOTYPE(RecordingHandler)
  explicit RecordingHandler(FakeServer::Impl* impl)
      : impl_(impl), inner_(std::make_shared<InnerHandler>(impl)) {}
  // Pistache clones the handler once per reactor thread; each clone needs its own inner handler,
  // bound to that clone's transport.
  RecordingHandler(const RecordingHandler& other)
      : Http::Handler(other), impl_(other.impl_), inner_(std::make_shared<InnerHandler>(impl_)) {}

  void onRequest(const Http::Request&, Http::ResponseWriter) override {}  // the inner one answers

  void onConnection(const std::shared_ptr<Tcp::Peer>& peer) override {
    if (!bound_) {
      inner_->setMaxRequestSize(getMaxRequestSize());
      inner_->setMaxResponseSize(getMaxResponseSize());
      inner_->setHeaderTimeout(getHeaderTimeout());
      inner_->setBodyTimeout(getBodyTimeout());
      (static_cast<Tcp::Handler&>(*inner_).*Get(AssociateTransportTag()))(transport());
      bound_ = true;
    }
    impl_->state.CountConnection();
    peer->putData(kRawHeadKey, std::make_shared<RawHead>());
    static_cast<Tcp::Handler&>(*inner_).onConnection(peer);
  }

  void onInput(const char* buffer, size_t len, const std::shared_ptr<Tcp::Peer>& peer) override {
    auto data = peer->tryGetData(kRawHeadKey);
    auto* raw = static_cast<RawHead*>(data.get());
    if (raw != nullptr && raw->Append(buffer, len) && raw->wants_continue) {
      // Pistache never answers 100-continue, so a client (curl sends it for bodies over 1 KiB)
      // would stall a second before sending the body; real upstreams answer it at once.
      static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      peer->send(Pistache::RawBuffer(kContinue, sizeof kContinue - 1))
          .then([](ssize_t) {}, [](std::exception_ptr) {});
    }
    static_cast<Tcp::Handler&>(*inner_).onInput(buffer, len, peer);
  }

  void onDisconnection(const std::shared_ptr<Tcp::Peer>& peer) override {
    static_cast<Tcp::Handler&>(*inner_).onDisconnection(peer);
  }

 private:
  FakeServer::Impl* impl_;
  std::shared_ptr<InnerHandler> inner_;
  bool bound_ = false;
};

}  // namespace

FakeServer::FakeServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FakeServer::~FakeServer() { Shutdown(); }

std::unique_ptr<FakeServer> FakeServer::Start(const FakeServerOptions& options,
                                              std::string* error) {
  // Pistache's serve() binds again, so port 0 could not be known in advance for Location URLs.
  if (options.port <= 0 || options.port > 65535) {
    if (error) *error = "a port from 1 to 65535 is required";
    return nullptr;
  }
  try {
    auto endpoint = std::make_unique<Http::Endpoint>(Pistache::Address(
        Pistache::Ipv4::loopback(), Pistache::Port(static_cast<uint16_t>(options.port))));
    endpoint->init(Http::Endpoint::options()
                       .threads(options.threads)
                       .flags(Tcp::Options::ReuseAddr)
                       .backlog(4096)  // tests open hundreds of connections at once
                       .maxRequestSize(kMaxRequestBytes)
                       .headerTimeout(kHeaderTimeout)
                       .bodyTimeout(kHeaderTimeout));
    auto impl = std::make_unique<Impl>(options, options.port);
    auto handler = Http::make_handler<RecordingHandler>(impl.get());
    handler->setMaxRequestSize(kMaxRequestBytes);
    handler->setHeaderTimeout(kHeaderTimeout);
    handler->setBodyTimeout(kHeaderTimeout);
    endpoint->setHandler(handler);
    endpoint->serveThreaded();
    impl->endpoint = std::move(endpoint);
    impl->running = true;
    return std::unique_ptr<FakeServer>(new FakeServer(std::move(impl)));
  } catch (const std::exception& e) {
    if (error) *error = std::string("cannot listen: ") + e.what();
    return nullptr;
  }
}

int FakeServer::port() const {
  return static_cast<int>(static_cast<uint16_t>(impl_->endpoint->getPort()));
}

void FakeServer::Shutdown() {
  if (!impl_ || !impl_->running) return;
  impl_->running = false;
  impl_->delays.Stop();
  impl_->streams.Stop();
  {
    std::lock_guard<std::mutex> lock(impl_->held_mu);
    impl_->held.clear();
  }
  impl_->endpoint->shutdown();
}

}  // namespace tollgate::fake
