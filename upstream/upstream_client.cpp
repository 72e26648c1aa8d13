#include "upstream/upstream_client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace tollgate::upstream {
namespace {

using Error = UpstreamResponse::Error;

// A body larger than this is still accepted; only the up-front reservation is capped, so a
// hostile Content-Length cannot make the gateway allocate gigabytes before any byte arrives.
constexpr size_t kMaxReserve = size_t{16} << 20;
constexpr int kPollTimeoutMs = 1000;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool StartsWithIgnoreCase(const char* data, size_t size, const char* prefix) {
  size_t n = std::char_traits<char>::length(prefix);
  if (size < n) return false;
  for (size_t i = 0; i < n; ++i) {
    char c = data[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != prefix[i]) return false;
  }
  return true;
}

Error MapError(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return Error::kTimeout;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return Error::kConnect;
    default:
      return Error::kOther;
  }
}

// One transfer and the easy handle that carries it. Transfers are pooled per loop thread and
// reused, so a steady stream of requests allocates no easy handles and no Transfer objects.
struct Transfer {
  CURL* easy = nullptr;
  curl_slist* header_list = nullptr;
  UpstreamRequest request;
  std::function<void(UpstreamResponse)> done;
  UpstreamResponse response;
  bool body_started = false;
  bool too_large = false;
  uint64_t max_response_bytes = 0;
  size_t active_index = 0;  // position in the loop's active list while added to the multi
  char error_buffer[CURL_ERROR_SIZE];

  Transfer() : easy(curl_easy_init()) { error_buffer[0] = '\0'; }
  ~Transfer() {
    curl_slist_free_all(header_list);
    if (easy != nullptr) curl_easy_cleanup(easy);
  }
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;
};

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * count;
  if (t->response.body.size() + n > t->max_response_bytes) {
    t->too_large = true;
    return 0;  // libcurl aborts the transfer with CURLE_WRITE_ERROR
  }
  t->body_started = true;
  t->response.body.append(data, n);
  return n;
}

// libcurl hands every header line of every response (1xx, the final one, trailers) to this
// callback; only the final response's header block is kept.
size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * count;
  if (t->body_started) return n;  // trailers are not response headers
  size_t len = n;
  while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n')) --len;
  if (len == 0) return n;
  if (StartsWithIgnoreCase(data, len, "http/")) {
    t->response.headers.clear();
    return n;
  }
  HeaderList& headers = t->response.headers;
  if ((data[0] == ' ' || data[0] == '\t') && !headers.empty()) {
    // obs-fold continuation (RFC 9112 5.2): joined to the previous value with one space.
    size_t start = 0;
    while (start < len && (data[start] == ' ' || data[start] == '\t')) ++start;
    headers.back().second.append(" ").append(data + start, len - start);
    return n;
  }
  const char* colon = static_cast<const char*>(memchr(data, ':', len));
  if (colon == nullptr) return n;
  size_t name_len = static_cast<size_t>(colon - data);
  size_t start = name_len + 1;
  while (start < len && (data[start] == ' ' || data[start] == '\t')) ++start;
  size_t end = len;
  while (end > start && (data[end - 1] == ' ' || data[end - 1] == '\t')) --end;
  headers.emplace_back(std::string(data, name_len), std::string(data + start, end - start));
  if (name_len == 14 && StartsWithIgnoreCase(data, len, "content-length") &&
      t->request.method != "HEAD") {
    size_t declared = std::strtoull(headers.back().second.c_str(), nullptr, 10);
    t->response.body.reserve(std::min(declared, kMaxReserve));
  }
  return n;
}

