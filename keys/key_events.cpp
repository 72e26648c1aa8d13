#include "keys/key_events.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keys/key_store.h"
#include "policies/redis_connection.h"
#include "policies/redis_loop_shared.h"
#include "policies/redis_topology.h"

namespace tollgate::keys {
namespace {

using policies::RedisReplyPtr;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Every blocking step on the subscription (connect, AUTH, SELECT, SUBSCRIBE) is bounded by this,
// and so is each wait for an event: the thread looks at its timers and at Stop this often.
constexpr milliseconds kTick{200};
constexpr milliseconds kFirstBackoff{100};
constexpr milliseconds kMaxBackoff{2000};
// The subscription is silent while nothing changes: a PING every kHeartbeat proves it is alive,
// and one unanswered for kHeartbeatTimeout (a connection a NAT or firewall dropped without a
// word) counts as lost, so entries stop being trusted beyond 1 s instead of for cache_ttl.
constexpr milliseconds kHeartbeat{250};
constexpr milliseconds kHeartbeatTimeout{750};
// A failed count is tried again this soon (not a whole count_interval later).
constexpr milliseconds kCountRetry{1000};
// The stamps and the count go over an ordinary connection; the count script reads every record,
// so it gets more than the request path's timeout (redis.timeout_ms, 50 ms by default).
constexpr int kMinCommandTimeoutMs = 500;
// Intervals shorter than this (a misconfiguration) would make the thread spin.
constexpr milliseconds kMinInterval{10};

// Counts the records by state (key_record.h) at the gateway's clock (ARGV[1], unix ms). An id
// whose record is missing is not counted. A rotated key without expires_at counts as grace.
constexpr const char* kCountScript = R"lua(
local now = tonumber(ARGV[1])
local active, grace, expired, revoked = 0, 0, 0, 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', ARGV[2] .. id, 'created_at', 'revoked_at', 'expires_at',
                       'replaced_by')
  if f[1] then
    local revoked_at, expires_at = tonumber(f[2]), tonumber(f[3])
    if revoked_at and revoked_at <= now then
      revoked = revoked + 1
    elseif expires_at and expires_at <= now then
      expired = expired + 1
    elseif f[4] and f[4] ~= '' then
      grace = grace + 1
    else
      active = active + 1
    end
  end
end
return {active, grace, expired, revoked}
)lua";

void BlockSigpipeOnThisThread() {  // hiredis writes with write(2)
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

timeval ToTimeval(milliseconds d) {
  return timeval{static_cast<time_t>(d.count() / 1000),
                 static_cast<suseconds_t>((d.count() % 1000) * 1000)};
}

int64_t UnixMs(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}

struct ContextDeleter {
  void operator()(redisContext* context) const {
    if (context != nullptr) redisFree(context);
  }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;

RedisReplyPtr Call(redisContext* context, const std::vector<std::string>& argv) {
  std::vector<const char*> pointers;
  std::vector<size_t> lengths;
  for (const std::string& arg : argv) {
    pointers.push_back(arg.data());
    lengths.push_back(arg.size());
  }
  return RedisReplyPtr(static_cast<redisReply*>(
      redisCommandArgv(context, static_cast<int>(argv.size()), pointers.data(), lengths.data())));
}

bool IsString(const redisReply* reply, std::string_view text) {
  return reply != nullptr &&
         (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) &&
         std::string_view(reply->str, reply->len) == text;
}

// A connection to `node` subscribed to `channel` (its SUBSCRIBE confirmed), or null.
ContextPtr Subscribe(const config::RedisConfig& redis, const policies::RedisNode& node,
                     const std::string& channel) {
  if (!node.valid()) return nullptr;  // nothing known yet (no sentinel answered)
  const timeval tick = ToTimeval(kTick);
  ContextPtr context(redisConnectWithTimeout(node.host.c_str(), node.port, tick));
  if (context == nullptr || context->err != 0 || redisSetTimeout(context.get(), tick) != REDIS_OK) {
    return nullptr;
  }
  if (!redis.password.empty()) {
    std::vector<std::string> auth = {"AUTH"};
    if (!redis.username.empty()) auth.push_back(redis.username);
    auth.push_back(redis.password);
    const RedisReplyPtr reply = Call(context.get(), auth);
    if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) return nullptr;
  }
  if (redis.db != 0) {  // channels are not per db; a refused SELECT still says the setup is wrong
    const RedisReplyPtr reply = Call(context.get(), {"SELECT", std::to_string(redis.db)});
    if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) return nullptr;
  }
  const RedisReplyPtr reply = Call(context.get(), {"SUBSCRIBE", channel});
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
      !IsString(reply->element[0], "subscribe") || !IsString(reply->element[1], channel)) {
    return nullptr;
  }
  return context;
}

}  // namespace

