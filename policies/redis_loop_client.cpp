// RedisLoopClient: one connection per loop and node (a loop local ClientRouter of
// ClientConnections, like the limiter's in rate_limiter_redis.cpp, without its breaker probe and
// fallback: a failure here is simply an answer of nullptr). Commands are pipelined: each one is
// queued on the link at once and the loop's iteration hook writes everything queued in one go;
// replies arrive in the order sent, so one FIFO of pending commands and one deadline timer (on the
// oldest) are enough.

#include "policies/redis_loop_client.h"

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "loop/loop.h"
#include "policies/redis_loop_link.h"
#include "policies/redis_loop_shared.h"
#include "policies/redis_topology.h"

namespace tollgate::policies {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr int kFailuresToBackOff = 3;
constexpr milliseconds kFirstBackoff{250};
constexpr milliseconds kMaxBackoff{5000};

std::string Sha1Hex(const std::string& text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha1(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0xf]);
  }
  return hex;
}

}  // namespace

RedisScript::RedisScript(std::string text) : source(std::move(text)), sha1(Sha1Hex(source)) {}

struct RedisLoopClient::Core {
  Core(const config::RedisConfig& c, std::shared_ptr<RedisTopology> t)
      : config(c),
        timeout(milliseconds(c.timeout_ms > 0 ? c.timeout_ms : 50)),
        topology(std::move(t)) {}

  // Answers a failed command and counts it.
  void Fail(const Done& done) {
    failures.fetch_add(1, std::memory_order_relaxed);
    done(nullptr);
  }

  const config::RedisConfig config;
  const milliseconds timeout;
  const std::shared_ptr<RedisTopology> topology;
  std::atomic<uint64_t> failures{0};
};

namespace {

using Core = RedisLoopClient::Core;
using Done = RedisLoopClient::Done;

class ClientRouter;

// What a command carries from its Submit to its answer (and through a redirect).
struct ClientCommand {
  std::vector<std::string> argv;
  const RedisScript* script = nullptr;  // an EVALSHA of it, sent again once after a NOSCRIPT
  Done done;
  Clock::time_point deadline;  // set once: a redirect does not extend it
  bool redirected = false;     // sent again after MOVED/ASK: a second redirect fails it
  bool asking = false;         // ASK: sent behind an ASKING
};

// One loop's connection to one node and the commands in flight on it. Owned by the loop's
// ClientRouter; runs on that loop's thread except the destructor, which may run after the loop
// stopped (its locals cleared by another thread): it then answers what is pending inline, since
// nothing runs later.
class ClientConnection {
 public:
  ClientConnection(std::shared_ptr<Core> core, loop::Loop* loop, ClientRouter* router,
                   RedisNode node)
      : core_(std::move(core)), loop_(loop), router_(router), node_(std::move(node)) {}

  ~ClientConnection() {
    deadline_.Cancel();
    if (link_ != nullptr) link_->Close();
    link_.reset();
    FailAll();
  }

  void Flush() {
    if (link_ != nullptr) link_->Flush();
  }

  // The node is no longer routed to: closed, what is pending fails (later, on the loop).
  void Abandon() {
    deadline_.Cancel();
    if (link_ != nullptr) link_->Close();
    link_.reset();
    std::deque<Entry> inflight;
    inflight.swap(inflight_);
    loading_.clear();
    for (Entry& entry : inflight) {
      if (entry.command.done) FailLater(std::move(entry.command.done));
    }
  }

  void Submit(ClientCommand command) {
    if (consecutive_failures_ >= kFailuresToBackOff && Clock::now() < retry_at_) {
      FailLater(std::move(command.done));
      return;
    }
    if (!EnsureLink(command.deadline)) {
      if (node_.valid()) core_->topology->Suspect(node_);
      RecordFailure();
      FailLater(std::move(command.done));
      return;
    }
    if (command.script != nullptr) {
      scripts_.try_emplace(command.script->sha1, command.script->source);
    }
    if (command.asking) SendEntry(Special(Type::kAsking, command.deadline, {"ASKING"}));
    Entry entry;
    entry.command = std::move(command);
    SendEntry(std::move(entry));
  }

