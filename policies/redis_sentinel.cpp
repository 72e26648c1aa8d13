#include "policies/redis_sentinel.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "policies/redis_loop_shared.h"
#include "policies/redis_topology_link.h"

namespace tollgate::policies {
namespace {

using Clock = std::chrono::steady_clock;
// The subscription is read with this poll, so a Suspect() or the destructor is noticed this fast.
constexpr std::chrono::milliseconds kPoll(200);
// After a resolve or a subscription failed.
constexpr std::chrono::milliseconds kRetry(500);

std::optional<int> ParsePort(std::string_view text) {
  int port = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (ec != std::errc() || end != text.data() + text.size() || port <= 0 || port > 65535) {
    return std::nullopt;
  }
  return port;
}

bool IsString(const redisReply* reply) {
  return reply != nullptr &&
         (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS);
}

class SentinelTopology final : public RedisTopology {
 public:
  SentinelTopology(const config::RedisConfig& config, SentinelTimings timings)
      : config_(config),
        sentinel_(*config.sentinel),
        timeout_ms_(std::max(config.timeout_ms, 100)),
        recheck_(timings.recheck) {
    next_resolve_ = Clock::now() + (Resolve() ? recheck_ : kRetry);
    thread_ = std::thread([this] { Run(); });
  }

  ~SentinelTopology() override {
    {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  Mode mode() const override { return Mode::kSentinel; }
  RedisNode Route(std::string_view) const override { return Primary(); }
  RedisNode RouteSlot(int) const override { return Primary(); }
  uint64_t epoch() const override { return epoch_.load(std::memory_order_acquire); }

  void Suspect(const RedisNode& node) override {
    if (!node.valid() || node != Primary()) return;  // old news: a replica we left already
    {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      suspect_ = true;
    }
    wake_.notify_all();
  }

  void Moved(int, const RedisNode&) override {}

  std::string Describe() const override {
    const RedisNode primary = Primary();
    return "sentinel " + sentinel_.master + " -> " +
           (primary.valid() ? primary.ToString() : std::string("(unknown)"));
  }

  RedisTopologyStats& stats() override { return stats_; }

 private:
  RedisNode Primary() const {
    std::lock_guard<std::mutex> lock(primary_mutex_);
    return primary_;
  }

  bool Stopping() {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    return stop_;
  }

  // What one sentinel says the primary is (nullopt: it did not answer, or knows no such master).
  std::optional<RedisNode> AskSentinel(const config::RedisEndpoint& address) {
    RedisTopologyLink link;
    std::string error;
    if (!link.Connect(address.host, address.port, timeout_ms_, sentinel_.username,
                      sentinel_.password, &error)) {
      return std::nullopt;
    }
    RedisReplyPtr reply = link.Command({"SENTINEL", "get-master-addr-by-name", sentinel_.master});
    if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        !IsString(reply->element[0]) || !IsString(reply->element[1])) {
      return std::nullopt;
    }
    auto port = ParsePort(std::string_view(reply->element[1]->str, reply->element[1]->len));
    if (!port) return std::nullopt;
    return RedisNode{ResolveOnce(std::string(reply->element[0]->str, reply->element[0]->len)),
                     *port};
  }

  // A sentinel can name the old primary for a moment during a failover: only a server that
  // says it is a master is routed to.
  bool IsMaster(const RedisNode& node) {
    RedisTopologyLink link;
    std::string error;
    if (!link.Connect(node.host, node.port, timeout_ms_, config_.username, config_.password,
                      &error)) {
      return false;
    }
    return RedisRoleOf(&link) == "master";
  }

  void Publish(const RedisNode& node) {
    bool switched = false;
    {
      std::lock_guard<std::mutex> lock(primary_mutex_);
      if (primary_ == node) return;
      switched = primary_.valid();
      primary_ = node;
    }
    epoch_.fetch_add(1, std::memory_order_acq_rel);
    if (switched) stats_.primary_switches.fetch_add(1, std::memory_order_relaxed);
  }

  // Asks the sentinels in order, from the last one that answered; publishes the first primary
  // named whose ROLE is master. Nothing changes when none is found (the clients' commands to
  // the last primary keep failing, and on_error applies) but the failure is counted.
  bool Resolve() {
    const size_t count = sentinel_.addresses.size();
    for (size_t i = 0; i < count; ++i) {
      if (Stopping()) return false;
      const size_t index = (resolve_index_ + i) % count;
      std::optional<RedisNode> named = AskSentinel(sentinel_.addresses[index]);
      if (!named) continue;
      resolve_index_ = index;
      if (IsMaster(*named)) {
        Publish(*named);
        return true;
      }
    }
    stats_.resolve_failures.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  // Subscribes `link` to +switch-master on the next sentinel that lets it, from the last one.
  bool Subscribe(RedisTopologyLink* link) {
    const size_t count = sentinel_.addresses.size();
    for (size_t i = 0; i < count; ++i) {
      if (Stopping()) return false;
      const size_t index = (subscribe_index_ + i) % count;
      const config::RedisEndpoint& address = sentinel_.addresses[index];
      std::string error;
      if (!link->Connect(address.host, address.port, timeout_ms_, sentinel_.username,
                         sentinel_.password, &error)) {
        continue;
      }
      RedisReplyPtr reply = link->Command({"SUBSCRIBE", "+switch-master"});
      if (reply != nullptr && reply->type == REDIS_REPLY_ARRAY) {
        subscribe_index_ = index;
        return true;
      }
      link->Close();
    }
    return false;
  }

  // "+switch-master": "<master> <old-ip> <old-port> <new-ip> <new-port>".
  void OnMessage(const redisReply& reply) {
    if (reply.type != REDIS_REPLY_ARRAY || reply.elements != 3 || !IsString(reply.element[0]) ||
        std::string_view(reply.element[0]->str, reply.element[0]->len) != "message" ||
        !IsString(reply.element[2])) {
      return;
    }
    std::istringstream fields(std::string(reply.element[2]->str, reply.element[2]->len));
    std::string master, old_host, old_port, new_host, new_port;
    if (!(fields >> master >> old_host >> old_port >> new_host >> new_port) ||
        master != sentinel_.master) {
      return;
    }
    auto port = ParsePort(new_port);
    const RedisNode node{ResolveOnce(new_host), port.value_or(0)};
    if (node.valid() && IsMaster(node)) {
      Publish(node);
      next_resolve_ = Clock::now() + recheck_;
    } else {
      next_resolve_ = Clock::now();  // ask the sentinels what they think now
    }
  }

  // Waits up to kPoll for messages on the subscription and handles them. The link is closed
  // when the sentinel is lost (the next iteration subscribes to the next one).
  void ReadMessages(RedisTopologyLink* link) {
    redisContext* context = link->context();
    auto drain = [&]() {
      void* raw = nullptr;
      while (true) {
        if (redisGetReplyFromReader(context, &raw) != REDIS_OK) return false;
        if (raw == nullptr) return true;
        RedisReplyPtr reply(static_cast<redisReply*>(raw));
        OnMessage(*reply);
      }
    };
    // SUBSCRIBE's reply may have come with a message behind it, already in hiredis's buffer.
    if (!drain()) return Lost(link);
    pollfd descriptor{context->fd, POLLIN, 0};
    const int ready = poll(&descriptor, 1, static_cast<int>(kPoll.count()));
    if (ready < 0 && errno == EINTR) return;
    if (ready < 0) return Lost(link);
    if (ready == 0) return;
    if (redisBufferRead(context) != REDIS_OK || !drain()) return Lost(link);
  }

  void Lost(RedisTopologyLink* link) {
    link->Close();
    subscribe_index_ = (subscribe_index_ + 1) % std::max<size_t>(sentinel_.addresses.size(), 1);
    // Messages sent while no one listened are lost: ask at once.
    next_resolve_ = Clock::now();
  }

  void Run() {
    BlockSigpipeOnThisThread();  // hiredis writes with write(2)
    RedisTopologyLink subscription;
    Clock::time_point next_subscribe = Clock::now();
    bool subscribed_before = false;
    while (true) {
      bool suspect = false;
      {
        std::lock_guard<std::mutex> lock(wake_mutex_);
        if (stop_) return;
        std::swap(suspect, suspect_);
      }
      if (suspect || Clock::now() >= next_resolve_) {
        next_resolve_ = Clock::now() + (Resolve() ? recheck_ : kRetry);
      }
      if (!subscription.connected() && Clock::now() >= next_subscribe) {
        if (Subscribe(&subscription)) {
          if (subscribed_before) next_resolve_ = Clock::now();  // a switch may have been missed
          subscribed_before = true;
        } else {
          next_subscribe = Clock::now() + kRetry;
        }
      }
      if (subscription.connected()) {
        ReadMessages(&subscription);
      } else {
        std::unique_lock<std::mutex> lock(wake_mutex_);
        wake_.wait_for(lock, kPoll, [this] { return stop_ || suspect_; });
      }
    }
  }

  const config::RedisConfig config_;
  const config::RedisSentinelConfig sentinel_;
  const int timeout_ms_;
  // A +switch-master message can be missed (no sentinel subscribed at that moment): re-ask anyway.
  const std::chrono::milliseconds recheck_;

  mutable std::mutex primary_mutex_;  // held only to copy primary_, never during I/O
  RedisNode primary_;
  std::atomic<uint64_t> epoch_{0};
  RedisTopologyStats stats_;

  // The thread's own (and the constructor's, before the thread starts).
  size_t resolve_index_ = 0;
  size_t subscribe_index_ = 0;
  Clock::time_point next_resolve_;

  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool suspect_ = false;
  std::thread thread_;
};

}  // namespace

std::shared_ptr<RedisTopology> MakeSentinelTopology(const config::RedisConfig& config,
                                                    SentinelTimings timings) {
  return std::make_shared<SentinelTopology>(config, timings);
}

}  // namespace tollgate::policies
