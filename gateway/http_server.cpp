#include "gateway/http_server.h"

#include <pistache/listener.h>
#include <pistache/net.h>
#include <pistache/os.h>
#include <pistache/peer.h>
#include <pistache/reactor.h>
#include <pistache/tcp.h>
#include <pistache/transport.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace tollgate::gateway {

using Clock = std::chrono::steady_clock;
namespace Polling = Pistache::Polling;

namespace {

// The tag of a loop's epoll fd in the reactor's poller. Peer fds are tagged with their fd
// number (below 2^31), so this cannot collide.
constexpr uint64_t kLoopTag = uint64_t{1} << 40;
// Read at most this much per recv; a connection's input beyond its limit is not read at all.
constexpr size_t kReadChunk = 65536;
// An output buffer that grew past this while streaming is released once it drains.
constexpr size_t kShrinkAbove = size_t{1} << 20;
// How long a closing connection reads and drops what its caller still sends.
constexpr int kLingerMs = 2000;

}  // namespace

struct ServerShared {
  HttpServerOptions options;
  RequestHandler handler;
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<int64_t> open{0};
  std::mutex loops_mu;
  std::vector<loop::Loop*> loops;  // every serving transport's loop
};

class LoopTransport;

// One caller connection. Lives on its transport's reactor thread: every method runs there.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(LoopTransport* transport, std::shared_ptr<Pistache::Tcp::Peer> peer,
             ServerShared* shared);
  ~Connection();

  loop::Loop* loop() const;
  bool closed() const { return closed_; }

  // Reactor events for the connection's fd.
  // `peer_shut`: the caller shut its sending side (EPOLLRDHUP): an end of input follows the
  // bytes still to be read.
  void OnEvent(bool readable, bool writable, bool hangup, bool peer_shut = false);
  // Closes at once (used for refusals over max_connections and by Shutdown).
  void Close();

  void Respond(Exchange* exchange, const HttpResponse& response);
  void StartStream(Exchange* exchange, int status, const HeaderList& headers,
                   std::optional<uint64_t> content_length);
  bool WriteBody(std::string_view data);
  void EndStream();
  void AbortStream();
  // Sends a head that StartStream held back (see held_head_); the transport calls it at the end
  // of the loop iteration.
  void SendHeldHead();
  void Refuse() { refused_ = true; }
  // "100 Continue" to a caller that waits for it before sending its body (Expect), when the
  // handler asks for the body: only requests that will be forwarded get it.
  void SendContinue(Exchange* exchange) {
    if (closed_ || exchange != exchange_.get() || streaming_ || !held_head_.empty()) return;
    static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    iovec iov{const_cast<char*>(kContinue), sizeof kContinue - 1};
    auto self = shared_from_this();  // a failed write closes the connection
    Send(&iov, 1);
  }
  // The exchange's handler took body bytes: read on if the buffer has room again.
  void BodyTaken() {
    if (!closed_) Pump();  // Pump holds the connection itself
  }
  void Start() { ArmTimer(); }  // the idle timeout runs from the accept

 private:
  void Pump();
  void CloseAfterAnswer();
  void Linger();
  void MoveBody();
  void ReadSome();
  void Dispatch(RequestParser::Status status, HttpRequest request, bool expect_continue = false);
  void FinishAnswer();
  // Writes (or buffers) `count` <= 3 pieces, after a held head if there is one.
  void Send(const iovec* iov, int count);
  void Flush();
  void SetWriteInterest(bool on);
  void ArmTimer();
  void OnTimer();

  LoopTransport* transport_;
  std::shared_ptr<Pistache::Tcp::Peer> peer_;
  int fd_;
  ServerShared* shared_;
  const HttpServerOptions& options_;
  std::string client_ip_;
  RequestParser parser_;
  size_t max_buffered_;

  std::shared_ptr<Exchange> exchange_;  // the request being answered (busy) or null
  std::shared_ptr<Exchange> body_for_;  // the request whose body is still being read
  bool keep_alive_ = true;              // of the answer being written
  bool head_only_ = false;
  BodyFraming framing_ = BodyFraming::kNone;
  bool streaming_ = false;
  bool close_after_flush_ = false;
  bool closed_ = false;
  bool refused_ = false;
  bool pumping_ = false;
  bool input_broken_ = false;     // a streamed body broke off: no request follows it
  bool lingering_ = false;        // answered and half-closed: input is read and dropped
  bool body_unread_ = false;      // answered before the request's body ended
  bool readable_pending_ = true;  // edge-triggered: unread input may be waiting
  bool peer_eof_ = false;         // the caller finished sending (FIN)
  bool peer_shut_ = false;        // EPOLLRDHUP was reported: a FIN is queued behind the input
  bool write_interest_ = false;
  bool drain_wanted_ = false;  // Write returned false: tell the producer when below kHighWater

  std::string out_;  // unsent output, from out_off_
  // A streamed answer's head, held until its first body bytes, its end or the end of this loop
  // iteration, whichever comes first: a small answer (head and body in one upstream read) then
  // leaves in one sendmsg, one TCP segment, instead of two (the second send cost about a fifth
  // of the gateway's CPU per request in the loopback bench, mostly in the kernel's TCP path).
  std::string held_head_;
  size_t out_off_ = 0;
  Clock::time_point since_ =
      Clock::now();  // start of the idle/reading state, or last write progress
  loop::Loop::TimerId timer_ = 0;
};

