// The Redis limiter: every decision is one atomic script on the shared Redis, so buckets are
// exact across replicas. Callers never wait on Redis: each loop::Loop that asks gets its own
// hiredis async connection (a loop local), every command queued during one loop iteration goes
// out in one write from the loop's iteration hook (one round trip for all the decisions of that
// iteration), and `done` runs on that loop's thread when the reply arrives. Callers without a
// loop (tests, the CLI) are handed to the limiter's own loop thread(s) and answered there.
//
// When Redis fails (a lost connection, a command older than timeout_ms, a failed handshake),
// the connection is dropped and everything pending on it falls back per on_error (local buckets
// or 503). After kFailuresToOpen failures in a row a loop's circuit breaker skips Redis for a
// back-off, so an outage does not cost `timeout_ms` on every request; a single probe (the next
// request, or a PING when there is none) then decides whether to close it. The breaker is per
// loop and node; the counters and readiness are process-wide.
//
// Where a decision goes is the RedisTopology's answer for the first key of its script call (the
// cooldown key for a cooldown): a loop keeps one connection per node (a LoopRouter of
// LoopConnections). A READONLY answer reports the node (Suspect) and falls back; a cluster
// redirect is followed once, within the request's own deadline; a second one falls back.

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "loop/loop.h"
#include "policies/rate_limiter.h"
#include "policies/rate_limiter_memory.h"
#include "policies/redis_loop_link.h"
#include "policies/redis_loop_shared.h"
#include "policies/redis_topology.h"
#include "policies/token_bucket.h"
#include "policies/token_bucket_script.h"

namespace tollgate::policies {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kFailuresToOpen = 3;
constexpr milliseconds kFirstBackoff{250};
constexpr milliseconds kMaxBackoff{5000};
// Redis runs scripts one at a time; a second connection for loop-less callers measured no faster.
constexpr int kDefaultConnections = 1;

struct Pending {
  enum class Kind { kAcquire, kPeek, kCooldown };
  Kind kind = Kind::kAcquire;
  LimitRequest request;
  int64_t cooldown_ms = 0;
  std::function<void(LimitDecision)> done;
  Clock::time_point deadline;  // set once: a redirect does not extend it
  bool retried = false;     // sent again after a SCRIPT LOAD: a second NOSCRIPT is a script error
  bool redirected = false;  // sent again after MOVED/ASK: a second redirect falls back
  bool asking = false;      // ASK: each command goes behind an ASKING
  std::vector<std::string> argv;  // kAcquire/kPeek: the EVALSHA, built once (its key routes it)
  std::string cooldown_key;       // kCooldown
};
using PendingPtr = std::unique_ptr<Pending>;

LimitDecision Unavailable() {
  LimitDecision decision;
  decision.outcome = LimitDecision::Outcome::kUnavailable;
  decision.error = "redis unavailable";
  return decision;
}

// What the limiter and its per-loop connections share. Held by shared_ptr from both, so a loop's
// connection destroyed late (its loop's locals cleared after the limiter) still finds it.
// The address is resolved once here, on the thread that builds the limiter (ResolveOnce).
struct Core {
  Core(const config::RedisConfig& c, std::shared_ptr<RedisTopology> t)
      : config(c),
        timeout(milliseconds(c.timeout_ms > 0 ? c.timeout_ms : 50)),
        topology(std::move(t)) {}

  // Decides without Redis, per on_error. A cooldown needs no answer: it is recorded locally.
  void Fallback(Pending& pending) {
    if (pending.kind == Pending::Kind::kCooldown) return;
    LimitDecision decision;
    if (config.on_error == config::RedisOnError::kLocal) {
      stats.fallbacks.fetch_add(1);
      decision = local.Decide(pending.request, pending.kind == Pending::Kind::kAcquire);
      decision.fallback = true;
    } else {
      decision = Unavailable();
    }
    pending.done(std::move(decision));
  }

