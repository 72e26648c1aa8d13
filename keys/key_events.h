// The background side of run-time keys, on one thread of its own (blocking hiredis with
// timeouts is fine there: no request ever waits on it):
//   - subscribes to `<prefix>{keys}:events` and drops each id it names from the KeyCache
//     ("*": everything); reconnects with a back-off when the connection is lost, and on every
//     (re)subscription drops the whole cache (events missed meanwhile are not replayed) and tells
//     the cache the subscription is live (KeyCache::SetSubscribed);
//   - every `flush_interval` writes the last-use stamps (KeyCache::TakeLastUsed) in one HSET to
//     `<prefix>{keys}:last_used`;
//   - every `count_interval` counts the keys by state for the gauge (one Lua script over
//     `<prefix>{keys}:ids`, evaluated at the gateway's clock).
// Stop() (or the destructor) ends the thread within about 200 ms, flushing the stamps once more.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "config/model.h"
#include "keys/key_cache.h"

namespace tollgate::keys {

struct KeyStateCounts {
  bool known = false;  // false until the first count succeeded
  int64_t active = 0, grace = 0, expired = 0, revoked = 0;
};

struct KeyEventsOptions {
  std::chrono::milliseconds flush_interval{10000};
  std::chrono::milliseconds count_interval{15000};
};

class KeyEvents {
 public:
  // Starts the thread. `cache` outlives this object.
  KeyEvents(const config::RedisConfig& redis, KeyCache* cache, KeyEventsOptions options = {});
  ~KeyEvents();
  KeyEvents(const KeyEvents&) = delete;
  KeyEvents& operator=(const KeyEvents&) = delete;

  void Stop();
  // Asks for a count soon (after an admin change), without waiting for it.
  void CountSoon();

  KeyStateCounts counts() const;
  bool subscribed() const { return subscribed_.load(); }
  uint64_t events_received() const { return events_.load(); }

 private:
  // The subscription (its own thread, so no Redis command ever delays an event).
  void Run();
  // The last-use stamps and the count, over an ordinary connection.
  void RunCommands();
  void Wake();

  const config::RedisConfig redis_;
  KeyCache* const cache_;
  const KeyEventsOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> count_soon_{false};
  std::atomic<bool> subscribed_{false};
  std::atomic<uint64_t> events_{0};
  mutable std::mutex mu_;
  KeyStateCounts counts_;
  int wake_fd_ = -1;  // an eventfd: Stop and CountSoon end the thread's wait at once
  std::mutex stop_mu_;
  std::mutex commands_mu_;
  std::condition_variable commands_cv_;  // Stop and CountSoon end RunCommands' wait at once
  std::thread thread_;
  std::thread commands_thread_;
};

}  // namespace tollgate::keys