// Pistache's transport for one reactor thread, extended with the loop that thread runs and
// with tollgate's own handling of its connections' fds (reads with backpressure, direct writes).
class LoopTransport : public Pistache::Tcp::Transport {
 public:
  LoopTransport(const std::shared_ptr<Pistache::Tcp::Handler>& handler, ServerShared* shared)
      : Pistache::Tcp::Transport(handler), shared_(shared) {}

  std::shared_ptr<Pistache::Aio::Handler> clone() const override;

  void registerPoller(Polling::Epoll& poller) override {
    Pistache::Tcp::Transport::registerPoller(poller);
    loop_.AddIterationHook([this] { SendHeldHeads(); });
    poller.addFd(loop_.fd(), Pistache::Flags<Polling::NotifyOn>(Polling::NotifyOn::Read),
                 Polling::Tag(kLoopTag), Polling::Mode::Level);
    std::lock_guard<std::mutex> lock(shared_->loops_mu);
    shared_->loops.push_back(&loop_);
  }

  void onReady(const Pistache::Aio::FdSet& fds) override {
    loop_.Adopt();
    std::vector<Polling::Event> rest;
    for (const auto& entry : fds) {
      uint64_t tag = entry.getTag().value();
      if (tag == kLoopTag) {
        loop_.RunOnce(0);
        continue;
      }
      if (tag < kLoopTag) {
        auto it = connections_.find(static_cast<int>(tag));
        if (it != connections_.end()) {
          // A C-style cast reaches FdSet::Entry's private base, the only place the
          // EPOLLRDHUP bit (NotifyOn::Shutdown) is visible.
          const auto& event = (const Polling::Event&)entry;
          std::shared_ptr<Connection> c = it->second;
          const bool peer_shut = event.flags.hasFlag(Polling::NotifyOn::Shutdown);
          c->OnEvent(entry.isReadable() || peer_shut, entry.isWritable(), entry.isHangup(),
                     peer_shut);
          continue;
        }
      }
      Polling::Event e(entry.getTag());
      e.flags = Pistache::Flags<Polling::NotifyOn>(Polling::NotifyOn::Read);
      rest.push_back(std::move(e));
    }
    if (!rest.empty()) Pistache::Tcp::Transport::onReady(Pistache::Aio::FdSet(std::move(rest)));
    loop_.RunHooks();
  }

  loop::Loop& loop() { return loop_; }

  // `c` holds a streamed answer's head back until the end of this iteration at the latest.
  void HoldHead(std::shared_ptr<Connection> c) { held_.push_back(std::move(c)); }
  void SendHeldHeads() {
    if (held_.empty()) return;
    std::vector<std::shared_ptr<Connection>> held;
    held.swap(held_);
    for (auto& c : held) c->SendHeldHead();
  }

  // A new peer, on this thread (from Tcp::Handler::onConnection).
  void Adopt(const std::shared_ptr<Pistache::Tcp::Peer>& peer) {
    loop_.Adopt();
    auto c = std::make_shared<Connection>(this, peer, shared_);
    shared_->accepted.fetch_add(1, std::memory_order_relaxed);
    int64_t open = shared_->open.fetch_add(1, std::memory_order_relaxed) + 1;
    if (static_cast<size_t>(open) > shared_->options.max_connections) {
      // Over the limit: closed as soon as the reactor has registered it (closing here would
      // leave Pistache registering a closed fd). The shutdown makes the fd report a hang-up.
      shared_->refused.fetch_add(1, std::memory_order_relaxed);
      c->Refuse();
      ::shutdown(peer->fd(), SHUT_RDWR);
    }
    connections_.emplace(peer->fd(), c);
    c->Start();
  }

