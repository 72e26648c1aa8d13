#include "policies/redis_topology_link.h"

#include <sys/time.h>

namespace tollgate::policies {

bool RedisTopologyLink::Connect(const std::string& host, int port, int timeout_ms,
                                const std::string& username, const std::string& password,
                                std::string* error) {
  Close();
  const timeval timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  context_ = redisConnectWithTimeout(host.c_str(), port, timeout);
  if (context_ == nullptr || context_->err != 0) {
    *error = context_ == nullptr ? "out of memory" : context_->errstr;
    Close();
    return false;
  }
  if (redisSetTimeout(context_, timeout) != REDIS_OK) {
    *error = "cannot set the socket timeout";
    Close();
    return false;
  }
  if (password.empty()) return true;
  std::vector<std::string> auth = {"AUTH"};
  if (!username.empty()) auth.push_back(username);
  auth.push_back(password);
  RedisReplyPtr reply = Command(auth);
  if (reply == nullptr) {
    *error = "no answer to AUTH";
    return false;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    // Redis's AUTH errors ("WRONGPASS invalid username-password pair") name no secret.
    *error = std::string("AUTH refused: ") + std::string(reply->str, reply->len);
    Close();
    return false;
  }
  return true;
}

RedisReplyPtr RedisTopologyLink::Command(const std::vector<std::string>& argv) {
  if (context_ == nullptr) return nullptr;
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  for (const std::string& arg : argv) {
    args.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  void* reply =
      redisCommandArgv(context_, static_cast<int>(args.size()), args.data(), lengths.data());
  if (reply == nullptr) {
    Close();  // hiredis leaves a context that failed unusable
    return nullptr;
  }
  return RedisReplyPtr(static_cast<redisReply*>(reply));
}

void RedisTopologyLink::Close() {
  if (context_ != nullptr) redisFree(context_);
  context_ = nullptr;
}

std::string RedisRoleOf(RedisTopologyLink* link) {
  RedisReplyPtr reply = link->Command({"ROLE"});
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) return "";
  const redisReply* role = reply->element[0];
  if (role->type != REDIS_REPLY_STRING && role->type != REDIS_REPLY_STATUS) return "";
  return std::string(role->str, role->len);
}

}  // namespace tollgate::policies
