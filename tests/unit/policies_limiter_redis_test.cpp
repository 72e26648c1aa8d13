// The Redis limiter against a real redis-server: the memory limiter's semantics, exactness
// across concurrent callers, the keys it leaves, script reloads, cooldowns, and what happens
// when Redis dies and comes back. A scripted fake Redis reproduces the failures a real one
// cannot be made to show on cue (a connection lost mid-batch after NOSCRIPT replies), to prove
// every request gets exactly one answer.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "loop/loop.h"
#include "policies/rate_limiter.h"
#include "policies/rate_limiter_memory.h"
#include "policies/token_bucket_script.h"
#include "tests/support/process.h"

namespace tollgate::policies {
namespace {

using Outcome = LimitDecision::Outcome;
constexpr int64_t kSecondUs = 1000000;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

BucketSpec Bucket(const std::string& name, uint64_t tokens, uint64_t period, uint64_t burst = 0,
                  bool shadow = false, uint64_t cost = 1) {
  BucketSpec spec;
  spec.key = "bucket:" + name + ":_shared";
  spec.name = name;
  spec.rate = config::Rate{tokens, period};
  spec.burst = burst;
  spec.shadow = shadow;
  spec.cost = cost;
  return spec;
}

LimitRequest Request(std::vector<BucketSpec> buckets, std::string upstream = "") {
  LimitRequest request;
  request.buckets = std::move(buckets);
  request.cooldown_upstream = std::move(upstream);
  return request;
}

// The decision, waiting for the limiter's worker (a hang fails rather than blocks forever).
LimitDecision AcquireSync(RateLimiter& limiter, LimitRequest request) {
  auto promise = std::make_shared<std::promise<LimitDecision>>();
  std::future<LimitDecision> future = promise->get_future();
  limiter.Acquire(std::move(request),
                  [promise](LimitDecision decision) { promise->set_value(std::move(decision)); });
  if (future.wait_for(seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "no decision within 30 s";
    return {};
  }
  return future.get();
}

LimitDecision PeekSync(RateLimiter& limiter, std::vector<BucketSpec> buckets) {
  auto promise = std::make_shared<std::promise<LimitDecision>>();
  std::future<LimitDecision> future = promise->get_future();
  limiter.Peek(std::move(buckets),
               [promise](LimitDecision decision) { promise->set_value(std::move(decision)); });
  EXPECT_EQ(future.wait_for(seconds(30)), std::future_status::ready);
  return future.get();
}

// Polls `probe` until it holds, for at most `limit` (a deadline, not an assertion on time).
template <typename Probe>
bool Eventually(Probe probe, milliseconds limit = milliseconds(20000)) {
  const auto deadline = steady_clock::now() + limit;
  while (steady_clock::now() < deadline) {
    if (probe()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

// A plain hiredis context for looking at what the limiter left in Redis.
class Inspector {
 public:
  explicit Inspector(int port) : context_(redisConnect("127.0.0.1", port)) {}
  ~Inspector() { redisFree(context_); }
  long long Integer(const std::vector<std::string>& argv) {
    redisReply* reply = Run(argv);
    const long long value = reply != nullptr ? reply->integer : -999;
    if (reply != nullptr) freeReplyObject(reply);
    return value;
  }
  std::string String(const std::vector<std::string>& argv) {
    redisReply* reply = Run(argv);
    // Binary-safe: a bucket's state holds zero bytes.
    std::string value =
        reply != nullptr && reply->str != nullptr ? std::string(reply->str, reply->len) : "";
    if (reply != nullptr) freeReplyObject(reply);
    return value;
  }

 private:
  redisReply* Run(const std::vector<std::string>& argv) {
    std::vector<const char*> pointers;
    std::vector<size_t> lengths;
    for (const std::string& arg : argv) {
      pointers.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    return static_cast<redisReply*>(
        redisCommandArgv(context_, static_cast<int>(argv.size()), pointers.data(), lengths.data()));
  }
  redisContext* context_;
};

// A loopback server speaking just enough RESP to play a scripted Redis: the i-th command it
// receives (counted across connections) gets script[i]; commands past the script get kSilent.
class ScriptedRedis {
 public:
  enum class Action {
    kNoScript,  // -NOSCRIPT
    kOk,        // +OK (what SCRIPT LOAD needs: any non-error reply)
    kHeld,      // -ERR, but only once Release() was called (each kHeld takes one Release())
    kHangUp,    // FIN without a reply (the replies before it still arrive)
    kSilent,    // no reply ever: the client times out
  };

  explicit ScriptedRedis(std::vector<Action> script) : script_(std::move(script)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(addr);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_, 8) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
      ADD_FAILURE() << "cannot listen on loopback";
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~ScriptedRedis() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      releases_ = SIZE_MAX;
      if (conn_fd_ >= 0) shutdown(conn_fd_, SHUT_RDWR);
    }
    cv_.notify_all();
    shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    close(listen_fd_);
  }

  int port() const { return port_; }

  // Lets the oldest held reply (or the next one to be held) go.
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (releases_ != SIZE_MAX) ++releases_;
    }
    cv_.notify_all();
  }

  // True once `count` commands arrived (false after a generous deadline).
  bool WaitForCommands(size_t count, std::chrono::seconds limit = std::chrono::seconds(30)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return names_.size() >= count; });
  }

  std::vector<std::string> names() {
    std::lock_guard<std::mutex> lock(mu_);
    return names_;
  }

  // When the i-th command arrived.
  std::chrono::steady_clock::time_point arrival(size_t i) {
    std::lock_guard<std::mutex> lock(mu_);
    return arrivals_.at(i);
  }

