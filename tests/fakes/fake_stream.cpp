#include "tests/fakes/fake_stream.h"

#include <openssl/evp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "tests/fakes/pattern.h"

namespace tollgate::fake {
namespace {

constexpr size_t kBigPiece = 64 * 1024;
// Bytes one stream may write per wake-up, so one fast reader cannot starve the others.
constexpr size_t kWriteBudget = 1 << 20;
constexpr uint64_t kWakeTag = 0;

int64_t MonotonicMs(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

bool ParseInt(const std::string& text, int64_t min, int64_t* out) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  long long value = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || value < min) return false;
  *out = value;
  return true;
}

std::string Hex(const unsigned char* data, size_t length) {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (size_t i = 0; i < length; ++i) {
    hex.push_back(kDigits[data[i] >> 4]);
    hex.push_back(kDigits[data[i] & 15]);
  }
  return hex;
}

}  // namespace

bool ParseStreamSpec(const std::string& query, StreamSpec* spec, std::string* error) {
  std::string mode = QueryValue(query, "fake_stream");
  if (mode.empty()) return false;
  StreamSpec s;
  if (mode == "rows") {
    s.mode = StreamSpec::Mode::kRows;
  } else if (mode == "continuous") {
    s.mode = StreamSpec::Mode::kContinuous;
  } else if (mode == "big") {
    s.mode = StreamSpec::Mode::kBig;
  } else {
    *error = "fake_stream must be rows, continuous or big";
    return false;
  }
  struct {
    const char* name;
    int64_t min;
    int64_t* out;
  } ints[] = {{"fake_rows", 0, &s.rows},
              {"fake_interval_ms", 1, &s.interval_ms},
              {"fake_keepalive_ms", 0, &s.keepalive_ms},
              {"fake_bytes", 0, &s.bytes}};
  for (const auto& i : ints) {
    std::string text = QueryValue(query, i.name, "\x01");
    if (text != "\x01" && !ParseInt(text, i.min, i.out)) {
      *error = std::string(i.name) + " must be an integer >= " + std::to_string(i.min);
      return false;
    }
  }
  int64_t seed = 0;
  std::string seed_text = QueryValue(query, "fake_seed", "0");
  if (!ParseInt(seed_text, 0, &seed)) {
    *error = "fake_seed must be a non-negative integer";
    return false;
  }
  s.seed = static_cast<uint64_t>(seed);
  std::string chunked = QueryValue(query, "fake_chunked", "0");
  s.chunked = chunked == "1" || chunked == "true";
  *spec = s;
  return true;
}

// What a test reads about one stream; guarded by Streamer::mu_.
struct Streamer::Record {
  int64_t id = 0;
  std::string mode;
  std::string path;
  std::string query;
  int64_t content_length = -1;
  int64_t started_at_ms = 0;
  int64_t bytes_written = 0;  // everything written to the socket: head, framing, body
  int64_t body_bytes = 0;     // body (payload) bytes written
  int64_t rows_sent = 0;
  int64_t keepalives_sent = 0;
  bool blocked = false;  // waiting for the socket to take more (EPOLLOUT)
  bool ended = false;
  std::string ended_by;
  int64_t ended_at_ms = -1;
  std::string sha256;  // of the body bytes written, once ended
};

struct Streamer::Stream {
  enum class Piece { kHead, kRow, kKeepalive, kBody, kTerminator };
  int64_t id = 0;
  int fd = -1;
  StreamSpec spec;
  std::string head;
  std::shared_ptr<Record> record;
  EVP_MD_CTX* sha = nullptr;

  // The piece being written: out[prefix_len, prefix_len + payload_len) is body.
  std::string out;
  size_t out_off = 0;
  size_t prefix_len = 0;
  size_t payload_len = 0;
  Piece piece = Piece::kHead;

  bool head_sent = false;
  bool terminated = false;  // nothing follows the current piece
  Clock::time_point accepted;
  Clock::time_point started;  // when the head was queued
  int64_t rows_queued = 0;
  uint64_t body_queued = 0;
  Clock::time_point next_row_at;
  Clock::time_point next_keepalive_at = Clock::time_point::max();
  bool has_timer = false;
  Clock::time_point timer_at;
  bool writable_armed = false;

  ~Stream() {
    if (sha) EVP_MD_CTX_free(sha);
  }
};

