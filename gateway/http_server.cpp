#include "gateway/http_server.h"

#include <pistache/async.h>
#include <pistache/listener.h>
#include <pistache/net.h>
#include <pistache/peer.h>
#include <pistache/tcp.h>
#include <pthread.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace tollgate::gateway {

using Clock = std::chrono::steady_clock;

// Per-connection state, shared by the reactor thread that reads and any thread that answers.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::weak_ptr<Pistache::Tcp::Peer> peer, std::string client_ip,
             const HttpServerOptions& options, const RequestHandler* handler)
      : peer_(std::move(peer)),
        client_ip_(std::move(client_ip)),
        parser_(options.max_header_bytes, options.max_body_bytes),
        max_buffered_(options.max_header_bytes + options.max_body_bytes + 65536),
        handler_(handler) {}

  void OnInput(const char* data, size_t len) {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    if (closing_) return;
    if (!busy_ && parser_.buffered() == 0) since_ = Clock::now();  // a request starts
    if (overflowed_) return;  // discarded: this connection closes after its current answer
    if (busy_ && parser_.buffered() + len > max_buffered_) {
      // A client that keeps sending while its request is being answered cannot make the
      // gateway buffer without bound: the excess is dropped and the connection is closed once
      // the request in flight is answered. (When idle, the parser's limits answer 413/431.)
      overflowed_ = true;
      return;
    }
    parser_.Append(std::string_view(data, len));
    DispatchLocked(lock);
  }

  void OnClosed() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    closed_ = true;
  }

  void Respond(const HttpRequest& request, const HttpResponse& response, bool force_close) {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    bool keep_alive = request.keep_alive && !force_close && !closing_ && !overflowed_;
    bool head_only = request.method == "HEAD";
    WriteLocked(SerializeResponse(response, keep_alive, head_only), !keep_alive);
    busy_ = false;
    since_ = Clock::now();  // idle, or reading the next pipelined request, from now
    if (!keep_alive) {
      closing_ = true;
      return;
    }
    // An answer given inside the dispatch loop (a local reply) returns to that loop, which
    // goes on with the next pipelined request: iteration, not recursion, however long the
    // pipeline. An answer from another thread starts the loop here.
    if (dispatching_) return;
    DispatchLocked(lock);
  }

  // Called periodically by the server's sweeper. A partial request past request_timeout is
  // handed to the handler as a 408 (so it is answered and audited like any parse error); an
  // idle keep-alive connection past idle_timeout is closed.
  void Expire(Clock::time_point now, const HttpServerOptions& options) {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    if (busy_ || closing_ || closed_) return;
    auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - since_).count();
    if (parser_.buffered() == 0) {
      if (age < options.idle_timeout_ms) return;
      closing_ = true;
      if (auto peer = peer_.lock()) ::shutdown(peer->fd(), SHUT_RDWR);
      return;
    }
    if (age < options.request_timeout_ms) return;
    busy_ = true;
    auto exchange =
        std::make_shared<Exchange>(shared_from_this(), parser_.Partial(), client_ip_, 408,
                                   "the request was not received within " +
                                       std::to_string(options.request_timeout_ms) + " ms");
    lock.unlock();
    (*handler_)(exchange);
  }

 private:
  // Hands the next complete request (if any) to the handler. Called with mu_ held; releases
  // it around the handler call, because the handler may answer inline.
  void DispatchLocked(std::unique_lock<std::recursive_mutex>& lock) {
    if (dispatching_) return;
    dispatching_ = true;
    while (!busy_ && !closing_ && !closed_) {
      HttpRequest request;
      RequestParser::Status status = parser_.Next(&request);
      if (status == RequestParser::Status::kIncomplete) {
        if (parser_.TakeContinue()) WriteLocked("HTTP/1.1 100 Continue\r\n\r\n", false);
        break;
      }
      busy_ = true;
      std::shared_ptr<Exchange> exchange;
      if (status == RequestParser::Status::kError) {
        exchange = std::make_shared<Exchange>(shared_from_this(), std::move(request), client_ip_,
                                              parser_.error_status(), parser_.error_message());
      } else {
        exchange = std::make_shared<Exchange>(shared_from_this(), std::move(request), client_ip_, 0,
                                              std::string());
      }
      lock.unlock();
      (*handler_)(exchange);
      exchange.reset();
      lock.lock();
    }
    dispatching_ = false;
  }

  // Writes a response (or an interim 100) in order with anything written before.
  //
  // Fast path: when Pistache's transport holds nothing queued for this connection, send
  // straight from this thread. That saves, per response, two copies of the bytes, a promise,
  // an eventfd wake-up of the reactor and two epoll_ctl calls. It is safe
  // against fd reuse because Pistache calls onDisconnection (which takes mu_, held here)
  // before it closes the fd. Whatever the socket does not take at once goes through the
  // transport's queue, and every later write follows it there until the queue drains.
  void WriteLocked(std::string bytes, bool close_after) {
    if (closed_) return;
    auto peer = peer_.lock();
    if (!peer) return;
    if (queued_writes_ == 0) {
      ssize_t n = ::send(peer->fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n == static_cast<ssize_t>(bytes.size())) {
        if (close_after) ::shutdown(peer->fd(), SHUT_RDWR);
        return;
      }
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return;  // gone: the reactor sees it
      if (n > 0) bytes.erase(0, static_cast<size_t>(n));
    }
    ++queued_writes_;
    size_t len = bytes.size();
    std::weak_ptr<Pistache::Tcp::Peer> weak = peer_;
    auto self = shared_from_this();
    auto done = [self, weak, close_after] {
      std::lock_guard<std::recursive_mutex> lock(self->mu_);
      --self->queued_writes_;
      if (!close_after || self->closed_) return;
      if (auto p = weak.lock()) ::shutdown(p->fd(), SHUT_RDWR);
    };
    peer->send(Pistache::RawBuffer(std::move(bytes), len))
        .then([done](ssize_t) { done(); }, [done](std::exception_ptr) { done(); });
  }

  // Recursive because a Pistache promise continuation may run inline in peer->send(...).then()
  // when the write already completed, i.e. on this thread while it holds mu_.
  std::recursive_mutex mu_;
  std::weak_ptr<Pistache::Tcp::Peer> peer_;
  std::string client_ip_;
  RequestParser parser_;
  size_t max_buffered_;  // unconsumed input allowed while a request is being answered
  const RequestHandler* handler_;
  bool overflowed_ = false;   // input was dropped over max_buffered_: close after this answer
  bool dispatching_ = false;  // a thread is in DispatchLocked's loop for this connection
  bool busy_ = false;         // a request was dispatched and not yet answered
  bool closing_ = false;      // answered with Connection: close
  bool closed_ = false;       // the peer disconnected
  int queued_writes_ = 0;     // writes handed to Pistache's transport and not yet done
  Clock::time_point since_ = Clock::now();  // when the current idle/reading state began
};

