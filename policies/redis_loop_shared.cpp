#include "policies/redis_loop_shared.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>

namespace tollgate::policies {

std::string ResolveOnce(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) return host;
  char text[INET6_ADDRSTRLEN] = {0};
  const void* addr =
      found->ai_family == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(found->ai_addr)->sin6_addr)
          : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(found->ai_addr)->sin_addr);
  std::string out = inet_ntop(found->ai_family, addr, text, sizeof text) ? text : host;
  freeaddrinfo(found);
  return out;
}

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

std::vector<std::vector<std::string>> HandshakeCommands(const config::RedisConfig& config) {
  std::vector<std::vector<std::string>> commands;
  if (!config.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!config.username.empty()) auth.push_back(config.username);
    auth.push_back(config.password);
    commands.push_back(std::move(auth));
  }
  if (config.db != 0) commands.push_back({"SELECT", std::to_string(config.db)});
  return commands;
}

bool NeedsRoleCheck(const RedisTopology& topology) {
  return topology.mode() == RedisTopology::Mode::kSentinel;
}

bool IsPrimaryRole(const redisReply& reply) {
  if (reply.type != REDIS_REPLY_ARRAY || reply.elements == 0) return false;
  const redisReply* role = reply.element[0];
  return role != nullptr &&
         (role->type == REDIS_REPLY_STRING || role->type == REDIS_REPLY_STATUS) &&
         std::string_view(role->str, role->len) == "master";
}

ReplyVerdict JudgeReply(const redisReply& reply, RedisTopology& topology, const RedisNode& from,
                        bool redirected) {
  ReplyVerdict verdict;
  if (reply.type != REDIS_REPLY_ERROR) return verdict;
  if (IsRedisReadOnly(reply)) {
    topology.Suspect(from);
    verdict.kind = ReplyVerdict::Kind::kReadOnly;
    return verdict;
  }
  const std::optional<RedisRedirect> redirect = ParseRedisRedirect(reply);
  if (!redirect) return verdict;
  if (!IsIpLiteral(redirect->node.host)) {
    // A host name (cluster-preferred-endpoint-type hostname): connecting to it from the loop
    // would resolve it there. The slot map is read again (its names resolved off the loops);
    // this command fails.
    topology.Suspect(from);
    verdict.kind = ReplyVerdict::Kind::kRefused;
    return verdict;
  }
  const bool moved = redirect->kind == RedisRedirect::Kind::kMoved;
  // Kept even when not followed: the next command for that slot goes the right way.
  if (moved) topology.Moved(redirect->slot, redirect->node);
  if (redirected) {
    verdict.kind = ReplyVerdict::Kind::kRefused;
    return verdict;
  }
  if (!moved) topology.stats().asked.fetch_add(1);
  verdict.kind = ReplyVerdict::Kind::kRedirect;
  verdict.node = redirect->node;
  verdict.asking = !moved;
  return verdict;
}

bool StillRouted(const RedisTopology& topology, const RedisNode& node) {
  return topology.Serves(node);
}

FifoDeadline::FifoDeadline(loop::Loop* loop,
                           std::function<std::optional<Clock::time_point>(bool all)> earliest,
                           std::function<void()> expired)
    : loop_(loop), earliest_(std::move(earliest)), expired_(std::move(expired)) {}

FifoDeadline::~FifoDeadline() { Cancel(); }

void FifoDeadline::Arm(Clock::time_point deadline) {
  if (timer_ != 0 && deadline < last_sent_) out_of_order_ = true;
  last_sent_ = deadline;
  if (timer_ != 0 && deadline >= armed_for_) return;  // the common case: nothing to do
  SetTimer(deadline);
}

void FifoDeadline::SetTimer(Clock::time_point at) {
  using std::chrono::milliseconds;
  if (timer_ != 0) loop_->Cancel(timer_);
  armed_for_ = at;
  const auto left = std::chrono::ceil<milliseconds>(at - Clock::now());
  timer_ = loop_->After(std::max(left, milliseconds(0)), [this] { Fired(); });
}

void FifoDeadline::Fired() {
  timer_ = 0;
  // In order, the oldest's deadline is the earliest; after a redirect every one is looked at
  // (once per expiry, not per command), until nothing is pending.
  const std::optional<Clock::time_point> earliest = earliest_(out_of_order_);
  if (!earliest) {
    out_of_order_ = false;
    return;
  }
  if (Clock::now() >= *earliest) {
    out_of_order_ = false;
    expired_();  // timed out: hiredis has no timeouts of its own in async mode
  } else {
    SetTimer(*earliest);
  }
}

void FifoDeadline::Cancel() {
  if (timer_ != 0) loop_->Cancel(timer_);
  timer_ = 0;
  out_of_order_ = false;
}

}  // namespace tollgate::policies