KeyEvents::KeyEvents(const config::RedisConfig& redis, KeyCache* cache, KeyEventsOptions options)
    : redis_(redis), cache_(cache), options_(options) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  thread_ = std::thread(&KeyEvents::Run, this);
  commands_thread_ = std::thread(&KeyEvents::RunCommands, this);
}

KeyEvents::~KeyEvents() {
  Stop();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void KeyEvents::Stop() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  stop_.store(true);
  Wake();
  {
    std::lock_guard<std::mutex> wake(commands_mu_);
    commands_cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  if (commands_thread_.joinable()) commands_thread_.join();
}

void KeyEvents::CountSoon() {
  std::lock_guard<std::mutex> wake(commands_mu_);
  count_soon_.store(true);
  commands_cv_.notify_all();
}

KeyStateCounts KeyEvents::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

void KeyEvents::Wake() {
  if (wake_fd_ < 0) return;  // no eventfd: the thread still sees the flag within a tick
  const uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0) {
    // Full (it never is: the thread drains it) or closed: the flag is seen within a tick.
  }
}

void KeyEvents::Run() {
  BlockSigpipeOnThisThread();
  const std::string channel = KeyNames(redis_.key_prefix).Events();
  // Keyless: the primary (a message published there reaches it), any node of a cluster (pub/sub
  // is broadcast). Asked again at every (re)connect, and when the epoch moved away from it.
  const std::shared_ptr<policies::RedisTopology> topology = policies::RedisTopology::For(redis_);
  policies::RedisNode subscribed_to;
  uint64_t epoch = 0;
  ContextPtr subscription;
  milliseconds backoff = kFirstBackoff;
  auto next_connect = steady_clock::now();
  auto next_ping = next_connect;
  std::optional<steady_clock::time_point> ping_sent;  // a PING not answered yet

  // Events missed while unsubscribed are not replayed: after every (re)subscription, nothing
  // cached before is trusted without a new lookup.
  const auto on_subscribed = [&] {
    cache_->Unverify();
    cache_->SetSubscribed(true, steady_clock::now());
    subscribed_.store(true);
    backoff = kFirstBackoff;
    ping_sent.reset();
    next_ping = steady_clock::now() + kHeartbeat;
  };
  const auto on_lost = [&] {
    subscription.reset();
    cache_->SetSubscribed(false, steady_clock::now());
    subscribed_.store(false);
    next_connect = steady_clock::now() + backoff;
    backoff = std::min(backoff * 2, kMaxBackoff);
  };
  const auto handle = [&](const redisReply& reply) {
    if (reply.type != REDIS_REPLY_ARRAY) return;
    if (reply.elements == 2 && IsString(reply.element[0], "pong")) {
      ping_sent.reset();
      next_ping = steady_clock::now() + kHeartbeat;
      return;
    }
    if (reply.elements != 3 || !IsString(reply.element[0], "message")) return;
    const redisReply* payload = reply.element[2];
    if (payload == nullptr || payload->type != REDIS_REPLY_STRING) return;
    const std::string_view id(payload->str, payload->len);
    if (id == "*") {
      cache_->InvalidateAll();
    } else {
      cache_->Invalidate(id);
    }
    events_.fetch_add(1);
  };
  // The replies hiredis has read: false when the connection is broken.
  const auto drain = [&]() {
    for (;;) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(subscription.get(), &raw) != REDIS_OK) return false;
      if (raw == nullptr) return true;
      const RedisReplyPtr reply(static_cast<redisReply*>(raw));
      handle(*reply);
    }
  };
  // Writes a PING on the subscription (a subscribed connection may send PING): false when the
  // connection is broken.
  const auto ping = [&]() {
    if (redisAppendCommand(subscription.get(), "PING") != REDIS_OK) return false;
    int done = 0;
    while (done == 0) {
      if (redisBufferWrite(subscription.get(), &done) != REDIS_OK) return false;
    }
    ping_sent = steady_clock::now();
    return true;
  };

  while (!stop_.load()) {
    auto now = steady_clock::now();
    if (subscription != nullptr && topology->epoch() != epoch) {
      epoch = topology->epoch();
      if (!policies::StillRouted(*topology, subscribed_to)) {
        on_lost();
        next_connect = now;  // not a failure: the primary moved
      }
    }
    if (subscription == nullptr && now >= next_connect) {
      epoch = topology->epoch();
      subscribed_to = topology->Route("");
      subscription = Subscribe(redis_, subscribed_to, channel);
      if (subscription != nullptr) {
        on_subscribed();
      } else {
        next_connect = steady_clock::now() + backoff;
        backoff = std::min(backoff * 2, kMaxBackoff);
      }
      if (stop_.load()) break;
      now = steady_clock::now();
    }
    if (subscription != nullptr && !drain()) on_lost();
    if (subscription != nullptr) {
      if (ping_sent && now - *ping_sent > kHeartbeatTimeout) {
        on_lost();
      } else if (!ping_sent && now >= next_ping && !ping()) {
        on_lost();
      }
    }

    // Wait for an event, a wake-up, or the next timer, whichever is first (at most a tick).
    auto until = now + kTick;
    if (subscription == nullptr) {
      until = std::min(until, next_connect);
    } else {
      until = std::min(until, ping_sent ? *ping_sent + kHeartbeatTimeout : next_ping);
    }
    const auto wait = std::chrono::ceil<milliseconds>(until - steady_clock::now());
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {-1, POLLIN, 0}};
    if (subscription != nullptr) fds[1].fd = subscription->fd;
    const int ready =
        poll(fds, 2, static_cast<int>(std::clamp(wait, milliseconds(0), kTick).count()));
    if (ready <= 0) continue;
    if (fds[0].revents != 0) {
      uint64_t value = 0;
      if (read(wake_fd_, &value, sizeof(value)) < 0) {
        // Nothing to read (another wake-up was drained with it).
      }
    }
    if (subscription != nullptr && fds[1].revents != 0) {
      if (redisBufferRead(subscription.get()) != REDIS_OK || !drain()) on_lost();
    }
  }
  if (subscription != nullptr) on_lost();
}