  void SetInterest(int fd, bool write) {
    using Polling::NotifyOn;
    reactor()->modifyFd(key(), fd,
                        write ? NotifyOn::Read | NotifyOn::Write | NotifyOn::Shutdown
                              : NotifyOn::Read | NotifyOn::Shutdown,
                        Polling::Mode::Edge);
  }

  // Forgets a connection and closes its fd.
  void Remove(int fd, const std::shared_ptr<Pistache::Tcp::Peer>& peer) {
    connections_.erase(fd);
    if (destroying_) {
      ::close(fd);  // the reactor is being torn down: it is not to be called any more
    } else {
      removePeer(peer);
    }
    shared_->open.fetch_sub(1, std::memory_order_relaxed);
  }

  ~LoopTransport() override {
    // The reactor thread has stopped; what the connections still hold (exchanges, their
    // per-request state) is released before the loop's per-loop state.
    destroying_ = true;
    auto connections = connections_;
    for (auto& [fd, c] : connections) c->Close();
    connections.clear();
    loop_.ClearLocals();
  }

 private:
  ServerShared* shared_;
  loop::Loop loop_;
  std::unordered_map<int, std::shared_ptr<Connection>> connections_;
  std::vector<std::shared_ptr<Connection>> held_;  // connections with a held head
  bool destroying_ = false;
};

namespace {

class TcpHandler : public Pistache::Tcp::Handler {
 public:
  PROTOTYPE_OF(Pistache::Tcp::Handler, TcpHandler)

  void onConnection(const std::shared_ptr<Pistache::Tcp::Peer>& peer) override {
    static_cast<LoopTransport*>(transport())->Adopt(peer);
  }
  // Never called: LoopTransport handles its connections' fds itself.
  void onInput(const char*, size_t, const std::shared_ptr<Pistache::Tcp::Peer>&) override {}
};

}  // namespace

std::shared_ptr<Pistache::Aio::Handler> LoopTransport::clone() const {
  return std::make_shared<LoopTransport>(std::make_shared<TcpHandler>(), shared_);
}

Connection::Connection(LoopTransport* transport, std::shared_ptr<Pistache::Tcp::Peer> peer,
                       ServerShared* shared)
    : transport_(transport),
      peer_(std::move(peer)),
      fd_(peer_->fd()),
      shared_(shared),
      options_(shared->options),
      client_ip_(peer_->address().host()),
      parser_(options_.max_header_bytes, options_.max_body_bytes),
      max_buffered_(options_.max_header_bytes + options_.max_body_bytes + 65536) {}

Connection::~Connection() {
  if (timer_ != 0 && !closed_) transport_->loop().Cancel(timer_);
}

loop::Loop* Connection::loop() const { return &transport_->loop(); }

void Connection::OnEvent(bool readable, bool writable, bool hangup, bool peer_shut) {
  auto self = shared_from_this();
  if (peer_shut) peer_shut_ = true;
  if (refused_) {
    Close();
    return;
  }
  if (lingering_) {
    Linger();
    return;
  }
  if (writable) Flush();
  if (closed_) return;
  if (readable || hangup) {
    readable_pending_ = true;
    Pump();
  }
  if (!closed_ && hangup && !readable_pending_) Close();
}

