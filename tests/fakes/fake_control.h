// The fake upstream's test-facing state: the log of recorded requests, the behaviour rules
// (delay / forced status / replacement body for a path prefix) and counters, plus the /_fake/
// control endpoints that read and change them.
//
// Thread-safety: every method may be called from any thread (one mutex; counters are atomics).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "tests/fakes/fake_http.h"

namespace tollgate::fake {

// What a behaviour rule does to one matching request.
struct Behaviour {
  std::string prefix;
  int delay_ms = 0;  // answer this much later
  int status = 0;    // 0: answer normally; else answer with this status
  bool has_retry_after = false;
  std::string retry_after;  // sent as Retry-After when has_retry_after
  int times = -1;           // applies to the next `times` matches, then is removed; -1: forever
  bool has_body = false;
  std::string body;  // sent instead of the answer's body when has_body
  bool has_content_type = false;
  std::string content_type;  // replaces the answer's Content-Type when has_content_type
  HeaderList headers;        // added to the answer as given (repeats kept)
  bool hold = false;         // the answer waits for POST /_fake/release (delay_ms is ignored)
};

class FakeState {
 public:
  // Stores a copy of an API request (never a /_fake/ one).
  void Record(const FakeRequest& request);

  // The rule with the longest prefix of `path`, consuming one of its `times`; false if none.
  bool TakeBehaviour(const std::string& path, Behaviour* out);

  // Pistache's onConnection hook counts accepted TCP connections here.
  void CountConnection() { connections_.fetch_add(1); }
  void RequestStarted() { in_flight_.fetch_add(1); }
  void RequestFinished() { in_flight_.fetch_sub(1); }
  int64_t in_flight() const { return in_flight_.load(); }

  // Serves GET/DELETE /_fake/requests, POST/DELETE /_fake/behaviour, GET /_fake/stats.
  // (POST /_fake/release, which sends held answers, is served by FakeServer.)
  FakeResponse HandleControl(const FakeRequest& request);

 private:
  FakeResponse RequestsJson();
  FakeResponse AddBehaviour(const std::string& body);

  std::mutex mu_;
  std::vector<FakeRequest> requests_;
  std::vector<Behaviour> behaviours_;
  std::atomic<int64_t> total_requests_{0};
  std::atomic<int64_t> connections_{0};
  std::atomic<int64_t> in_flight_{0};
};

}  // namespace tollgate::fake