// One libcurl multi handle and the thread that drives it with curl_multi_socket_action over
// epoll: each wake-up touches only the sockets that are ready (curl_multi_perform would walk
// every transfer, and poll() every socket, on every event). Other threads touch only `queue_`
// (under `mu_`) and the eventfd that wakes the loop.
class EventLoop {
 public:
  EventLoop(const UpstreamClientOptions& options, UpstreamClientStats* stats,
            std::atomic<size_t>* in_flight)
      : options_(options),
        stats_(stats),
        in_flight_(in_flight),
        multi_(curl_multi_init()),
        epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
        wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, options.max_connections);
    if (options.max_host_connections > 0) {
      curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, options.max_host_connections);
    }
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, OnSocket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, OnTimer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "tollgate-curl");
      Run();
    });
  }

  ~EventLoop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    Wake();
    thread_.join();
    pool_.clear();  // easy handles go before the multi handle that may still cache connections
    curl_multi_cleanup(multi_);
    close(wake_fd_);
    close(epoll_fd_);
  }

  void Enqueue(UpstreamRequest request, std::function<void(UpstreamResponse)> done) {
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopping_) {
        // One wakeup per batch: while the queue is non-empty a wakeup is already pending and
        // the loop will take everything queued when it swaps the queue out.
        wake = queue_.empty();
        queue_.push_back(Pending{std::move(request), std::move(done)});
        done = nullptr;
      }
    }
    if (done) {
      Fail(std::move(done), Error::kShutdown, "upstream client is shutting down");
      return;
    }
    if (wake) Wake();
  }

 private:
  struct Pending {
    UpstreamRequest request;
    std::function<void(UpstreamResponse)> done;
  };

  void Fail(std::function<void(UpstreamResponse)> done, Error error, const char* message) {
    UpstreamResponse response;
    response.error = error;
    response.error_message = message;
    done(std::move(response));
    in_flight_->fetch_sub(1, std::memory_order_relaxed);
  }

  void Wake() {
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd_, &one, sizeof one);
    (void)ignored;
  }

  // libcurl tells which sockets to watch and for what.
  static int OnSocket(CURL*, curl_socket_t s, int what, void* user, void* socket_data) {
    auto* loop = static_cast<EventLoop*>(user);
    if (what == CURL_POLL_REMOVE) {
      epoll_ctl(loop->epoll_fd_, EPOLL_CTL_DEL, s, nullptr);
      curl_multi_assign(loop->multi_, s, nullptr);
      return 0;
    }
    epoll_event ev{};
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    ev.data.fd = s;
    if (socket_data == nullptr) {
      epoll_ctl(loop->epoll_fd_, EPOLL_CTL_ADD, s, &ev);
      curl_multi_assign(loop->multi_, s, loop);  // any non-null marker: "registered"
    } else {
      epoll_ctl(loop->epoll_fd_, EPOLL_CTL_MOD, s, &ev);
    }
    return 0;
  }

  // libcurl asks to be called back after `timeout_ms` (-1: no timer).
  static int OnTimer(CURLM*, long timeout_ms, void* user) {
    auto* loop = static_cast<EventLoop*>(user);
    if (timeout_ms < 0) {
      loop->has_deadline_ = false;
    } else {
      loop->has_deadline_ = true;
      loop->deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    }
    return 0;
  }

  int WaitMs() const {
    if (!has_deadline_) return kPollTimeoutMs;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline_ - std::chrono::steady_clock::now())
                    .count();
    return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, kPollTimeoutMs));
  }

  void Run() {
    std::vector<Pending> batch;
    epoll_event events[256];
    int running = 0;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        batch.swap(queue_);
        if (stopping_) break;
      }
      for (Pending& p : batch) Start(std::move(p));
      batch.clear();
      int n = epoll_wait(epoll_fd_, events, 256, WaitMs());
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == wake_fd_) {
          uint64_t count;
          ssize_t ignored = read(wake_fd_, &count, sizeof count);
          (void)ignored;
          continue;
        }
        int flags = 0;
        if (events[i].events & EPOLLIN) flags |= CURL_CSELECT_IN;
        if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
        if (events[i].events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(multi_, fd, flags, &running);
      }
      if (has_deadline_ && std::chrono::steady_clock::now() >= deadline_) {
        has_deadline_ = false;
        curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
      }
      DrainCompleted();
    }
    // The queue is closed (stopping_ is set under mu_), so nothing can be added after this.
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (Pending& p : queue_) batch.push_back(std::move(p));
      queue_.clear();
    }
    for (Pending& p : batch) Fail(std::move(p.done), Error::kShutdown, "upstream client stopped");
    for (Transfer* t : active_) {
      curl_multi_remove_handle(multi_, t->easy);
      Fail(std::move(t->done), Error::kShutdown, "upstream client stopped");
    }
    active_.clear();
  }

  Transfer* Acquire() {
    if (!free_.empty()) {
      Transfer* t = free_.back();
      free_.pop_back();
      return t;
    }
    pool_.push_back(std::make_unique<Transfer>());
    return pool_.back().get();
  }

  void Release(Transfer* t) {
    curl_slist_free_all(t->header_list);
    t->header_list = nullptr;
    t->request = UpstreamRequest();
    t->done = nullptr;
    t->response = UpstreamResponse();
    t->body_started = false;
    t->too_large = false;
    t->error_buffer[0] = '\0';
    free_.push_back(t);
  }

  void Start(Pending p) {
    Transfer* t = Acquire();
    t->request = std::move(p.request);
    t->done = std::move(p.done);
    t->max_response_bytes = options_.max_response_bytes;
    if (t->easy == nullptr || !Configure(t) || curl_multi_add_handle(multi_, t->easy) != CURLM_OK) {
      stats_->other_errors.fetch_add(1, std::memory_order_relaxed);
      auto done = std::move(t->done);
      Release(t);
      Fail(std::move(done), Error::kOther, "could not start the upstream transfer");
      return;
    }
    t->active_index = active_.size();
    active_.push_back(t);
  }

  bool Configure(Transfer* t) {
    CURL* e = t->easy;
    const UpstreamRequest& r = t->request;
    // Reset keeps live connections (they belong to the multi handle), the DNS cache and the TLS
    // session cache: reusing the easy handle costs nothing in keep-alive.
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error_buffer);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_setopt(e, CURLOPT_URL, r.url.c_str()) != CURLE_OK) return false;
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    // The policy decided on this exact path; libcurl must not squash /../ or /./ in it.
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!options_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options_.ca_file.c_str());
    bool https = r.url.size() >= 8 && StartsWithIgnoreCase(r.url.data(), r.url.size(), "https:");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     https ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
    // A burst of requests to an HTTP/2 upstream waits for the first connection's ALPN answer and
    // multiplexes on it, instead of opening (and TLS-handshaking) one connection per request.
    if (https) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(r.timeout_ms));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(r.connect_timeout_ms));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    ConfigureMethod(t);
    return BuildHeaderList(t);
  }

  static void ConfigureMethod(Transfer* t) {
    CURL* e = t->easy;
    const UpstreamRequest& r = t->request;
    if (r.method == "HEAD") {
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
      return;
    }
    bool sends_body =
        !r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH";
    if (sends_body) {
      // POSTFIELDS (not READFUNCTION) so an empty body is sent as Content-Length: 0 and a
      // binary body goes out byte for byte; the request outlives the transfer.
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
    } else {
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    if (r.method != "POST" && (r.method != "GET" || sends_body)) {
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    }
  }

  bool BuildHeaderList(Transfer* t) {
    const UpstreamRequest& r = t->request;
    bool has_content_type = false;
    for (const auto& [name, value] : r.headers) {
      line_.assign(name);
      if (value.empty()) {
        line_.push_back(';');  // "Name:" would tell libcurl to remove the header instead
      } else {
        line_.append(": ").append(value);
      }
      if (!Append(t, line_.c_str())) return false;
      if (name.size() == 12 && StartsWithIgnoreCase(name.data(), name.size(), "content-type")) {
        has_content_type = true;
      }
    }
    // libcurl would add "Expect: 100-continue" to larger bodies (a round trip, and a stall on
    // servers that never answer it) and a form Content-Type to bodies sent without one.
    if (!Append(t, "Expect:")) return false;
    if (!has_content_type && !Append(t, "Content-Type:")) return false;
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->header_list);
    return true;
  }

  static bool Append(Transfer* t, const char* line) {
    curl_slist* next = curl_slist_append(t->header_list, line);
    if (next == nullptr) return false;
    t->header_list = next;
    return true;
  }

  void DrainCompleted() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      CURLcode code = msg->data.result;
      char* priv = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
      curl_multi_remove_handle(multi_, easy);
      Finish(reinterpret_cast<Transfer*>(priv), code);
    }
  }

  void Finish(Transfer* t, CURLcode code) {
    // Swap-remove by index: thousands of transfers may be active at once.
    Transfer* last = active_.back();
    active_[t->active_index] = last;
    last->active_index = t->active_index;
    active_.pop_back();
    UpstreamResponse& response = t->response;
    curl_off_t total_us = 0;
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    response.total_ms = static_cast<double>(total_us) / 1000.0;
    if (code == CURLE_OK) {
      long status = 0;
      curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
      response.status = static_cast<int>(status);
      stats_->completed.fetch_add(1, std::memory_order_relaxed);
    } else {
      response.error = t->too_large ? Error::kTooLarge : MapError(code);
      response.error_message = t->too_large ? "response body larger than " +
                                                  std::to_string(t->max_response_bytes) + " bytes"
                               : t->error_buffer[0] != '\0' ? std::string(t->error_buffer)
                                                            : std::string(curl_easy_strerror(code));
      response.status = 0;
      response.headers.clear();
      response.body.clear();
      switch (response.error) {
        case Error::kTimeout:
          stats_->timeouts.fetch_add(1, std::memory_order_relaxed);
          break;
        case Error::kConnect:
          stats_->connect_errors.fetch_add(1, std::memory_order_relaxed);
          break;
        default:
          stats_->other_errors.fetch_add(1, std::memory_order_relaxed);
          break;
      }
    }
    auto done = std::move(t->done);
    UpstreamResponse out = std::move(response);
    Release(t);
    done(std::move(out));
    in_flight_->fetch_sub(1, std::memory_order_relaxed);
  }

  const UpstreamClientOptions& options_;
  UpstreamClientStats* stats_;
  std::atomic<size_t>* in_flight_;
  CURLM* multi_;
  int epoll_fd_;
  int wake_fd_;
  bool has_deadline_ = false;  // loop-thread only, like deadline_
  std::chrono::steady_clock::time_point deadline_;

  std::mutex mu_;
  std::vector<Pending> queue_;  // guarded by mu_
  bool stopping_ = false;       // guarded by mu_

  // Loop-thread only.
  std::vector<std::unique_ptr<Transfer>> pool_;
  std::vector<Transfer*> free_;
  std::vector<Transfer*> active_;
  std::string line_;

  std::thread thread_;  // last: started once everything above is built
};

}  // namespace