// Reads what may be read and dispatches every complete request that may be answered now; one
// pass at a time (an answer given inline returns here instead of recursing).
void Connection::Pump() {
  if (pumping_ || closed_) return;
  pumping_ = true;
  auto self = shared_from_this();
  for (;;) {
    if (closed_ || close_after_flush_ || input_broken_) break;
    if (body_for_ && body_for_->body_wanted_) MoveBody();
    if (input_broken_) break;
    if (!exchange_ && !body_for_ && out_.size() - out_off_ < Exchange::kHighWater) {
      HttpRequest request;
      RequestParser::Status status = parser_.Next(&request);
      if (status != RequestParser::Status::kIncomplete) {
        Dispatch(status, std::move(request));
        continue;
      }
      if (parser_.body_pending()) {
        // The head is here, the body is not (yet): the request goes on now, and its body is
        // read only once the handler asks for it (Exchange::WantBody): a request refused on its
        // head is answered without the body ever being taken in, and "100 Continue" is sent
        // only to a request that will be forwarded.
        bool expect_continue = parser_.TakeContinue();
        Dispatch(RequestParser::Status::kComplete, parser_.TakeHead(), expect_continue);
        continue;
      }
    }
    // Read only what may be buffered: past the limit, TCP pushes back on the caller.
    if (!readable_pending_ || peer_eof_ || parser_.buffered() >= max_buffered_) break;
    if (body_for_ &&
        (!body_for_->body_wanted_ ||
         body_for_->body_buf_.size() - body_for_->body_off_ >= Exchange::kBodyHighWater)) {
      break;  // the handler has not asked for the body, or not taken what arrived: the caller waits
    }
    size_t before = parser_.buffered();
    ReadSome();
    if (parser_.buffered() == before && !peer_eof_) break;  // nothing more to read now
  }
  pumping_ = false;
}

// Hands body bytes the parser has to the exchange whose body is streaming, up to its buffer.
void Connection::MoveBody() {
  std::shared_ptr<Exchange> ex = body_for_;
  size_t before = ex->body_received_;
  bool changed = false;
  for (;;) {
    size_t held = ex->body_buf_.size() - ex->body_off_;
    if (held >= Exchange::kBodyHighWater) break;
    if (ex->body_off_ > 0 && ex->body_off_ == ex->body_buf_.size()) {
      ex->body_buf_.clear();
      ex->body_off_ = 0;
    }
    size_t size_before = ex->body_buf_.size();
    RequestParser::Status status =
        parser_.ReadBody(&ex->body_buf_, Exchange::kBodyHighWater - held);
    ex->body_received_ += ex->body_buf_.size() - size_before;
    if (status == RequestParser::Status::kComplete) {
      ex->body_done_ = true;
      body_for_.reset();
      changed = true;
      break;
    }
    if (status == RequestParser::Status::kError) {
      ex->body_done_ = true;
      ex->body_error_status_ = parser_.error_status();
      ex->body_error_ = parser_.error_message();
      body_for_.reset();
      input_broken_ = true;  // nothing more can be parsed from this connection
      changed = true;
      break;
    }
    if (ex->body_buf_.size() == size_before) break;  // nothing more buffered
  }
  if (changed || ex->body_received_ != before) ex->BodyArrived();
}

// The last answer is out and the connection closes. When the caller may still be sending (a
// body the answer did not wait for, pipelined input), closing at once would reset the
// connection and could destroy the answer in the caller's receive buffer before it is read. So
// the sending side is shut first and the input read and dropped until the caller closes too
// (or kLingerMs pass), as nginx's lingering close does.
void Connection::CloseAfterAnswer() {
  bool input_may_follow =
      parser_.buffered() > 0 || readable_pending_ || body_unread_ || input_broken_;
  if (!input_may_follow || peer_eof_) {
    ::shutdown(fd_, SHUT_RDWR);
    Close();
    return;
  }
  ::shutdown(fd_, SHUT_WR);
  lingering_ = true;
  body_for_.reset();
  if (timer_ != 0) transport_->loop().Cancel(timer_);
  auto weak = std::weak_ptr<Connection>(shared_from_this());
  timer_ = transport_->loop().After(std::chrono::milliseconds(kLingerMs), [weak] {
    if (auto c = weak.lock()) {
      c->timer_ = 0;
      c->Close();
    }
  });
  Linger();
}

void Connection::Linger() {
  char buffer[kReadChunk];
  for (;;) {
    ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    Close();  // the caller closed (or reset): done
    return;
  }
}

