#include "policies/redis_cluster.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "policies/redis_loop_shared.h"
#include "policies/redis_topology_link.h"

namespace tollgate::policies {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kSlots = 16384;
// Redirects come in bursts (every command for a moved slot): one read covers them all.
constexpr std::chrono::milliseconds kMinReadInterval(100);
constexpr std::chrono::milliseconds kRetry(500);

// Which node serves each slot: an index into `nodes`, -1 when no node does.
struct SlotMap {
  std::vector<RedisNode> nodes;
  std::array<int16_t, kSlots> owner;
  SlotMap() { owner.fill(-1); }

  int IndexOf(const RedisNode& node) {
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (nodes[i] == node) return static_cast<int>(i);
    }
    nodes.push_back(node);
    return static_cast<int>(nodes.size() - 1);
  }
  RedisNode At(int slot) const {
    const int index = owner[slot];
    return index < 0 ? RedisNode{} : nodes[index];
  }
  // Whether every slot goes to the same address in both (compared by index, no string copies:
  // this runs under the lock Route takes).
  bool SameRoutes(const SlotMap& other) const {
    std::vector<int> translated(other.nodes.size(), -2);
    for (size_t b = 0; b < other.nodes.size(); ++b) {
      for (size_t a = 0; a < nodes.size(); ++a) {
        if (nodes[a] == other.nodes[b]) translated[b] = static_cast<int>(a);
      }
    }
    for (int slot = 0; slot < kSlots; ++slot) {
      const int theirs = other.owner[slot] < 0 ? -1 : translated[other.owner[slot]];
      if (owner[slot] != theirs) return false;
    }
    return true;
  }
};

// CLUSTER SLOTS: [[start, end, [host, port, id, ...], replicas...], ...]. A master that does not
// know its own address answers "" for its host: that is the node asked. "?" (Redis 7: its
// preferred endpoint is unknown) routes nowhere: those slots are unserved until a later read.
// A host name (cluster-preferred-endpoint-type hostname) is resolved here, on the topology's
// thread, so no loop ever connects by name (redisAsyncConnect would resolve it on the loop).
std::optional<SlotMap> ParseClusterSlots(const redisReply& reply, const RedisNode& asked) {
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements == 0) return std::nullopt;
  SlotMap map;
  for (size_t i = 0; i < reply.elements; ++i) {
    const redisReply* range = reply.element[i];
    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
        range->element[0]->type != REDIS_REPLY_INTEGER ||
        range->element[1]->type != REDIS_REPLY_INTEGER ||
        range->element[2]->type != REDIS_REPLY_ARRAY || range->element[2]->elements < 2) {
      return std::nullopt;
    }
    const long long start = range->element[0]->integer;
    const long long end = range->element[1]->integer;
    const redisReply* master = range->element[2];
    if (start < 0 || end >= kSlots || start > end ||
        master->element[0]->type != REDIS_REPLY_STRING ||
        master->element[1]->type != REDIS_REPLY_INTEGER) {
      return std::nullopt;
    }
    std::string host(master->element[0]->str, master->element[0]->len);
    if (host == "?") continue;
    if (host.empty()) host = asked.host;
    if (!IsIpLiteral(host)) host = ResolveOnce(host);
    const RedisNode node{host, static_cast<int>(master->element[1]->integer)};
    // A name that did not resolve stays a name: unserved rather than resolved on a loop.
    if (!node.valid() || !IsIpLiteral(node.host)) continue;
    const int index = map.IndexOf(node);
    for (long long slot = start; slot <= end; ++slot) map.owner[slot] = static_cast<int16_t>(index);
  }
  return map;
}

class ClusterTopology final : public RedisTopology {
 public:
  ClusterTopology(const config::RedisConfig& config, ClusterTimings timings)
      : config_(config), timeout_ms_(std::max(config.timeout_ms, 100)), reread_(timings.reread) {
    for (const config::RedisEndpoint& seed : config.cluster->addresses) {
      seeds_.push_back(RedisNode{ResolveOnce(seed.host), seed.port});
    }
    last_read_ = Clock::now();
    next_read_ = last_read_ + (ReadSlots() ? reread_ : kRetry);
    thread_ = std::thread([this] { Run(); });
  }

