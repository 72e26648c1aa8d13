#include "policies/redis_connection.h"

#include <signal.h>
#include <sys/time.h>

#include <ctime>

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

RedisConnection::RedisConnection(const config::RedisConfig& config) : config_(config) {}

RedisConnection::~RedisConnection() { Close(); }

void RedisConnection::Close() {
  if (context_ != nullptr) redisFree(context_);
  context_ = nullptr;
  DiscardPendingSigpipe();
}

bool RedisConnection::Open() {
  if (context_ != nullptr && context_->err == 0) return true;
  Close();
  const int timeout_ms = config_.timeout_ms > 0 ? config_.timeout_ms : 50;
  timeval timeout{timeout_ms / 1000, static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
  context_ = redisConnectWithTimeout(config_.host.c_str(), config_.port, timeout);
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
  return true;
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
  return true;
}

RedisReplyPtr RedisConnection::Command(const std::vector<std::string>& argv) {
  std::vector<RedisReplyPtr> replies;
  if (!Pipeline({argv}, &replies)) return nullptr;
  return std::move(replies.front());
}

}  // namespace tollgate::policies