Streamer::Streamer() {
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_ < 0 || wake_ < 0) throw std::runtime_error("streamer: cannot create epoll/eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev);
  thread_ = std::thread([this] { Run(); });
}

Streamer::~Streamer() {
  Stop();
  close(wake_);
  close(epoll_);
}

void Streamer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  uint64_t one = 1;
  (void)!write(wake_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

int64_t Streamer::Start(int fd, const StreamSpec& spec, const HeaderList& headers,
                        const FakeRequest& request) {
  auto s = std::make_unique<Stream>();
  s->id = next_id_.fetch_add(1);
  s->fd = fd;
  s->spec = spec;
  s->accepted = Clock::now();
  s->sha = EVP_MD_CTX_new();
  EVP_DigestInit_ex(s->sha, EVP_sha256(), nullptr);
  bool big = spec.mode == StreamSpec::Mode::kBig;
  bool chunked = !big || spec.chunked;
  std::string head = "HTTP/1.1 200 OK\r\n";
  for (const auto& [name, value] : headers) {
    const char* n = name.c_str();
    if (strcasecmp(n, "Content-Type") == 0 || strcasecmp(n, "Content-Length") == 0 ||
        strcasecmp(n, "Transfer-Encoding") == 0 || strcasecmp(n, "Connection") == 0) {
      continue;
    }
    head += name + ": " + value + "\r\n";
  }
  head += big ? "Content-Type: application/octet-stream\r\n" : "Content-Type: application/json\r\n";
  head += chunked ? "Transfer-Encoding: chunked\r\n"
                  : "Content-Length: " + std::to_string(spec.bytes) + "\r\n";
  head += "Connection: close\r\nx-fake-stream-id: " + std::to_string(s->id) + "\r\n\r\n";
  s->head = std::move(head);

  auto record = std::make_shared<Record>();
  record->id = s->id;
  record->mode = spec.mode == StreamSpec::Mode::kRows         ? "rows"
                 : spec.mode == StreamSpec::Mode::kContinuous ? "continuous"
                                                              : "big";
  record->path = request.path;
  record->query = request.query;
  record->content_length = chunked ? -1 : spec.bytes;
  record->started_at_ms = MonotonicMs(s->accepted);
  s->record = record;
  int64_t id = s->id;
  open_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    records_[id] = std::move(record);
    if (stopping_) {
      close(fd);
      open_.fetch_sub(1);
      records_[id]->ended = true;
      records_[id]->ended_by = "shutdown";
      return id;
    }
    pending_.push_back(std::move(s));
  }
  uint64_t one = 1;
  (void)!write(wake_, &one, sizeof one);
  return id;
}

void Streamer::Run() {
  std::vector<epoll_event> events(256);
  for (;;) {
    int timeout = -1;
    if (!timers_.empty()) {
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(timers_.begin()->first -
                                                                        Clock::now())
                      .count();
      timeout = static_cast<int>(std::clamp<int64_t>(wait + 1, 0, 60000));
    }
    int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) {
        uint64_t count;
        (void)!read(wake_, &count, sizeof count);
        TakeNew();
        continue;
      }
      auto it = streams_.find(static_cast<int64_t>(tag));
      if (it == streams_.end()) continue;
      Stream& s = *it->second;
      if (events[i].events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
        End(s, "client_closed");
      } else if (events[i].events & EPOLLOUT) {
        Pump(s);
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
    }
    auto now = Clock::now();
    while (!timers_.empty() && timers_.begin()->first <= now) {
      int64_t id = timers_.begin()->second;
      timers_.erase(timers_.begin());
      auto it = streams_.find(id);
      if (it == streams_.end()) continue;
      it->second->has_timer = false;
      Pump(*it->second);
    }
  }
  TakeNew();
  while (!streams_.empty()) End(*streams_.begin()->second, "shutdown");
}

void Streamer::TakeNew() {
  std::vector<std::unique_ptr<Stream>> fresh;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fresh.swap(pending_);
  }
  for (auto& s : fresh) {
    epoll_event ev{};
    ev.events = EPOLLRDHUP;  // Pistache reads the connection; this end only learns it closed
    ev.data.u64 = static_cast<uint64_t>(s->id);
    Stream& ref = *s;
    streams_[s->id] = std::move(s);
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, ref.fd, &ev) != 0) {
      End(ref, "client_closed");
      continue;
    }
    Pump(ref);
  }
}