  const config::RedisConfig config;
  const milliseconds timeout;
  const std::shared_ptr<RedisTopology> topology;
  MemoryLimiter local;
  LimiterStats stats;
  std::atomic<bool> ready{true};
  std::atomic<bool> stopping{false};  // the limiter is being destroyed
  // Breakers open now, over every loop and node: the limiter is ready (for on_error deny) when
  // none is. A connection abandoned after a failover closes its own, so the old primary's
  // breakers cannot keep /readyz down once the sentinels named a new one.
  std::atomic<int> open_breakers{0};
};

class LoopRouter;

// One loop's connection to one node, its commands in flight and its circuit breaker. Owned by
// the loop's LoopRouter; everything runs on that loop's thread except the destructor, which may
// run on the thread that clears the locals after the loop stopped: it answers what is still
// pending by the fallback (inline: the loop no longer runs) and calls nothing on the limiter but
// Core.
class LoopConnection {
 public:
  LoopConnection(std::shared_ptr<Core> core, loop::Loop* loop, LoopRouter* router, RedisNode node)
      : core_(std::move(core)),
        loop_(loop),
        router_(router),
        node_(std::move(node)),
        stats_(core_->stats) {}

  ~LoopConnection() {
    deadline_.Cancel();
    if (probe_timer_ != 0) loop_->Cancel(probe_timer_);
    if (link_ != nullptr) link_->Close();
    link_.reset();
    SetBreakerOpen(false);  // what is gone cannot hold the limiter unready
    FailAll();
  }

  void Flush() {
    if (link_ != nullptr) link_->Flush();
  }

  // The node is no longer routed to: closed, what is pending falls back (later, on the loop).
  void Abandon() {
    deadline_.Cancel();
    if (probe_timer_ != 0) loop_->Cancel(probe_timer_);
    probe_timer_ = 0;
    SetBreakerOpen(false);
    if (link_ != nullptr) link_->Close();
    link_.reset();
    std::deque<Entry> inflight;
    inflight.swap(inflight_);
    std::vector<PendingPtr> awaiting;
    awaiting.swap(awaiting_script_);
    loading_script_ = false;
    for (Entry& entry : inflight) {
      if (entry.pending != nullptr) FallbackLater(std::move(entry.pending));
    }
    for (PendingPtr& pending : awaiting) FallbackLater(std::move(pending));
  }

  void Submit(PendingPtr pending) {
    if (breaker_open_) {
      if (probe_in_flight_ || Clock::now() < open_until_) {
        if (pending->kind != Pending::Kind::kCooldown) stats_.breaker_skips.fetch_add(1);
        FallbackLater(std::move(pending));
        return;
      }
      probe_in_flight_ = true;  // this request is the probe
    }
    if (!EnsureLink(pending->deadline)) {
      if (node_.valid()) core_->topology->Suspect(node_);
      RecordFailure();
      FallbackLater(std::move(pending));
      return;
    }
    Send(std::move(pending));
  }

 private:
  enum class Type {
    kHandshake,
    kRole,
    kDecision,
    kCooldownSet,
    kCooldownExpire,
    kScriptLoad,
    kProbe,
    kAsking
  };
  struct Entry {
    Type type;
    PendingPtr pending;  // kDecision, kCooldownExpire
    Clock::time_point deadline;
  };

  // `first`: the deadline of the command that needs the link, so a handshake never makes it
  // wait past its own (a redirected command keeps the deadline it started with).
  bool EnsureLink(Clock::time_point first) {
    if (link_ != nullptr) return true;
    if (!node_.valid()) return false;  // nothing known yet: fails like a refused connect
    link_ = RedisLoopLink::Connect(
        loop_, node_.host, node_.port, [this](const redisReply& reply) { OnReply(reply); },
        [this] { Lost(); }, &stats_.redis_writes);
    if (link_ == nullptr) return false;
    const Clock::time_point deadline = std::min(first, Clock::now() + core_->timeout);
    for (const auto& argv : HandshakeCommands(core_->config)) {
      SendCommand(argv, Entry{Type::kHandshake, nullptr, deadline});
    }
    if (NeedsRoleCheck(*core_->topology)) {
      SendCommand({"ROLE"}, Entry{Type::kRole, nullptr, deadline});
    }
    return true;
  }

