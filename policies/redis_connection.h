// One synchronous hiredis connection whose every step (connect, AUTH, SELECT, each reply) is
// bounded by the configured timeout, so a dead or stalled Redis costs at most that long.
//
// Not thread-safe: one thread owns a RedisConnection. After any I/O error the connection is
// closed and the next Open() reconnects.
#pragma once

#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <vector>

#include "config/model.h"

namespace tollgate::policies {

struct RedisReplyDeleter {
  void operator()(redisReply* reply) const {
    if (reply != nullptr) freeReplyObject(reply);
  }
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyDeleter>;

class RedisConnection {
 public:
  explicit RedisConnection(const config::RedisConfig& config);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Connects (and authenticates, selects the db) unless already connected. False on failure.
  bool Open();
  void Close();
  bool connected() const { return context_ != nullptr; }

  // Sends every command in one write and reads the replies in order: one round trip. Returns
  // false on an I/O error or timeout (the connection is then closed); `replies` holds the ones
  // read before it. Error replies from Redis are replies, not failures.
  bool Pipeline(const std::vector<std::vector<std::string>>& commands,
                std::vector<RedisReplyPtr>* replies);

  // One command; nullptr on an I/O error or timeout.
  RedisReplyPtr Command(const std::vector<std::string>& argv);

 private:
  const config::RedisConfig& config_;
  redisContext* context_ = nullptr;
};

}  // namespace tollgate::policies
