#include "upstream/stream_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <utility>
#include <vector>

namespace tollgate::upstream {
namespace {

using Clock = std::chrono::steady_clock;
using Reason = StreamEndReason;

// A transfer id is (serial << kIndexBits) | pool index: found in O(1), and an id of a finished
// transfer never names the next transfer that reuses its pooled handle.
constexpr int kIndexBits = 24;
constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;

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

double MsSince(Clock::time_point start, Clock::time_point now) {
  return std::chrono::duration<double, std::milli>(now - start).count();
}

std::chrono::milliseconds MsUntil(Clock::time_point deadline) {
  auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return std::chrono::milliseconds(0);
  return std::chrono::ceil<std::chrono::milliseconds>(left);
}

Reason MapCode(CURLcode code, bool headers_seen) {
  switch (code) {
    case CURLE_OK:
      return Reason::kComplete;
    case CURLE_OPERATION_TIMEDOUT:  // only the connect timeout is libcurl's
      return Reason::kTimeout;
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
      return Reason::kConnect;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return headers_seen ? Reason::kUpstreamClosed : Reason::kOther;
    default:
      return Reason::kOther;
  }
}

// The proxy environment, read once: libcurl would otherwise getenv() it on every transfer.
// Same precedence as libcurl: http_proxy (lower case only, as libcurl), https_proxy then
// HTTPS_PROXY, all_proxy then ALL_PROXY as the fallback; no_proxy then NO_PROXY.
struct ProxyEnv {
  std::string http;
  std::string https;
  std::string no_proxy;

  static std::string Get(const char* lower, const char* upper) {
    const char* v = std::getenv(lower);
    if (v == nullptr && upper != nullptr) v = std::getenv(upper);
    return v == nullptr ? std::string() : std::string(v);
  }
  static ProxyEnv Read() {
    ProxyEnv env;
    std::string all = Get("all_proxy", "ALL_PROXY");
    env.http = Get("http_proxy", nullptr);
    if (env.http.empty()) env.http = all;
    env.https = Get("https_proxy", "HTTPS_PROXY");
    if (env.https.empty()) env.https = all;
    env.no_proxy = Get("no_proxy", "NO_PROXY");
    return env;
  }
};

}  // namespace

const char* StreamEndReasonName(StreamEndReason reason) {
  switch (reason) {
    case Reason::kComplete:
      return "complete";
    case Reason::kUpstreamClosed:
      return "upstream_closed";
    case Reason::kReadIdleTimeout:
      return "read_idle_timeout";
    case Reason::kMaxDuration:
      return "max_duration";
    case Reason::kTimeout:
      return "timeout";
    case Reason::kConnect:
      return "connect";
    case Reason::kAborted:
      return "aborted";
    case Reason::kShutdown:
      return "shutdown";
    case Reason::kOther:
      return "other";
  }
  return "other";
}

struct StreamClient::Impl {
  // One transfer and the pooled easy handle that carries it. The options that never change are
  // set once, when the handle is made; a transfer sets only what differs (URL, method, headers,
  // and the few per-scheme or per-request options when they changed since the handle's last use).
  struct Transfer {
    Impl* impl = nullptr;
    CURL* easy = nullptr;
    uint64_t index = 0;               // in the pool
    StreamClient::TransferId id = 0;  // 0 while the handle is free
    StreamSink* sink = nullptr;
    UpstreamRequest request;  // owns the body libcurl sends (POSTFIELDS points into it)
    curl_slist* header_list = nullptr;
    HeaderList headers;
    int status = 0;
    bool headers_done = false;
    bool ended = false;     // OnEnd ran; the handle may still wait for its removal
    bool in_multi = false;  // added to the multi handle
    bool paused = false;
    bool resume_pending = false;
    bool send_paused = false;  // the BodySource had nothing yet
    bool send_resume_pending = false;
    bool body_failed = false;   // the BodySource failed: the transfer is aborted
    bool upload_done = false;   // the BodySource said the body ended
    bool forbid_reuse = false;  // FORBID_REUSE is set on the handle (reset at its next use)
    uint64_t body_bytes = 0;
    Clock::time_point start;
    Clock::time_point last_activity;
    double ttfb_ms = 0;
    loop::Loop::TimerId header_timer = 0;
    loop::Loop::TimerId max_timer = 0;
    loop::Loop::TimerId idle_timer = 0;
    // What the handle carries from its previous transfer.
    int scheme = -1;  // 0 http, 1 https
    long connect_timeout_ms = -1;
    bool has_postfields = false;
    bool has_readfunction = false;
    bool has_custom_request = false;
    char error_buffer[CURL_ERROR_SIZE];

