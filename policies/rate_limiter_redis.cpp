// The Redis limiter: every decision is one atomic script on the shared Redis, so buckets are
// exact across replicas. Callers never wait on Redis: requests go to a queue that worker
// threads drain, each pipelining a whole batch on its own connection (one round trip for many
// concurrent decisions) and answering through `done` on the worker thread.
//
// When Redis fails, requests fall back per on_error (local buckets or 503). After
// kFailuresToOpen failures in a row a circuit breaker skips Redis for a back-off, so an outage
// does not cost `timeout_ms` on every request; a single probe then decides whether to close it.

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>

#include "policies/rate_limiter.h"
#include "policies/rate_limiter_memory.h"
#include "policies/redis_connection.h"
#include "policies/token_bucket.h"
#include "policies/token_bucket_script.h"

namespace tollgate::policies {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t kMaxBatch = 256;
constexpr int kFailuresToOpen = 3;
constexpr milliseconds kFirstBackoff{250};
constexpr milliseconds kMaxBackoff{5000};
// Redis runs scripts one at a time; a second pipelining connection measured no faster here.
constexpr int kDefaultConnections = 1;

struct Pending {
  enum class Kind { kAcquire, kPeek, kCooldown };
  Kind kind = Kind::kAcquire;
  LimitRequest request;
  int64_t cooldown_ms = 0;
  std::function<void(LimitDecision)> done;
  Clock::time_point enqueued;
  bool answered = false;  // `done` ran, or a cooldown got its replies
};

void BlockSigpipeOnThisThread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

bool IsNoScript(const redisReply& reply) {
  return reply.type == REDIS_REPLY_ERROR && reply.str != nullptr &&
         std::strncmp(reply.str, "NOSCRIPT", 8) == 0;
}

class RedisLimiter : public RateLimiter {
 public:
  RedisLimiter(const config::RedisConfig& config, int connections)
      : config_(config),
        timeout_(milliseconds(config.timeout_ms > 0 ? config.timeout_ms : 50)),
        describe_("redis " + config.host + ":" + std::to_string(config.port) + "/" +
                  std::to_string(config.db)) {
    for (int i = 0; i < std::max(connections, 1); ++i) {
      workers_.emplace_back([this] {
        pthread_setname_np(pthread_self(), "tollgate-redis");
        WorkerLoop();
      });
    }
  }

  ~RedisLimiter() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

  void Acquire(LimitRequest request, std::function<void(LimitDecision)> done) override {
    Pending pending;
    pending.kind = Pending::Kind::kAcquire;
    pending.request = std::move(request);
    pending.done = std::move(done);
    Enqueue(std::move(pending));
  }

  void Peek(std::vector<BucketSpec> buckets, std::function<void(LimitDecision)> done) override {
    Pending pending;
    pending.kind = Pending::Kind::kPeek;
    pending.request.buckets = std::move(buckets);
    pending.done = std::move(done);
    Enqueue(std::move(pending));
  }

  void StartCooldown(const std::string& upstream, int64_t milliseconds) override {
    if (upstream.empty() || milliseconds <= 0) return;
    // Also local, so fallback decisions honour it while Redis is away.
    local_.StartCooldown(upstream, milliseconds);
    Pending pending;
    pending.kind = Pending::Kind::kCooldown;
    pending.request.cooldown_upstream = upstream;
    pending.cooldown_ms = milliseconds;
    Enqueue(std::move(pending));
  }

  bool Ready() const override { return ready_.load(); }
  std::string Describe() const override { return describe_; }
  const LimiterStats& stats() const override { return stats_; }