 private:
  enum class Type { kHandshake, kRole, kAsking, kCommand, kScriptLoad };
  struct Entry {
    Type type = Type::kCommand;
    ClientCommand command;  // kCommand: its argv; the others: what they send, no `done`
    bool retried = false;   // the EVALSHA is its retry after NOSCRIPT
    std::string loading;    // kScriptLoad: the script's sha1
  };

  // `first`: the deadline of the command that needs the link, so a handshake never makes it
  // wait past its own (a redirected command keeps the deadline it started with).
  bool EnsureLink(Clock::time_point first) {
    if (link_ != nullptr) return true;
    if (!node_.valid()) return false;  // nothing known yet: fails like a refused connect
    link_ = RedisLoopLink::Connect(
        loop_, node_.host, node_.port, [this](const redisReply& reply) { OnReply(reply); },
        [this] { Lost(); }, nullptr);
    if (link_ == nullptr) return false;
    const Clock::time_point deadline = std::min(first, Clock::now() + core_->timeout);
    for (auto& argv : HandshakeCommands(core_->config)) {
      SendEntry(Special(Type::kHandshake, deadline, std::move(argv)));
    }
    if (NeedsRoleCheck(*core_->topology)) SendEntry(Special(Type::kRole, deadline, {"ROLE"}));
    return true;
  }

  static Entry Special(Type type, Clock::time_point deadline, std::vector<std::string> argv) {
    Entry entry;
    entry.type = type;
    entry.command.deadline = deadline;
    entry.command.argv = std::move(argv);
    return entry;
  }

  void SendEntry(Entry entry) {
    if (link_ == nullptr || !link_->Send(entry.command.argv)) {
      // Only a link that is already closing refuses a command; its others are failed with it.
      if (entry.command.done) FailLater(std::move(entry.command.done));
      return;
    }
    // A command keeps its arguments for a retry (NOSCRIPT) or a redirect; the others need not.
    if (entry.type != Type::kCommand) entry.command.argv.clear();
    const Clock::time_point deadline = entry.command.deadline;
    inflight_.push_back(std::move(entry));
    deadline_.Arm(deadline);
  }

  void OnReply(const redisReply& reply) {
    if (inflight_.empty()) return;  // cannot happen: one entry per command sent
    Entry entry = std::move(inflight_.front());
    inflight_.pop_front();
    switch (entry.type) {
      case Type::kHandshake:
        if (reply.type == REDIS_REPLY_ERROR) {
          Drop();  // a refused AUTH or SELECT: nothing behind it may run as the wrong user/db
          return;
        }
        RecordSuccess();
        return;
      case Type::kRole:
        if (!IsPrimaryRole(reply)) {
          core_->topology->Suspect(node_);
          Drop();  // a replica: everything behind would be refused (or read stale data)
          return;
        }
        RecordSuccess();
        return;
      case Type::kAsking:
        return;  // its command's reply tells
      case Type::kScriptLoad:
        // An error (NOPERM, OOM) needs no handling here: the EVALSHA sent behind it hears
        // NOSCRIPT again, and that error reply is its answer.
        loading_.erase(entry.loading);
        RecordSuccess();
        return;
      case Type::kCommand:
        break;
    }
    RecordSuccess();
    const ReplyVerdict verdict =
        JudgeReply(reply, *core_->topology, node_, entry.command.redirected);
    switch (verdict.kind) {
      case ReplyVerdict::Kind::kAnswer:
        break;
      case ReplyVerdict::Kind::kReadOnly: {
        // A replica now: everything pending here would be refused too.
        Done done = std::move(entry.command.done);
        Drop();
        core_->Fail(done);
        return;
      }
      case ReplyVerdict::Kind::kRefused:
        core_->Fail(entry.command.done);
        return;
      case ReplyVerdict::Kind::kRedirect:
        Redirect(std::move(entry.command), verdict);
        return;
    }
    if (entry.command.script != nullptr && !entry.retried && IsNoScript(reply)) {
      Reload(std::move(entry));
      return;
    }
    entry.command.done(&reply);
  }