  void Send(PendingPtr pending) {
    const Clock::time_point deadline = pending->deadline;
    // ASK: the node serves the slot for the next command only if it comes right after ASKING.
    const bool asking = pending->asking;
    const auto ask = [&] {
      if (asking) SendCommand({"ASKING"}, Entry{Type::kAsking, nullptr, deadline});
    };
    switch (pending->kind) {
      case Pending::Kind::kAcquire:
      case Pending::Kind::kPeek: {
        ask();
        const std::vector<std::string> argv = pending->argv;
        SendCommand(argv, Entry{Type::kDecision, std::move(pending), deadline});
        break;
      }
      case Pending::Kind::kCooldown: {
        // NX creates it; GT only ever lengthens one that exists: the longer cooldown wins.
        const std::string key = pending->cooldown_key;
        const std::string ms = std::to_string(pending->cooldown_ms);
        ask();
        SendCommand({"SET", key, "1", "PX", ms, "NX"},
                    Entry{Type::kCooldownSet, nullptr, deadline});
        ask();
        SendCommand({"PEXPIRE", key, ms, "GT"},
                    Entry{Type::kCooldownExpire, std::move(pending), deadline});
        break;
      }
    }
  }

  void SendCommand(const std::vector<std::string>& argv, Entry entry) {
    if (link_ == nullptr || !link_->Send(argv)) {
      // Only a link that is already closing refuses; it is answered with the rest.
      if (entry.pending != nullptr) FallbackLater(std::move(entry.pending));
      return;
    }
    const Clock::time_point deadline = entry.deadline;
    inflight_.push_back(std::move(entry));
    deadline_.Arm(deadline);
  }

  void OnReply(const redisReply& reply) {
    if (inflight_.empty()) return;  // cannot happen: one entry per command sent
    Entry entry = std::move(inflight_.front());
    inflight_.pop_front();
    switch (entry.type) {
      case Type::kHandshake:
      case Type::kProbe:
        if (reply.type == REDIS_REPLY_ERROR) {
          Drop();
          return;
        }
        RecordSuccess();
        return;
      case Type::kRole:
        if (!IsPrimaryRole(reply)) {
          core_->topology->Suspect(node_);
          Drop();
          return;
        }
        RecordSuccess();
        return;
      case Type::kAsking:
        return;  // its command's reply tells
      case Type::kCooldownSet:
        // A redirect is kept by the topology; the PEXPIRE behind hears it too and resends both.
        if (JudgeReply(reply, *core_->topology, node_, true).kind ==
            ReplyVerdict::Kind::kReadOnly) {
          Drop();
          return;
        }
        RecordSuccess();
        return;
      case Type::kScriptLoad:
        OnScriptLoaded(reply);
        return;
      case Type::kCooldownExpire:
      case Type::kDecision:
        break;
    }
    if (entry.type == Type::kDecision && IsRedisTryAgain(reply)) {
      RecordSuccess();
      RetryLater(std::move(entry.pending));
      return;
    }
    const ReplyVerdict verdict =
        JudgeReply(reply, *core_->topology, node_, entry.pending->redirected);
    switch (verdict.kind) {
      case ReplyVerdict::Kind::kAnswer:
        break;
      case ReplyVerdict::Kind::kReadOnly: {
        // A replica now: everything pending here would be refused too.
        PendingPtr pending = std::move(entry.pending);
        Drop();
        Fallback(*pending);
        return;
      }
      case ReplyVerdict::Kind::kRefused:
        ScriptError(*entry.pending);
        return;
      case ReplyVerdict::Kind::kRedirect:
        RecordSuccess();
        Redirect(std::move(entry.pending), verdict);
        return;
    }
    RecordSuccess();
    if (entry.type == Type::kCooldownExpire) return;
    Pending& pending = *entry.pending;
    if (IsNoScript(reply)) {
      if (pending.retried) {
        ScriptError(pending);
        return;
      }
      awaiting_script_.push_back(std::move(entry.pending));
      if (!loading_script_) {
        loading_script_ = true;
        SendCommand({"SCRIPT", "LOAD", kTokenBucketScript},
                    Entry{Type::kScriptLoad, nullptr, Clock::now() + core_->timeout});
      }
      return;
    }
    Evaluation evaluation;
    if (!ParseTokenBucketReply(reply, pending.request.buckets.size(), &evaluation)) {
      ScriptError(pending);
      return;
    }
    Answer(pending,
           ToDecision(pending.request.buckets, evaluation, pending.request.cooldown_upstream));
  }

