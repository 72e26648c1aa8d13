// A blocking hiredis connection for the topology threads (redis_sentinel.cpp, redis_cluster.cpp):
// connect and every read/write bounded by one timeout, AUTH on connect. Never used on a loop.
//
// Thread-safety: one link belongs to one thread at a time.
#pragma once

#include <hiredis/hiredis.h>

#include <string>
#include <vector>

#include "policies/redis_connection.h"  // RedisReplyPtr

namespace tollgate::policies {

class RedisTopologyLink {
 public:
  RedisTopologyLink() = default;
  ~RedisTopologyLink() { Close(); }
  RedisTopologyLink(const RedisTopologyLink&) = delete;
  RedisTopologyLink& operator=(const RedisTopologyLink&) = delete;

  // Connects (replacing any connection) and sends AUTH [username] password when a password is
  // set. False with *error (never holding the password) when it cannot.
  bool Connect(const std::string& host, int port, int timeout_ms, const std::string& username,
               const std::string& password, std::string* error);
  // One command, its reply; nullptr on an I/O error or timeout (the link is closed then). An
  // error reply is a reply.
  RedisReplyPtr Command(const std::vector<std::string>& argv);
  bool connected() const { return context_ != nullptr; }
  redisContext* context() { return context_; }
  void Close();

 private:
  redisContext* context_ = nullptr;
};

// The role of the server a link is on, from ROLE ("master", "slave", "sentinel"), or "" when it
// did not answer.
std::string RedisRoleOf(RedisTopologyLink* link);

}  // namespace tollgate::policies
