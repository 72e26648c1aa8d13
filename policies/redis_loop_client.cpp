// RedisLoopClient: one connection per loop (a loop local, like the limiter's LoopConnection in
// rate_limiter_redis.cpp, without its breaker probe and fallback: a failure here is simply an
// answer of nullptr). Commands are pipelined: each one is queued on the link at once and the
// loop's iteration hook writes everything queued in one go; replies arrive in the order sent, so
// one FIFO of pending commands and one deadline timer (on the oldest) are enough.

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
  explicit Core(const config::RedisConfig& c)
      : config(c),
        timeout(milliseconds(c.timeout_ms > 0 ? c.timeout_ms : 50)),
        address(ResolveOnce(c.host)) {}

  // Answers a failed command and counts it.
  void Fail(const Done& done) {
    failures.fetch_add(1, std::memory_order_relaxed);
    done(nullptr);
  }

  const config::RedisConfig config;
  const milliseconds timeout;
  const std::string address;  // config.host, resolved once
  std::atomic<uint64_t> failures{0};
};

namespace {

using Core = RedisLoopClient::Core;
using Done = RedisLoopClient::Done;

// One loop's connection and the commands in flight on it. Lives in the loop's locals; runs on
// that loop's thread except the destructor, which may run after the loop stopped (its locals
// cleared by another thread): it then answers what is pending inline, since nothing runs later.
class ClientConnection {
 public:
  static std::shared_ptr<ClientConnection> Make(std::shared_ptr<Core> core, loop::Loop* loop) {
    BlockSigpipeOnThisThread();
    auto connection = std::make_shared<ClientConnection>(std::move(core), loop);
    std::weak_ptr<ClientConnection> weak = connection;
    // Hooks live as long as the loop; the connection may go first (Loop::Release).
    loop->AddIterationHook([weak] {
      if (auto self = weak.lock()) self->Flush();
    });
    return connection;
  }

  ClientConnection(std::shared_ptr<Core> core, loop::Loop* loop)
      : core_(std::move(core)), loop_(loop) {}

  ~ClientConnection() {
    deadline_.Cancel();
    if (link_ != nullptr) link_->Close();
    link_.reset();
    FailAll();
  }

  // `script` (may be null): the command is an EVALSHA of it, sent again once after a NOSCRIPT.
  void Submit(std::vector<std::string> argv, const RedisScript* script, Done done) {
    if (consecutive_failures_ >= kFailuresToBackOff && Clock::now() < retry_at_) {
      FailLater(std::move(done));
      return;
    }
    if (!EnsureLink()) {
      RecordFailure();
      FailLater(std::move(done));
      return;
    }
    Entry entry;
    entry.done = std::move(done);
    if (script == nullptr) {
      SendEntry(&argv, std::move(entry));
      return;
    }
    scripts_.try_emplace(script->sha1, script->source);
    entry.argv = std::move(argv);
    SendEntry(nullptr, std::move(entry));
  }

 private:
  enum class Type { kHandshake, kCommand, kScriptLoad };
  struct Entry {
    Type type = Type::kCommand;
    Done done;                      // kCommand
    std::vector<std::string> argv;  // an EVALSHA's, kept for its one retry after NOSCRIPT
    bool retried = false;           // the EVALSHA is that retry
    std::string loading;            // kScriptLoad: the script's sha1
    Clock::time_point deadline;
  };

  void Flush() {
    if (link_ != nullptr) link_->Flush();
  }

  bool EnsureLink() {
    if (link_ != nullptr) return true;
    link_ = RedisLoopLink::Connect(
        loop_, core_->address, core_->config.port,
        [this](const redisReply& reply) { OnReply(reply); }, [this] { Drop(); }, nullptr);
    if (link_ == nullptr) return false;
    for (const auto& argv : HandshakeCommands(core_->config)) SendEntry(&argv, Handshake());
    return true;
  }

  static Entry Handshake() {
    Entry entry;
    entry.type = Type::kHandshake;
    return entry;
  }