Exchange::Exchange(std::shared_ptr<Connection> connection, HttpRequest request,
                   std::string client_ip, int parse_error_status, std::string parse_error)
    : connection_(std::move(connection)),
      request_(std::move(request)),
      client_ip_(std::move(client_ip)),
      parse_error_status_(parse_error_status),
      parse_error_(std::move(parse_error)) {}

Exchange::Exchange(HttpRequest request, std::string client_ip, ResponseSink sink,
                   int parse_error_status, std::string parse_error)
    : sink_(std::move(sink)),
      request_(std::move(request)),
      client_ip_(std::move(client_ip)),
      parse_error_status_(parse_error_status),
      parse_error_(std::move(parse_error)) {}

Exchange::~Exchange() {
  // A handler that dropped its exchange without answering would stall the connection.
  if (!responded_.load()) {
    HttpResponse r;
    r.status = 500;
    r.headers.emplace_back("Content-Type", "application/json");
    r.body = R"({"error":{"code":500,"reason":"internal","message":"no response was produced"}})";
    Respond(std::move(r));
  }
}

void Exchange::Respond(HttpResponse response) {
  if (responded_.exchange(true)) return;
  if (!connection_) {
    sink_(std::move(response));
    return;
  }
  connection_->Respond(request_, response, parse_error_status_ != 0);
}