void Connection::ReadSome() {
  char buffer[kReadChunk];
  ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
  if (n > 0) {
    if (!exchange_ && parser_.buffered() == 0) {
      since_ = Clock::now();  // a request starts
      ArmTimer();
    }
    parser_.Append(std::string_view(buffer, static_cast<size_t>(n)));
    // A short read emptied the socket: the next bytes (or the FIN) raise a new edge, so the recv
    // that would only say EAGAIN is skipped (one syscall per request saved, as nginx does).
    // Unless the caller has shut its side: its end of input came with this edge and must be
    // read, or a caller that half-closed would go unnoticed while its request is answered.
    if (static_cast<size_t>(n) < sizeof buffer && !peer_shut_) readable_pending_ = false;
    return;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    readable_pending_ = false;
    return;
  }
  if (n < 0 && errno == EINTR) return;
  // End of input (or a reset). A caller that half-closes after a complete request still gets
  // its answer; one that is gone while its answer is produced ends that answer.
  readable_pending_ = false;
  peer_eof_ = true;
  if (n < 0 || (!exchange_ && out_off_ == out_.size())) {
    Close();
  } else if (exchange_) {
    // Whether the caller merely half-closed or is gone, nothing it could still read would be
    // a complete answer to a request it can no longer follow up: HTTP clients do not
    // half-close; a closed connection is the caller leaving.
    Close();
  }
}

void Connection::Dispatch(RequestParser::Status status, HttpRequest request, bool expect_continue) {
  std::shared_ptr<Exchange> exchange;
  if (status == RequestParser::Status::kError) {
    exchange = std::make_shared<Exchange>(shared_from_this(), std::move(request), client_ip_,
                                          parser_.error_status(), parser_.error_message());
  } else {
    exchange = std::make_shared<Exchange>(shared_from_this(), std::move(request), client_ip_, 0,
                                          std::string());
  }
  exchange_ = exchange;
  if (parser_.streaming_body()) {
    exchange->body_pending_ = true;
    body_for_ = exchange;  // read once the handler wants it (Exchange::WantBody)
    exchange->expect_continue_ = expect_continue;
  }
  if (timer_ != 0) {
    transport_->loop().Cancel(timer_);
    timer_ = 0;
  }
  shared_->handler(exchange);
}

void Connection::Respond(Exchange* exchange, const HttpResponse& response) {
  // A failed write closes the connection, which can end the exchange that holds it: keep it.
  auto self = shared_from_this();
  if (closed_ || exchange != exchange_.get()) return;
  const HttpRequest& req = exchange->request();
  // A body not read to its end leaves the connection mid-message: it closes after the answer.
  keep_alive_ = req.keep_alive && exchange->parse_error_status() == 0 &&
                !exchange->body_pending() && exchange->body_error_status() == 0;
  head_only_ = req.method == "HEAD";
  std::string bytes = SerializeResponse(response, keep_alive_, head_only_);
  iovec iov{bytes.data(), bytes.size()};
  Send(&iov, 1);
  FinishAnswer();
}

void Connection::StartStream(Exchange* exchange, int status, const HeaderList& headers,
                             std::optional<uint64_t> content_length) {
  auto self = shared_from_this();
  if (closed_ || exchange != exchange_.get()) return;
  const HttpRequest& req = exchange->request();
  keep_alive_ = req.keep_alive && !exchange->body_pending() && exchange->body_error_status() == 0;
  head_only_ = req.method == "HEAD";
  bool no_body = status < 200 || status == 204 || status == 304;
  if (no_body) {
    framing_ = BodyFraming::kNone;
  } else if (content_length) {
    framing_ = BodyFraming::kLength;
  } else if (req.version_minor >= 1) {
    framing_ = BodyFraming::kChunked;
  } else {
    framing_ = BodyFraming::kUntilClose;
    keep_alive_ = false;
  }
  streaming_ = true;
  held_head_ = SerializeHead(status, headers, framing_, content_length.value_or(0), keep_alive_);
  transport_->HoldHead(shared_from_this());
}

void Connection::SendHeldHead() {
  if (held_head_.empty()) return;
  Send(nullptr, 0);  // sends the held head
}

bool Connection::WriteBody(std::string_view data) {
  // A failed write closes the connection, which can end the exchange that holds it: keep it.
  auto self = shared_from_this();
  if (closed_ || !streaming_) return false;
  if (!head_only_ && framing_ != BodyFraming::kNone && !data.empty()) {
    if (framing_ == BodyFraming::kChunked) {
      char size_line[24];
      int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
      iovec iov[3] = {{size_line, static_cast<size_t>(n)},
                      {const_cast<char*>(data.data()), data.size()},
                      {const_cast<char*>("\r\n"), 2}};
      Send(iov, 3);
    } else {
      iovec iov{const_cast<char*>(data.data()), data.size()};
      Send(&iov, 1);
    }
  }
  if (closed_) return false;
  if (out_.size() - out_off_ >= Exchange::kHighWater) {
    drain_wanted_ = true;
    return false;
  }
  return true;
}