  ~ClusterTopology() override {
    {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  Mode mode() const override { return Mode::kCluster; }

  RedisNode Route(std::string_view key) const override {
    if (key.empty()) {
      std::lock_guard<std::mutex> lock(map_mutex_);
      return any_master_ < 0 ? RedisNode{} : map_.nodes[any_master_];
    }
    return RouteSlot(RedisHashSlot(key));
  }

  RedisNode RouteSlot(int slot) const override {
    if (slot < 0 || slot >= kSlots) return RedisNode{};
    std::lock_guard<std::mutex> lock(map_mutex_);
    return map_.At(slot);
  }

  // One look under the lock: whether `node` is in the map and owns some slot.
  bool Serves(const RedisNode& node) const override {
    std::lock_guard<std::mutex> lock(map_mutex_);
    for (size_t i = 0; i < map_.nodes.size(); ++i) {
      if (map_.nodes[i] != node) continue;
      const auto index = static_cast<int16_t>(i);
      return std::find(map_.owner.begin(), map_.owner.end(), index) != map_.owner.end();
    }
    return false;
  }

  uint64_t epoch() const override { return epoch_.load(std::memory_order_acquire); }

  // A lost or timed-out connection, a READONLY answer: the map is read again (requests within
  // ~100 ms share one read).
  void Suspect(const RedisNode&) override { RequestRead(); }

  void Moved(int slot, const RedisNode& node) override {
    if (slot < 0 || slot >= kSlots || !node.valid()) return;
    bool changed = false;
    {
      std::lock_guard<std::mutex> lock(map_mutex_);
      const int index = map_.IndexOf(node);
      changed = map_.owner[slot] != index;
      map_.owner[slot] = static_cast<int16_t>(index);
      if (any_master_ < 0) any_master_ = index;
      ++moves_;
    }
    stats_.moved.fetch_add(1, std::memory_order_relaxed);
    if (changed) epoch_.fetch_add(1, std::memory_order_acq_rel);
    RequestRead();
  }

  std::string Describe() const override {
    std::set<int16_t> masters;
    {
      std::lock_guard<std::mutex> lock(map_mutex_);
      for (int16_t owner : map_.owner) {
        if (owner >= 0) masters.insert(owner);
      }
    }
    return "cluster of " + std::to_string(masters.size()) + " masters";
  }

  RedisTopologyStats& stats() override { return stats_; }

 private:
  void RequestRead() {
    {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      read_requested_ = true;
    }
    wake_.notify_all();
  }

  bool Stopping() {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    return stop_;
  }

  // The masters of the current map first (the seeds may be gone), then the seeds.
  std::vector<RedisNode> Candidates() const {
    std::vector<RedisNode> candidates;
    {
      std::lock_guard<std::mutex> lock(map_mutex_);
      candidates = map_.nodes;
    }
    for (const RedisNode& seed : seeds_) {
      if (std::find(candidates.begin(), candidates.end(), seed) == candidates.end()) {
        candidates.push_back(seed);
      }
    }
    return candidates;
  }

  // Reads CLUSTER SLOTS from the first node that answers it; swaps the map in when it differs.
  bool ReadSlots() {
    for (const RedisNode& node : Candidates()) {
      if (Stopping()) return false;
      RedisTopologyLink link;
      std::string error;
      if (!link.Connect(node.host, node.port, timeout_ms_, config_.username, config_.password,
                        &error)) {
        continue;
      }
      uint64_t moves_before = 0;
      {
        std::lock_guard<std::mutex> lock(map_mutex_);
        moves_before = moves_;
      }
      RedisReplyPtr reply = link.Command({"CLUSTER", "SLOTS"});
      if (reply == nullptr) continue;
      std::optional<SlotMap> read = ParseClusterSlots(*reply, node);
      if (!read) continue;  // an error, or a node that serves no slot yet
      Install(std::move(*read), moves_before);
      return true;
    }
    stats_.resolve_failures.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  void Install(SlotMap read, uint64_t moves_before) {
    int any = -1;
    for (int16_t owner : read.owner) {
      if (owner >= 0) {
        any = owner;
        break;
      }
    }
    bool changed = false;
    bool moved_meanwhile = false;
    {
      std::lock_guard<std::mutex> lock(map_mutex_);
      changed = !map_.SameRoutes(read);
      moved_meanwhile = moves_ != moves_before;
      if (changed) {
        map_ = std::move(read);
        any_master_ = any;
      }
    }
    if (changed) {
      epoch_.fetch_add(1, std::memory_order_acq_rel);
      stats_.slot_map_refreshes.fetch_add(1, std::memory_order_relaxed);
    }
    // A MOVED kept while the answer was on its way may be newer than the answer: read again.
    if (moved_meanwhile) RequestRead();
  }

  void Run() {
    BlockSigpipeOnThisThread();  // hiredis writes with write(2)
    std::unique_lock<std::mutex> lock(wake_mutex_);
    while (!stop_) {
      wake_.wait_until(lock, next_read_, [this] { return stop_ || read_requested_; });
      if (stop_) return;
      if (read_requested_) {
        // Coalesce: at most one read per kMinReadInterval however many requests arrive.
        wake_.wait_until(lock, last_read_ + kMinReadInterval, [this] { return stop_; });
        if (stop_) return;
        read_requested_ = false;
      } else if (Clock::now() < next_read_) {
        continue;
      }
      lock.unlock();
      const bool ok = ReadSlots();
      lock.lock();
      last_read_ = Clock::now();
      next_read_ = last_read_ + (ok ? reread_ : kRetry);
    }
  }

  const config::RedisConfig config_;
  const int timeout_ms_;
  const std::chrono::milliseconds reread_;
  std::vector<RedisNode> seeds_;

  // Held only to copy or set entries, never during I/O. SlotMap is 32 KiB: compared and swapped
  // under it every few seconds, which is a few microseconds.
  mutable std::mutex map_mutex_;
  SlotMap map_;
  int any_master_ = -1;  // the answer to Route(""): a node that serves some slot
  uint64_t moves_ = 0;   // Moved() calls, to tell whether one came during a read
  std::atomic<uint64_t> epoch_{0};
  RedisTopologyStats stats_;

  std::mutex wake_mutex_;  // guards the fields below
  std::condition_variable wake_;
  bool stop_ = false;
  bool read_requested_ = false;
  Clock::time_point last_read_;
  Clock::time_point next_read_;
  std::thread thread_;
};

}  // namespace

std::shared_ptr<RedisTopology> MakeClusterTopology(const config::RedisConfig& config,
                                                   ClusterTimings timings) {
  return std::make_shared<ClusterTopology>(config, timings);
}

}  // namespace tollgate::policies