 private:
  void AcceptLoop() {
    while (true) {
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) {
          close(fd);
          return;
        }
        conn_fd_ = fd;
      }
      Serve(fd);
      {
        std::lock_guard<std::mutex> lock(mu_);
        conn_fd_ = -1;
      }
      close(fd);
    }
  }

  // Answers commands in order until the script hangs up or the client goes away.
  void Serve(int fd) {
    std::string buffer;
    bool replying = true;
    char chunk[4096];
    while (true) {
      std::string name;
      size_t used = 0;
      while (replying && (used = ParseCommand(buffer, &name)) > 0) {
        buffer.erase(0, used);
        replying = Act(fd, Next(name));
      }
      const ssize_t got = recv(fd, chunk, sizeof(chunk), 0);
      if (got <= 0) return;
      buffer.append(chunk, static_cast<size_t>(got));
    }
  }

  Action Next(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t index = names_.size();
    names_.push_back(name);
    arrivals_.push_back(std::chrono::steady_clock::now());
    cv_.notify_all();
    return index < script_.size() ? script_[index] : Action::kSilent;
  }

  // False once nothing more is to be sent on this connection.
  bool Act(int fd, Action action) {
    switch (action) {
      case Action::kNoScript:
        return Send(fd, "-NOSCRIPT No matching script.\r\n");
      case Action::kOk:
        return Send(fd, "+OK\r\n");
      case Action::kHeld: {
        std::unique_lock<std::mutex> lock(mu_);
        const size_t mine = holds_++;
        cv_.wait(lock, [&] { return releases_ > mine; });
        lock.unlock();
        return Send(fd, "-ERR held\r\n");
      }
      case Action::kHangUp:
        // A FIN, not a close: unread input would turn it into a RST, which may discard the
        // replies already sent.
        shutdown(fd, SHUT_WR);
        return false;
      case Action::kSilent:
        return false;
    }
    return false;
  }

  static bool Send(int fd, const std::string& data) {
    return send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }

  // One "*N\r\n($len\r\narg\r\n)*N" command at the front of `buffer`: its length, or 0 when
  // incomplete. `name` gets the first argument.
  static size_t ParseCommand(const std::string& buffer, std::string* name) {
    size_t pos = 0;
    long count = 0;
    if (!ReadNumber(buffer, '*', &pos, &count)) return 0;
    for (long i = 0; i < count; ++i) {
      long length = 0;
      if (!ReadNumber(buffer, '$', &pos, &length)) return 0;
      if (buffer.size() < pos + static_cast<size_t>(length) + 2) return 0;
      if (i == 0) *name = buffer.substr(pos, static_cast<size_t>(length));
      pos += static_cast<size_t>(length) + 2;
    }
    return pos;
  }

  static bool ReadNumber(const std::string& buffer, char type, size_t* pos, long* value) {
    const size_t end = buffer.find("\r\n", *pos);
    if (end == std::string::npos || buffer[*pos] != type) return false;
    *value = std::strtol(buffer.c_str() + *pos + 1, nullptr, 10);
    *pos = end + 2;
    return true;
  }

  const std::vector<Action> script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> names_;
  std::vector<std::chrono::steady_clock::time_point> arrivals_;
  size_t holds_ = 0;     // kHeld replies begun
  size_t releases_ = 0;  // Release() calls (SIZE_MAX: everything goes)
  bool stopping_ = false;
  int conn_fd_ = -1;
};

config::RedisConfig FakeConfig(const ScriptedRedis& fake, config::RedisOnError on_error,
                               int timeout_ms) {
  config::RedisConfig config;
  config.host = "127.0.0.1";
  config.port = fake.port();
  config.timeout_ms = timeout_ms;
  config.on_error = on_error;
  return config;
}

// Counts the answers each request got; read after the limiter is destroyed (its destructor
// joins the workers, so every answer that will ever come has come).
struct AnswerLog {
  explicit AnswerLog(size_t count) : answers(count), outcomes(count) {}
  std::function<void(LimitDecision)> For(size_t i) {
    return [this, i](LimitDecision decision) {
      outcomes[i] = decision.outcome;
      fallbacks += decision.fallback ? 1 : 0;
      answers[i].fetch_add(1);
    };
  }
  std::vector<std::atomic<int>> answers;
  std::vector<Outcome> outcomes;
  std::atomic<int> fallbacks{0};
};

// Sends `gate` in a write of its own, then `rest` while the fake holds the gate's reply: all
// of `rest` is asked in one iteration of the caller's loop, so it goes out in one write and is
// in flight (behind the gate) when the fake lets the gate's reply go.
void QueueOneBatchBehindAGate(RateLimiter& limiter, ScriptedRedis& fake, AnswerLog& log,
                              const std::vector<bool>& peek, loop::LoopThread& caller) {
  caller.RunSync([&] { limiter.Acquire(Request({Bucket("gate", 1, 60)}), log.For(0)); });
  ASSERT_TRUE(fake.WaitForCommands(1));
  caller.RunSync([&] {
    for (size_t i = 1; i < peek.size(); ++i) {
      const auto bucket = Bucket("b" + std::to_string(i), 1, 60);
      if (peek[i]) {
        limiter.Peek({bucket}, log.For(i));
      } else {
        limiter.Acquire(Request({bucket}), log.For(i));
      }
    }
  });
  fake.Release();
}

using Action = ScriptedRedis::Action;

TEST(RedisLimiterFailureTest, ConnectionLostAfterNoScriptRepliesAnswersTheWholeBatch) {
  // Batch 2: three NOSCRIPT replies, then the connection goes: the three waiting for the
  // script reload must be answered like the one that never got a reply.
  ScriptedRedis fake(
      {Action::kHeld, Action::kNoScript, Action::kNoScript, Action::kNoScript, Action::kHangUp});
  // A long timeout: nothing here may fall back because it waited in the queue.
  auto limiter = MakeRedisLimiter(FakeConfig(fake, config::RedisOnError::kDeny, 10000), 1);
  auto caller = std::make_unique<loop::LoopThread>("caller");
  AnswerLog log(5);
  QueueOneBatchBehindAGate(*limiter, fake, log, {false, false, true, false, false}, *caller);
  ASSERT_TRUE(fake.WaitForCommands(5));
  caller.reset();  // the loop's connection goes with it: whatever it held is answered
  limiter.reset();
  EXPECT_EQ(fake.names(), std::vector<std::string>(5, "EVALSHA"));
  for (size_t i = 0; i < log.answers.size(); ++i) {
    EXPECT_EQ(log.answers[i].load(), 1) << "request " << i;
    EXPECT_EQ(log.outcomes[i], Outcome::kUnavailable) << "request " << i;
  }
}

TEST(RedisLimiterFailureTest, ConnectionLostDuringTheNoScriptRetryAnswersTheWholeBatch) {
  // Batch 2 is all NOSCRIPT; after SCRIPT LOAD the retry gets NOSCRIPT again for the first
  // request (would be a script error) and then loses the connection.
  ScriptedRedis fake({Action::kHeld, Action::kNoScript, Action::kNoScript, Action::kNoScript,
                      Action::kOk, Action::kNoScript, Action::kHangUp});
  auto limiter = MakeRedisLimiter(FakeConfig(fake, config::RedisOnError::kLocal, 10000), 1);
  auto caller = std::make_unique<loop::LoopThread>("caller");
  AnswerLog log(4);
  QueueOneBatchBehindAGate(*limiter, fake, log, {false, false, true, false}, *caller);
  ASSERT_TRUE(fake.WaitForCommands(7));
  caller.reset();
  limiter.reset();
  const std::vector<std::string> names = fake.names();
  ASSERT_GE(names.size(), 7u);
  EXPECT_EQ(names[4], "SCRIPT");
  EXPECT_EQ(names[5], "EVALSHA");
  for (size_t i = 0; i < log.answers.size(); ++i) {
    EXPECT_EQ(log.answers[i].load(), 1) << "request " << i;
    EXPECT_EQ(log.outcomes[i], Outcome::kAllowed) << "request " << i;
  }
  EXPECT_EQ(log.fallbacks.load(), 4);
}