  // Defined after ClientRouter, which finds (or makes) the connection to the node named.
  void Redirect(ClientCommand command, const ReplyVerdict& verdict);

  // EVALSHA answered NOSCRIPT (Redis restarted or flushed its scripts): load it, then send the
  // same EVALSHA once more behind the load. Replies come in order, so the retry finds the script
  // (or hears NOSCRIPT again when the load was refused, and that is its answer).
  void Reload(Entry entry) {
    const std::string sha = entry.command.script->sha1;
    auto source = scripts_.find(sha);
    if (source == scripts_.end()) {
      core_->Fail(entry.command.done);  // cannot happen: every EVALSHA sent registered its script
      return;
    }
    if (loading_.insert(sha).second) {
      Entry load = Special(Type::kScriptLoad, Clock::now() + core_->timeout,
                           {"SCRIPT", "LOAD", source->second});
      load.loading = sha;
      SendEntry(std::move(load));
    }
    entry.retried = true;  // its deadline unchanged: no command waits longer than timeout_ms
    // A node importing the slot serves it only right after ASKING, the retry too.
    if (entry.command.asking) {
      SendEntry(Special(Type::kAsking, entry.command.deadline, {"ASKING"}));
    }
    SendEntry(std::move(entry));
  }

  // Drops the connection (lost, timed out, refused the handshake) and fails everything pending
  // on it. The failure is recorded first, so a `done` that sends again already sees the
  // back-off.
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
    loading_.clear();
    for (Entry& entry : inflight) {
      if (entry.command.done) core_->Fail(entry.command.done);
    }
  }

  void RecordSuccess() {
    consecutive_failures_ = 0;
    backoff_ = kFirstBackoff;
  }

  void RecordFailure() {
    ++consecutive_failures_;
    if (consecutive_failures_ < kFailuresToBackOff) return;
    backoff_ = consecutive_failures_ == kFailuresToBackOff ? kFirstBackoff
                                                           : std::min(backoff_ * 2, kMaxBackoff);
    retry_at_ = Clock::now() + backoff_;
  }

  // An answer known at once still goes through the loop: a caller never re-enters itself.
  void FailLater(Done done) {
    std::shared_ptr<Core> core = core_;
    auto held = std::make_shared<Done>(std::move(done));
    if (!loop_->Post([core, held] { core->Fail(*held); })) core_->Fail(*held);
  }

  const std::shared_ptr<Core> core_;
  loop::Loop* const loop_;
  ClientRouter* const router_;  // owns this connection
  const RedisNode node_;
  std::shared_ptr<RedisLoopLink> link_;
  std::deque<Entry> inflight_;                            // one per command sent, in order
  std::unordered_map<std::string, std::string> scripts_;  // sha1 -> source, of scripts sent here
  std::unordered_set<std::string> loading_;               // sha1s whose SCRIPT LOAD is in flight
  // Watches the earliest deadline in inflight_ (FifoDeadline); a timeout drops the connection.
  FifoDeadline deadline_{loop_,
                         [this](bool all) -> std::optional<Clock::time_point> {
                           if (inflight_.empty()) return std::nullopt;
                           Clock::time_point earliest = inflight_.front().command.deadline;
                           if (!all) return earliest;
                           for (const Entry& entry : inflight_) {
                             earliest = std::min(earliest, entry.command.deadline);
                           }
                           return earliest;
                         },
                         [this] { Lost(); }};

  int consecutive_failures_ = 0;
  milliseconds backoff_ = kFirstBackoff;
  Clock::time_point retry_at_;
};