void Connection::EndStream() {
  // A failed write closes the connection, which can end the exchange that holds it: keep it.
  auto self = shared_from_this();
  if (closed_ || !streaming_) return;
  if (framing_ == BodyFraming::kChunked && !head_only_) {
    static const char kLast[] = "0\r\n\r\n";
    iovec iov{const_cast<char*>(kLast), sizeof kLast - 1};
    Send(&iov, 1);
  }
  if (framing_ == BodyFraming::kUntilClose) keep_alive_ = false;
  FinishAnswer();
}

void Connection::AbortStream() {
  // A failed write closes the connection, which can end the exchange that holds it: keep it.
  auto self = shared_from_this();
  if (closed_) return;
  // What was sent is flushed (as far as the caller takes it), then the connection closes
  // without a last chunk: the caller sees the body end short, never a complete answer.
  keep_alive_ = false;
  FinishAnswer();
}

// The answer to exchange_ has been handed to Send (all of it).
void Connection::FinishAnswer() {
  SendHeldHead();  // an answer without body bytes
  streaming_ = false;
  drain_wanted_ = false;
  if (exchange_ && (exchange_->body_pending() || exchange_->body_error_status() != 0)) {
    keep_alive_ = false;
    body_unread_ = true;
  }
  body_for_.reset();
  exchange_.reset();
  if (!keep_alive_) {
    close_after_flush_ = true;
    if (out_off_ == out_.size()) CloseAfterAnswer();
    return;
  }
  since_ = Clock::now();
  ArmTimer();
  Pump();
}

void Connection::Send(const iovec* body_iov, int body_count) {
  if (closed_) return;
  // A held head goes first, in the same sendmsg.
  iovec joined[4];
  const iovec* iov = body_iov;
  int count = body_count;
  std::string head;
  if (!held_head_.empty()) {
    head.swap(held_head_);
    joined[0] = {head.data(), head.size()};
    for (int i = 0; i < body_count; ++i) joined[i + 1] = body_iov[i];
    iov = joined;
    count = body_count + 1;
  }
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  if (total == 0) return;
  size_t sent = 0;
  if (out_off_ == out_.size()) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      Close();  // the caller is gone
      return;
    }
    if (n > 0) sent = static_cast<size_t>(n);
    if (sent == total) return;
    if (out_off_ > 0) {
      out_.clear();
      out_off_ = 0;
    }
  }
  // Keep what the socket did not take, in order.
  size_t skip = sent;
  for (int i = 0; i < count; ++i) {
    size_t len = iov[i].iov_len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    out_.append(static_cast<const char*>(iov[i].iov_base) + skip, len - skip);
    skip = 0;
  }
  if (!write_interest_) {
    since_ = Clock::now();  // write progress is measured from here
    SetWriteInterest(true);
    ArmTimer();
  }
}

void Connection::Flush() {
  auto self = shared_from_this();
  while (out_off_ < out_.size()) {
    ssize_t n =
        ::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out_off_ += static_cast<size_t>(n);
      since_ = Clock::now();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EINTR) continue;
    Close();
    return;
  }
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
    if (out_.capacity() > kShrinkAbove) out_.shrink_to_fit();
    SetWriteInterest(false);
    if (close_after_flush_) {
      CloseAfterAnswer();
      return;
    }
  } else if (out_off_ > kShrinkAbove) {
    out_.erase(0, out_off_);
    out_off_ = 0;
  }
  if (drain_wanted_ && out_.size() - out_off_ < Exchange::kHighWater) {
    drain_wanted_ = false;
    if (exchange_ && exchange_->on_drain_) {
      auto on_drain = exchange_->on_drain_;
      on_drain();
    }
  }
  if (!exchange_ && !closed_) Pump();  // pipelined requests held back by a full buffer
}

void Connection::SetWriteInterest(bool on) {
  if (write_interest_ == on || closed_) return;
  write_interest_ = on;
  transport_->SetInterest(fd_, on);
}