  void OnScriptLoaded(const redisReply& reply) {
    loading_script_ = false;
    std::vector<PendingPtr> again;
    again.swap(awaiting_script_);
    // An error reply (NOPERM for a user without SCRIPT, OOM, a read-only replica) leaves the
    // script unknown: retrying EVALSHA would only be answered NOSCRIPT again. It is a failure
    // of this Redis, counted towards the breaker like a lost connection, not a reload.
    if (reply.type == REDIS_REPLY_ERROR) {
      RecordFailure();
      for (PendingPtr& pending : again) Fallback(*pending);
      return;
    }
    stats_.script_reloads.fetch_add(1);
    RecordSuccess();
    for (PendingPtr& pending : again) {
      pending->retried = true;
      Send(std::move(pending));
    }
  }

  // Drops the connection (lost, timed out, refused the handshake) and answers everything
  // pending on it. Counted before answering, so a caller that saw the fallback also sees the
  // error.
  // The connection was lost or a command timed out: the node is reported (a cluster may have
  // failed over: the slot map is read again soon; a sentinel topology ignores a node it left),
  // then dropped.
  void Lost() {
    core_->topology->Suspect(node_);
    Drop();
  }

  void Drop() {
    deadline_.Cancel();
    if (link_ != nullptr) link_->Close();
    link_.reset();
    RecordFailure();
    FailAll();
  }

  void FailAll() {
    std::deque<Entry> inflight;
    inflight.swap(inflight_);
    std::vector<PendingPtr> awaiting;
    awaiting.swap(awaiting_script_);
    loading_script_ = false;
    for (Entry& entry : inflight) {
      if (entry.pending != nullptr) Fallback(*entry.pending);
    }
    for (PendingPtr& pending : awaiting) Fallback(*pending);
  }

  void RecordSuccess() {
    if (consecutive_failures_ != 0 || breaker_open_) {
      consecutive_failures_ = 0;
      probe_in_flight_ = false;
      backoff_ = kFirstBackoff;
      SetBreakerOpen(false);
    }
    if (!core_->ready.load(std::memory_order_relaxed)) UpdateReadiness();
  }

  void SetBreakerOpen(bool open) {
    if (breaker_open_ == open) return;
    breaker_open_ = open;
    core_->open_breakers.fetch_add(open ? 1 : -1);
    UpdateReadiness();
  }

  // Ready unless some breaker is open with on_error deny. The back-off gauge shows the last one
  // set, and 0 once no breaker is open.
  void UpdateReadiness() {
    const bool none_open = core_->open_breakers.load() <= 0;
    if (none_open) stats_.breaker_backoff_ms.store(0);
    core_->ready.store(none_open || core_->config.on_error != config::RedisOnError::kDeny);
  }

  void RecordFailure() {
    stats_.redis_errors.fetch_add(1);
    ++consecutive_failures_;
    if (breaker_open_) {
      backoff_ = std::min(backoff_ * 2, kMaxBackoff);
      open_until_ = Clock::now() + backoff_;
      probe_in_flight_ = false;
      ScheduleProbe();
    } else if (consecutive_failures_ >= kFailuresToOpen) {
      backoff_ = kFirstBackoff;
      open_until_ = Clock::now() + backoff_;
      SetBreakerOpen(true);
      ScheduleProbe();
    }
    if (breaker_open_) stats_.breaker_backoff_ms.store(backoff_.count());
  }

  // Without traffic nothing would close the breaker, and /readyz would stay false: a PING
  // probes once the back-off has passed (unless a request became the probe first).
  void ScheduleProbe() {
    if (probe_timer_ != 0) loop_->Cancel(probe_timer_);
    const auto left = std::chrono::ceil<milliseconds>(open_until_ - Clock::now());
    probe_timer_ = loop_->After(std::max(left, milliseconds(0)), [this] {
      probe_timer_ = 0;
      if (!breaker_open_ || probe_in_flight_) return;
      if (Clock::now() < open_until_) {
        ScheduleProbe();
        return;
      }
      probe_in_flight_ = true;
      if (!EnsureLink(Clock::now() + core_->timeout)) {
        RecordFailure();
        return;
      }
      SendCommand({"PING"}, Entry{Type::kProbe, nullptr, Clock::now() + core_->timeout});
    });
  }

  // Redis answered, but not with a decision (a wrong-type key, a script failure).
  void ScriptError(Pending& pending) {
    stats_.redis_errors.fetch_add(1);
    Fallback(pending);
  }

  void Fallback(Pending& pending) { core_->Fallback(pending); }

  // Defined after LoopRouter, which finds (or makes) the connection to the node named.
  void Redirect(PendingPtr pending, const ReplyVerdict& verdict);
  void RetryLater(PendingPtr pending);

