#include "usage/usage_service.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "policies/redis_connection.h"
#include "policies/redis_loop_client.h"

namespace tollgate::usage {
namespace {

// Reads of many days and flushes of big batches get at least this long from Redis.
constexpr int kMinTimeoutMs = 2000;
// A replica's flush marker outlives any retry of its last batch by far.
constexpr int64_t kMarkerTtlSeconds = 30 * 86400;

config::RedisConfig WithMinTimeout(config::RedisConfig redis) {
  redis.timeout_ms = std::max(redis.timeout_ms, kMinTimeoutMs);
  return redis;
}

std::string NewReplicaId() {
  unsigned char bytes[8];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    // Not a secret, only unique: the time and address are a fallback good enough for that.
    const uint64_t t =
        static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count() ^
                              reinterpret_cast<uintptr_t>(&bytes));
    for (size_t i = 0; i < sizeof bytes; ++i) bytes[i] = static_cast<unsigned char>(t >> (8 * i));
  }
  std::string out;
  char hex[3];
  for (unsigned char b : bytes) {
    snprintf(hex, sizeof hex, "%02x", b);
    out += hex;
  }
  return out;
}

// KEYS[1]: the replica's marker; KEYS[2..n]: the day keys. ARGV[1]: the batch's sequence number,
// ARGV[2]: the marker's ttl, ARGV[k+1]: when KEYS[k] expires (Unix seconds), then triples
// (index into KEYS, field, increment). All or nothing, once per (replica, sequence number).
const char* const kFlushScript = R"lua(
local seq = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if seq <= last then return 0 end
local n = #KEYS
local i = n + 2
while i <= #ARGV do
  redis.call('HINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
  i = i + 3
end
for k = 2, n do redis.call('EXPIREAT', KEYS[k], ARGV[k + 1]) end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
)lua";

class RedisUsageSink : public UsageSink {
 public:
  RedisUsageSink(const config::RedisConfig& redis, int retention_days)
      : config_(WithMinTimeout(redis)),
        retention_days_(retention_days),
        // Every usage key shares the {usage} tag: routed to that slot's node (in a cluster).
        connection_(config_, UsageMarkerKey(config_.key_prefix, "")) {}

  bool Apply(const std::string& replica, uint64_t seq,
             const std::vector<UsageField>& fields) override {
    std::vector<int64_t> days;
    for (const auto& f : fields) days.push_back(f.day);
    std::sort(days.begin(), days.end());
    days.erase(std::unique(days.begin(), days.end()), days.end());
    std::vector<std::string> argv = {"EVAL", kFlushScript, std::to_string(days.size() + 1),
                                     UsageMarkerKey(config_.key_prefix, replica)};
    for (int64_t day : days) argv.push_back(UsageDayKey(config_.key_prefix, day));
    argv.push_back(std::to_string(seq));
    argv.push_back(std::to_string(kMarkerTtlSeconds));
    for (int64_t day : days) {
      // Kept retention_days after the day ended.
      argv.push_back(std::to_string((day + 1 + retention_days_) * 86400));
    }
    for (const auto& f : fields) {
      const size_t index = std::lower_bound(days.begin(), days.end(), f.day) - days.begin();
      argv.push_back(std::to_string(index + 2));
      argv.push_back(f.field);
      argv.push_back(std::to_string(f.n));
    }
    if (!connection_.Open()) return false;
    policies::RedisReplyPtr reply = connection_.Command(argv);
    return reply != nullptr && reply->type == REDIS_REPLY_INTEGER;
  }

 private:
  const config::RedisConfig config_;  // before connection_, which keeps a reference to it
  const int retention_days_;
  policies::RedisConnection connection_;
};

class RedisUsageReader : public UsageReader {
 public:
  explicit RedisUsageReader(const config::RedisConfig& redis)
      : prefix_(redis.key_prefix), client_(WithMinTimeout(redis)) {}

