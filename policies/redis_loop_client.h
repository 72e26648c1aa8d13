// A general Redis command client for code that runs on loops (run-time key lookups, the admin
// API's key operations): each loop that sends gets its own connection (a loop local built on
// RedisLoopLink), made on first use with the config's AUTH/SELECT handshake. Commands queued in
// one loop iteration go out in one write; replies come back on the loop that sent, in order.
//
// Failure is always an answer, never a wait: every command has a deadline (redis.timeout_ms); a
// timeout, a lost connection or a refused handshake fails every command pending on that loop's
// connection (`done(nullptr)`), and after kFailuresToBackOff failures in a row commands fail at
// once for a back-off (250 ms, doubling to 5 s) before the next connect is tried. `done` is
// never called inline from Command/Eval: always later, on the same loop.
//
// Where a command goes is the RedisTopology's answer for its route key (see Command): a loop
// keeps one connection per node. In sentinel mode a new connection checks ROLE (not master: the
// node is reported and the commands behind fail); a READONLY answer reports the node and fails
// the command; a cluster MOVED/ASK is followed once (a second redirect fails the command).
//
// The rate limiter keeps its own connections (its breaker and fallback are specific to it).
//
// Thread-safety: Command/Eval must be called on a loop thread (loop::Loop::Current() != null);
// different loops may call concurrently. The client must outlive the loops it was used on (like
// every loop-local owner), or be destroyed only after they stopped.
#pragma once

#include <hiredis/hiredis.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"

namespace tollgate::policies {

class RedisTopology;

// A Lua script sent by EVALSHA (its SHA-1 computed once), loaded on NOSCRIPT.
struct RedisScript {
  explicit RedisScript(std::string source);
  std::string source;
  std::string sha1;  // lower-case hex
};

class RedisLoopClient {
 public:
  // `reply` is valid only during the call; nullptr when the command failed (no connection,
  // timeout, handshake refused). An error reply (REDIS_REPLY_ERROR) is a reply, not a failure.
  using Done = std::function<void(const redisReply* reply)>;

  // Asks RedisTopology::For(config) (may block on a first resolve: build it off the loops).
  explicit RedisLoopClient(const config::RedisConfig& config);
  RedisLoopClient(const config::RedisConfig& config, std::shared_ptr<RedisTopology> topology);
  ~RedisLoopClient();
  RedisLoopClient(const RedisLoopClient&) = delete;
  RedisLoopClient& operator=(const RedisLoopClient&) = delete;

  // Sent to the node the topology routes `route_key` to: the command's first key, "" for a
  // command with none (PING, INFO: the primary, or any master of a cluster).
  void Command(std::string_view route_key, std::vector<std::string> argv, Done done);
  // EVALSHA sha numkeys keys... args...; on NOSCRIPT, SCRIPT LOAD and once more. Routed by
  // keys[0] ("" when there is none).
  void Eval(const RedisScript& script, std::vector<std::string> keys, std::vector<std::string> args,
            Done done);

  const config::RedisConfig& config() const;
  // Commands that failed (not error replies): for metrics.
  uint64_t failures() const;

  struct Core;  // shared with the per-loop connections (defined in the .cpp)

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace tollgate::policies