  void Answer(Pending& pending, LimitDecision decision) { pending.done(std::move(decision)); }

  // An answer known at once still goes through the loop: a caller never re-enters itself.
  void FallbackLater(PendingPtr pending) {
    std::shared_ptr<Pending> held(pending.release());
    std::shared_ptr<Core> core = core_;
    if (!loop_->Post([core, held] { core->Fallback(*held); })) core_->Fallback(*held);
  }

  const std::shared_ptr<Core> core_;
  loop::Loop* const loop_;
  LoopRouter* const router_;  // owns this connection
  const RedisNode node_;
  LimiterStats& stats_;
  std::shared_ptr<RedisLoopLink> link_;
  std::deque<Entry> inflight_;               // one per command sent, in order
  std::vector<PendingPtr> awaiting_script_;  // answered NOSCRIPT, resent after SCRIPT LOAD
  bool loading_script_ = false;
  // Watches the earliest deadline in inflight_ (FifoDeadline); a timeout drops the connection.
  FifoDeadline deadline_{loop_,
                         [this](bool all) -> std::optional<Clock::time_point> {
                           if (inflight_.empty()) return std::nullopt;
                           Clock::time_point earliest = inflight_.front().deadline;
                           if (!all) return earliest;
                           for (const Entry& entry : inflight_) {
                             earliest = std::min(earliest, entry.deadline);
                           }
                           return earliest;
                         },
                         [this] { Lost(); }};
  loop::Loop::TimerId probe_timer_ = 0;

  int consecutive_failures_ = 0;
  bool breaker_open_ = false;
  bool probe_in_flight_ = false;
  Clock::time_point open_until_;
  milliseconds backoff_ = kFirstBackoff;
};

// One loop's connections, one per node (made on first use), in the loop's locals: routes each
// decision by its first key, and closes the connections to nodes the topology no longer routes
// to once its epoch moved.
class LoopRouter : public std::enable_shared_from_this<LoopRouter> {
 public:
  static std::shared_ptr<LoopRouter> Make(std::shared_ptr<Core> core, loop::Loop* loop) {
    BlockSigpipeOnThisThread();  // hiredis writes with write(2)
    auto router = std::make_shared<LoopRouter>(std::move(core), loop);
    std::weak_ptr<LoopRouter> weak = router;
    // Hooks live as long as the loop; the router may go first (Loop::Release).
    loop->AddIterationHook([weak] {
      if (auto self = weak.lock()) self->connections_.Flush();
    });
    return router;
  }

  LoopRouter(std::shared_ptr<Core> core, loop::Loop* loop)
      : core_(std::move(core)),
        loop_(loop),
        connections_(core_->topology, [this, loop](const RedisNode& node) {
          return std::make_shared<LoopConnection>(core_, loop, this, node);
        }) {}

  void Submit(PendingPtr pending) {
    connections_.Refresh();
    const std::string& prefix = core_->config.key_prefix;
    std::string route_key;
    switch (pending->kind) {
      case Pending::Kind::kAcquire:
      case Pending::Kind::kPeek: {
        const bool take = pending->kind == Pending::Kind::kAcquire;
        // A peek's request names no cooldown upstream: it checks none.
        TokenBucketCall call = MakeTokenBucketCall(pending->request, prefix, take);
        if (!call.keys.empty()) route_key = call.keys.front();
        pending->argv = EvalShaArgv(call);
        break;
      }
      case Pending::Kind::kCooldown:
        pending->cooldown_key =
            CooldownKey(prefix, pending->request.cooldown_upstream, pending->request.slot_tag);
        route_key = pending->cooldown_key;
        break;
    }
    connections_.For(core_->topology->Route(route_key))->Submit(std::move(pending));
  }

  // A redirected command, once: to the connection for the node named, its deadline unchanged.
  void Redirect(PendingPtr pending, const ReplyVerdict& verdict) {
    // Too late to be answered: sent on, it would only time out the node it was sent to.
    if (Clock::now() >= pending->deadline) {
      core_->stats.redis_errors.fetch_add(1);
      core_->Fallback(*pending);
      return;
    }
    pending->redirected = true;
    pending->asking = verdict.asking;
    connections_.For(verdict.node)->Submit(std::move(pending));
  }