TEST(RedisLimiterFailureTest, DestroyingTheLimiterAnswersEveryQueuedRequest) {
  for (const auto on_error : {config::RedisOnError::kDeny, config::RedisOnError::kLocal}) {
    SCOPED_TRACE(on_error == config::RedisOnError::kDeny ? "deny" : "local");
    // Redis never answers, so the worker is stuck on the first request while the rest are
    // queued and the limiter is destroyed.
    ScriptedRedis fake({});
    auto limiter = MakeRedisLimiter(FakeConfig(fake, on_error, 200), 1);
    constexpr size_t kCount = 20;
    AnswerLog log(kCount);
    limiter->Acquire(Request({Bucket("first", 1000, 1)}), log.For(0));
    ASSERT_TRUE(fake.WaitForCommands(1));
    for (size_t i = 1; i < kCount; ++i) {
      if (i % 2 == 0) {
        limiter->Peek({Bucket("b", 1000, 1)}, log.For(i));
      } else {
        limiter->Acquire(Request({Bucket("b", 1000, 1)}), log.For(i));
      }
    }
    limiter.reset();
    const Outcome expected =
        on_error == config::RedisOnError::kDeny ? Outcome::kUnavailable : Outcome::kAllowed;
    for (size_t i = 0; i < kCount; ++i) {
      EXPECT_EQ(log.answers[i].load(), 1) << "request " << i;
      EXPECT_EQ(log.outcomes[i], expected) << "request " << i;
    }
  }
}

// The breaker's back-off, observed without timing windows: every probe (a PING) is held by the
// fake until the test has read the back-off, so the value cannot move under the test's feet.
// Times are only ever lower bounds (a busy machine makes a probe later, never earlier).
TEST(RedisLimiterFailureTest, TheBreakerBackOffDoublesUpToItsCapAndEachFailedProbeReArmsIt) {
  std::vector<Action> script(3, Action::kHangUp);               // three lost connections open it
  for (int i = 0; i < 5; ++i) script.push_back(Action::kHeld);  // five probes, each failing
  for (int i = 0; i < 4; ++i) script.push_back(Action::kHangUp);
  ScriptedRedis fake(script);
  auto limiter = MakeRedisLimiter(FakeConfig(fake, config::RedisOnError::kDeny, 10000), 1);
  const auto bucket = Bucket("a", 1000, 1);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(limiter->stats().breaker_backoff_ms.load(), 0) << "closed before failure " << i;
    EXPECT_EQ(AcquireSync(*limiter, Request({bucket})).outcome, Outcome::kUnavailable);
  }
  EXPECT_EQ(limiter->stats().breaker_backoff_ms.load(), 250);
  EXPECT_FALSE(limiter->Ready());

  const int64_t expected[] = {250, 500, 1000, 2000, 4000};
  steady_clock::time_point released;
  for (size_t k = 0; k < 5; ++k) {
    SCOPED_TRACE("probe " + std::to_string(k));
    ASSERT_TRUE(fake.WaitForCommands(4 + k, seconds(10))) << "the breaker was not re-armed";
    EXPECT_EQ(fake.names()[3 + k], "PING");
    EXPECT_EQ(limiter->stats().breaker_backoff_ms.load(), expected[k]);
    if (k > 0) {
      // The previous probe failed after `released`; this one waited the back-off from there.
      EXPECT_GE(fake.arrival(3 + k) - released, milliseconds(expected[k]));
    }
    if (k == 1) {
      // A request while a probe is out is decided without Redis, and does not become a probe.
      AnswerLog log(1);
      limiter->Acquire(Request({bucket}), log.For(0));
      released = steady_clock::now();
      fake.Release();
      ASSERT_TRUE(Eventually([&] { return log.answers[0].load() == 1; }));
      EXPECT_EQ(log.outcomes[0], Outcome::kUnavailable);
      EXPECT_EQ(limiter->stats().breaker_skips.load(), 1u);
      continue;
    }
    released = steady_clock::now();
    fake.Release();
  }
  // 4000 ms doubled is capped at 5000.
  ASSERT_TRUE(Eventually([&] { return limiter->stats().breaker_backoff_ms.load() != 4000; }));
  EXPECT_EQ(limiter->stats().breaker_backoff_ms.load(), 5000);
  EXPECT_FALSE(limiter->Ready());
  EXPECT_EQ(fake.names().size(), 8u);  // three requests, five probes; the skipped one sent nothing
}

// Where and when `done` ran for one request asked from a loop.
struct LoopAnswer {
  std::atomic<int> count{0};
  std::atomic<bool> inline_answer{false};  // ran inside Acquire
  std::atomic<bool> on_loop{false};        // Loop::Current() was the asking loop
  Outcome outcome = Outcome::kAllowed;
  bool fallback = false;
};

// Acquires from `caller`'s thread and waits (generously) for the answer.
void AcquireFromLoop(RateLimiter& limiter, loop::LoopThread& caller, LimitRequest request,
                     LoopAnswer* answer) {
  caller.RunSync([&] {
    loop::Loop* asking = loop::Loop::Current();
    // Shared, not a reference into this frame: a later answer outlives it.
    auto inside = std::make_shared<bool>(true);
    limiter.Acquire(std::move(request), [answer, asking, inside](LimitDecision decision) {
      if (*inside) answer->inline_answer = true;
      answer->on_loop = loop::Loop::Current() == asking;
      answer->outcome = decision.outcome;
      answer->fallback = decision.fallback;
      answer->count.fetch_add(1);
    });
    *inside = false;
  });
  EXPECT_TRUE(Eventually([&] { return answer->count.load() > 0; }, milliseconds(30000)));
}

TEST(RedisLimiterFailureTest, ARedisThatAcceptsButNeverAnswersTimesOutOnTheAskingLoop) {
  // Accepts the connection and reads, but never answers anything, not even the AUTH of the
  // handshake: the connect itself never completes from hiredis's point of view.
  ScriptedRedis fake({});
  config::RedisConfig config = FakeConfig(fake, config::RedisOnError::kDeny, 200);
  config.password = "pw";
  auto limiter = MakeRedisLimiter(config, 1);
  auto caller = std::make_unique<loop::LoopThread>("caller");
  LoopAnswer answer;
  AcquireFromLoop(*limiter, *caller, Request({Bucket("a", 1000, 1)}), &answer);
  EXPECT_EQ(answer.count.load(), 1);
  EXPECT_EQ(answer.outcome, Outcome::kUnavailable);
  EXPECT_TRUE(answer.on_loop);
  EXPECT_FALSE(answer.inline_answer);
  EXPECT_EQ(limiter->stats().redis_errors.load(), 1u);
  // The fake stops reading after the unanswered AUTH; the EVALSHA was queued behind it.
  ASSERT_TRUE(fake.WaitForCommands(1));
  EXPECT_EQ(fake.names()[0], "AUTH");
  caller.reset();
}