struct UpstreamClient::Impl {
  UpstreamClientOptions options;
  UpstreamClientStats stats;
  std::atomic<size_t> in_flight{0};
  std::atomic<size_t> next{0};
  std::vector<std::unique_ptr<EventLoop>> loops;
};

UpstreamClient::UpstreamClient(UpstreamClientOptions options) : impl_(std::make_unique<Impl>()) {
  GlobalInit();
  impl_->options = std::move(options);
  int threads = std::max(1, impl_->options.threads);
  for (int i = 0; i < threads; ++i) {
    impl_->loops.push_back(
        std::make_unique<EventLoop>(impl_->options, &impl_->stats, &impl_->in_flight));
  }
}

UpstreamClient::~UpstreamClient() { impl_->loops.clear(); }

void UpstreamClient::Send(UpstreamRequest request, std::function<void(UpstreamResponse)> done) {
  impl_->stats.started.fetch_add(1, std::memory_order_relaxed);
  impl_->in_flight.fetch_add(1, std::memory_order_relaxed);
  size_t index = impl_->next.fetch_add(1, std::memory_order_relaxed) % impl_->loops.size();
  impl_->loops[index]->Enqueue(std::move(request), std::move(done));
}

size_t UpstreamClient::in_flight() const {
  return impl_->in_flight.load(std::memory_order_relaxed);
}

const UpstreamClientStats& UpstreamClient::stats() const { return impl_->stats; }

}  // namespace tollgate::upstream
