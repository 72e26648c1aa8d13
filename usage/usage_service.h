// Usage counting end to end (issue 13): the recorder on the request path, a background thread
// that flushes it, and the reads GET /usage makes.
//
// Flushing: at least every usage.flush_interval_seconds (and at Stop) everything recorded so far
// becomes one batch, numbered by this replica (a random id chosen at start) and a sequence
// number, and is applied to the store in one step: with Redis, one Lua script that adds every
// counter (HINCRBY), sets each day key's expiry (EXPIREAT: day + retention_days) and records
// the replica's last applied sequence number, atomically. A batch whose sequence number is
// already recorded is not applied again, so a batch sent again after a lost reply is never
// counted twice. A failed flush keeps its batch and sends exactly it again next time; counts
// recorded meanwhile wait for the batch after it. Keys live under "<key_prefix>{usage}:" (one
// hash tag: one Redis Cluster slot).
//
// Without a `redis` section the store is an in-process map with the same interface and the
// same once-only rule, kept for the process's life.
//
// Reads: Read() on a loop thread never waits: with Redis each day is one HGETALL, all of them
// queued in one write on the calling loop's connection (deadline: at least 2 s), and `done`
// runs later on that loop; in memory `done` runs inline.
//
// Thread-safety: Record from any thread; Flush and Stop from any thread (serialised); Read on a
// loop thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/model.h"
#include "usage/usage_counts.h"

namespace tollgate::usage {

// Where batches go.
class UsageSink {
 public:
  virtual ~UsageSink() = default;
  // Applies `fields` unless batch `seq` of `replica` was applied before; true when it is now
  // applied (by this call or an earlier one). False: it may or may not have been.
  virtual bool Apply(const std::string& replica, uint64_t seq,
                     const std::vector<UsageField>& fields) = 0;
};

// Where reads come from: every stored counter of days [from, to], or ok = false.
class UsageReader {
 public:
  virtual ~UsageReader() = default;
  using Done = std::function<void(bool ok, UsageTable table)>;
  virtual void Read(int64_t from, int64_t to, Done done) = 0;
};

// The in-process store (no redis section, and tests): both a sink and a reader.
class MemoryUsageStore : public UsageSink, public UsageReader {
 public:
  bool Apply(const std::string& replica, uint64_t seq,
             const std::vector<UsageField>& fields) override;
  void Read(int64_t from, int64_t to, Done done) override;

 private:
  std::mutex mu_;
  UsageTable table_;
  std::map<std::string, uint64_t> applied_;  // replica -> last sequence number applied
};

// The Redis key names.
std::string UsageDayKey(const std::string& prefix, int64_t day);
std::string UsageMarkerKey(const std::string& prefix, const std::string& replica);

std::unique_ptr<UsageSink> MakeRedisUsageSink(const config::RedisConfig& redis, int retention_days);
std::unique_ptr<UsageReader> MakeRedisUsageReader(const config::RedisConfig& redis);

class UsageService {
 public:
  // With `redis`: the Redis sink and reader; else a MemoryUsageStore.
  UsageService(const config::UsageConfig& usage, const std::optional<config::RedisConfig>& redis);
  // Tests: any sink and reader; interval 0 = no background thread (Flush by hand).
  UsageService(std::shared_ptr<UsageSink> sink, std::shared_ptr<UsageReader> reader,
               std::chrono::milliseconds interval);
  ~UsageService();  // Stop()
  UsageService(const UsageService&) = delete;
  UsageService& operator=(const UsageService&) = delete;

  void Record(const UsageEvent& e) { recorder_.Record(e); }
  UsageRecorder& recorder() { return recorder_; }  // what the pipeline records into
  // One flush attempt: the pending batch if a flush failed, else a new one of everything
  // recorded. True when nothing is left pending (including when there was nothing to send).
  bool Flush();
  // Ends the background thread, then flushes what is left (a few attempts). Idempotent.
  void Stop();
  void Read(int64_t from, int64_t to, UsageReader::Done done) { reader_->Read(from, to, done); }

  const std::string& replica() const { return replica_; }
  uint64_t flushes_ok() const { return flushes_ok_.load(); }
  uint64_t flushes_failed() const { return flushes_failed_.load(); }

 private:
  void Start(std::chrono::milliseconds interval);
  void Loop(std::chrono::milliseconds interval);

  UsageRecorder recorder_;
  std::shared_ptr<UsageSink> sink_;
  std::shared_ptr<UsageReader> reader_;
  const std::string replica_;
  std::mutex flush_mu_;  // one flush at a time
  std::optional<std::vector<UsageField>> pending_;
  uint64_t seq_ = 0;  // of pending_ (or of the last batch sent)
  std::atomic<uint64_t> flushes_ok_{0};
  std::atomic<uint64_t> flushes_failed_{0};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  bool stopped_ = false;
  std::thread thread_;
};

}  // namespace tollgate::usage
