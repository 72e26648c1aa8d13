// One synchronous hiredis connection whose every step (connect, AUTH, SELECT, each reply) is
// bounded by the configured timeout, so a dead or stalled Redis costs at most that long.
//
// It connects where the RedisTopology routes its owner's route key (the key its commands are
// about, "" for none), and again when the topology's epoch moved. In sentinel mode a new
// connection checks ROLE; a READONLY answer reports the node (Suspect) and fails like an I/O
// error; a cluster MOVED/ASK answer to Command() is followed once.
//
// Not thread-safe: one thread owns a RedisConnection. After any I/O error the connection is
// closed and the next Open() reconnects.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/model.h"
#include "policies/redis_topology.h"

namespace tollgate::policies {

struct RedisReplyDeleter {
  void operator()(redisReply* reply) const {
    if (reply != nullptr) freeReplyObject(reply);
  }
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyDeleter>;

class RedisConnection {
 public:
  // Asks RedisTopology::For(config) (may block on a first resolve). `config` must outlive this.
  explicit RedisConnection(const config::RedisConfig& config, std::string route_key = "");
  RedisConnection(const config::RedisConfig& config, std::shared_ptr<RedisTopology> topology,
                  std::string route_key);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Connects (and authenticates, selects the db) unless already connected to the node the route
  // key still routes to. False on failure.
  bool Open();
  void Close();
  bool connected() const { return context_ != nullptr; }

  // Sends every command in one write and reads the replies in order: one round trip. Returns
  // false on an I/O error or timeout (the connection is then closed); `replies` holds the ones
  // read before it. Error replies from Redis are replies, not failures, except READONLY (a
  // failure); a redirect is reported to the topology and returned as it is.
  bool Pipeline(const std::vector<std::vector<std::string>>& commands,
                std::vector<RedisReplyPtr>* replies);

  // One command; nullptr on an I/O error, a timeout or READONLY. A MOVED/ASK is followed once.
  RedisReplyPtr Command(const std::vector<std::string>& argv);

 private:
  bool ConnectTo(const RedisNode& node);
  // Reads a reply's news for the topology: false (and closed) on READONLY.
  bool Judge(const redisReply& reply);

  const config::RedisConfig& config_;
  const std::shared_ptr<RedisTopology> topology_;
  const std::string route_key_;
  redisContext* context_ = nullptr;
  RedisNode node_;      // where context_ is connected
  uint64_t epoch_ = 0;  // the topology's epoch when it was chosen
};

}  // namespace tollgate::policies