void Connection::Close() {
  if (closed_) return;
  closed_ = true;
  if (timer_ != 0) {
    transport_->loop().Cancel(timer_);
    timer_ = 0;
  }
  auto self = shared_from_this();
  std::shared_ptr<Exchange> exchange = std::move(exchange_);
  body_for_.reset();
  out_.clear();
  out_off_ = 0;
  held_head_.clear();
  if (peer_) {
    auto peer = std::move(peer_);
    transport_->Remove(fd_, peer);
  }
  if (exchange && !exchange->ended_ && exchange->on_close_) {
    auto on_close = std::move(exchange->on_close_);
    exchange->on_drain_ = nullptr;
    on_close();
  }
}

void Connection::ArmTimer() {
  if (timer_ != 0 || closed_) return;
  auto self = std::weak_ptr<Connection>(shared_from_this());
  int ms = exchange_
               ? options_.idle_timeout_ms
               : (parser_.buffered() == 0 ? options_.idle_timeout_ms : options_.request_timeout_ms);
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      since_ + std::chrono::milliseconds(ms) - Clock::now());
  if (left.count() < 0) left = std::chrono::milliseconds(0);
  timer_ = transport_->loop().After(left, [self] {
    if (auto c = self.lock()) {
      c->timer_ = 0;
      c->OnTimer();
    }
  });
}

// Request and idle timeouts; and a caller that has not taken any output for idle_timeout_ms
// while an answer waits for it (a stalled reader cannot hold a stream open forever).
void Connection::OnTimer() {
  if (closed_) return;
  auto now = Clock::now();
  auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - since_).count();
  bool output_waiting = out_off_ < out_.size();
  if (exchange_ || output_waiting) {
    if (!output_waiting) return;  // the upstream's timeouts bound an answer being produced
    if (age >= options_.idle_timeout_ms) {
      Close();
      return;
    }
    ArmTimer();
    return;
  }
  if (parser_.buffered() == 0) {
    if (age >= options_.idle_timeout_ms) {
      ::shutdown(fd_, SHUT_RDWR);
      Close();
      return;
    }
    ArmTimer();
    return;
  }
  if (age < options_.request_timeout_ms) {
    ArmTimer();
    return;
  }
  auto exchange = std::make_shared<Exchange>(
      shared_from_this(), parser_.Partial(), client_ip_, 408,
      "the request was not received within " + std::to_string(options_.request_timeout_ms) + " ms");
  exchange_ = exchange;
  shared_->handler(exchange);
}

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
  } else if (streaming_ && !ended_) {
    AbortStream();
  }
}

size_t Exchange::ReadBody(char* buffer, size_t max, bool* done, bool* failed) {
  WantBody();
  size_t held = body_buf_.size() - body_off_;
  size_t n = std::min(held, max);
  if (n > 0) {
    std::memcpy(buffer, body_buf_.data() + body_off_, n);
    body_off_ += n;
    if (body_off_ == body_buf_.size()) {
      body_buf_.clear();
      body_off_ = 0;
    }
  }
  *failed = body_error_status_ != 0 || (connection_ && connection_->closed() && !body_done_);
  *done = body_done_ && body_off_ == body_buf_.size() && !*failed;
  // Room again: the connection reads on (it stopped at the high-water mark).
  if (n > 0 && connection_ && held >= kBodyHighWater / 2) connection_->BodyTaken();
  return n;
}

void Exchange::BodyArrived() {
  if (on_collected_) {
    request_.body.append(body_buf_, body_off_, std::string::npos);
    body_buf_.clear();
    body_off_ = 0;
    if (body_done_) {
      auto done = std::move(on_collected_);
      on_collected_ = nullptr;
      done();
    } else if (connection_) {
      connection_->BodyTaken();
    }
    return;
  }
  if (on_body_) {
    auto on_body = on_body_;  // may replace itself
    on_body();
  }
}

void Exchange::CollectBody(std::function<void()> done) {
  on_collected_ = std::move(done);
  WantBody();  // may deliver the whole body (and run `done`) at once
  if (on_collected_) BodyArrived();
}

void Exchange::SetBodyCallback(std::function<void()> on_body) {
  on_body_ = std::move(on_body);
  if (on_body_) WantBody();
}

void Exchange::WantBody() {
  if (body_wanted_) return;
  body_wanted_ = true;
  if (!connection_) return;
  if (expect_continue_) {
    expect_continue_ = false;
    connection_->SendContinue(this);
  }
  connection_->BodyTaken();  // reads what the caller sent so far
}

loop::Loop* Exchange::loop() const { return connection_ ? connection_->loop() : nullptr; }