void Streamer::Pump(Stream& s) {
  int64_t id = s.id;
  size_t budget = kWriteBudget;
  for (;;) {
    if (s.out_off == s.out.size()) {
      if (s.terminated) {
        End(s, "complete");
        return;
      }
      if (!Refill(s, Clock::now())) {
        WantWritable(s, false);
        return;
      }
    }
    if (budget == 0) {
      // Level-triggered: comes back at once if there is room. Until then it waits like a
      // blocked write, which is what a test sees.
      std::lock_guard<std::mutex> lock(mu_);
      s.record->blocked = true;
      WantWritable(s, true);
      return;
    }
    size_t len = std::min(s.out.size() - s.out_off, budget);
    ssize_t n = send(s.fd, s.out.data() + s.out_off, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          s.record->blocked = true;
        }
        WantWritable(s, true);
        return;
      }
      End(s, "client_closed");
      return;
    }
    budget -= static_cast<size_t>(n);
    Account(s, static_cast<size_t>(n));
    if (streams_.find(id) == streams_.end()) return;
  }
}

bool Streamer::Refill(Stream& s, Clock::time_point now) {
  s.out.clear();
  s.out_off = 0;
  s.prefix_len = 0;
  s.payload_len = 0;
  auto chunk = [&s](Stream::Piece piece, const std::string& payload) {
    char size[32];
    snprintf(size, sizeof size, "%zx\r\n", payload.size());
    s.out = size + payload + "\r\n";
    s.prefix_len = strlen(size);
    s.payload_len = payload.size();
    s.piece = piece;
  };
  auto terminate = [&s] {
    s.out = "0\r\n\r\n";
    s.prefix_len = s.out.size();
    s.piece = Stream::Piece::kTerminator;
    s.terminated = true;
  };
  const StreamSpec& spec = s.spec;
  if (!s.head_sent) {
    auto at = s.accepted + std::chrono::milliseconds(spec.head_delay_ms);
    if (now < at) {
      Schedule(s, at);
      return false;
    }
    s.out = s.head;
    s.prefix_len = s.out.size();
    s.piece = Stream::Piece::kHead;
    s.head_sent = true;
    s.started = now;
    s.next_row_at = now;
    if (spec.mode == StreamSpec::Mode::kBig && !spec.chunked && spec.bytes == 0) {
      s.terminated = true;
    }
    return true;
  }
  if (spec.mode == StreamSpec::Mode::kBig) {
    uint64_t total = static_cast<uint64_t>(spec.bytes);
    if (s.body_queued >= total) {
      if (!spec.chunked) return false;  // unreachable: `terminated` was set with the last piece
      terminate();
      return true;
    }
    size_t n = static_cast<size_t>(std::min<uint64_t>(kBigPiece, total - s.body_queued));
    if (spec.chunked) {
      char size[32];
      snprintf(size, sizeof size, "%zx\r\n", n);
      s.out = size;
      s.prefix_len = s.out.size();
      AppendPattern(spec.seed, s.body_queued, n, &s.out);
      s.out += "\r\n";
    } else {
      AppendPattern(spec.seed, s.body_queued, n, &s.out);
    }
    s.payload_len = n;
    s.piece = Stream::Piece::kBody;
    s.body_queued += n;
    if (!spec.chunked && s.body_queued >= total) s.terminated = true;
    return true;
  }
  bool rows = spec.mode == StreamSpec::Mode::kRows;
  if (rows && s.rows_queued >= spec.rows) {
    terminate();
    return true;
  }
  if (now >= s.next_row_at) {
    int64_t k = s.rows_queued++;
    chunk(Stream::Piece::kRow, "{\"eventdate\":" + std::to_string(1700000000000LL + k * 1000) +
                                   ",\"domain\":\"fake\",\"seq\":" + std::to_string(k) +
                                   ",\"sent_ms\":" + std::to_string(MonotonicMs(now)) +
                                   ",\"message\":\"row " + std::to_string(k) + "\"}\n");
    s.next_row_at = s.started + std::chrono::milliseconds(spec.interval_ms * s.rows_queued);
    if (!rows) {
      s.next_keepalive_at =
          now + std::chrono::milliseconds(spec.keepalive_ms > 0
                                              ? spec.keepalive_ms
                                              : std::max<int64_t>(1, spec.interval_ms / 2));
    }
    return true;
  }
  if (!rows && now >= s.next_keepalive_at && s.next_keepalive_at < s.next_row_at) {
    chunk(Stream::Piece::kKeepalive, "    ");
    s.next_keepalive_at = spec.keepalive_ms > 0 ? now + std::chrono::milliseconds(spec.keepalive_ms)
                                                : Clock::time_point::max();
    return true;
  }
  Schedule(s, rows ? s.next_row_at : std::min(s.next_row_at, s.next_keepalive_at));
  return false;
}