  // Sends `argv`, or the entry's own (an EVALSHA's, kept for its retry) when that is null.
  void SendEntry(const std::vector<std::string>* argv, Entry entry) {
    if (link_ == nullptr || !link_->Send(argv != nullptr ? *argv : entry.argv)) {
      // Only a link that is already closing refuses a command; its others are failed with it.
      if (entry.done) FailLater(std::move(entry.done));
      return;
    }
    entry.deadline = Clock::now() + core_->timeout;
    inflight_.push_back(std::move(entry));
    deadline_.Arm();
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
    if (!entry.argv.empty() && !entry.retried && IsNoScript(reply)) {
      Reload(std::move(entry));
      return;
    }
    entry.done(&reply);
  }

  // EVALSHA answered NOSCRIPT (Redis restarted or flushed its scripts): load it, then send the
  // same EVALSHA once more behind the load. Replies come in order, so the retry finds the script
  // (or hears NOSCRIPT again when the load was refused, and that is its answer).
  void Reload(Entry entry) {
    const std::string& sha = entry.argv[1];
    auto source = scripts_.find(sha);
    if (source == scripts_.end()) {
      core_->Fail(entry.done);  // cannot happen: every EVALSHA sent registered its script
      return;
    }
    if (loading_.insert(sha).second) {
      Entry load;
      load.type = Type::kScriptLoad;
      load.loading = sha;
      const std::vector<std::string> argv = {"SCRIPT", "LOAD", source->second};
      SendEntry(&argv, std::move(load));
    }
    entry.retried = true;
    SendEntry(nullptr, std::move(entry));
  }

  // Drops the connection (lost, timed out, refused the handshake) and fails everything pending
  // on it. The failure is recorded first, so a `done` that sends again already sees the
  // back-off.
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
      if (entry.done) core_->Fail(entry.done);
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
  std::shared_ptr<RedisLoopLink> link_;
  std::deque<Entry> inflight_;                            // one per command sent, in order
  std::unordered_map<std::string, std::string> scripts_;  // sha1 -> source, of scripts sent here
  std::unordered_set<std::string> loading_;               // sha1s whose SCRIPT LOAD is in flight
  // Watches the oldest command in inflight_; a timeout drops the connection.
  FifoDeadline deadline_{loop_,
                         [this]() -> std::optional<Clock::time_point> {
                           if (inflight_.empty()) return std::nullopt;
                           return inflight_.front().deadline;
                         },
                         [this] { Drop(); }};

  int consecutive_failures_ = 0;
  milliseconds backoff_ = kFirstBackoff;
  Clock::time_point retry_at_;
};

// The loop's connection of this client, made on first use. Its owner key is the Core, which the
// connection keeps alive: a later client can never be handed an earlier one's connection.
ClientConnection* ConnectionOn(loop::Loop* loop, const std::shared_ptr<Core>& core) {
  return loop->Local<ClientConnection>(
      core.get(), [&core, loop] { return ClientConnection::Make(core, loop); });
}

}  // namespace

RedisLoopClient::RedisLoopClient(const config::RedisConfig& config)
    : core_(std::make_shared<Core>(config)) {}

RedisLoopClient::~RedisLoopClient() = default;

void RedisLoopClient::Command(std::vector<std::string> argv, Done done) {
  loop::Loop* loop = loop::Loop::Current();
  if (loop == nullptr) {
    // Not on a loop (a broken contract): there is nowhere to answer later, so fail now.
    core_->Fail(done);
    return;
  }
  ConnectionOn(loop, core_)->Submit(std::move(argv), nullptr, std::move(done));
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
  for (std::string& key : keys) argv.push_back(std::move(key));
  for (std::string& arg : args) argv.push_back(std::move(arg));
  ConnectionOn(loop, core_)->Submit(std::move(argv), &script, std::move(done));
}

const config::RedisConfig& RedisLoopClient::config() const { return core_->config; }

uint64_t RedisLoopClient::failures() const {
  return core_->failures.load(std::memory_order_relaxed);
}

}  // namespace tollgate::policies