  // TRYAGAIN: the decision's slot is being migrated and the importing node lacks one of the
  // script's keys (the cooldown key is usually absent), so it cannot run the script yet. Asked
  // again from the start after a short pause (the source answers ASK while it migrates, MOVED
  // once it is done), as long as the request's deadline allows; then the fallback.
  void RetryLater(PendingPtr pending) {
    if (Clock::now() + kTryAgainPause >= pending->deadline) {
      core_->stats.redis_errors.fetch_add(1);
      core_->Fallback(*pending);
      return;
    }
    // Answered by the fallback if the timer is dropped unrun (the loop stopped first).
    struct Parked {
      PendingPtr pending;
      std::shared_ptr<Core> core;
      ~Parked() {
        if (pending != nullptr) core->Fallback(*pending);
      }
    };
    auto parked = std::make_shared<Parked>();
    parked->pending = std::move(pending);
    parked->core = core_;
    std::weak_ptr<LoopRouter> weak = weak_from_this();
    loop_->After(kTryAgainPause, [weak, parked] {
      PendingPtr again = std::move(parked->pending);
      auto self = weak.lock();
      if (self == nullptr || parked->core->stopping.load()) {
        parked->core->Fallback(*again);
        return;
      }
      again->redirected = false;
      again->asking = false;
      self->Submit(std::move(again));
    });
  }

 private:
  static constexpr milliseconds kTryAgainPause{2};

  const std::shared_ptr<Core> core_;
  loop::Loop* const loop_;
  NodeConnections<LoopConnection> connections_;
};

void LoopConnection::Redirect(PendingPtr pending, const ReplyVerdict& verdict) {
  router_->Redirect(std::move(pending), verdict);
}

void LoopConnection::RetryLater(PendingPtr pending) { router_->RetryLater(std::move(pending)); }

class RedisLimiter : public RateLimiter {
 public:
  RedisLimiter(const config::RedisConfig& config, std::shared_ptr<RedisTopology> topology,
               int connections)
      : core_(std::make_shared<Core>(config, std::move(topology))),
        describe_(core_->topology->Describe()) {
    for (int i = 0; i < std::max(connections, 1); ++i) {
      threads_.push_back(std::make_unique<loop::LoopThread>("tollgate-redis"));
    }
  }

  // Stops the own loop threads first: what they still hold is answered by the fallback (their
  // connections are released on their threads), anything asked during that gets kUnavailable.
  ~RedisLimiter() override {
    core_->stopping.store(true);
    for (auto& thread : threads_) {
      thread->RunSync([&] { thread->loop().Release(this); });
    }
    threads_.clear();
  }

  void Acquire(LimitRequest request, std::function<void(LimitDecision)> done) override {
    auto pending = std::make_unique<Pending>();
    pending->kind = Pending::Kind::kAcquire;
    pending->request = std::move(request);
    pending->done = std::move(done);
    Submit(std::move(pending));
  }

  void Peek(std::vector<BucketSpec> buckets, std::function<void(LimitDecision)> done) override {
    if (!OneSlotTag(buckets)) {
      PeekBySlotTag(std::move(buckets), std::move(done));
      return;
    }
    auto pending = std::make_unique<Pending>();
    pending->kind = Pending::Kind::kPeek;
    pending->request.buckets = std::move(buckets);
    pending->done = std::move(done);
    Submit(std::move(pending));
  }

  void StartCooldown(const std::string& upstream, int64_t milliseconds,
                     const std::string& slot_tag) override {
    if (upstream.empty() || milliseconds <= 0) return;
    // Also local, so fallback decisions honour it while Redis is away.
    core_->local.StartCooldown(upstream, milliseconds);
    auto pending = std::make_unique<Pending>();
    pending->kind = Pending::Kind::kCooldown;
    pending->request.cooldown_upstream = upstream;
    pending->request.slot_tag = slot_tag;
    pending->cooldown_ms = milliseconds;
    pending->done = [](LimitDecision) {};
    Submit(std::move(pending));
  }

  bool Ready() const override { return core_->ready.load(); }
  std::string Describe() const override { return describe_; }
  const LimiterStats& stats() const override { return core_->stats; }

 private:
  static bool OneSlotTag(const std::vector<BucketSpec>& buckets) {
    for (const BucketSpec& bucket : buckets) {
      if (bucket.slot_tag != buckets.front().slot_tag) return false;
    }
    return true;
  }