void KeyEvents::RunCommands() {
  BlockSigpipeOnThisThread();
  const KeyNames names(redis_.key_prefix);
  const std::string last_used = names.LastUsed();
  const std::string ids = names.Ids();
  const std::string records = names.Record("");
  config::RedisConfig command_config = redis_;
  command_config.timeout_ms = std::max(command_config.timeout_ms, kMinCommandTimeoutMs);
  // Each by the key its command is about (in a cluster they may live on different nodes).
  policies::RedisConnection stamping(command_config, last_used);
  policies::RedisConnection counting(command_config, ids);
  const milliseconds flush_interval = std::max(options_.flush_interval, kMinInterval);
  const milliseconds count_interval = std::max(options_.count_interval, kMinInterval);
  auto next_flush = steady_clock::now() + flush_interval;
  auto next_count = steady_clock::now();  // the gauge is known as soon as Redis answers

  const auto flush = [&] {
    const auto stamps = cache_->TakeLastUsed(steady_clock::now());
    if (stamps.empty()) return;
    std::vector<std::string> argv = {"HSET", last_used};
    for (const auto& [id, when] : stamps) {
      argv.push_back(id);
      argv.push_back(std::to_string(UnixMs(when)));
    }
    const RedisReplyPtr reply = stamping.Open() ? stamping.Command(argv) : nullptr;
    if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) {
      // Kept for a later flush (once that id's interval has passed).
      for (const auto& [id, when] : stamps) cache_->Touch(id, when);
    }
  };
  const auto count = [&] {
    const RedisReplyPtr reply =
        counting.Open()
            ? counting.Command({"EVAL", kCountScript, "1", ids,
                                std::to_string(UnixMs(std::chrono::system_clock::now())), records})
            : nullptr;
    if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) return false;
    for (size_t i = 0; i < 4; ++i) {
      if (reply->element[i]->type != REDIS_REPLY_INTEGER) return false;
    }
    std::lock_guard<std::mutex> lock(mu_);
    counts_.known = true;
    counts_.active = reply->element[0]->integer;
    counts_.grace = reply->element[1]->integer;
    counts_.expired = reply->element[2]->integer;
    counts_.revoked = reply->element[3]->integer;
    return true;
  };

  while (!stop_.load()) {
    if (steady_clock::now() >= next_flush) {
      flush();
      next_flush = steady_clock::now() + flush_interval;
    }
    if (count_soon_.exchange(false) || steady_clock::now() >= next_count) {
      const bool ok = count();
      next_count =
          steady_clock::now() + (ok ? count_interval : std::min(count_interval, kCountRetry));
    }
    std::unique_lock<std::mutex> lock(commands_mu_);
    commands_cv_.wait_until(lock, std::min(next_flush, next_count),
                            [&] { return stop_.load() || count_soon_.load(); });
  }
  flush();
}

}  // namespace tollgate::keys
