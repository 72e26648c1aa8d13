#include "policies/redis_connection.h"

#include <signal.h>
#include <sys/time.h>

#include <ctime>
#include <utility>

#include "policies/redis_loop_shared.h"

namespace tollgate::policies {
namespace {

bool AppendCommand(redisContext* context, const std::vector<std::string>& argv) {
  std::vector<const char*> pointers;
  std::vector<size_t> lengths;
  pointers.reserve(argv.size());
  lengths.reserve(argv.size());
  for (const std::string& arg : argv) {
    pointers.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  return redisAppendCommandArgv(context, static_cast<int>(argv.size()), pointers.data(),
                                lengths.data()) == REDIS_OK;
}

// hiredis writes with write(2): a peer that vanished raises SIGPIPE on this thread. The owning
// thread blocks it (see BlockSigpipeOnThisThread in the limiter); this consumes the pending one
// so it cannot fire if the mask is ever lifted.
void DiscardPendingSigpipe() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  sigset_t pending;
  if (sigpending(&pending) != 0 || sigismember(&pending, SIGPIPE) != 1) return;
  timespec zero{0, 0};
  sigtimedwait(&set, nullptr, &zero);
}

bool IsOk(const RedisReplyPtr& reply) {
  return reply != nullptr && reply->type != REDIS_REPLY_ERROR;
}

}  // namespace

RedisConnection::RedisConnection(const config::RedisConfig& config, std::string route_key)
    : RedisConnection(config, RedisTopology::For(config), std::move(route_key)) {}

RedisConnection::RedisConnection(const config::RedisConfig& config,
                                 std::shared_ptr<RedisTopology> topology, std::string route_key)
    : config_(config), topology_(std::move(topology)), route_key_(std::move(route_key)) {}

RedisConnection::~RedisConnection() { Close(); }

void RedisConnection::Close() {
  if (context_ != nullptr) redisFree(context_);
  context_ = nullptr;
  DiscardPendingSigpipe();
}

bool RedisConnection::Open() {
  const uint64_t epoch = topology_->epoch();
  if (context_ != nullptr && context_->err == 0) {
    if (epoch == epoch_) return true;
    // The primary or the slot map changed: stay only if the key still routes here.
    if (topology_->Route(route_key_) == node_) {
      epoch_ = epoch;
      return true;
    }
  }
  Close();
  epoch_ = epoch;
  return ConnectTo(topology_->Route(route_key_));
}

bool RedisConnection::ConnectTo(const RedisNode& node) {
  Close();
  if (!node.valid()) return false;  // nothing known yet: like a refused connect
  node_ = node;
  const int timeout_ms = config_.timeout_ms > 0 ? config_.timeout_ms : 50;
  timeval timeout{timeout_ms / 1000, static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
  context_ = redisConnectWithTimeout(node.host.c_str(), node.port, timeout);
  if (context_ == nullptr || context_->err != 0 || redisSetTimeout(context_, timeout) != REDIS_OK) {
    Close();
    return false;
  }
  if (!config_.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!config_.username.empty()) auth.push_back(config_.username);
    auth.push_back(config_.password);
    if (!IsOk(Command(auth))) {
      Close();
      return false;
    }
  }
  if (config_.db != 0 && !IsOk(Command({"SELECT", std::to_string(config_.db)}))) {
    Close();
    return false;
  }
  if (NeedsRoleCheck(*topology_)) {
    RedisReplyPtr role = Command({"ROLE"});
    if (role == nullptr || !IsPrimaryRole(*role)) {
      if (role != nullptr) topology_->Suspect(node);
      Close();
      return false;
    }
  }
  return true;
}

bool RedisConnection::Judge(const redisReply& reply) {
  if (JudgeReply(reply, *topology_, node_, true).kind != ReplyVerdict::Kind::kReadOnly) {
    return true;
  }
  Close();
  return false;
}

bool RedisConnection::Pipeline(const std::vector<std::vector<std::string>>& commands,
                               std::vector<RedisReplyPtr>* replies) {
  if (context_ == nullptr) return false;
  for (const auto& argv : commands) {
    if (!AppendCommand(context_, argv)) {
      Close();
      return false;
    }
  }
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(context_, &raw) != REDIS_OK || raw == nullptr) {
      if (raw != nullptr) freeReplyObject(raw);
      Close();
      return false;
    }
    replies->emplace_back(static_cast<redisReply*>(raw));
  }
  for (const RedisReplyPtr& reply : *replies) {
    if (!Judge(*reply)) return false;
  }
  return true;
}

RedisReplyPtr RedisConnection::Command(const std::vector<std::string>& argv) {
  std::vector<RedisReplyPtr> replies;
  if (!Pipeline({argv}, &replies)) return nullptr;
  RedisReplyPtr reply = std::move(replies.front());
  const std::optional<RedisRedirect> redirect = ParseRedisRedirect(*reply);
  if (!redirect) return reply;
  // Pipeline already reported a MOVED (Moved); followed here once, a second redirect is the
  // answer. After MOVED the connection stays on the new node, which the key now routes to.
  const bool ask = redirect->kind == RedisRedirect::Kind::kAsk;
  if (ask) topology_->stats().asked.fetch_add(1);
  const uint64_t epoch = topology_->epoch();
  if (!ConnectTo(redirect->node)) return nullptr;
  epoch_ = epoch;
  replies.clear();
  if (ask) {
    if (!Pipeline({{"ASKING"}, argv}, &replies)) return nullptr;
    Close();  // the slot is still routed to the old node: the next Open goes back there
    return std::move(replies.back());
  }
  if (!Pipeline({argv}, &replies)) return nullptr;
  return std::move(replies.front());
}

}  // namespace tollgate::policies