  // A Redis Cluster keeps the buckets of different slot tags on different slots, where one
  // script cannot read them together: one peek per tag, the levels put back in the asked order.
  // The answer is the worst of the parts (unavailable, else a fallback part makes it one).
  void PeekBySlotTag(std::vector<BucketSpec> buckets, std::function<void(LimitDecision)> done) {
    std::map<std::string, std::vector<size_t>> groups;
    for (size_t i = 0; i < buckets.size(); ++i) groups[buckets[i].slot_tag].push_back(i);
    // Parts asked from no loop are answered on the limiter's own threads, maybe not the same one.
    struct Join {
      std::mutex mutex;
      LimitDecision merged;
      size_t left = 0;
      std::function<void(LimitDecision)> done;
    };
    auto join = std::make_shared<Join>();
    join->merged.levels.resize(buckets.size());
    join->left = groups.size();
    join->done = std::move(done);
    for (auto& [tag, indices] : groups) {
      std::vector<BucketSpec> part;
      part.reserve(indices.size());
      for (size_t i : indices) part.push_back(buckets[i]);
      auto pending = std::make_unique<Pending>();
      pending->kind = Pending::Kind::kPeek;
      pending->request.buckets = std::move(part);
      pending->done = [join, indices = indices](LimitDecision decision) {
        std::unique_lock<std::mutex> lock(join->mutex);
        LimitDecision& merged = join->merged;
        for (size_t k = 0; k < indices.size() && k < decision.levels.size(); ++k) {
          merged.levels[indices[k]] = std::move(decision.levels[k]);
        }
        merged.fallback = merged.fallback || decision.fallback;
        merged.would_limit = merged.would_limit || decision.would_limit;
        if (decision.outcome == LimitDecision::Outcome::kUnavailable) {
          merged.outcome = decision.outcome;
          merged.error = decision.error;
        }
        if (--join->left != 0) return;
        lock.unlock();
        join->done(std::move(merged));
      };
      Submit(std::move(pending));
    }
  }

  void Submit(PendingPtr pending) {
    pending->deadline = Clock::now() + core_->timeout;
    loop::Loop* loop = loop::Loop::Current();
    if (loop == nullptr) {
      // No loop on this thread: one of ours takes it (and answers on its thread).
      loop::Loop& own = threads_[next_thread_.fetch_add(1) % threads_.size()]->loop();
      std::shared_ptr<Pending> held(pending.release());
      loop::Loop* target = &own;
      if (core_->stopping.load() || !own.Post([this, held, target] {
            // Handed in before the destructor began: decided by Redis or, once that is too late,
            // by the fallback, like everything else the limiter held.
            if (core_->stopping.load()) {
              core_->Fallback(*held);
            } else {
              SubmitOnLoop(target, PendingPtr(new Pending(std::move(*held))));
            }
          })) {
        held->done(Unavailable());  // shut down: answered here, never lost
      }
      return;
    }
    if (core_->stopping.load()) {
      std::shared_ptr<Pending> held(pending.release());
      if (!loop->Post([held] { held->done(Unavailable()); })) held->done(Unavailable());
      return;
    }
    SubmitOnLoop(loop, std::move(pending));
  }

  void SubmitOnLoop(loop::Loop* loop, PendingPtr pending) {
    LoopRouter* router =
        loop->Local<LoopRouter>(this, [this, loop] { return LoopRouter::Make(core_, loop); });
    router->Submit(std::move(pending));
  }

  const std::shared_ptr<Core> core_;
  const std::string describe_;
  std::atomic<size_t> next_thread_{0};
  std::vector<std::unique_ptr<loop::LoopThread>> threads_;  // last: they run on what is above
};

}  // namespace

std::unique_ptr<RateLimiter> MakeRedisLimiter(const config::RedisConfig& config) {
  return MakeRedisLimiter(config, kDefaultConnections);
}

std::unique_ptr<RateLimiter> MakeRedisLimiter(const config::RedisConfig& config, int connections) {
  return MakeRedisLimiter(config, RedisTopology::For(config), connections);
}

std::unique_ptr<RateLimiter> MakeRedisLimiter(const config::RedisConfig& config,
                                              std::shared_ptr<RedisTopology> topology,
                                              int connections) {
  return std::make_unique<RedisLimiter>(config, std::move(topology), connections);
}

}  // namespace tollgate::policies