namespace {

constexpr const char* kConnectionKey = "tollgate.connection";

// Every live connection, for the sweeper that enforces the request and idle timeouts.
class ConnectionRegistry {
 public:
  void Add(const std::shared_ptr<Connection>& c) {
    std::lock_guard<std::mutex> lock(mu_);
    connections_.push_back(c);
  }
  // The live connections; forgets the ones that are gone.
  std::vector<std::shared_ptr<Connection>> Live() {
    std::vector<std::shared_ptr<Connection>> out;
    std::lock_guard<std::mutex> lock(mu_);
    size_t kept = 0;
    for (size_t i = 0; i < connections_.size(); ++i) {
      if (auto c = connections_[i].lock()) {
        out.push_back(std::move(c));
        // (A weak_ptr moved onto itself ends up empty: only move when the slot changes.)
        if (kept != i) connections_[kept] = std::move(connections_[i]);
        ++kept;
      }
    }
    connections_.resize(kept);
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<std::weak_ptr<Connection>> connections_;
};

class TcpHandler : public Pistache::Tcp::Handler {
 public:
  PROTOTYPE_OF(Pistache::Tcp::Handler, TcpHandler)

  TcpHandler(const HttpServerOptions* options, const RequestHandler* handler,
             std::atomic<uint64_t>* accepted, ConnectionRegistry* registry)
      : options_(options), handler_(handler), accepted_(accepted), registry_(registry) {}

  void onConnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    accepted_->fetch_add(1, std::memory_order_relaxed);
    auto connection =
        std::make_shared<Connection>(peer, peer->address().host(), *options_, handler_);
    peer->putData(kConnectionKey, connection);
    registry_->Add(connection);
  }

  void onDisconnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    if (auto c = peer->tryGetData(kConnectionKey)) static_cast<Connection*>(c.get())->OnClosed();
  }

  void onInput(const char* buffer, size_t len,
               const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    auto c = peer->tryGetData(kConnectionKey);
    if (c) static_cast<Connection*>(c.get())->OnInput(buffer, len);
  }

 private:
  const HttpServerOptions* options_;
  const RequestHandler* handler_;
  std::atomic<uint64_t>* accepted_;
  ConnectionRegistry* registry_;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  RequestHandler handler;
  std::atomic<uint64_t> accepted{0};
  ConnectionRegistry registry;
  Pistache::Tcp::Listener listener;
  bool running = false;
  std::mutex sweep_mu;
  std::condition_variable sweep_cv;
  bool stop_sweeping = false;
  std::thread sweeper;

  void Sweep() {
    pthread_setname_np(pthread_self(), "tollgate-sweep");
    std::unique_lock<std::mutex> lock(sweep_mu);
    while (!sweep_cv.wait_for(lock, std::chrono::milliseconds(200),
                              [this] { return stop_sweeping; })) {
      lock.unlock();
      auto now = Clock::now();
      for (const auto& c : registry.Live()) c->Expire(now, options);
      lock.lock();
    }
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Shutdown(); }

std::unique_ptr<HttpServer> HttpServer::Start(const HttpServerOptions& options,
                                              RequestHandler handler, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->handler = std::move(handler);
  try {
    Pistache::Address address(options.listen);
    impl->listener.init(static_cast<size_t>(options.threads > 0 ? options.threads : 1),
                        Pistache::Flags<Pistache::Tcp::Options>(Pistache::Tcp::Options::ReuseAddr) |
                            Pistache::Tcp::Options::NoDelay,
                        "tollgate-http", options.backlog);
    impl->listener.setHandler(std::make_shared<TcpHandler>(&impl->options, &impl->handler,
                                                           &impl->accepted, &impl->registry));
    impl->listener.bind(address);
    impl->listener.runThreaded();
    impl->running = true;
    impl->sweeper = std::thread([raw = impl.get()] { raw->Sweep(); });
  } catch (const std::exception& e) {
    if (error) *error = "cannot listen on " + options.listen + ": " + e.what();
    return nullptr;
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

void HttpServer::Shutdown() {
  if (impl_ && impl_->running) {
    impl_->running = false;
    {
      std::lock_guard<std::mutex> lock(impl_->sweep_mu);
      impl_->stop_sweeping = true;
    }
    impl_->sweep_cv.notify_all();
    impl_->sweeper.join();
    impl_->listener.shutdown();
  }
}

int HttpServer::port() const {
  return static_cast<int>(static_cast<uint16_t>(impl_->listener.getPort()));
}

uint64_t HttpServer::connections_accepted() const { return impl_->accepted.load(); }

}  // namespace tollgate::gateway