    Transfer() : easy(curl_easy_init()) { error_buffer[0] = '\0'; }
    ~Transfer() {
      curl_slist_free_all(header_list);
      if (easy != nullptr) curl_easy_cleanup(easy);
    }
    Transfer(const Transfer&) = delete;
    Transfer& operator=(const Transfer&) = delete;
  };

  loop::Loop* loop;
  UpstreamClientOptions options;
  UpstreamClientStats own_stats;
  UpstreamClientStats* stats;
  ProxyEnv proxy = ProxyEnv::Read();
  CURLM* multi = curl_multi_init();
  loop::Loop::TimerId curl_timer = 0;
  std::unordered_set<int> watched;

  std::vector<std::unique_ptr<Transfer>> pool;
  std::vector<Transfer*> free;
  uint64_t serial = 0;
  size_t active = 0;
  std::string line;  // scratch for header lines

  // depth > 0 while libcurl runs (socket_action, an unpause): sink callbacks then run inside
  // libcurl, which refuses curl_multi_add_handle/remove_handle, so Start/Abort/Resume queue
  // their multi work here and Settle() does it once libcurl has returned.
  int depth = 0;
  bool settling = false;
  bool closing = false;
  std::vector<Transfer*> doomed;  // ended, still in the multi: remove and release
  std::vector<TransferId> to_add;
  std::vector<TransferId> to_resume;
  std::vector<TransferId> to_resume_send;

