// Streamed answers of the fake upstream, shaped like Devo's query API, so that a gateway's
// streaming can be tested end to end. A request asks for one with query parameters (any API
// path; the model still answers first, so authentication is still checked, and only a 2xx
// answer is replaced by the stream):
//
//   fake_stream=rows        `fake_rows` rows (default 10), one JSON object per line (json/simple),
//                           `fake_interval_ms` apart (default 100; the first at once), chunked,
//                           then the terminating chunk and the connection closed.
//   fake_stream=continuous  a row every `fake_interval_ms` and, between rows, 4-space keep-alive
//                           chunks (every `fake_keepalive_ms`; default one halfway between rows),
//                           until the client goes away.
//   fake_stream=big         `fake_bytes` bytes of tests/fakes/pattern.h (seed `fake_seed`, default
//                           0) with a Content-Length, or chunked with `fake_chunked=1`; generated
//                           64 KiB at a time as the socket takes it, never held whole.
//
// Paths under /stream/ (any method, no credentials) answer 200 with an empty body when no stream
// is asked for, and are streamed otherwise; a Devin or Devo path streams only once authenticated
// (e.g. a signed POST /search/query?fake_stream=rows, like a Devo query).
//
// Each row is {"eventdate":..,"domain":"fake","seq":K,"sent_ms":T,"message":"row K"}: `seq` from
// 0, `sent_ms` the fake's CLOCK_MONOTONIC in ms when the row was queued (the same clock as a
// test's std::chrono::steady_clock), so a test can assert that row K reached it before row K+1
// was sent. A behaviour rule's delay_ms delays the head; a forced status or hold disables the
// stream. The answer carries `x-fake-stream-id`.
//
// The connection is taken over from Pistache (a dup of its fd, written by one epoll thread), so
// thousands of open streams cost a few hundred bytes each and no Pistache thread ever waits.
// Pistache keeps reading the connection and closes its own fd when the client leaves; it removes
// that fd from its epoll before closing it, so the dup cannot confuse it.
//
// What each stream did is kept for the test (GET /_fake/streams): bytes written to the socket so
// far, body bytes, rows and keep-alives sent, whether it is blocked on a full socket now, how it
// ended (complete / client_closed / shutdown), when (monotonic ms) and the SHA-256 of the body
// bytes written.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/fakes/fake_http.h"

namespace tollgate::fake {

struct StreamSpec {
  enum class Mode { kRows, kContinuous, kBig };
  Mode mode = Mode::kRows;
  int64_t rows = 10;
  int64_t interval_ms = 100;
  int64_t keepalive_ms = 0;  // continuous: 0 = one keep-alive halfway between rows
  int64_t bytes = 0;         // big
  bool chunked = false;      // big: chunked instead of Content-Length
  uint64_t seed = 0;         // big
  int64_t head_delay_ms = 0;
};

// False when the query asks for no stream. A malformed request sets *error (and returns false).
bool ParseStreamSpec(const std::string& query, StreamSpec* spec, std::string* error);

class Streamer {
 public:
  Streamer();   // starts the writer thread
  ~Streamer();  // Stop()
  Streamer(const Streamer&) = delete;
  Streamer& operator=(const Streamer&) = delete;

  // Takes `fd` (a dup of the connection's socket, non-blocking) and streams `spec` on it, after a
  // head with `headers` (Content-Type, Content-Length, Transfer-Encoding and Connection are the
  // streamer's). Returns the stream's id.
  int64_t Start(int fd, const StreamSpec& spec, const HeaderList& headers,
                const FakeRequest& request);

  // {"open": N, "streams": [...]} (GET /_fake/streams); Clear() forgets ended streams.
  std::string StreamsJson();
  void Clear();
  int64_t open() const { return open_.load(); }

  // Ends every open stream (ended_by "shutdown") and joins the thread. Idempotent.
  void Stop();

 private:
  using Clock = std::chrono::steady_clock;
  struct Record;
  struct Stream;

  void Run();
  void TakeNew();
  void Pump(Stream& s);
  bool Refill(Stream& s, Clock::time_point now);
  void Account(Stream& s, size_t n);
  void Schedule(Stream& s, Clock::time_point at);
  void WantWritable(Stream& s, bool want);
  void End(Stream& s, const char* ended_by);

  int epoll_ = -1;
  int wake_ = -1;  // eventfd: new streams or stop
  std::thread thread_;
  std::atomic<int64_t> open_{0};
  std::atomic<int64_t> next_id_{1};

  std::mutex mu_;  // guards pending_, records_, stopping_
  std::vector<std::unique_ptr<Stream>> pending_;
  std::map<int64_t, std::shared_ptr<Record>> records_;
  bool stopping_ = false;

  // Owned by the writer thread.
  std::map<int64_t, std::unique_ptr<Stream>> streams_;
  std::set<std::pair<Clock::time_point, int64_t>> timers_;
};

}  // namespace tollgate::fake
