// The audit log: one JSON line for every call the gateway ends, whatever the outcome.
//
// Records are queued by the request threads and written by one background writer thread, in
// batches, to a file (or stdout) and optionally to a Redis Stream (XADD ... MAXLEN ~). The file
// is the record of truth: it gets every record, in submission order (a record it cannot take,
// e.g. on a full disk, is counted and reported, never claimed written); the stream is best
// effort (a record Redis refuses or cannot be reached for is sent again, up to 5 attempts, then
// counted as dropped; one refused record costs the others of its batch nothing).
// The queue is bounded (audit.queue_capacity) and nobody ever waits on it: a request reserves
// its record's place with Reserve() when it is admitted, before anything is forwarded, and that
// place stays its own until the writer has written the record. When every place is taken (a
// stalled sink: stdout piped to a stuck reader, a hung NFS file) Reserve refuses at once and
// the gateway refuses the request (503 `audit_unavailable`) rather than forward a call it
// cannot audit; a request already admitted always has room for its record. So the request-path
// threads (reactor, upstream client, Redis limiter) never block on the audit sink, and no
// admitted call loses its record.
//
// Records never hold secrets: no keys, no bodies, no credential headers; the query string is
// masked by MaskQuery when a record is serialised.
//
// Thread-safety: SerializeAuditRecord and MaskQuery are pure. Every AuditLog method may be
// called from any thread, concurrently; none of them is async-signal-safe (call Reopen from the
// thread that handles SIGHUP, not from a signal handler).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "config/model.h"

namespace tollgate::gateway {

// What an admin call did: on the admin listener's records only (decision "admin" for an action
// taken, "unauthenticated"/"forbidden" for one refused). Never holds a token or a config value.
struct AdminAction {
  std::string admin;   // the admin token's name, "SIGHUP" for a signal; "" = null (unknown)
  std::string action;  // "reload", or the endpoint refused
  std::optional<bool> applied;                // a reload: whether the new config was swapped in
  std::vector<std::string> changes;           // config entries changed ("roles/ops"), by name
  std::vector<std::string> restart_required;  // changed settings that wait for a restart
  std::string new_key_id;                     // a key rotation: the new key's id ("" = omitted)
};

struct AuditRecord {
  std::chrono::system_clock::time_point ts;
  std::string request_id;  // the caller's X-Request-Id when it sent a valid one, else ours
  // Always the gateway's own unique id ("" = the same as request_id, which is then ours): a
  // caller-chosen request_id need not be unique.
  std::string gateway_request_id;
  std::optional<std::string> caller;  // nullopt = not authenticated
  // The key used ("" = null): a run-time key's id, or for a config key the first 8 hex
  // characters of its SHA-256. On an admin record, the key acted on.
  std::string key_id;
  std::string client_ip;
  std::string method;
  std::string upstream;
  std::string path;
  std::string query;  // raw; masked when serialised
  std::string rule;   // template matched, "" = null
  std::string
      decision;  // allowed|unauthenticated|forbidden|rate_limited|bad_request|not_found|error
  int status = 0;
  int upstream_status = 0;  // 0 = null
  double latency_ms = 0;    // until the gateway started answering (status and headers sent)
  double upstream_ms = -1;  // < 0 = null: the whole upstream transfer
  double ttfb_ms = -1;      // < 0 = null: from the upstream call to its response headers
  double duration_ms = 0;   // until the answer's last byte was handed to the caller
  // How the answer ended: complete, client_closed, upstream_closed, read_idle_timeout,
  // max_duration, draining.
  std::string ended_by = "complete";
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::string bucket;                    // "" = null
  std::optional<double> remaining;       // nullopt = null
  std::string upstream_request_id;       // "" = null
  std::string error;                     // "" = null
  std::vector<std::string> would_limit;  // shadow buckets that lacked tokens; omitted when empty
  // The JSON pointers of the body fields a body rule changed (never their values); omitted
  // when empty.
  std::vector<std::string> body_rules;
  // Issue 14: how long the limiter made the request wait for its reserved tokens; omitted when
  // it did not wait.
  std::optional<double> waited_ms;
  bool fallback = false;  // limiter decided locally (Redis down): "limiter_fallback": true
  // Admin records only; null (and its fields omitted) on every caller request, so the request
  // path pays one pointer for it.
  std::shared_ptr<const AdminAction> admin;
};

// One JSON object, no trailing newline. Invalid UTF-8 is replaced by U+FFFD so the line always
// parses; control characters and quotes are escaped.
std::string SerializeAuditRecord(const AuditRecord& record);

// Replaces the values of secret-looking parameters (token, key, secret, password, passwd,
// signature, sig, auth, credential in the name, case-insensitively) by "***"; everything else,
// including parameter order and encoding, is kept byte for byte.
std::string MaskQuery(std::string_view raw_query);

class AuditLog {
 public:
  // `redis` is used only when audit.redis_stream is set. Opening the file happens on the writer
  // thread; a file that cannot be opened is reported on stderr and counted in file_errors().
  AuditLog(const config::AuditConfig& audit, const std::optional<config::RedisConfig>& redis);
  ~AuditLog();  // writes everything submitted, then joins the writer
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // One place in the queue, reserved for one record (a request's, at admission). Move-only.
  // Submit fills it; dropped unused (the request ended without a record, e.g. its callback was
  // discarded at shutdown) it gives the place back. Converts to false when Reserve refused.
  // Every Slot must be submitted or dropped before its AuditLog is destroyed.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept : log_(std::exchange(other.log_, nullptr)) {}
    Slot& operator=(Slot&& other) noexcept {
      if (this != &other) {
        Reset();
        log_ = std::exchange(other.log_, nullptr);
      }
      return *this;
    }
    ~Slot() { Reset(); }
    explicit operator bool() const { return log_ != nullptr; }