  Impl(loop::Loop* l, UpstreamClientOptions o, UpstreamClientStats* s)
      : loop(l), options(std::move(o)), stats(s != nullptr ? s : &own_stats) {
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, options.max_connections);
    if (options.max_host_connections > 0) {
      curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, options.max_host_connections);
    }
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, OnSocket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, OnTimer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
  }

  ~Impl() {
    closing = true;
    if (curl_timer != 0) loop->Cancel(curl_timer);
    curl_timer = 0;
    // OnEnd may call Start (ends at once: closing), Abort or Resume (on ended ids: nothing).
    for (size_t i = 0; i < pool.size(); ++i) {
      Transfer* t = pool[i].get();
      if (t->id == 0 || t->ended) continue;
      EndNow(t, Reason::kShutdown, "upstream client stopped");
    }
    for (auto& t : pool) {
      if (t->in_multi) curl_multi_remove_handle(multi, t->easy);
      t->in_multi = false;
    }
    pool.clear();  // easy handles go before the multi handle that may still cache connections
    curl_multi_cleanup(multi);
    for (int fd : watched) loop->Unwatch(fd);
  }

  // --- libcurl's socket and timer callbacks -------------------------------------------------

  static int OnSocket(CURL*, curl_socket_t s, int what, void* user, void* socket_data) {
    auto* impl = static_cast<Impl*>(user);
    if (what == CURL_POLL_REMOVE) {
      impl->loop->Unwatch(s);
      impl->watched.erase(s);
      return 0;
    }
    uint32_t events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    if (socket_data == nullptr) {
      impl->loop->Watch(s, events, [impl, s](uint32_t fired) { impl->OnReady(s, fired); });
      impl->watched.insert(s);
      curl_multi_assign(impl->multi, s, impl);  // any non-null marker: "watched"
    } else {
      impl->loop->Modify(s, events);
    }
    return 0;
  }

  // libcurl wants socket_action(CURL_SOCKET_TIMEOUT) after `timeout_ms` (-1: no timer). Even 0
  // goes through a loop timer: calling libcurl back from inside its own callback is forbidden.
  static int OnTimer(CURLM*, long timeout_ms, void* user) {
    auto* impl = static_cast<Impl*>(user);
    if (impl->closing) return 0;
    if (impl->curl_timer != 0) impl->loop->Cancel(impl->curl_timer);
    impl->curl_timer = 0;
    if (timeout_ms < 0) return 0;
    impl->curl_timer = impl->loop->After(std::chrono::milliseconds(timeout_ms), [impl] {
      impl->curl_timer = 0;
      impl->Action(CURL_SOCKET_TIMEOUT, 0);
    });
    return 0;
  }

  void OnReady(int fd, uint32_t events) {
    int flags = 0;
    if (events & EPOLLIN) flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
    Action(fd, flags);
  }

  void Action(curl_socket_t s, int flags) {
    int running = 0;
    ++depth;
    curl_multi_socket_action(multi, s, flags, &running);
    --depth;
    Settle();
  }

  // Does the multi work the sinks asked for inside libcurl, then ends the transfers libcurl
  // finished. OnEnd may start, resume or abort others; the loop runs until nothing is left.
  void Settle() {
    if (settling || depth > 0) return;
    settling = true;
    for (;;) {
      if (!doomed.empty()) {
        std::vector<Transfer*> batch;
        batch.swap(doomed);
        for (Transfer* t : batch) {
          if (t->in_multi) curl_multi_remove_handle(multi, t->easy);
          t->in_multi = false;
          Release(t);
        }
        continue;
      }
      if (!to_add.empty()) {
        std::vector<TransferId> batch;
        batch.swap(to_add);
        for (TransferId id : batch) {
          Transfer* t = Find(id);
          if (t != nullptr && !t->ended && !Add(t)) FailStart(t);
        }
        continue;
      }
      if (!to_resume.empty()) {
        std::vector<TransferId> batch;
        batch.swap(to_resume);
        for (TransferId id : batch) {
          Transfer* t = Find(id);
          if (t != nullptr) {
            t->resume_pending = false;
            Unpause(t);
          }
        }
        continue;
      }
      if (!to_resume_send.empty()) {
        std::vector<TransferId> batch;
        batch.swap(to_resume_send);
        for (TransferId id : batch) {
          Transfer* t = Find(id);
          if (t != nullptr) {
            t->send_resume_pending = false;
            UnpauseSend(t);
          }
        }
        continue;
      }
      int left = 0;
      CURLMsg* msg = curl_multi_info_read(multi, &left);
      if (msg == nullptr) break;
      if (msg->msg != CURLMSG_DONE) continue;
      char* priv = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
      Completed(reinterpret_cast<Transfer*>(priv), msg->data.result);
    }
    settling = false;
  }

  void Completed(Transfer* t, CURLcode code) {
    if (t->ended) return;  // aborted inside a callback: queued in `doomed`
    curl_multi_remove_handle(multi, t->easy);
    t->in_multi = false;
    if (code == CURLE_OK && !t->headers_done) {
      // Not expected (the blank line ends every header block), but OnHeaders must come first.
      TransferId id = t->id;
      long status = 0;
      curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
      t->status = static_cast<int>(status);
      DeliverHeaders(t);
      if (t->id != id || t->ended) return;  // the sink aborted: already ended and released
    }
    Reason reason = MapCode(code, t->headers_done);
    std::string message;
    if (code != CURLE_OK) {
      message = t->error_buffer[0] != '\0' ? std::string(t->error_buffer)
                                           : std::string(curl_easy_strerror(code));
    }
    Finish(t, reason, std::move(message));
    Release(t);
  }

  // --- transfers -----------------------------------------------------------------------------

  Transfer* Find(TransferId id) const {
    uint64_t index = id & kIndexMask;
    if (id == 0 || index >= pool.size()) return nullptr;
    Transfer* t = pool[index].get();
    return t->id == id ? t : nullptr;
  }

  Transfer* Acquire() {
    if (!free.empty()) {
      Transfer* t = free.back();
      free.pop_back();
      return t;
    }
    if (pool.size() > kIndexMask) return nullptr;
    auto made = std::make_unique<Transfer>();
    if (made->easy == nullptr) return nullptr;
    made->impl = this;
    made->index = pool.size();
    SetInvariantOptions(made.get());
    pool.push_back(std::move(made));
    return pool.back().get();
  }

  void Release(Transfer* t) {
    curl_slist_free_all(t->header_list);
    t->header_list = nullptr;
    t->request = UpstreamRequest();
    t->headers.clear();
    t->sink = nullptr;
    t->id = 0;
    t->status = 0;
    t->headers_done = false;
    t->ended = false;
    t->in_multi = false;
    t->paused = false;
    t->resume_pending = false;
    t->send_paused = false;
    t->send_resume_pending = false;
    t->body_failed = false;
    t->body_bytes = 0;
    t->ttfb_ms = 0;
    free.push_back(t);
  }

  bool Add(Transfer* t) {
    if (curl_multi_add_handle(multi, t->easy) != CURLM_OK) return false;
    t->in_multi = true;
    return true;
  }

  void FailStart(Transfer* t) {
    Finish(t, Reason::kOther, "could not start the upstream transfer");
    Release(t);
  }

  // Ends `t` now (a timeout, Abort, shutdown): out of the multi at once, so libcurl closes its
  // connection (a transfer removed mid-answer never leaves its connection for reuse), then
  // OnEnd. Inside libcurl the removal waits for Settle(); OnEnd still runs now.
  void EndNow(Transfer* t, Reason reason, std::string message) {
    if (depth > 0) {
      Finish(t, reason, std::move(message));
      doomed.push_back(t);
      return;
    }
    if (t->in_multi) curl_multi_remove_handle(multi, t->easy);
    t->in_multi = false;
    Finish(t, reason, std::move(message));
    Release(t);
  }

  void Finish(Transfer* t, Reason reason, std::string message) {
    if (t->ended) return;
    t->ended = true;
    --active;
    CancelTimers(t);
    switch (reason) {
      case Reason::kComplete:
        stats->completed.fetch_add(1, std::memory_order_relaxed);
        break;
      case Reason::kTimeout:
      case Reason::kReadIdleTimeout:
      case Reason::kMaxDuration:
        stats->timeouts.fetch_add(1, std::memory_order_relaxed);
        break;
      case Reason::kConnect:
        stats->connect_errors.fetch_add(1, std::memory_order_relaxed);
        break;
      case Reason::kUpstreamClosed:
      case Reason::kOther:
        stats->other_errors.fetch_add(1, std::memory_order_relaxed);
        break;
      case Reason::kAborted:
      case Reason::kShutdown:
        break;
    }
    StreamEnd end;
    end.reason = reason;
    end.error_message = std::move(message);
    end.headers_seen = t->headers_done;
    end.body_bytes = t->body_bytes;
    end.total_ms = MsSince(t->start, Clock::now());
    end.ttfb_ms = t->ttfb_ms;
    StreamSink* sink = t->sink;
    t->sink = nullptr;
    sink->OnEnd(end);
  }

  void CancelTimers(Transfer* t) {
    for (loop::Loop::TimerId* timer : {&t->header_timer, &t->max_timer, &t->idle_timer}) {
      if (*timer != 0) loop->Cancel(*timer);
      *timer = 0;
    }
  }

  void ArmTimers(Transfer* t) {
    TransferId id = t->id;
    const UpstreamRequest& r = t->request;
    if (r.timeout_ms > 0) {
      t->header_timer = loop->After(std::chrono::milliseconds(r.timeout_ms), [this, id] {
        Transfer* x = Find(id);
        if (x == nullptr || x->ended) return;
        x->header_timer = 0;
        if (x->headers_done) return;
        EndNow(x, Reason::kTimeout,
               "no response headers within " + std::to_string(x->request.timeout_ms) + " ms");
      });
    }
    if (r.max_duration_ms > 0) {
      t->max_timer = loop->After(std::chrono::milliseconds(r.max_duration_ms), [this, id] {
        Transfer* x = Find(id);
        if (x == nullptr || x->ended) return;
        x->max_timer = 0;
        EndNow(x, Reason::kMaxDuration,
               "transfer longer than " + std::to_string(x->request.max_duration_ms) + " ms");
      });
    }
  }

  // One timer per transfer for the read-idle limit: a body chunk only notes the time, and the
  // timer, when it fires early, re-arms for the rest. A paused transfer's timer lapses; Resume
  // arms it again.
  void ArmIdle(Transfer* t, Clock::time_point deadline) {
    TransferId id = t->id;
    t->idle_timer = loop->After(MsUntil(deadline), [this, id] {
      Transfer* x = Find(id);
      if (x == nullptr || x->ended) return;
      x->idle_timer = 0;
      if (x->paused) return;
      Clock::time_point due =
          x->last_activity + std::chrono::milliseconds(x->request.read_idle_timeout_ms);
      if (Clock::now() >= due) {
        EndNow(x, Reason::kReadIdleTimeout,
               "no body byte for " + std::to_string(x->request.read_idle_timeout_ms) + " ms");
      } else {
        ArmIdle(x, due);
      }
    });
  }

  void DeliverHeaders(Transfer* t) {
    t->headers_done = true;
    Clock::time_point now = Clock::now();
    t->ttfb_ms = MsSince(t->start, now);
    t->last_activity = now;
    if (t->header_timer != 0) loop->Cancel(t->header_timer);
    t->header_timer = 0;
    if (t->request.read_idle_timeout_ms > 0) {
      ArmIdle(t, now + std::chrono::milliseconds(t->request.read_idle_timeout_ms));
    }
    t->sink->OnHeaders(t->status, std::move(t->headers));
  }

  void Unpause(Transfer* t) {
    if (t->ended || !t->paused) return;
    t->paused = false;
    t->last_activity = Clock::now();
    if (t->idle_timer == 0 && t->headers_done && t->request.read_idle_timeout_ms > 0) {
      ArmIdle(t, t->last_activity + std::chrono::milliseconds(t->request.read_idle_timeout_ms));
    }
    // May hand the held chunk to the write callback right here (OnData, maybe pausing again).
    // The pause bits name both directions: an upload waiting for its caller stays paused.
    ++depth;
    curl_easy_pause(t->easy, t->send_paused ? CURLPAUSE_SEND : CURLPAUSE_CONT);
    --depth;
  }

  void UnpauseSend(Transfer* t) {
    if (t->ended || !t->send_paused) return;
    t->send_paused = false;
    ++depth;
    curl_easy_pause(t->easy, t->paused ? CURLPAUSE_RECV : CURLPAUSE_CONT);
    --depth;
  }

  static size_t OnRead(char* buffer, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    if (t->ended || t->body_failed) return CURL_READFUNC_ABORT;
    bool done = false;
    bool failed = false;
    size_t n = t->request.body_source->Read(buffer, size * count, &done, &failed);
    if (failed) {
      t->body_failed = true;
      return CURL_READFUNC_ABORT;
    }
    if (done) t->upload_done = true;
    if (n > 0 || done) return n;
    t->send_paused = true;
    return CURL_READFUNC_PAUSE;
  }

  // --- libcurl's data callbacks (inside libcurl: depth > 0) ----------------------------------

  static size_t OnBody(char* data, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    size_t n = size * count;
    if (t->ended) return 0;  // aborted: libcurl fails the transfer (and drops the connection)
    // Past a pause requested from this callback libcurl may still hand over the rest of a larger
    // block: it keeps it (at most one buffer) and hands it over again after the unpause.
    if (t->paused) return CURL_WRITEFUNC_PAUSE;
    Impl* impl = t->impl;
    if (!t->headers_done) {
      impl->DeliverHeaders(t);
      if (t->ended) return 0;
    }
    t->last_activity = Clock::now();
    t->body_bytes += n;
    bool more = t->sink->OnData(data, n);
    if (t->ended) return 0;
    if (!more) {
      // Consumed: pause after it (CURL_WRITEFUNC_PAUSE would hand the same bytes over again).
      t->paused = true;
      curl_easy_pause(t->easy, CURLPAUSE_RECV);
    }
    return n;
  }

  // libcurl hands every header line of every response (1xx, the final one, trailers) to this
  // callback, each block ending with a blank line; only the final response's block is kept, and
  // its blank line is where the sink gets the headers (HEAD, 204 and 304 have no body byte to
  // wait for).
  static size_t OnHeader(char* data, size_t size, size_t count, void* user) {
    auto* t = static_cast<Transfer*>(user);
    size_t n = size * count;
    if (t->ended) return 0;
    if (t->headers_done) return n;  // trailers are not response headers
    size_t len = n;
    while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n')) --len;
    if (len == 0) {
      if (t->status >= 100 && t->status < 200) {  // an interim block ends: wait for the next
        t->status = 0;
        t->headers.clear();
        return n;
      }
      t->impl->DeliverHeaders(t);
      return t->ended ? 0 : n;
    }
    if (StartsWithIgnoreCase(data, len, "http/")) {
      t->headers.clear();
      const char* sp = static_cast<const char*>(memchr(data, ' ', len));
      t->status = 0;
      if (sp != nullptr) {
        for (const char* p = sp + 1; p < data + len && *p >= '0' && *p <= '9'; ++p) {
          t->status = t->status * 10 + (*p - '0');
        }
      }
      if (t->status >= 200 && !UploadComplete(t)) ForbidReuse(t);
      return n;
    }
    HeaderList& headers = t->headers;
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
    return n;
  }

  // Whether every byte of the request body has been handed to libcurl (a bodiless request: yes).
  static bool UploadComplete(Transfer* t) {
    const UpstreamRequest& r = t->request;
    if (r.body_source) return t->upload_done;
    if (!t->has_postfields) return true;
    curl_off_t sent = 0;
    curl_easy_getinfo(t->easy, CURLINFO_SIZE_UPLOAD_T, &sent);
    return sent >= static_cast<curl_off_t>(r.body.size());
  }

  // The upstream answered before it had the whole request body. Whether it will read the rest
  // as this body or as the start of another request is up to the upstream's parser (an upstream
  // that ignores a body on GET reads it as the next request): the connection is not reused for
  // another caller's request, whatever follows. libcurl reads the flag when the transfer ends.
  static void ForbidReuse(Transfer* t) {
    t->forbid_reuse = true;
    curl_easy_setopt(t->easy, CURLOPT_FORBID_REUSE, 1L);
  }

  // --- options -------------------------------------------------------------------------------

  void SetInvariantOptions(Transfer* t) {
    CURL* e = t->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error_buffer);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    // The policy decided on this exact path; libcurl must not squash /../ or /./ in it.
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!options.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options.ca_file.c_str());
    // Both set (even to ""): libcurl then reads no proxy variable from the environment.
    curl_easy_setopt(e, CURLOPT_NOPROXY, proxy.no_proxy.c_str());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
  }

  bool Configure(Transfer* t) {
    CURL* e = t->easy;
    const UpstreamRequest& r = t->request;
    t->error_buffer[0] = '\0';
    if (curl_easy_setopt(e, CURLOPT_URL, r.url.c_str()) != CURLE_OK) return false;
    int scheme = StartsWithIgnoreCase(r.url.data(), r.url.size(), "https:") ? 1 : 0;
    if (scheme != t->scheme) {
      t->scheme = scheme;
      curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                       scheme == 1 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
      // A burst of requests to an HTTP/2 upstream waits for the first connection's ALPN answer
      // and multiplexes on it, instead of opening (and TLS-handshaking) one connection each.
      curl_easy_setopt(e, CURLOPT_PIPEWAIT, scheme == 1 ? 1L : 0L);
      curl_easy_setopt(e, CURLOPT_PROXY, (scheme == 1 ? proxy.https : proxy.http).c_str());
    }
    long connect_timeout = r.connect_timeout_ms;
    if (connect_timeout != t->connect_timeout_ms) {
      t->connect_timeout_ms = connect_timeout;
      curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout);
    }
    if (t->forbid_reuse) {
      t->forbid_reuse = false;
      curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 0L);
    }
    t->upload_done = false;
    ConfigureMethod(t);
    return BuildHeaderList(t);
  }

  static void ConfigureMethod(Transfer* t) {
    CURL* e = t->easy;
    const UpstreamRequest& r = t->request;
    // Undo what the handle's previous transfer set (the order matters: POSTFIELDS selects POST,
    // HTTPGET and NOBODY below select again).
    if (t->has_custom_request) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, nullptr);
    if (t->has_postfields) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t{-1});
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, nullptr);
    }
    if (t->has_readfunction) {
      curl_easy_setopt(e, CURLOPT_READFUNCTION, nullptr);
      curl_easy_setopt(e, CURLOPT_READDATA, nullptr);
      t->has_readfunction = false;
    }
    t->has_custom_request = false;
    t->has_postfields = false;
    if (r.method == "HEAD") {
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
      return;
    }
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);  // also clears NOBODY
    if (r.body_source) {
      // The body streams from the caller: libcurl asks OnRead for it, and sends it with the
      // caller's length, or chunked when there is none.
      curl_easy_setopt(e, CURLOPT_POST, 1L);
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body_length));
      curl_easy_setopt(e, CURLOPT_READFUNCTION, OnRead);
      curl_easy_setopt(e, CURLOPT_READDATA, t);
      t->has_readfunction = true;
      t->has_postfields = true;  // POSTFIELDSIZE is to be reset for the handle's next use
      if (r.method != "POST") {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
        t->has_custom_request = true;
      }
      return;
    }
    bool sends_body =
        !r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH";
    if (sends_body) {
      // POSTFIELDS (not READFUNCTION) so an empty body is sent as Content-Length: 0 and a
      // binary body goes out byte for byte; it points into the transfer's own request (moved
      // in, never copied), which outlives the transfer.
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
      t->has_postfields = true;
    }
    if (r.method != "POST" && (r.method != "GET" || sends_body)) {
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
      t->has_custom_request = true;
    }
  }

  bool BuildHeaderList(Transfer* t) {
    const UpstreamRequest& r = t->request;
    bool has_content_type = false;
    for (const auto& [name, value] : r.headers) {
      line.assign(name);
      if (value.empty()) {
        line.push_back(';');  // "Name:" would tell libcurl to remove the header instead
      } else {
        line.append(": ").append(value);
      }
      if (!Append(t, line.c_str())) return false;
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

  static bool Append(Transfer* t, const char* text) {
    curl_slist* next = curl_slist_append(t->header_list, text);
    if (next == nullptr) return false;
    t->header_list = next;
    return true;
  }
};

StreamClient::StreamClient(loop::Loop* loop, UpstreamClientOptions options,
                           UpstreamClientStats* stats) {
  GlobalInit();
  impl_ = std::make_unique<Impl>(loop, std::move(options), stats);
}

StreamClient::~StreamClient() = default;

StreamClient::TransferId StreamClient::Start(UpstreamRequest request, StreamSink* sink) {
  Impl& impl = *impl_;
  if (impl.closing) {
    StreamEnd end;
    end.reason = Reason::kShutdown;
    end.error_message = "upstream client stopped";
    sink->OnEnd(end);
    return 0;
  }
  impl.stats->started.fetch_add(1, std::memory_order_relaxed);
  Impl::Transfer* t = impl.Acquire();
  if (t == nullptr) {
    impl.stats->other_errors.fetch_add(1, std::memory_order_relaxed);
    StreamEnd end;
    end.reason = Reason::kOther;
    end.error_message = "could not start the upstream transfer";
    sink->OnEnd(end);
    return 0;
  }
  t->id = (++impl.serial << kIndexBits) | t->index;
  t->sink = sink;
  t->request = std::move(request);
  t->start = Clock::now();
  ++impl.active;
  if (!impl.Configure(t)) {
    impl.FailStart(t);
    return 0;
  }
  TransferId id = t->id;
  impl.ArmTimers(t);
  if (impl.depth > 0) {
    impl.to_add.push_back(id);
  } else if (!impl.Add(t)) {
    impl.FailStart(t);
    return 0;
  }
  return id;
}

void StreamClient::Resume(TransferId id) {
  Impl& impl = *impl_;
  Impl::Transfer* t = impl.Find(id);
  if (t == nullptr || t->ended || !t->paused) return;
  if (impl.depth > 0) {
    if (!t->resume_pending) impl.to_resume.push_back(id);
    t->resume_pending = true;
    return;
  }
  impl.Unpause(t);
  impl.Settle();
}

void StreamClient::ResumeSend(TransferId id) {
  Impl& impl = *impl_;
  Impl::Transfer* t = impl.Find(id);
  if (t == nullptr || t->ended || !t->send_paused) return;
  if (impl.depth > 0) {
    if (!t->send_resume_pending) impl.to_resume_send.push_back(id);
    t->send_resume_pending = true;
    return;
  }
  impl.UnpauseSend(t);
  impl.Settle();
}

void StreamClient::Abort(TransferId id) {
  Impl& impl = *impl_;
  Impl::Transfer* t = impl.Find(id);
  if (t == nullptr || t->ended) return;
  impl.EndNow(t, Reason::kAborted, "aborted");
  impl.Settle();
}

size_t StreamClient::active() const { return impl_->active; }

}  // namespace tollgate::upstream