 private:
  void Enqueue(Pending pending) {
    pending.enqueued = Clock::now();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(pending));
    }
    cv_.notify_one();
  }

  void WorkerLoop() {
    BlockSigpipeOnThisThread();
    RedisConnection connection(config_);
    std::vector<Pending> batch;
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      if (queue_.empty()) {
        // Only an empty queue lets a worker stop: whatever was handed in before the destructor
        // ran is still answered (by Redis, or by the fallback once it has waited timeout_ms).
        if (stopping_) return;
        if (ProbeDueLocked()) {
          probe_in_flight_ = true;
          lock.unlock();
          Probe(connection);
          lock.lock();
        } else if (breaker_open_ && !probe_in_flight_) {
          cv_.wait_until(lock, open_until_);
        } else {
          cv_.wait(lock);
        }
        continue;
      }
      const size_t count = std::min(queue_.size(), kMaxBatch);
      for (size_t i = 0; i < count; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      lock.unlock();
      Process(batch, connection);
      batch.clear();
      lock.lock();
    }
  }

  bool ProbeDueLocked() const {
    return breaker_open_ && !probe_in_flight_ && Clock::now() >= open_until_;
  }

  // Without traffic nothing would close the breaker, and /readyz would stay false.
  void Probe(RedisConnection& connection) {
    RedisReplyPtr pong;
    if (connection.Open()) pong = connection.Command({"PING"});
    if (pong != nullptr && pong->type != REDIS_REPLY_ERROR) {
      RecordSuccess();
    } else {
      connection.Close();
      RecordFailure();
    }
  }

  // True if this batch may use Redis; while the breaker is open only one probe batch may.
  bool BreakerAdmits() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!breaker_open_) return true;
    if (probe_in_flight_ || Clock::now() < open_until_) return false;
    probe_in_flight_ = true;
    return true;
  }

  void RecordSuccess() {
    std::lock_guard<std::mutex> lock(mu_);
    consecutive_failures_ = 0;
    breaker_open_ = false;
    probe_in_flight_ = false;
    backoff_ = kFirstBackoff;
    stats_.breaker_backoff_ms.store(0);
    ready_.store(true);
  }

  void RecordFailure() {
    stats_.redis_errors.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu_);
    ++consecutive_failures_;
    if (breaker_open_) {
      backoff_ = std::min(backoff_ * 2, kMaxBackoff);
      open_until_ = Clock::now() + backoff_;
      probe_in_flight_ = false;
    } else if (consecutive_failures_ >= kFailuresToOpen) {
      breaker_open_ = true;
      backoff_ = kFirstBackoff;
      open_until_ = Clock::now() + backoff_;
    }
    stats_.breaker_backoff_ms.store(breaker_open_ ? backoff_.count() : 0);
    ready_.store(!(breaker_open_ && config_.on_error == config::RedisOnError::kDeny));
  }

  void Process(std::vector<Pending>& batch, RedisConnection& connection) {
    // A request that already waited its whole timeout in the queue is answered now: the
    // caller was promised an answer within about timeout_ms.
    const Clock::time_point now = Clock::now();
    std::vector<Pending*> live;
    live.reserve(batch.size());
    for (Pending& pending : batch) {
      if (now - pending.enqueued > timeout_) {
        Fallback(pending);
      } else {
        live.push_back(&pending);
      }
    }
    if (live.empty()) return;
    if (!BreakerAdmits()) {
      for (Pending* pending : live) {
        if (pending->kind != Pending::Kind::kCooldown) stats_.breaker_skips.fetch_add(1);
        Fallback(*pending);
      }
      return;
    }
    // Every failure answers the whole rest of the batch, wherever it happened: a request left
    // waiting for a NOSCRIPT retry is as unanswered as one that never got a reply, and a
    // request that is never answered hangs its caller for good.
    if (!connection.Open()) {
      FailUnanswered(live);
      return;
    }
    std::vector<Pending*> noscript;
    if (!RunBatch(live, connection, &noscript)) {
      FailUnanswered(live);
      return;
    }
    if (!noscript.empty()) {
      RedisReplyPtr loaded = connection.Command({"SCRIPT", "LOAD", kTokenBucketScript});
      // An error reply (NOPERM for a user without SCRIPT, OOM, a read-only replica) leaves the
      // script unknown: retrying EVALSHA would only be answered NOSCRIPT again. It is a failure
      // of this Redis, counted towards the breaker like a lost connection, not a reload.
      if (loaded == nullptr || loaded->type == REDIS_REPLY_ERROR) {
        FailUnanswered(live);
        return;
      }
      stats_.script_reloads.fetch_add(1);
      std::vector<Pending*> again;
      if (!RunBatch(noscript, connection, &again)) {
        FailUnanswered(live);
        return;
      }
      for (Pending* pending : again) ScriptError(*pending);
    }
    RecordSuccess();
  }

  // Pipelines every request of `requests` and answers those that got a decision. Requests
  // answered NOSCRIPT are left in `noscript`; those without a reply (an I/O failure: the result
  // is then false) stay unanswered.
  bool RunBatch(const std::vector<Pending*>& requests, RedisConnection& connection,
                std::vector<Pending*>* noscript) {
    std::vector<std::vector<std::string>> commands;
    commands.reserve(requests.size() + 1);
    for (const Pending* pending : requests) AppendCommands(*pending, &commands);
    std::vector<RedisReplyPtr> replies;
    const bool ok = connection.Pipeline(commands, &replies);
    size_t next = 0;
    for (Pending* pending : requests) {
      const size_t needed = pending->kind == Pending::Kind::kCooldown ? 2 : 1;
      if (next + needed > replies.size()) continue;
      const redisReply& reply = *replies[next];
      next += needed;
      if (pending->kind == Pending::Kind::kCooldown) {
        pending->answered = true;
        continue;
      }
      if (IsNoScript(reply)) {
        noscript->push_back(pending);
        continue;
      }
      Evaluation evaluation;
      if (!ParseTokenBucketReply(reply, pending->request.buckets.size(), &evaluation)) {
        ScriptError(*pending);
        continue;
      }
      Answer(*pending,
             ToDecision(pending->request.buckets, evaluation, pending->request.cooldown_upstream));
    }
    return ok;
  }

  void AppendCommands(const Pending& pending, std::vector<std::vector<std::string>>* commands) {
    const std::string& prefix = config_.key_prefix;
    switch (pending.kind) {
      case Pending::Kind::kAcquire:
        commands->push_back(EvalShaArgv(MakeTokenBucketCall(
            pending.request.buckets, pending.request.cooldown_upstream, prefix, true)));
        break;
      case Pending::Kind::kPeek:
        commands->push_back(
            EvalShaArgv(MakeTokenBucketCall(pending.request.buckets, "", prefix, false)));
        break;
      case Pending::Kind::kCooldown: {
        // NX creates it; GT only ever lengthens one that exists: the longer cooldown wins.
        const std::string key = prefix + "cooldown:" + pending.request.cooldown_upstream;
        const std::string ms = std::to_string(pending.cooldown_ms);
        commands->push_back({"SET", key, "1", "PX", ms, "NX"});
        commands->push_back({"PEXPIRE", key, ms, "GT"});
        break;
      }
    }
  }

  // Counted before answering, so a caller that saw the fallback also sees the error.
  void FailUnanswered(const std::vector<Pending*>& requests) {
    RecordFailure();
    for (Pending* pending : requests) {
      if (!pending->answered) Fallback(*pending);
    }
  }

  // Redis answered, but not with a decision (a wrong-type key, a script failure).
  void ScriptError(Pending& pending) {
    stats_.redis_errors.fetch_add(1);
    Fallback(pending);
  }

  void Fallback(Pending& pending) {
    if (pending.kind == Pending::Kind::kCooldown) {
      pending.answered = true;  // already recorded locally
      return;
    }
    LimitDecision decision;
    if (config_.on_error == config::RedisOnError::kLocal) {
      stats_.fallbacks.fetch_add(1);
      decision = local_.Decide(pending.request, pending.kind == Pending::Kind::kAcquire);
      decision.fallback = true;
    } else {
      decision.outcome = LimitDecision::Outcome::kUnavailable;
      decision.error = "redis unavailable";
    }
    Answer(pending, std::move(decision));
  }

  void Answer(Pending& pending, LimitDecision decision) {
    pending.answered = true;
    pending.done(std::move(decision));
  }

  const config::RedisConfig config_;
  const milliseconds timeout_;
  const std::string describe_;
  MemoryLimiter local_;
  LimiterStats stats_;
  std::atomic<bool> ready_{true};

  std::mutex mu_;  // guards the queue and the breaker
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  int consecutive_failures_ = 0;
  bool breaker_open_ = false;
  bool probe_in_flight_ = false;
  Clock::time_point open_until_;
  milliseconds backoff_ = kFirstBackoff;

  std::vector<std::thread> workers_;  // last: started once everything above exists
};

}  // namespace

std::unique_ptr<RateLimiter> MakeRedisLimiter(const config::RedisConfig& config) {
  return MakeRedisLimiter(config, kDefaultConnections);
}

std::unique_ptr<RateLimiter> MakeRedisLimiter(const config::RedisConfig& config, int connections) {
  return std::make_unique<RedisLimiter>(config, connections);
}

}  // namespace tollgate::policies
