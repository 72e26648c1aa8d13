// What the loop-driven Redis clients (the limiter's connections, RedisLoopClient) share: the
// address resolved once, SIGPIPE blocked on the loop's thread, the handshake, the NOSCRIPT test,
// the one deadline timer over a FIFO of commands, and what follows from the RedisTopology (one
// connection per node per loop, the ROLE check, what a READONLY or a redirect answer means).
//
// Thread-safety: ResolveOnce may block (DNS), so it runs where the client is built, never on a
// loop. A FifoDeadline and a NodeConnections belong to one loop and are used on its thread only.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/model.h"
#include "loop/loop.h"
#include "policies/redis_topology.h"

namespace tollgate::policies {

// The address to connect to, resolved once (on the thread that builds the client): hiredis
// resolves a host name inside redisAsyncConnect, which would block a loop on DNS at every
// reconnect. A name that does not resolve now is kept, so a later connect still tries it.
std::string ResolveOnce(const std::string& host);

// hiredis writes with write(2): a peer that vanished would raise SIGPIPE on the loop's thread.
void BlockSigpipeOnThisThread();

// An error reply saying the script's SHA-1 is unknown to this Redis (restarted, SCRIPT FLUSH).
bool IsNoScript(const redisReply& reply);

// What a new connection sends before anything else: AUTH [username] password when a password
// is set, SELECT db when db is not 0. Empty when neither is needed.
std::vector<std::vector<std::string>> HandshakeCommands(const config::RedisConfig& config);

// Sentinel mode: a new connection also sends ROLE, and is dropped (its node Suspect) unless the
// answer says "master": a sentinel's answer may be stale, and a replica would refuse every write.
bool NeedsRoleCheck(const RedisTopology& topology);
bool IsPrimaryRole(const redisReply& reply);

// What a loop client does with a command's reply before reading it as the answer.
struct ReplyVerdict {
  enum class Kind {
    kAnswer,    // the reply is the answer (an error reply included)
    kReadOnly,  // the node is a replica now: it was reported (Suspect); the command fails
    kRedirect,  // cluster: send the command again to `node` (after ASKING when `asking`)
    kRefused,   // a redirect after the one allowed: the command fails
  };
  Kind kind = Kind::kAnswer;
  RedisNode node;
  bool asking = false;
};
// Reports what the reply tells the topology (Suspect on READONLY, Moved on MOVED, stats().asked
// on an ASK followed). `redirected`: the command was already sent again once. A redirect naming
// a host that is not an IP literal is refused (no DNS on a loop) and asks the topology to read
// its map again (Suspect).
ReplyVerdict JudgeReply(const redisReply& reply, RedisTopology& topology, const RedisNode& from,
                        bool redirected);

// Whether a command may still go to `node`: some key (or slot) routes there (RedisTopology::
// Serves: one look under the topology's lock).
bool StillRouted(const RedisTopology& topology, const RedisNode& node);

// One loop client's connections on one loop, one per node, made on first use. When the
// topology's epoch moved, the ones to nodes no longer routed to are abandoned (Connection::
// Abandon(): close, and answer what is pending later on the loop). Connection needs Flush() and
// Abandon(); the owner calls Flush() from the loop's iteration hook.
template <class Connection>
class NodeConnections {
 public:
  using Make = std::function<std::shared_ptr<Connection>(const RedisNode& node)>;
  NodeConnections(std::shared_ptr<RedisTopology> topology, Make make)
      : topology_(std::move(topology)), make_(std::move(make)), epoch_(topology_->epoch()) {}

  // Cheap unless the epoch moved.
  void Refresh() {
    const uint64_t epoch = topology_->epoch();
    if (epoch == epoch_) return;
    epoch_ = epoch;
    for (auto it = by_node_.begin(); it != by_node_.end();) {
      if (StillRouted(*topology_, it->second.first)) {
        ++it;
        continue;
      }
      std::shared_ptr<Connection> gone = std::move(it->second.second);
      it = by_node_.erase(it);
      gone->Abandon();
      // Kept until the next Flush: Refresh may run inside that connection's own callback (an
      // answer whose caller asked again).
      retired_.push_back(std::move(gone));
    }
  }

  Connection* For(const RedisNode& node) {
    const std::string name = node.ToString();
    auto found = by_node_.find(name);
    if (found == by_node_.end()) {
      found = by_node_.emplace(name, std::make_pair(node, make_(node))).first;
    }
    return found->second.second.get();
  }

  // From the loop's iteration hook. It also notices a new epoch without traffic (a connection
  // to a node no longer routed to would otherwise keep probing it, and keep its breaker open).
  // A Flush may answer (a lost connection fails what it held) and an answer may ask again: the
  // connections are walked over a copy (kept between calls, so no allocation per iteration).
  void Flush() {
    Refresh();
    retired_.clear();
    std::vector<std::shared_ptr<Connection>> all;
    all.swap(walk_);
    for (auto& [name, connection] : by_node_) all.push_back(connection.second);
    for (auto& connection : all) connection->Flush();
    all.clear();
    walk_.swap(all);
  }

  RedisTopology& topology() { return *topology_; }

 private:
  const std::shared_ptr<RedisTopology> topology_;
  const Make make_;
  uint64_t epoch_;
  std::map<std::string, std::pair<RedisNode, std::shared_ptr<Connection>>> by_node_;
  std::vector<std::shared_ptr<Connection>> retired_;
  std::vector<std::shared_ptr<Connection>> walk_;  // Flush's copy, empty between calls
};

// One timer over a FIFO of commands in flight, firing at the earliest deadline among them:
// replies come in the order the commands were sent, so nothing behind the oldest can have been
// answered while it was not. Usually the deadlines are in the order sent too, and the oldest's
// is the earliest; a redirected (or TRYAGAIN) command keeps the deadline it started with and is
// queued behind later ones: then the timer is set earlier (Arm) and, until the FIFO drains, its
// expiry looks at every deadline. `earliest(all)` tells the oldest pending command's deadline
// (all = false) or the earliest of them all (all = true; none: nothing pending); `expired` runs
// (on the loop) once some pending command's deadline has passed. Arm(deadline) after sending a
// command: O(1). After an answer nothing is needed (when the timer fires it looks again).
class FifoDeadline {
 public:
  using Clock = std::chrono::steady_clock;
  FifoDeadline(loop::Loop* loop, std::function<std::optional<Clock::time_point>(bool all)> earliest,
               std::function<void()> expired);
  ~FifoDeadline();
  FifoDeadline(const FifoDeadline&) = delete;
  FifoDeadline& operator=(const FifoDeadline&) = delete;

  void Arm(Clock::time_point deadline);
  // After the FIFO was cleared (the connection dropped or closed).
  void Cancel();

 private:
  void SetTimer(Clock::time_point at);
  void Fired();

  loop::Loop* const loop_;
  const std::function<std::optional<Clock::time_point>(bool all)> earliest_;
  const std::function<void()> expired_;
  loop::Loop::TimerId timer_ = 0;
  Clock::time_point armed_for_;  // when timer_ fires
  Clock::time_point last_sent_;  // the deadline of the command sent last
  bool out_of_order_ = false;    // some command was sent with an earlier deadline than one before
};

}  // namespace tollgate::policies