bool Exchange::caller_gone() const { return connection_ && connection_->closed(); }

void Exchange::Respond(HttpResponse response) {
  if (responded_.exchange(true)) return;
  ended_ = true;
  if (!connection_) {
    sink_(std::move(response));
    return;
  }
  loop::Loop* loop = connection_->loop();
  if (loop->InLoopThread()) {
    connection_->Respond(this, response);
    return;
  }
  // From another thread: the connection is touched only by its own. The exchange is kept
  // alive by the closure, since the connection answers it by identity.
  auto connection = connection_;
  auto holder = std::make_shared<HttpResponse>(std::move(response));
  Exchange* self = this;
  if (!loop->Post([connection, holder, self] { connection->Respond(self, *holder); })) return;
}

void Exchange::StartStream(int status, const HeaderList& headers,
                           std::optional<uint64_t> content_length) {
  if (responded_.exchange(true)) return;
  streaming_ = true;
  if (!connection_) {
    collected_.status = status;
    collected_.headers = headers;
    if (request_.method == "HEAD" && content_length)
      collected_.head_content_length = content_length;
    return;
  }
  connection_->StartStream(this, status, headers, content_length);
}

bool Exchange::Write(std::string_view data) {
  if (!streaming_ || ended_) return false;
  body_bytes_ += data.size();
  if (!connection_) {
    collected_.body.append(data);
    return true;
  }
  return connection_->WriteBody(data);
}

void Exchange::EndStream() { FinishStream(/*complete=*/true); }

void Exchange::AbortStream() { FinishStream(/*complete=*/false); }

void Exchange::FinishStream(bool complete) {
  if (!streaming_ || ended_) return;
  ended_ = true;
  on_drain_ = nullptr;
  on_close_ = nullptr;
  if (!connection_) {
    sink_(std::move(collected_));
  } else if (complete) {
    connection_->EndStream();
  } else {
    connection_->AbortStream();
  }
}

void Exchange::SetStreamCallbacks(std::function<void()> on_drain, std::function<void()> on_close) {
  on_drain_ = std::move(on_drain);
  on_close_ = std::move(on_close);
}

struct HttpServer::Impl {
  ServerShared shared;
  std::unique_ptr<Pistache::Tcp::Listener> listener;
  bool running = false;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Shutdown(); }

std::unique_ptr<HttpServer> HttpServer::Start(const HttpServerOptions& options,
                                              RequestHandler handler, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->shared.options = options;
  impl->shared.handler = std::move(handler);
  try {
    Pistache::Address address(options.listen);
    impl->listener = std::make_unique<Pistache::Tcp::Listener>();
    impl->listener->init(
        static_cast<size_t>(options.threads > 0 ? options.threads : 1),
        Pistache::Flags<Pistache::Tcp::Options>(Pistache::Tcp::Options::ReuseAddr) |
            Pistache::Tcp::Options::NoDelay,
        "tollgate-http", options.backlog);
    auto handler_proto = std::make_shared<TcpHandler>();
    ServerShared* shared = &impl->shared;
    impl->listener->setHandler(handler_proto);
    impl->listener->setTransportFactory([shared] {
      return std::make_shared<LoopTransport>(std::make_shared<TcpHandler>(), shared);
    });
    impl->listener->bind(address);
    impl->listener->runThreaded();
    impl->running = true;
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
      std::lock_guard<std::mutex> lock(impl_->shared.loops_mu);
      impl_->shared.loops.clear();
    }
    // Destroying the listener stops accepting, joins every reactor thread and then destroys the
    // transports: their connections close and their loops' per-loop state goes, on this thread.
    impl_->listener.reset();
  }
}

int HttpServer::port() const {
  return static_cast<int>(static_cast<uint16_t>(impl_->listener->getPort()));
}

void HttpServer::ForEachLoop(const std::function<void(loop::Loop&)>& fn) {
  std::lock_guard<std::mutex> lock(impl_->shared.loops_mu);
  for (loop::Loop* l : impl_->shared.loops) l->Post([l, fn] { fn(*l); });
}

uint64_t HttpServer::connections_accepted() const { return impl_->shared.accepted.load(); }
int64_t HttpServer::connections_open() const { return impl_->shared.open.load(); }
uint64_t HttpServer::connections_refused() const { return impl_->shared.refused.load(); }

}  // namespace tollgate::gateway