void Streamer::Account(Stream& s, size_t n) {
  size_t begin = s.out_off;
  size_t end = begin + n;
  size_t payload_begin = std::max(begin, s.prefix_len);
  size_t payload_end = std::min(end, s.prefix_len + s.payload_len);
  size_t body = payload_end > payload_begin ? payload_end - payload_begin : 0;
  if (body > 0) EVP_DigestUpdate(s.sha, s.out.data() + payload_begin, body);
  s.out_off = end;
  bool piece_done = s.out_off == s.out.size();
  std::lock_guard<std::mutex> lock(mu_);
  Record& r = *s.record;
  r.blocked = false;
  r.bytes_written += static_cast<int64_t>(n);
  r.body_bytes += static_cast<int64_t>(body);
  if (piece_done && s.piece == Stream::Piece::kRow) ++r.rows_sent;
  if (piece_done && s.piece == Stream::Piece::kKeepalive) ++r.keepalives_sent;
}

void Streamer::Schedule(Stream& s, Clock::time_point at) {
  if (s.has_timer) timers_.erase({s.timer_at, s.id});
  s.has_timer = true;
  s.timer_at = at;
  timers_.insert({at, s.id});
}

void Streamer::WantWritable(Stream& s, bool want) {
  if (s.writable_armed == want) return;
  epoll_event ev{};
  ev.events = EPOLLRDHUP | (want ? EPOLLOUT : 0u);
  ev.data.u64 = static_cast<uint64_t>(s.id);
  epoll_ctl(epoll_, EPOLL_CTL_MOD, s.fd, &ev);
  s.writable_armed = want;
}

void Streamer::End(Stream& s, const char* ended_by) {
  epoll_ctl(epoll_, EPOLL_CTL_DEL, s.fd, nullptr);
  // The answer is complete: say so to the client now rather than when Pistache lets go.
  if (std::string(ended_by) == "complete") shutdown(s.fd, SHUT_WR);
  close(s.fd);
  if (s.has_timer) timers_.erase({s.timer_at, s.id});
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(s.sha, digest, &length);
  {
    std::lock_guard<std::mutex> lock(mu_);
    Record& r = *s.record;
    r.ended = true;
    r.ended_by = ended_by;
    r.ended_at_ms = MonotonicMs(Clock::now());
    r.sha256 = Hex(digest, length);
    r.blocked = false;
  }
  open_.fetch_sub(1);
  streams_.erase(s.id);  // destroys s
}

std::string Streamer::StreamsJson() {
  std::string json = "{\"open\":" + std::to_string(open_.load()) + ",\"streams\":[";
  std::lock_guard<std::mutex> lock(mu_);
  bool first = true;
  for (const auto& [id, r] : records_) {
    if (!first) json += ",";
    first = false;
    json += "{\"id\":" + std::to_string(r->id) + ",\"mode\":" + JsonQuote(r->mode) +
            ",\"path\":" + JsonQuote(r->path) + ",\"query\":" + JsonQuote(r->query) +
            ",\"content_length\":" + std::to_string(r->content_length) +
            ",\"started_at_ms\":" + std::to_string(r->started_at_ms) +
            ",\"bytes_written\":" + std::to_string(r->bytes_written) +
            ",\"body_bytes\":" + std::to_string(r->body_bytes) +
            ",\"rows_sent\":" + std::to_string(r->rows_sent) +
            ",\"keepalives_sent\":" + std::to_string(r->keepalives_sent) +
            ",\"blocked\":" + (r->blocked ? "true" : "false") +
            ",\"ended\":" + (r->ended ? "true" : "false") +
            ",\"ended_by\":" + JsonQuote(r->ended_by) +
            ",\"ended_at_ms\":" + std::to_string(r->ended_at_ms) +
            ",\"sha256\":" + JsonQuote(r->sha256) + "}";
  }
  return json + "]}";
}

void Streamer::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = records_.begin(); it != records_.end();) {
    it = it->second->ended ? records_.erase(it) : std::next(it);
  }
}

}  // namespace tollgate::fake