   private:
    friend class AuditLog;
    explicit Slot(AuditLog* log) : log_(log) {}
    void Reset();  // gives the place back, if held
    AuditLog* log_ = nullptr;
  };

  // Never blocks, takes no lock. An empty Slot when every place is taken: queued records, records
  // the writer has not finished writing, and places reserved by calls in flight together reach
  // queue_capacity.
  Slot Reserve();
  // Queues `record` in the place `slot` reserved: never blocks, never fails (returns true).
  // With an empty slot (a record no request reserved a place for) it takes a free place if there
  // is one, and otherwise refuses the record (returns false; `record` is left untouched): it
  // never waits for the writer either.
  bool Submit(Slot slot, AuditRecord&& record);
  bool Submit(AuditRecord&& record) { return Submit(Slot(), std::move(record)); }
  // Reopens the file (for logrotate) before the writer's next batch. Returns at once.
  void Reopen();
  // Blocks until every record submitted before the call is written to the file and sent to the
  // stream (or parked there for a retry).
  void Flush();

  int64_t queue_depth() const;
  // Places taken (reserved, queued or being written), at most capacity().
  size_t slots_used() const { return used_.load(std::memory_order_relaxed); }
  size_t capacity() const { return capacity_; }
  // Records the file took (every record when there is no file sink). A record the file could
  // not take (open or write failed: a full disk, a vanished directory) is not retried: it is
  // counted in file_dropped() instead, and the failure is reported once on stderr (and again
  // when writing works again). file_errors() counts failed open and write calls.
  uint64_t written() const { return written_.load(std::memory_order_relaxed); }
  uint64_t file_dropped() const { return file_dropped_.load(std::memory_order_relaxed); }
  uint64_t file_errors() const { return file_errors_.load(std::memory_order_relaxed); }
  uint64_t stream_written() const { return stream_written_.load(std::memory_order_relaxed); }
  uint64_t stream_errors() const { return stream_errors_.load(std::memory_order_relaxed); }
  uint64_t stream_dropped() const { return stream_dropped_.load(std::memory_order_relaxed); }

  // The lines of the last `n` (at most kRecentRefusals) records the writer wrote whose status is
  // 401, 403 or 429, newest first (GET /refusals without an audit stream). The writer keeps them
  // as it serialises each batch: the request threads pay nothing for it.
  static constexpr size_t kRecentRefusals = 1000;
  std::vector<std::string> RecentRefusals(size_t n) const;

 private:
  class StreamSink;
  void Run();
  void OpenFile();
  // Writes whole lines; returns how many of them (records) did not reach the file.
  size_t WriteFile(const std::string& data);
  size_t FileFailed(size_t lost);  // counts and reports a failed write; returns `lost`

  // True when the writer should not linger: half the queue is waiting, or no place is free.
  // Called with mu_ held.
  bool Crowded() const {
    return queue_.size() >= capacity_ / 2 || used_.load(std::memory_order_relaxed) >= capacity_;
  }

  const config::AuditConfig config_;
  const size_t capacity_;
  // Places taken: +1 by Reserve, -1 by an unused Slot, -n by the writer once it has written a
  // batch of n. Never above capacity_.
  std::atomic<size_t> used_{0};

  mutable std::mutex mu_;
  std::condition_variable writer_cv_;  // the writer waits for records, Reopen or stop
  std::condition_variable done_cv_;    // Flush waits for the writer to catch up
  std::vector<AuditRecord> queue_;
  bool writer_waiting_ = false;
  bool lingering_ = false;  // the writer waits out kLinger after a batch, un-notified
  static constexpr std::chrono::milliseconds kLinger{2};
  bool reopen_requested_ = false;
  bool stopping_ = false;
  size_t flush_waiters_ = 0;
  uint64_t submitted_ = 0;  // sequence numbers, guarded by mu_
  uint64_t completed_ = 0;

  // Owned by the writer thread.
  int fd_ = -1;
  bool fd_owned_ = false;
  bool file_failing_ = false;
  bool torn_line_ = false;  // the file ends inside a record (a write stopped part-way)
  std::unique_ptr<StreamSink> stream_;

  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> file_errors_{0};
  std::atomic<uint64_t> file_dropped_{0};
  std::atomic<uint64_t> stream_written_{0};
  std::atomic<uint64_t> stream_errors_{0};
  std::atomic<uint64_t> stream_dropped_{0};

  mutable std::mutex refusals_mu_;    // the writer adds once per batch; GET /refusals reads
  std::deque<std::string> refusals_;  // oldest first, at most kRecentRefusals

  std::thread writer_;  // last: starts after every member above is ready
};

}  // namespace tollgate::gateway