// One loop's connections of this client, one per node (made on first use), in the loop's
// locals: routes each command by its route key and closes the connections to nodes the topology
// no longer routes to once its epoch moved.
class ClientRouter {
 public:
  static std::shared_ptr<ClientRouter> Make(std::shared_ptr<Core> core, loop::Loop* loop) {
    BlockSigpipeOnThisThread();
    auto router = std::make_shared<ClientRouter>(std::move(core), loop);
    std::weak_ptr<ClientRouter> weak = router;
    // Hooks live as long as the loop; the router may go first (Loop::Release).
    loop->AddIterationHook([weak] {
      if (auto self = weak.lock()) self->connections_.Flush();
    });
    return router;
  }

  ClientRouter(std::shared_ptr<Core> core, loop::Loop* loop)
      : core_(std::move(core)), connections_(core_->topology, [this, loop](const RedisNode& node) {
          return std::make_shared<ClientConnection>(core_, loop, this, node);
        }) {}

  void Submit(std::string_view route_key, ClientCommand command) {
    connections_.Refresh();
    command.deadline = Clock::now() + core_->timeout;
    connections_.For(core_->topology->Route(route_key))->Submit(std::move(command));
  }

  // A redirected command, once: to the connection for the node named, its deadline unchanged.
  void Redirect(ClientCommand command, const ReplyVerdict& verdict) {
    // Too late to be answered: sent on, it would only time out the node it was sent to.
    if (Clock::now() >= command.deadline) {
      core_->Fail(command.done);
      return;
    }
    command.redirected = true;
    command.asking = verdict.asking;
    connections_.For(verdict.node)->Submit(std::move(command));
  }

 private:
  const std::shared_ptr<Core> core_;
  NodeConnections<ClientConnection> connections_;
};

void ClientConnection::Redirect(ClientCommand command, const ReplyVerdict& verdict) {
  router_->Redirect(std::move(command), verdict);
}

// The loop's router of this client, made on first use. Its owner key is the Core, which the
// router keeps alive: a later client can never be handed an earlier one's connections.
ClientRouter* RouterOn(loop::Loop* loop, const std::shared_ptr<Core>& core) {
  return loop->Local<ClientRouter>(core.get(),
                                   [&core, loop] { return ClientRouter::Make(core, loop); });
}

}  // namespace

RedisLoopClient::RedisLoopClient(const config::RedisConfig& config)
    : RedisLoopClient(config, RedisTopology::For(config)) {}

RedisLoopClient::RedisLoopClient(const config::RedisConfig& config,
                                 std::shared_ptr<RedisTopology> topology)
    : core_(std::make_shared<Core>(config, std::move(topology))) {}

RedisLoopClient::~RedisLoopClient() = default;

void RedisLoopClient::Command(std::string_view route_key, std::vector<std::string> argv,
                              Done done) {
  loop::Loop* loop = loop::Loop::Current();
  if (loop == nullptr) {
    // Not on a loop (a broken contract): there is nowhere to answer later, so fail now.
    core_->Fail(done);
    return;
  }
  ClientCommand command;
  command.argv = std::move(argv);
  command.done = std::move(done);
  RouterOn(loop, core_)->Submit(route_key, std::move(command));
}

void RedisLoopClient::Eval(const RedisScript& script, std::vector<std::string> keys,
                           std::vector<std::string> args, Done done) {
  loop::Loop* loop = loop::Loop::Current();
  if (loop == nullptr) {
    core_->Fail(done);
    return;
  }
  std::vector<std::string> argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha1);
  argv.push_back(std::to_string(keys.size()));
  const std::string route_key = keys.empty() ? std::string() : keys.front();
  for (std::string& key : keys) argv.push_back(std::move(key));
  for (std::string& arg : args) argv.push_back(std::move(arg));
  ClientCommand command;
  command.argv = std::move(argv);
  command.script = &script;
  command.done = std::move(done);
  RouterOn(loop, core_)->Submit(route_key, std::move(command));
}

const config::RedisConfig& RedisLoopClient::config() const { return core_->config; }

uint64_t RedisLoopClient::failures() const {
  return core_->failures.load(std::memory_order_relaxed);
}

}  // namespace tollgate::policies
