// A steady stream of requests from one background thread, for tests that change Redis under a
// running gateway (issue 14: a primary killed, a slot resharded). Requests go back to back with
// `pause` between them, round-robin over the gateways, each with its own X-Request-Id
// (<prefix><n>), so its audit record can be found. Every answer is kept with when it was sent
// and how long it took (steady clock, ms).
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/harness.h"

namespace tollgate::testing {

struct StreamedCall {
  std::string id;
  size_t gateway = 0;  // index into the stream's gateways
  int64_t sent_ms = 0;
  int64_t took_ms = 0;
  long status = 0;
  std::string reason;  // the gateway's /error/reason, when it answered an error
  std::string error;   // curl's message when there was no answer
};

class RequestStream {
 public:
  RequestStream(std::vector<const GatewayProcess*> gateways, std::string path, std::string key,
                std::string id_prefix, milliseconds pause = milliseconds(10))
      : gateways_(std::move(gateways)),
        path_(std::move(path)),
        key_(std::move(key)),
        prefix_(std::move(id_prefix)),
        pause_(pause) {
    thread_ = std::thread([this] { Run(); });
  }
  ~RequestStream() { Stop(); }
  RequestStream(const RequestStream&) = delete;
  RequestStream& operator=(const RequestStream&) = delete;

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // Holds the stream: returns once no request is in flight; none is sent until Resume().
  void Pause() {
    std::unique_lock<std::mutex> lock(mu_);
    paused_ = true;
    cv_.wait(lock, [&] { return !in_flight_; });
  }
  void Resume() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      paused_ = false;
    }
    cv_.notify_all();
  }

  size_t answered() const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_.size();
  }
  // Waits until `count` more answers than now came in; false after `timeout`.
  bool WaitForMore(size_t count, milliseconds timeout = milliseconds(20000)) {
    std::unique_lock<std::mutex> lock(mu_);
    const size_t target = calls_.size() + count;
    return cv_.wait_for(lock, timeout, [&] { return calls_.size() >= target; });
  }
  std::vector<StreamedCall> calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }

 private:
  void Run() {
    for (size_t n = 0;; ++n) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !paused_; });
        if (stop_) return;
        in_flight_ = true;
      }
      StreamedCall call;
      call.id = prefix_ + std::to_string(n);
      call.gateway = n % gateways_.size();
      call.sent_ms = MonotonicMs();
      HttpResponse r = Http("GET", gateways_[call.gateway]->url() + path_,
                            {{"Authorization", "Bearer " + key_}, {"X-Request-Id", call.id}});
      call.took_ms = MonotonicMs() - call.sent_ms;
      call.status = r.status;
      call.error = r.error;
      if (r.status >= 400) call.reason = Json::Parse(r.body).String("/error/reason");
      {
        std::unique_lock<std::mutex> lock(mu_);
        calls_.push_back(std::move(call));
        in_flight_ = false;
        cv_.notify_all();
        if (cv_.wait_for(lock, pause_, [&] { return stop_; })) return;
      }
    }
  }

  const std::vector<const GatewayProcess*> gateways_;
  const std::string path_;
  const std::string key_;
  const std::string prefix_;
  const milliseconds pause_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool paused_ = false;
  bool in_flight_ = false;
  std::vector<StreamedCall> calls_;
  std::thread thread_;
};

// Every audit record of the gateways, by request id.
inline std::map<std::string, Json> AuditById(const std::vector<const GatewayProcess*>& gateways) {
  std::map<std::string, Json> out;
  for (const GatewayProcess* g : gateways) {
    for (const Json& line : g->AuditLines()) {
      if (line.ok()) out.emplace(line.String("/request_id"), line);
    }
  }
  return out;
}

// The ids (space-separated) whose audit record says the limiter decided without Redis
// ("limiter_fallback": true) or that have no record: "" when Redis decided every one.
inline std::string DecidedWithoutRedis(const std::vector<std::string>& ids,
                                       const std::map<std::string, Json>& audit) {
  std::string out;
  for (const std::string& id : ids) {
    auto it = audit.find(id);
    if (it == audit.end()) {
      out += (out.empty() ? "" : " ") + id + "(no record)";
    } else if (it->second.Bool("/limiter_fallback")) {
      out += (out.empty() ? "" : " ") + id;
    }
  }
  return out;
}

}  // namespace tollgate::testing