  void Read(int64_t from, int64_t to, Done done) override {
    struct State {
      UsageTable table;
      int64_t left = 0;
      bool failed = false;
      Done done;
    };
    auto state = std::make_shared<State>();
    state->left = to - from + 1;
    state->done = std::move(done);
    if (state->left <= 0) return state->done(true, {});
    // Queued in this loop iteration: one write for every day.
    for (int64_t day = from; day <= to; ++day) {
      const std::string key = UsageDayKey(prefix_, day);
      client_.Command(key, {"HGETALL", key}, [state, day](const redisReply* r) {
        if (r == nullptr || r->type != REDIS_REPLY_ARRAY) {
          state->failed = true;
        } else {
          for (size_t i = 0; i + 1 < r->elements; i += 2) {
            const redisReply* f = r->element[i];
            const redisReply* v = r->element[i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            DecodeField(day, std::string_view(f->str, f->len),
                        std::strtoll(std::string(v->str, v->len).c_str(), nullptr, 10),
                        &state->table);
          }
        }
        if (--state->left == 0) {
          state->done(!state->failed, state->failed ? UsageTable() : std::move(state->table));
        }
      });
    }
  }

 private:
  const std::string prefix_;
  policies::RedisLoopClient client_;
};

}  // namespace

std::string UsageDayKey(const std::string& prefix, int64_t day) {
  return prefix + "{usage}:day:" + FormatDay(day);
}

std::string UsageMarkerKey(const std::string& prefix, const std::string& replica) {
  return prefix + "{usage}:flushed:" + replica;
}

std::unique_ptr<UsageSink> MakeRedisUsageSink(const config::RedisConfig& redis,
                                              int retention_days) {
  return std::make_unique<RedisUsageSink>(redis, retention_days);
}

std::unique_ptr<UsageReader> MakeRedisUsageReader(const config::RedisConfig& redis) {
  return std::make_unique<RedisUsageReader>(redis);
}

bool MemoryUsageStore::Apply(const std::string& replica, uint64_t seq,
                             const std::vector<UsageField>& fields) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t& last = applied_[replica];
  if (seq <= last) return true;
  for (const auto& f : fields) DecodeField(f.day, f.field, f.n, &table_);
  last = seq;
  return true;
}

void MemoryUsageStore::Read(int64_t from, int64_t to, Done done) {
  UsageTable out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = table_.lower_bound(UsageKey(from, "", ""));
    for (; it != table_.end() && std::get<0>(it->first) <= to; ++it) out.insert(*it);
  }
  done(true, std::move(out));
}

UsageService::UsageService(const config::UsageConfig& usage,
                           const std::optional<config::RedisConfig>& redis)
    : replica_(NewReplicaId()) {
  if (redis) {
    sink_ = MakeRedisUsageSink(*redis, usage.retention_days);
    reader_ = MakeRedisUsageReader(*redis);
  } else {
    auto store = std::make_shared<MemoryUsageStore>();
    sink_ = store;
    reader_ = store;
  }
  Start(std::chrono::seconds(usage.flush_interval_seconds));
}

UsageService::UsageService(std::shared_ptr<UsageSink> sink, std::shared_ptr<UsageReader> reader,
                           std::chrono::milliseconds interval)
    : sink_(std::move(sink)), reader_(std::move(reader)), replica_(NewReplicaId()) {
  Start(interval);
}

UsageService::~UsageService() { Stop(); }

void UsageService::Start(std::chrono::milliseconds interval) {
  if (interval.count() > 0) thread_ = std::thread([this, interval] { Loop(interval); });
}

void UsageService::Loop(std::chrono::milliseconds interval) {
  std::unique_lock<std::mutex> lock(stop_mu_);
  while (!stopping_) {
    stop_cv_.wait_for(lock, interval, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    Flush();
    lock.lock();
  }
}

bool UsageService::Flush() {
  std::lock_guard<std::mutex> lock(flush_mu_);
  if (!pending_) {
    UsageTable table = recorder_.Take();
    if (table.empty()) return true;
    pending_ = EncodeTable(table);
    ++seq_;
  }
  if (!sink_->Apply(replica_, seq_, *pending_)) {
    flushes_failed_.fetch_add(1);
    return false;
  }
  flushes_ok_.fetch_add(1);
  pending_.reset();
  return true;
}

void UsageService::Stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // The last requests' counts: a batch that failed before, then everything since.
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (Flush()) {
      if (Flush()) return;
    }
  }
  std::cerr << "usage: the last usage counts could not be flushed (Redis did not answer); they "
               "are lost\n";
}

}  // namespace tollgate::usage