TEST(RedisLimiterFailureTest, BreakerAndFallbackAnswersComeOnTheAskingLoopNeverInline) {
  // Three lost connections open the breaker; the fourth request is decided without Redis at
  // once, which must still reach the caller through its loop, not inside Acquire.
  ScriptedRedis fake(std::vector<Action>(3, Action::kHangUp));
  auto limiter = MakeRedisLimiter(FakeConfig(fake, config::RedisOnError::kLocal, 10000), 1);
  auto caller = std::make_unique<loop::LoopThread>("caller");
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    LoopAnswer answer;
    AcquireFromLoop(*limiter, *caller, Request({Bucket("a", 1000, 1)}), &answer);
    EXPECT_EQ(answer.count.load(), 1);
    EXPECT_EQ(answer.outcome, Outcome::kAllowed);
    EXPECT_TRUE(answer.fallback);
    EXPECT_TRUE(answer.on_loop);
    EXPECT_FALSE(answer.inline_answer);
  }
  EXPECT_EQ(limiter->stats().redis_errors.load(), 3u);
  EXPECT_EQ(limiter->stats().breaker_skips.load(), 1u);
  EXPECT_EQ(limiter->stats().breaker_backoff_ms.load(), 250);
  EXPECT_EQ(fake.names().size(), 3u);
  caller.reset();
}

TEST(RedisLimiterFailureTest, ALoopsConnectionDestroyedWithItsLoopAnswersWhatItHeld) {
  ScriptedRedis fake({});  // never answers
  auto limiter = MakeRedisLimiter(FakeConfig(fake, config::RedisOnError::kDeny, 60000), 1);
  auto caller = std::make_unique<loop::LoopThread>("caller");
  AnswerLog log(3);
  caller->RunSync([&] {
    for (size_t i = 0; i < 3; ++i) limiter->Acquire(Request({Bucket("a", 1000, 1)}), log.For(i));
  });
  ASSERT_TRUE(fake.WaitForCommands(1));  // it reads no further than the unanswered first
  caller.reset();  // the loop goes first (as the gateway's reactors do); the limiter lives on
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(log.answers[i].load(), 1) << "request " << i;
    EXPECT_EQ(log.outcomes[i], Outcome::kUnavailable) << "request " << i;
  }
}

TEST(RedisLimiterFailureTest, AnAcquireWhileTheLimiterIsBeingDestroyedIsAnswered) {
  ScriptedRedis fake({});  // never answers: the first request is still pending at destruction
  auto limiter = MakeRedisLimiter(FakeConfig(fake, config::RedisOnError::kLocal, 60000), 1);
  RateLimiter* raw = limiter.get();
  AnswerLog late(1);
  std::atomic<int> first{0};
  limiter->Acquire(Request({Bucket("a", 1000, 1)}), [&](LimitDecision decision) {
    EXPECT_TRUE(decision.fallback);
    first.fetch_add(1);
    // Answered by the destructor: asking again now must still get an answer.
    raw->Acquire(Request({Bucket("a", 1000, 1)}), late.For(0));
  });
  ASSERT_TRUE(fake.WaitForCommands(1));
  limiter.reset();
  EXPECT_EQ(first.load(), 1);
  EXPECT_EQ(late.answers[0].load(), 1);
  EXPECT_EQ(late.outcomes[0], Outcome::kUnavailable);
}

TEST(RedisLimiterFailureTest, AfterARecoveryTheNextOutageStartsAtTheFirstBackOff) {
  std::vector<Action> script(3, Action::kHangUp);
  script.push_back(Action::kHeld);                                // probe 1 fails: back-off 500
  script.push_back(Action::kOk);                                  // probe 2 answers: closed
  for (int i = 0; i < 3; ++i) script.push_back(Action::kHangUp);  // the next outage
  for (int i = 0; i < 4; ++i) script.push_back(Action::kHangUp);  // its probes
  ScriptedRedis fake(script);
  auto limiter = MakeRedisLimiter(FakeConfig(fake, config::RedisOnError::kDeny, 10000), 1);
  const auto bucket = Bucket("a", 1000, 1);
  for (int i = 0; i < 3; ++i) AcquireSync(*limiter, Request({bucket}));
  ASSERT_TRUE(fake.WaitForCommands(4, seconds(10)));
  fake.Release();
  ASSERT_TRUE(fake.WaitForCommands(5, seconds(10)));
  EXPECT_EQ(fake.names()[4], "PING");
  ASSERT_TRUE(Eventually([&] { return limiter->Ready(); }));
  EXPECT_EQ(limiter->stats().breaker_backoff_ms.load(), 0);
  EXPECT_EQ(limiter->stats().redis_errors.load(), 4u);

  // Closed again, and counting from zero: the next failures reach Redis until there are three.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(limiter->stats().breaker_backoff_ms.load(), 0) << "open after " << i << " failures";
    EXPECT_EQ(AcquireSync(*limiter, Request({bucket})).outcome, Outcome::kUnavailable);
  }
  EXPECT_EQ(limiter->stats().breaker_skips.load(), 0u);
  EXPECT_EQ(limiter->stats().breaker_backoff_ms.load(), 250);
  EXPECT_FALSE(limiter->Ready());
}

class RedisLimiterTest : public ::testing::Test {
 protected:
  config::RedisConfig Config(config::RedisOnError on_error = config::RedisOnError::kLocal) {
    config::RedisConfig config;
    config.url = redis_.url();
    config.port = redis_.port();
    // Generous: a loaded CI box must not turn a slow answer into a fallback.
    config.timeout_ms = 2000;
    config.on_error = on_error;
    return config;
  }

  testing::RedisServer redis_;
};

