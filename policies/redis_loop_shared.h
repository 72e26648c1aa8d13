// What the loop-driven Redis clients (the limiter's connections, RedisLoopClient) share: the
// address resolved once, SIGPIPE blocked on the loop's thread, the handshake, the NOSCRIPT test,
// and the one deadline timer over a FIFO of commands.
//
// Thread-safety: ResolveOnce may block (DNS), so it runs where the client is built, never on a
// loop. A FifoDeadline belongs to one loop and is used on its thread only.
#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "config/model.h"
#include "loop/loop.h"

namespace tollgate::policies {

// The address to connect to, resolved once (on the thread that builds the client): hiredis
// resolves a host name inside redisAsyncConnect, which would block a loop on DNS at every
// reconnect. A name that does not resolve now is kept, so a later connect still tries it.
std::string ResolveOnce(const std::string& host);

// hiredis writes with write(2): a peer that vanished would raise SIGPIPE on the loop's thread.
void BlockSigpipeOnThisThread();

// An error reply saying the script's SHA-1 is unknown to this Redis (restarted, SCRIPT FLUSH).
bool IsNoScript(const redisReply& reply);

// What a new connection sends before anything else: AUTH [username] password when a password
// is set, SELECT db when db is not 0. Empty when neither is needed.
std::vector<std::vector<std::string>> HandshakeCommands(const config::RedisConfig& config);

// One timer over a FIFO of commands in flight: replies come in the order the commands were sent,
// so nothing behind the oldest can have been answered while it was not, and only the oldest
// needs watching. `oldest` tells the oldest pending command's deadline (none: nothing pending);
// `expired` runs (on the loop) once that deadline has passed. Arm() after sending a command;
// after an answer nothing is needed (when the timer fires it looks at the oldest again).
class FifoDeadline {
 public:
  using Clock = std::chrono::steady_clock;
  FifoDeadline(loop::Loop* loop, std::function<std::optional<Clock::time_point>()> oldest,
               std::function<void()> expired);
  ~FifoDeadline();
  FifoDeadline(const FifoDeadline&) = delete;
  FifoDeadline& operator=(const FifoDeadline&) = delete;

  void Arm();
  void Cancel();

 private:
  loop::Loop* const loop_;
  const std::function<std::optional<Clock::time_point>()> oldest_;
  const std::function<void()> expired_;
  loop::Loop::TimerId timer_ = 0;
};

}  // namespace tollgate::policies