TEST_F(RedisLimiterTest, SameDecisionsAsTheMemoryLimiter) {
  auto redis = MakeRedisLimiter(Config());
  MemoryLimiter memory;
  // Rates of one per day: the milliseconds between the two backends' clocks refill nothing
  // that shows at the precision compared.
  const auto shared = Bucket("shared", 1, 86400, 3);
  const auto caller = Bucket("caller", 1, 86400, 2);
  const auto shadow = Bucket("shadow", 1, 86400, 1, true);
  const auto heavy = Bucket("heavy", 1, 86400, 2, false, 5);
  const std::vector<LimitRequest> script = {
      Request({shared, caller, shadow}),
      Request({shared, caller, shadow}),
      Request({shared, caller}),
      Request({shared}),
      Request({shared}),
      Request({heavy}),
      Request({caller, shared}, "devin"),
  };
  for (size_t i = 0; i < script.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    const LimitDecision want = AcquireSync(memory, script[i]);
    const LimitDecision got = AcquireSync(*redis, script[i]);
    EXPECT_EQ(got.outcome, want.outcome);
    EXPECT_EQ(got.limited_by, want.limited_by);
    EXPECT_EQ(got.would_limit, want.would_limit);
    EXPECT_FALSE(got.fallback);
    EXPECT_NEAR(got.retry_after_seconds, want.retry_after_seconds, 1.0);
    ASSERT_EQ(got.levels.size(), want.levels.size());
    for (size_t b = 0; b < got.levels.size(); ++b) {
      EXPECT_EQ(got.levels[b].name, want.levels[b].name);
      EXPECT_EQ(got.levels[b].burst, want.levels[b].burst);
      EXPECT_EQ(got.levels[b].shadow, want.levels[b].shadow);
      EXPECT_NEAR(got.levels[b].remaining, want.levels[b].remaining, 0.001);
      EXPECT_NEAR(got.levels[b].reset_seconds, want.levels[b].reset_seconds, 1.0);
    }
  }
  const LimitDecision peeked = PeekSync(*redis, {shared});
  EXPECT_NEAR(peeked.levels[0].remaining, 0, 0.001);
  EXPECT_EQ(redis->stats().fallbacks.load(), 0u);
  EXPECT_EQ(redis->stats().redis_errors.load(), 0u);
}

TEST_F(RedisLimiterTest, AnswersOnTheAskingLoopsThreadNeverInline) {
  auto limiter = MakeRedisLimiter(Config(), 1);
  auto caller = std::make_unique<loop::LoopThread>("caller");
  for (int i = 0; i < 3; ++i) {
    LoopAnswer answer;
    AcquireFromLoop(*limiter, *caller, Request({Bucket("a", 1, 86400, 2)}), &answer);
    EXPECT_EQ(answer.count.load(), 1);
    EXPECT_TRUE(answer.on_loop) << i;
    EXPECT_FALSE(answer.inline_answer) << i;
    EXPECT_FALSE(answer.fallback) << i;
    EXPECT_EQ(answer.outcome, i < 2 ? Outcome::kAllowed : Outcome::kLimited) << i;
  }
  caller.reset();
}

TEST_F(RedisLimiterTest, DecisionsAskedInOneLoopIterationGoOutInOneWrite) {
  auto limiter = MakeRedisLimiter(Config(), 1);
  auto caller = std::make_unique<loop::LoopThread>("caller");
  LoopAnswer warm;  // connected, script loaded
  AcquireFromLoop(*limiter, *caller, Request({Bucket("warm", 1000, 1)}), &warm);
  ASSERT_FALSE(warm.fallback);
  const uint64_t writes = limiter->stats().redis_writes.load();
  constexpr size_t kCount = 40;
  AnswerLog log(kCount);
  caller->RunSync([&] {
    for (size_t i = 0; i < kCount; ++i) {
      limiter->Acquire(Request({Bucket("b" + std::to_string(i % 4), 1000, 1)}, "devin"),
                       log.For(i));
    }
  });
  ASSERT_TRUE(Eventually([&] {
    for (auto& answers : log.answers) {
      if (answers.load() == 0) return false;
    }
    return true;
  }));
  EXPECT_EQ(log.fallbacks.load(), 0);
  EXPECT_EQ(limiter->stats().redis_writes.load() - writes, 1u);
  caller.reset();
}

TEST_F(RedisLimiterTest, ExactUnderConcurrency) {
  auto limiter = MakeRedisLimiter(Config());
  const auto shared = Bucket("shared", 1, 86400, 20);
  std::atomic<int> allowed{0};
  std::atomic<int> fallbacks{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        const LimitDecision decision = AcquireSync(*limiter, Request({shared}));
        if (decision.outcome == Outcome::kAllowed) allowed.fetch_add(1);
        if (decision.fallback) fallbacks.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(fallbacks.load(), 0);
  EXPECT_EQ(allowed.load(), 20);
}

// Issue 14 over two replicas on one Redis: requests past the burst reserve the next tokens in
// the script, atomically, so concurrent waiters on both get distinct tokens: the waits are the
// multiples of the token time (10 s here, so the milliseconds the test takes shift each by far
// less than one), each once, and no more than the wait covers.
TEST_F(RedisLimiterTest, WaitersOnTwoReplicasGetDistinctTokensInOrder) {
  auto a = MakeRedisLimiter(Config());
  auto b = MakeRedisLimiter(Config());
  auto bucket = Bucket("waits", 1, 10, 1);
  bucket.wait_ms = 60000;  // six tokens ahead
  std::mutex mu;
  std::vector<int64_t> waits;
  int refused = 0;
  int fallbacks = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        const LimitDecision d = AcquireSync(t % 2 == 0 ? *a : *b, Request({bucket}));
        std::lock_guard<std::mutex> lock(mu);
        if (d.fallback) ++fallbacks;
        if (d.outcome == Outcome::kAllowed) {
          waits.push_back(d.wait_us);
        } else {
          ++refused;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(fallbacks, 0);
  std::sort(waits.begin(), waits.end());
  ASSERT_EQ(waits.size(), 7u);
  EXPECT_EQ(refused, 40 - 7);
  EXPECT_EQ(waits[0], 0);
  for (size_t k = 1; k < waits.size(); ++k) {
    const int64_t token = static_cast<int64_t>(k) * 10 * kSecondUs;
    EXPECT_LE(waits[k], token) << k;
    EXPECT_GT(waits[k], token - kSecondUs) << k;
  }
}

TEST_F(RedisLimiterTest, KeysCarryThePrefixAndExpireWhenFull) {
  config::RedisConfig config = Config();
  config.key_prefix = "tg-test:";
  auto limiter = MakeRedisLimiter(config);
  EXPECT_EQ(limiter->Describe(), "redis 127.0.0.1:" + std::to_string(redis_.port()) + "/0");
  ASSERT_EQ(AcquireSync(*limiter, Request({Bucket("sessions", 1, 60, 2)})).outcome,
            Outcome::kAllowed);
  Inspector redis(redis_.port());
  const std::string key = "tg-test:v2:bucket:sessions:_shared";
  EXPECT_EQ(redis.Integer({"EXISTS", key}), 1);
  // One token of two taken at 1/min: full again in 60 s.
  const long long ttl = redis.Integer({"PTTL", key});
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 60000);
  BucketState state;
  ASSERT_TRUE(DecodeBucketState(redis.String({"GET", key}), &state));
  EXPECT_EQ(state.level, 60LL * 1000000);
}

// During a rolling upgrade a replica before 0.2.0 keeps its buckets as hashes {l, t} under
// "<prefix>bucket:...": the new format lives under another name, so neither reads (or, through
// SET, replaces) the other's state.
TEST_F(RedisLimiterTest, AnOlderReplicasBucketIsNeitherReadNorReplaced) {
  Inspector redis(redis_.port());
  const std::string old_key = "tollgate:bucket:a:_shared";
  ASSERT_EQ(redis.Integer({"HSET", old_key, "l", "0", "t", "1"}), 2);  // empty in the old format
  auto limiter = MakeRedisLimiter(Config(), 1);
  const LimitDecision decision = AcquireSync(*limiter, Request({Bucket("a", 1, 86400, 3)}));
  EXPECT_EQ(decision.outcome, Outcome::kAllowed);
  EXPECT_FALSE(decision.fallback);
  EXPECT_NEAR(decision.levels[0].remaining, 2, 0.001);
  EXPECT_EQ(redis.String({"TYPE", old_key}), "hash");
  EXPECT_EQ(redis.String({"HGET", old_key, "l"}), "0");
  BucketState state;
  ASSERT_TRUE(DecodeBucketState(redis.String({"GET", "tollgate:v2:bucket:a:_shared"}), &state));
  EXPECT_EQ(state.level, 2LL * 86400 * 1000000);
}

TEST_F(RedisLimiterTest, ReloadsTheScriptAfterScriptFlush) {
  auto limiter = MakeRedisLimiter(Config(), 1);
  const auto bucket = Bucket("a", 1, 86400, 2);
  ASSERT_EQ(AcquireSync(*limiter, Request({bucket})).outcome, Outcome::kAllowed);
  // A fresh server does not know the script either: count from here.
  const uint64_t reloads = limiter->stats().script_reloads.load();
  Inspector redis(redis_.port());
  ASSERT_EQ(redis.String({"SCRIPT", "FLUSH"}), "OK");
  const LimitDecision after = AcquireSync(*limiter, Request({bucket}));
  EXPECT_EQ(after.outcome, Outcome::kAllowed);
  EXPECT_FALSE(after.fallback);
  EXPECT_EQ(limiter->stats().script_reloads.load(), reloads + 1);
  EXPECT_EQ(AcquireSync(*limiter, Request({bucket})).outcome, Outcome::kLimited);
}

TEST_F(RedisLimiterTest, CooldownFromAnyReplicaBlocksAndExpires) {
  // One connection keeps the queue in order: the cooldown is written before the next decision.
  auto limiter = MakeRedisLimiter(Config(), 1);
  const auto bucket = Bucket("a", 1000, 1);
  Inspector redis(redis_.port());

  // Set by "another replica": only Redis knows about it.
  ASSERT_EQ(redis.String({"SET", "tollgate:cooldown:devo", "1", "PX", "60000"}), "OK");
  const LimitDecision cooled = AcquireSync(*limiter, Request({bucket}, "devo"));
  EXPECT_EQ(cooled.outcome, Outcome::kCooldown);
  EXPECT_EQ(cooled.limited_by, "devo");
  EXPECT_GT(cooled.retry_after_seconds, 1);
  EXPECT_FALSE(cooled.fallback);
  EXPECT_EQ(AcquireSync(*limiter, Request({bucket}, "devin")).outcome, Outcome::kAllowed);

  // A shorter cooldown keeps the longer one.
  limiter->StartCooldown("devo", 100);
  EXPECT_EQ(AcquireSync(*limiter, Request({bucket}, "devo")).outcome, Outcome::kCooldown);
  EXPECT_GT(redis.Integer({"PTTL", "tollgate:cooldown:devo"}), 1000);

  // A cooldown of this replica's own: shared through Redis with a time to live, so it ends by
  // itself. (A minute: the call below must land inside it however busy the machine is.)
  limiter->StartCooldown("devin", 60000);
  const LimitDecision devin = AcquireSync(*limiter, Request({bucket}, "devin"));
  EXPECT_EQ(devin.outcome, Outcome::kCooldown);
  EXPECT_EQ(devin.limited_by, "devin");
  EXPECT_GT(devin.retry_after_seconds, 0);
  EXPECT_LE(devin.retry_after_seconds, 60);
  EXPECT_FALSE(devin.fallback);
  const long long pttl = redis.Integer({"PTTL", "tollgate:cooldown:devin"});
  EXPECT_GT(pttl, 0);
  EXPECT_LE(pttl, 60000);
  // Nothing was taken while cooling: the bucket is as full as it started.
  EXPECT_NEAR(PeekSync(*limiter, {bucket}).levels[0].remaining, 999, 1.001);
  // Once Redis lets it lapse (brought forward here), the upstream is open again.
  ASSERT_EQ(redis.Integer({"PEXPIRE", "tollgate:cooldown:devin", "1"}), 1);
  EXPECT_TRUE(Eventually([&] {
    return AcquireSync(*limiter, Request({bucket}, "devin")).outcome == Outcome::kAllowed;
  }));
}

TEST_F(RedisLimiterTest, PeekTakesNothingAndWritesNothing) {
  auto limiter = MakeRedisLimiter(Config(), 1);
  const auto bucket = Bucket("a", 1, 86400, 3);
  Inspector redis(redis_.port());
  for (int i = 0; i < 2; ++i) {
    const LimitDecision peeked = PeekSync(*limiter, {bucket});
    EXPECT_FALSE(peeked.fallback);
    EXPECT_NEAR(peeked.levels[0].remaining, 3, 0.001);
  }
  EXPECT_EQ(redis.Integer({"EXISTS", "tollgate:v2:bucket:a:_shared"}), 0);
  EXPECT_NEAR(AcquireSync(*limiter, Request({bucket})).levels[0].remaining, 2, 0.001);
  EXPECT_NEAR(PeekSync(*limiter, {bucket}).levels[0].remaining, 2, 0.001);
  EXPECT_NEAR(PeekSync(*limiter, {bucket}).levels[0].remaining, 2, 0.001);
  EXPECT_NEAR(AcquireSync(*limiter, Request({bucket})).levels[0].remaining, 1, 0.001);
}

// Issue 14: tagged keys (a Redis Cluster's) keep their state under "{tag}:", the cooldown too;
// a peek over buckets of different tags is one script per tag, answered in the asked order.
TEST_F(RedisLimiterTest, SlotTaggedKeysAndAPeekAcrossTags) {
  auto limiter = MakeRedisLimiter(Config(), 2);
  auto a = Bucket("a", 1, 86400, 5);
  auto b = Bucket("b", 1, 86400, 3);
  auto c = Bucket("c", 1, 86400, 7);
  a.slot_tag = "devin";
  b.slot_tag = "devo";
  c.slot_tag = "devin";
  Inspector redis(redis_.port());
  LimitRequest devin = Request({a, c}, "devin");
  devin.slot_tag = "devin";
  EXPECT_EQ(AcquireSync(*limiter, devin).outcome, Outcome::kAllowed);
  EXPECT_EQ(redis.Integer({"EXISTS", "tollgate:{devin}:v2:bucket:a:_shared"}), 1);
  EXPECT_EQ(redis.Integer({"EXISTS", "tollgate:v2:bucket:a:_shared"}), 0);
  limiter->StartCooldown("devo", 60000, "devo");
  EXPECT_TRUE(Eventually([&] {
    return redis.Integer({"EXISTS", "tollgate:{devo}:cooldown:devo"}) == 1;
  }));
  LimitRequest devo = Request({b}, "devo");
  devo.slot_tag = "devo";
  EXPECT_EQ(AcquireSync(*limiter, devo).outcome, Outcome::kCooldown);

  const LimitDecision peeked = PeekSync(*limiter, {b, a, c});
  ASSERT_EQ(peeked.levels.size(), 3u);
  EXPECT_FALSE(peeked.fallback);
  EXPECT_EQ(peeked.levels[0].name, "b");
  EXPECT_NEAR(peeked.levels[0].remaining, 3, 0.001);
  EXPECT_EQ(peeked.levels[1].name, "a");
  EXPECT_NEAR(peeked.levels[1].remaining, 4, 0.001);
  EXPECT_EQ(peeked.levels[2].name, "c");
  EXPECT_NEAR(peeked.levels[2].remaining, 6, 0.001);
}

TEST_F(RedisLimiterTest, CostIsTakenFromEveryBucketOrFromNone) {
  auto limiter = MakeRedisLimiter(Config(), 1);
  // Rates of one a day: nothing refills between the calls.
  const auto wide = Bucket("wide", 1, 86400, 10, false, 4);
  const auto narrow = Bucket("narrow", 1, 86400, 6, false, 4);
  const LimitDecision first = AcquireSync(*limiter, Request({wide, narrow}));
  ASSERT_EQ(first.outcome, Outcome::kAllowed);
  EXPECT_NEAR(first.levels[0].remaining, 6, 0.001);
  EXPECT_NEAR(first.levels[1].remaining, 2, 0.001);

  Inspector redis(redis_.port());
  const std::string wide_key = "tollgate:v2:bucket:wide:_shared";
  const std::string stored = redis.String({"GET", wide_key});
  BucketState state;
  ASSERT_TRUE(DecodeBucketState(stored, &state));
  EXPECT_EQ(state.level, 6LL * 86400 * 1000000);
  // "narrow" holds 2 of the 4 needed: refused, and "wide" keeps its 6 to the microsecond.
  const LimitDecision second = AcquireSync(*limiter, Request({wide, narrow}));
  EXPECT_EQ(second.outcome, Outcome::kLimited);
  EXPECT_EQ(second.limited_by, "narrow");
  EXPECT_NEAR(second.retry_after_seconds, 2 * 86400, 1);
  EXPECT_EQ(redis.String({"GET", wide_key}), stored);  // level and stamp
  // "wide" alone still has one more request of cost 4 in it, and then not another.
  EXPECT_EQ(AcquireSync(*limiter, Request({wide})).outcome, Outcome::kAllowed);
  EXPECT_EQ(AcquireSync(*limiter, Request({wide})).outcome, Outcome::kLimited);
}

TEST_F(RedisLimiterTest, AShadowBucketNeverRefusesButSaysItWould) {
  auto limiter = MakeRedisLimiter(Config(), 1);
  const auto real = Bucket("real", 1, 86400, 10);
  const auto shadow = Bucket("trial", 1, 86400, 1, true);
  const LimitDecision first = AcquireSync(*limiter, Request({real, shadow}));
  EXPECT_EQ(first.outcome, Outcome::kAllowed);
  EXPECT_FALSE(first.would_limit);
  for (int i = 0; i < 3; ++i) {
    const LimitDecision later = AcquireSync(*limiter, Request({real, shadow}));
    EXPECT_EQ(later.outcome, Outcome::kAllowed);
    EXPECT_TRUE(later.would_limit);
    EXPECT_TRUE(later.limited_by.empty());
    EXPECT_FALSE(later.fallback);
    EXPECT_NEAR(later.levels[0].remaining, 8 - i, 0.001);  // the real bucket still pays
    EXPECT_NEAR(later.levels[1].remaining, 0, 0.001);
  }
}

// Redis answered, but with an error instead of a decision: under `deny` the caller is refused
// (503), under `local` the per-process buckets decide. Neither may be taken as "allowed".
TEST_F(RedisLimiterTest, AScriptErrorIsNeverTakenAsAnAllow) {
  Inspector redis(redis_.port());
  const std::string key = "tollgate:v2:bucket:a:_shared";
  // A value the script cannot read under the bucket's name: an error, never a full bucket.
  ASSERT_EQ(redis.String({"SET", key, "not a bucket"}), "OK");
  const auto bucket = Bucket("a", 1, 86400, 1);

  auto deny = MakeRedisLimiter(Config(config::RedisOnError::kDeny), 1);
  for (int i = 0; i < 2; ++i) {
    const LimitDecision decision = AcquireSync(*deny, Request({bucket}));
    EXPECT_EQ(decision.outcome, Outcome::kUnavailable) << i;
    EXPECT_EQ(decision.error, "redis unavailable");
  }
  EXPECT_EQ(deny->stats().redis_errors.load(), 2u);

  auto local = MakeRedisLimiter(Config(config::RedisOnError::kLocal), 1);
  const LimitDecision first = AcquireSync(*local, Request({bucket}));
  EXPECT_EQ(first.outcome, Outcome::kAllowed);
  EXPECT_TRUE(first.fallback);
  const LimitDecision second = AcquireSync(*local, Request({bucket}));
  EXPECT_EQ(second.outcome, Outcome::kLimited);  // the local bucket of burst 1, not a pass
  EXPECT_EQ(second.limited_by, "a");
  EXPECT_TRUE(second.fallback);
  EXPECT_EQ(local->stats().fallbacks.load(), 2u);
  EXPECT_EQ(local->stats().redis_errors.load(), 2u);
  EXPECT_EQ(redis.String({"GET", key}), "not a bucket");  // nothing written over it

  // One bad key is not an outage: other buckets are still decided by Redis.
  const LimitDecision other = AcquireSync(*local, Request({Bucket("b", 1, 86400, 1)}));
  EXPECT_EQ(other.outcome, Outcome::kAllowed);
  EXPECT_FALSE(other.fallback);
}

// Calls of `command` ("evalsha", "script|load") Redis counted: those it ran (failed ones too)
// plus those it refused to run (ACL).
long long CommandCalls(Inspector& redis, const std::string& command) {
  const std::string info = redis.String({"INFO", "commandstats"});
  const std::string start = "cmdstat_" + command + ":";
  const size_t at = info.find(start);
  if (at == std::string::npos) return 0;
  const std::string line = info.substr(at, info.find("\r\n", at) - at);
  long long total = 0;
  for (const std::string field : {":calls=", ",rejected_calls="}) {
    const size_t p = line.find(field);
    if (p != std::string::npos) total += std::atoll(line.c_str() + p + field.size());
  }
  return total;
}

TEST_F(RedisLimiterTest, ARefusedScriptLoadIsAFailureNotAReload) {
  Inspector admin(redis_.port());
  // A user that may run EVALSHA (and so be told NOSCRIPT) but not SCRIPT LOAD.
  ASSERT_EQ(admin.String({"ACL", "SETUSER", "noscript", "on", ">pw", "~*", "+@all", "-script"}),
            "OK");
  config::RedisConfig config = Config();
  config.username = "noscript";
  config.password = "pw";
  auto limiter = MakeRedisLimiter(config, 1);
  const auto bucket = Bucket("a", 1, 86400, 1);
  const LimitDecision first = AcquireSync(*limiter, Request({bucket}));
  EXPECT_EQ(first.outcome, Outcome::kAllowed);
  EXPECT_TRUE(first.fallback);
  const LimitDecision second = AcquireSync(*limiter, Request({bucket}));
  EXPECT_EQ(second.outcome, Outcome::kLimited);
  EXPECT_TRUE(second.fallback);
  EXPECT_EQ(limiter->stats().script_reloads.load(), 0u);
  EXPECT_EQ(limiter->stats().redis_errors.load(), 2u);
  // Each refused load ends the attempt: EVALSHA is not sent again only to hear NOSCRIPT again.
  EXPECT_EQ(CommandCalls(admin, "script|load"), 2);
  EXPECT_EQ(CommandCalls(admin, "evalsha"), 2);
  EXPECT_EQ(admin.Integer({"EXISTS", "tollgate:v2:bucket:a:_shared"}), 0);
}

TEST_F(RedisLimiterTest, AuthenticatesAndSelectsTheDatabase) {
  Inspector admin(redis_.port());
  ASSERT_EQ(admin.String({"ACL", "SETUSER", "tollgate", "on", ">s3cret", "~*", "+@all"}), "OK");
  ASSERT_EQ(admin.String({"ACL", "SETUSER", "default", "off"}), "OK");
  config::RedisConfig config = Config();
  config.username = "tollgate";
  config.password = "s3cret";
  config.db = 3;
  auto limiter = MakeRedisLimiter(config);
  const LimitDecision decision = AcquireSync(*limiter, Request({Bucket("a", 1, 60)}));
  EXPECT_EQ(decision.outcome, Outcome::kAllowed);
  EXPECT_FALSE(decision.fallback);
  EXPECT_EQ(limiter->Describe().find("s3cret"), std::string::npos);

  config.password = "wrong";
  auto refused = MakeRedisLimiter(config);
  EXPECT_TRUE(AcquireSync(*refused, Request({Bucket("a", 1, 60)})).fallback);
}

TEST_F(RedisLimiterTest, AStalledRedisTimesOutIntoTheFallback) {
  config::RedisConfig config = Config();
  config.timeout_ms = 100;
  auto limiter = MakeRedisLimiter(config, 1);
  const auto bucket = Bucket("a", 1000000, 1);
  ASSERT_FALSE(AcquireSync(*limiter, Request({bucket})).fallback);
  // Redis holds every client's commands (but answers this one) for far longer than timeout_ms.
  Inspector admin(redis_.port());
  ASSERT_EQ(admin.String({"CLIENT", "PAUSE", "3000", "ALL"}), "OK");
  const LimitDecision decision = AcquireSync(*limiter, Request({bucket}));
  EXPECT_TRUE(decision.fallback);
  EXPECT_EQ(decision.outcome, Outcome::kAllowed);
  EXPECT_GE(limiter->stats().redis_errors.load(), 1u);
}

TEST_F(RedisLimiterTest, FallsBackLocallyWhileRedisIsDownAndReturns) {
  auto limiter = MakeRedisLimiter(Config());
  const auto bucket = Bucket("a", 1000000, 1);
  ASSERT_FALSE(AcquireSync(*limiter, Request({bucket})).fallback);

  redis_.Stop();
  // Every answer comes from the local buckets until the breaker opens and skips Redis.
  EXPECT_TRUE(Eventually([&] {
    const LimitDecision decision = AcquireSync(*limiter, Request({bucket}));
    EXPECT_EQ(decision.outcome, Outcome::kAllowed);
    EXPECT_TRUE(decision.fallback);
    return limiter->stats().breaker_skips.load() > 0;
  }));
  EXPECT_GT(limiter->stats().fallbacks.load(), 0u);
  EXPECT_GE(limiter->stats().redis_errors.load(), 3u);
  EXPECT_TRUE(limiter->Ready());

  redis_.Start();
  EXPECT_TRUE(Eventually([&] { return !AcquireSync(*limiter, Request({bucket})).fallback; }));
}

TEST_F(RedisLimiterTest, DeniesWhileRedisIsDownWhenConfiguredTo) {
  auto limiter = MakeRedisLimiter(Config(config::RedisOnError::kDeny));
  const auto bucket = Bucket("a", 1000000, 1);
  ASSERT_EQ(AcquireSync(*limiter, Request({bucket})).outcome, Outcome::kAllowed);

  redis_.Stop();
  EXPECT_TRUE(Eventually([&] {
    const LimitDecision decision = AcquireSync(*limiter, Request({bucket}));
    EXPECT_EQ(decision.outcome, Outcome::kUnavailable);
    EXPECT_EQ(decision.error, "redis unavailable");
    return limiter->stats().breaker_skips.load() > 0;
  }));
  EXPECT_FALSE(limiter->Ready());
  EXPECT_EQ(limiter->stats().fallbacks.load(), 0u);

  // Without traffic the probe alone brings readiness back.
  redis_.Start();
  EXPECT_TRUE(Eventually([&] { return limiter->Ready(); }));
  EXPECT_EQ(AcquireSync(*limiter, Request({bucket})).outcome, Outcome::kAllowed);
}

}  // namespace
}  // namespace tollgate::policies
