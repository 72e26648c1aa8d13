#include "gateway/audit_log.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <rapidjson/internal/dtoa.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <limits>
#include <utility>

#include "policies/redis_loop_shared.h"
#include "policies/redis_topology.h"

namespace tollgate::gateway {
namespace {

// Length of the valid UTF-8 sequence at in[i], or 0 if the bytes there are not one (overlong
// forms, surrogates and code points above U+10FFFF are invalid, as RFC 3629 says).
size_t Utf8SequenceLength(std::string_view in, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(in[k]); };
  const auto cont = [&](size_t k) { return k < in.size() && (byte(k) & 0xC0) == 0x80; };
  const unsigned char b = byte(i);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    if (!cont(i + 1) || !cont(i + 2)) return 0;
    if (b == 0xE0 && byte(i + 1) < 0xA0) return 0;   // overlong
    if (b == 0xED && byte(i + 1) >= 0xA0) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    if (b == 0xF0 && byte(i + 1) < 0x90) return 0;   // overlong
    if (b == 0xF4 && byte(i + 1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsSecretName(std::string_view name) {
  // Names arrive as the client encoded them ("api%5Fkey", "Api+Key"): decode for the match, so
  // an encoding trick cannot carry a secret past the mask.
  // Decoded into a buffer on the stack (a longer name, rare, takes a string); lowered as ASCII
  // (what std::tolower does in the "C" locale the gateway runs in, without its call per byte).
  char stack[64];
  std::string heap;
  char* lower = stack;
  if (name.size() > sizeof(stack)) {
    heap.resize(name.size());
    lower = heap.data();
  }
  size_t size = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c == '%' && i + 2 < name.size() && HexValue(name[i + 1]) >= 0 &&
        HexValue(name[i + 2]) >= 0) {
      c = static_cast<char>(HexValue(name[i + 1]) * 16 + HexValue(name[i + 2]));
      i += 2;
    }
    lower[size++] = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  }
  const std::string_view decoded(lower, size);
  // A name holding any of these words anywhere is masked: "sig" covers sign and signature,
  // "pass" password, passwd and passphrase, "auth" authorization, "key" apikey and api_key,
  // "token" access_token. A few innocent names (author, signal) are masked too: the audit
  // errs on the side of hiding. "session" is not a word here: Devin's session ids are the
  // resources calls are about, and a session token is caught by "token".
  static constexpr std::string_view kSecretWords[] = {"token",      "key",  "secret", "pass",
                                                      "pwd",        "auth", "bearer", "sig",
                                                      "credential", "jwt",  "cookie", "hmac"};
  for (std::string_view word : kSecretWords) {
    if (decoded.find(word) != std::string_view::npos) return true;
  }
  return false;
}

// Calls `piece` with the masked query in order, a piece at a time (MaskQuery's result is their
// concatenation). Every piece boundary falls next to an ASCII byte ('&', '=' or the mask), so
// UTF-8 checked piece by piece reads as it would whole.
template <typename Piece>
void ForEachMaskedPiece(std::string_view raw_query, Piece&& piece) {
  size_t start = 0;
  while (start <= raw_query.size()) {
    size_t end = raw_query.find('&', start);
    if (end == std::string_view::npos) end = raw_query.size();
    const std::string_view param = raw_query.substr(start, end - start);
    const size_t eq = param.find('=');
    if (eq != std::string_view::npos && eq + 1 < param.size() &&
        IsSecretName(param.substr(0, eq))) {
      piece(param.substr(0, eq + 1));
      piece(std::string_view("***"));
    } else {
      piece(param);
    }
    if (end == raw_query.size()) break;
    piece(std::string_view("&"));
    start = end + 1;
  }
}

// The audit line is written by hand rather than through RapidJSON's Writer, which pushes one
// byte at a time through a level stack: the line is the writer thread's main cost. Its bytes
// are the ones the Writer wrote (SetMaxDecimalPlaces(3), default flags); the unit test
// SerializeAuditRecord.WritesTheSameBytesAsRapidJsonsWriterDid holds the two side by side.

// Bytes a JSON string takes as they are: printable ASCII but '"' and '\\' (the Writer escapes
// exactly the others below 0x80, and passes UTF-8 through).
constexpr std::array<bool, 256> kPlainJsonBytes = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x80; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();

template <size_t N>
void AppendLiteral(std::string* out, const char (&text)[N]) {
  out->append(text, N - 1);
}

// The characters of a JSON string (no quotes): runs of plain ASCII and valid UTF-8 are appended
// whole; control characters, '"' and '\\' are escaped as the Writer did, and every byte that
// does not start a valid UTF-8 sequence becomes U+FFFD, so the line always parses.
void AppendJsonChars(std::string_view in, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  const char* const begin = in.data();
  const char* const end = begin + in.size();
  const char* run = begin;  // the bytes from here to p go out as they are
  const char* p = begin;
  while (p < end) {
    const auto c = static_cast<unsigned char>(*p);
    if (kPlainJsonBytes[c]) {
      ++p;
      continue;
    }
    size_t utf8 = 0;
    if (c >= 0x80) {
      utf8 = Utf8SequenceLength(in, static_cast<size_t>(p - begin));
      if (utf8 != 0) {
        p += utf8;
        continue;
      }
    }
    out->append(run, static_cast<size_t>(p - run));
    if (c >= 0x80) {
      AppendLiteral(out, "\xEF\xBF\xBD");
    } else {
      char escaped[6] = {'\\', 0, '0', '0', kHex[c >> 4], kHex[c & 0xF]};
      size_t len = 2;
      switch (c) {
        case '"':
        case '\\':
          escaped[1] = static_cast<char>(c);
          break;
        case '\b':
          escaped[1] = 'b';
          break;
        case '\f':
          escaped[1] = 'f';
          break;
        case '\n':
          escaped[1] = 'n';
          break;
        case '\r':
          escaped[1] = 'r';
          break;
        case '\t':
          escaped[1] = 't';
          break;
        default:
          escaped[1] = 'u';
          len = 6;
      }
      out->append(escaped, len);
    }
    run = ++p;
  }
  out->append(run, static_cast<size_t>(p - run));
}

void AppendString(std::string_view value, std::string* out) {
  out->push_back('"');
  AppendJsonChars(value, out);
  out->push_back('"');
}

void AppendStringOrNull(std::string_view value, std::string* out) {
  if (value.empty()) {
    AppendLiteral(out, "null");
  } else {
    AppendString(value, out);
  }
}

void AppendMaskedQuery(std::string_view raw_query, std::string* out) {
  out->push_back('"');
  ForEachMaskedPiece(raw_query, [out](std::string_view piece) { AppendJsonChars(piece, out); });
  out->push_back('"');
}

template <typename Integer>
void AppendInteger(Integer value, std::string* out) {
  char text[24];
  const auto result = std::to_chars(text, text + sizeof(text), value);
  out->append(text, static_cast<size_t>(result.ptr - text));
}

void AppendNumber(double value, std::string* out) {
  if (!std::isfinite(value)) {
    AppendLiteral(out, "null");  // JSON has no NaN or Infinity
    return;
  }
  // RapidJSON's own dtoa, with the Writer's 3 decimal places (microseconds are noise in a
  // latency; keeps lines short): the digits stay the ones the Writer wrote.
  char text[32];
  const char* end = rapidjson::internal::dtoa(value, text, 3);
  out->append(text, static_cast<size_t>(end - text));
}

// RFC 3339 in UTC with milliseconds, quoted. The text up to the second is formatted once per
// second per thread (gmtime_r and snprintf cost more than the rest of the line).
void AppendTimestamp(std::chrono::system_clock::time_point ts, std::string* out) {
  struct SecondText {
    int64_t second = std::numeric_limits<int64_t>::min();
    char text[80];
    size_t size = 0;
  };
  thread_local SecondText cached;
  const auto ms = std::chrono::floor<std::chrono::milliseconds>(ts);
  const auto seconds = std::chrono::floor<std::chrono::seconds>(ms);
  const int millis = static_cast<int>((ms - seconds).count());
  if (seconds.time_since_epoch().count() != cached.second) {
    const std::time_t t = std::chrono::system_clock::to_time_t(seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    const int n = std::snprintf(cached.text, sizeof(cached.text),
                                "\"%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached.size = static_cast<size_t>(std::clamp(n, 0, static_cast<int>(sizeof(cached.text)) - 1));
    cached.second = seconds.time_since_epoch().count();
  }
  out->append(cached.text, cached.size);
  const char digits[5] = {static_cast<char>('0' + millis / 100),
                          static_cast<char>('0' + millis / 10 % 10),
                          static_cast<char>('0' + millis % 10), 'Z', '"'};
  out->append(digits, sizeof(digits));
}

void AppendStrings(const std::vector<std::string>& items, std::string* out) {
  out->push_back('[');
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendString(items[i], out);
  }
  out->push_back(']');
}

// "admin" and "action" always, "applied" when known, "changes" always (empty: nothing changed),
// "restart_required" when not empty.
void AppendAdminAction(const AdminAction& a, std::string* out) {
  AppendLiteral(out, ",\"admin\":");
  AppendStringOrNull(a.admin, out);
  AppendLiteral(out, ",\"action\":");
  AppendString(a.action, out);
  if (a.applied) {
    if (*a.applied) {
      AppendLiteral(out, ",\"applied\":true");
    } else {
      AppendLiteral(out, ",\"applied\":false");
    }
  }
  AppendLiteral(out, ",\"changes\":");
  AppendStrings(a.changes, out);
  if (!a.restart_required.empty()) {
    AppendLiteral(out, ",\"restart_required\":");
    AppendStrings(a.restart_required, out);
  }
  if (!a.new_key_id.empty()) {
    AppendLiteral(out, ",\"new_key_id\":");
    AppendString(a.new_key_id, out);
  }
}

void AppendAuditRecord(const AuditRecord& r, std::string* out) {
  AppendLiteral(out, "{\"ts\":");
  AppendTimestamp(r.ts, out);
  AppendLiteral(out, ",\"request_id\":");
  AppendString(r.request_id, out);
  AppendLiteral(out, ",\"gateway_request_id\":");
  AppendString(r.gateway_request_id.empty() ? r.request_id : r.gateway_request_id, out);
  AppendLiteral(out, ",\"caller\":");
  if (r.caller) {
    AppendString(*r.caller, out);
  } else {
    AppendLiteral(out, "null");
  }
  AppendLiteral(out, ",\"key_id\":");
  AppendStringOrNull(r.key_id, out);
  AppendLiteral(out, ",\"client_ip\":");
  AppendString(r.client_ip, out);
  AppendLiteral(out, ",\"method\":");
  AppendString(r.method, out);
  AppendLiteral(out, ",\"upstream\":");
  AppendString(r.upstream, out);
  AppendLiteral(out, ",\"path\":");
  AppendString(r.path, out);
  AppendLiteral(out, ",\"query\":");
  AppendMaskedQuery(r.query, out);
  AppendLiteral(out, ",\"rule\":");
  AppendStringOrNull(r.rule, out);
  AppendLiteral(out, ",\"decision\":");
  AppendString(r.decision, out);
  AppendLiteral(out, ",\"status\":");
  AppendInteger(r.status, out);
  AppendLiteral(out, ",\"upstream_status\":");
  if (r.upstream_status != 0) {
    AppendInteger(r.upstream_status, out);
  } else {
    AppendLiteral(out, "null");
  }
  AppendLiteral(out, ",\"latency_ms\":");
  AppendNumber(r.latency_ms, out);
  AppendLiteral(out, ",\"upstream_ms\":");
  if (r.upstream_ms >= 0) {
    AppendNumber(r.upstream_ms, out);
  } else {
    AppendLiteral(out, "null");
  }
  AppendLiteral(out, ",\"ttfb_ms\":");
  if (r.ttfb_ms >= 0) {
    AppendNumber(r.ttfb_ms, out);
  } else {
    AppendLiteral(out, "null");
  }
  AppendLiteral(out, ",\"duration_ms\":");
  AppendNumber(r.duration_ms, out);
  AppendLiteral(out, ",\"ended_by\":");
  AppendString(r.ended_by, out);
  AppendLiteral(out, ",\"bytes_in\":");
  AppendInteger(r.bytes_in, out);
  AppendLiteral(out, ",\"bytes_out\":");
  AppendInteger(r.bytes_out, out);
  AppendLiteral(out, ",\"bucket\":");
  AppendStringOrNull(r.bucket, out);
  AppendLiteral(out, ",\"remaining\":");
  if (r.remaining) {
    AppendNumber(*r.remaining, out);
  } else {
    AppendLiteral(out, "null");
  }
  AppendLiteral(out, ",\"upstream_request_id\":");
  AppendStringOrNull(r.upstream_request_id, out);
  AppendLiteral(out, ",\"error\":");
  AppendStringOrNull(r.error, out);
  if (!r.would_limit.empty()) {
    AppendLiteral(out, ",\"would_limit\":");
    AppendStrings(r.would_limit, out);
  }
  if (!r.body_rules.empty()) {
    AppendLiteral(out, ",\"body_rules\":");
    AppendStrings(r.body_rules, out);
  }
  if (r.waited_ms) {
    AppendLiteral(out, ",\"waited_ms\":");
    AppendNumber(*r.waited_ms, out);
  }
  if (r.fallback) AppendLiteral(out, ",\"limiter_fallback\":true");
  if (r.admin) AppendAdminAction(*r.admin, out);
  out->push_back('}');
}

}  // namespace

std::string SerializeAuditRecord(const AuditRecord& record) {
  std::string out;
  out.reserve(512);
  AppendAuditRecord(record, &out);
  return out;
}

std::string MaskQuery(std::string_view raw_query) {
  std::string out;
  out.reserve(raw_query.size());
  ForEachMaskedPiece(raw_query, [&out](std::string_view piece) { out.append(piece); });
  return out;
}

// The Redis Stream sink, used only by the writer thread. Records that did not reach Redis wait
// in `pending_` and go out again with later batches; a batch that failed kMaxAttempts times, or
// that no longer fits under kMaxPendingRecords, is dropped and counted: the file already has it.
// An attempt is charged to the batches it concerned: every pending batch when Redis could not be
// reached, only the batch sent when Redis refused some of its lines (the batches queued behind it
// were not tried, so a record Redis keeps refusing cannot use up their attempts).
// A record whose reply was lost to an I/O error may be added twice (at least once, not exactly).
// It connects where the RedisTopology routes the stream key, again when the topology's epoch
// moved away from that node, and after every error; a READONLY answer reports the node (Suspect)
// and counts as an I/O error, a MOVED is reported (the next attempt goes to the new node).
class AuditLog::StreamSink {
 public:
  StreamSink(const config::RedisConfig& redis, std::string stream, uint64_t maxlen, AuditLog* log)
      : redis_(redis),
        topology_(policies::RedisTopology::For(redis)),
        stream_(std::move(stream)),
        maxlen_(std::to_string(maxlen)),
        log_(log) {}
  ~StreamSink() {
    if (ctx_ != nullptr) redisFree(ctx_);
  }
  StreamSink(const StreamSink&) = delete;
  StreamSink& operator=(const StreamSink&) = delete;

  void Send(std::vector<std::string> lines) {
    if (!lines.empty()) {
      pending_records_ += lines.size();
      pending_.push_back(Pending{std::move(lines), 0});
    }
    while (pending_records_ > kMaxPendingRecords && pending_.size() > 1) DropFront();
    Retry();
  }

  // Sends what is pending, unless a recent failure says to wait (see RetryDelay).
  void Retry() {
    if (pending_.empty()) return;
    if (ctx_ != nullptr && topology_->epoch() != epoch_) {
      epoch_ = topology_->epoch();
      if (topology_->Route(stream_) != node_) Disconnect();
    }
    if (ctx_ == nullptr) {
      if (std::chrono::steady_clock::now() < next_connect_) return;
      if (!Connect()) {
        Failed(pending_.size());
        return;
      }
    }
    while (!pending_.empty()) {
      Pending& batch = pending_.front();
      const size_t before = batch.lines.size();
      const bool io_ok = Pipeline(&batch.lines);
      pending_records_ -= before - batch.lines.size();
      if (batch.lines.empty()) {
        pending_.pop_front();
        continue;
      }
      if (!io_ok) Disconnect();
      Failed(1);
      return;
    }
    backoff_ = std::chrono::milliseconds(0);
  }

  bool HasPending() const { return !pending_.empty(); }

  std::chrono::milliseconds RetryDelay() const {
    const auto now = std::chrono::steady_clock::now();
    if (next_connect_ <= now) return kMinBackoff;
    return std::chrono::duration_cast<std::chrono::milliseconds>(next_connect_ - now) + kMinBackoff;
  }

  // At shutdown: one last try, then whatever is left is counted as dropped.
  void Close() {
    next_connect_ = {};
    Retry();
    while (!pending_.empty()) DropFront();
  }

 private:
  struct Pending {
    std::vector<std::string> lines;
    int attempts;
  };
  static constexpr int kMaxAttempts = 5;
  static constexpr size_t kMaxPendingRecords = 50000;
  static constexpr std::chrono::milliseconds kMinBackoff{100};
  static constexpr std::chrono::milliseconds kMaxBackoff{5000};

  bool Connect() {
    // The writer also feeds the file, so a Redis that hangs must not stall it for long; the
    // timeout is still looser than the limiter's because a pipelined batch takes a while.
    const int ms = std::max(redis_.timeout_ms, 1000);
    const timeval tv{ms / 1000, (ms % 1000) * 1000};
    epoch_ = topology_->epoch();
    node_ = topology_->Route(stream_);
    if (!node_.valid()) return false;  // nothing known yet (no sentinel answered)
    ctx_ = redisConnectWithTimeout(node_.host.c_str(), node_.port, tv);
    if (ctx_ == nullptr || ctx_->err != 0) {
      Disconnect();
      return false;
    }
    redisSetTimeout(ctx_, tv);
    if (!redis_.password.empty()) {
      std::vector<std::string> auth = {"AUTH"};
      if (!redis_.username.empty()) auth.push_back(redis_.username);
      auth.push_back(redis_.password);
      if (!Command(auth)) return false;
    }
    if (redis_.db != 0 && !Command({"SELECT", std::to_string(redis_.db)})) return false;
    if (policies::NeedsRoleCheck(*topology_)) {
      Append({"ROLE"});
      redisReply* reply = nullptr;
      const bool primary = redisGetReply(ctx_, reinterpret_cast<void**>(&reply)) == REDIS_OK &&
                           reply != nullptr && policies::IsPrimaryRole(*reply);
      if (reply != nullptr && !primary) topology_->Suspect(node_);
      if (reply != nullptr) freeReplyObject(reply);
      if (!primary) {
        Disconnect();
        return false;
      }
    }
    return true;
  }

  bool Command(const std::vector<std::string>& args) {
    Append(args);
    redisReply* reply = nullptr;
    const bool ok = redisGetReply(ctx_, reinterpret_cast<void**>(&reply)) == REDIS_OK &&
                    reply != nullptr && reply->type != REDIS_REPLY_ERROR;
    if (reply != nullptr) freeReplyObject(reply);
    if (!ok) Disconnect();
    return ok;
  }

  void Append(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data());
  }

  // XADDs every line in one pipeline. Leaves in `lines` those that failed; false on an I/O
  // error (the context is then unusable).
  bool Pipeline(std::vector<std::string>* lines) {
    for (const std::string& line : *lines) {
      const char* argv[] = {"XADD", stream_.c_str(), "MAXLEN",   "~", maxlen_.c_str(),
                            "*",    "record",        line.data()};
      const size_t lens[] = {4, stream_.size(), 6, 1, maxlen_.size(), 1, 6, line.size()};
      redisAppendCommandArgv(ctx_, 8, argv, lens);
    }
    std::vector<std::string> failed;
    bool io_ok = true;
    for (std::string& line : *lines) {
      redisReply* reply = nullptr;
      if (!io_ok || redisGetReply(ctx_, reinterpret_cast<void**>(&reply)) != REDIS_OK) {
        io_ok = false;
        failed.push_back(std::move(line));
        continue;
      }
      if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) {
        log_->stream_errors_.fetch_add(1, std::memory_order_relaxed);
        // A replica now: the lines behind are refused too; Retry reconnects where routed.
        if (reply != nullptr && policies::JudgeReply(*reply, *topology_, node_, true).kind ==
                                    policies::ReplyVerdict::Kind::kReadOnly) {
          io_ok = false;
        }
        failed.push_back(std::move(line));
      } else {
        log_->stream_written_.fetch_add(1, std::memory_order_relaxed);
      }
      if (reply != nullptr) freeReplyObject(reply);
    }
    lines->swap(failed);
    return io_ok;
  }

  void Disconnect() {
    if (ctx_ != nullptr) redisFree(ctx_);
    ctx_ = nullptr;
  }

  // Charges one attempt to the first `tried` pending batches, drops those out of attempts.
  void Failed(size_t tried) {
    log_->stream_errors_.fetch_add(1, std::memory_order_relaxed);
    backoff_ = std::clamp(backoff_ * 2, kMinBackoff, kMaxBackoff);
    next_connect_ = std::chrono::steady_clock::now() + backoff_;
    for (size_t i = 0; i < tried && i < pending_.size(); ++i) ++pending_[i].attempts;
    while (!pending_.empty() && pending_.front().attempts >= kMaxAttempts) DropFront();
  }

  void DropFront() {
    pending_records_ -= pending_.front().lines.size();
    log_->stream_dropped_.fetch_add(pending_.front().lines.size(), std::memory_order_relaxed);
    pending_.pop_front();
  }

  const config::RedisConfig redis_;
  const std::shared_ptr<policies::RedisTopology> topology_;
  const std::string stream_;
  const std::string maxlen_;
  AuditLog* const log_;
  redisContext* ctx_ = nullptr;
  policies::RedisNode node_;  // where ctx_ is connected
  uint64_t epoch_ = 0;        // the topology's epoch when node_ was chosen
  std::deque<Pending> pending_;
  size_t pending_records_ = 0;
  std::chrono::milliseconds backoff_{0};
  std::chrono::steady_clock::time_point next_connect_{};
};

AuditLog::AuditLog(const config::AuditConfig& audit,
                   const std::optional<config::RedisConfig>& redis)
    : config_(audit), capacity_(std::max<size_t>(audit.queue_capacity, 1)) {
  if (!audit.redis_stream.empty() && redis) {
    stream_ = std::make_unique<StreamSink>(*redis, audit.redis_stream, audit.stream_maxlen, this);
  }
  writer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "tollgate-audit");
    Run();
  });
}

AuditLog::~AuditLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  writer_cv_.notify_one();
  writer_.join();
}

void AuditLog::Slot::Reset() {
  if (log_ != nullptr) log_->used_.fetch_sub(1, std::memory_order_relaxed);
  log_ = nullptr;
}

AuditLog::Slot AuditLog::Reserve() {
  size_t used = used_.load(std::memory_order_relaxed);
  while (used < capacity_) {
    if (used_.compare_exchange_weak(used, used + 1, std::memory_order_relaxed)) return Slot(this);
  }
  return Slot();
}

bool AuditLog::Submit(Slot slot, AuditRecord&& record) {
  if (!slot) {
    slot = Reserve();
    if (!slot) return false;
  }
  // The place now holds the record: the writer gives it back once the record is written.
  slot.log_ = nullptr;
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(std::move(record));
  ++submitted_;
  const bool wake = writer_waiting_ || (lingering_ && Crowded());
  lock.unlock();
  if (wake) writer_cv_.notify_one();
  return true;
}

void AuditLog::Reopen() {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reopen_requested_ = true;
    wake = writer_waiting_;
  }
  if (wake) writer_cv_.notify_one();
}

void AuditLog::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t target = submitted_;
  ++flush_waiters_;
  if (lingering_) writer_cv_.notify_one();
  done_cv_.wait(lock, [&] { return completed_ >= target; });
  --flush_waiters_;
}

std::vector<std::string> AuditLog::RecentRefusals(size_t n) const {
  std::lock_guard<std::mutex> lock(refusals_mu_);
  n = std::min(n, refusals_.size());
  return std::vector<std::string>(refusals_.rbegin(),
                                  refusals_.rbegin() + static_cast<ptrdiff_t>(n));
}

int64_t AuditLog::queue_depth() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(queue_.size());
}

void AuditLog::Run() {
  // Big batches are cut into writes of about this size, so one write never needs a huge buffer.
  constexpr size_t kWriteChunk = 1 << 20;
  constexpr size_t kTypicalLine = 512;  // bytes: a record's line is usually 350-500
  OpenFile();
  std::vector<AuditRecord> batch;
  std::vector<std::string> stream_lines;
  std::vector<std::string> refusal_lines;
  std::string buffer;
  bool busy = false;  // the last batch held records: more are likely on their way
  for (;;) {
    bool reopen;
    bool stop;
    {
      std::unique_lock<std::mutex> lock(mu_);
      const auto ready = [this] { return !queue_.empty() || stopping_ || reopen_requested_; };
      if (busy) {
        // Under load, linger a moment un-notified instead of being woken for every record: the
        // request threads then skip a futex wake per call, and batches (one write each) grow.
        // A full-ish queue (or no free place), a flush, a reopen or a stop still wakes the
        // writer at once.
        lingering_ = true;
        writer_cv_.wait_for(lock, kLinger, [this] {
          return Crowded() || stopping_ || reopen_requested_ || flush_waiters_ > 0;
        });
        lingering_ = false;
      }
      writer_waiting_ = true;
      if (stream_ != nullptr && stream_->HasPending()) {
        writer_cv_.wait_for(lock, stream_->RetryDelay(), ready);
      } else {
        writer_cv_.wait(lock, ready);
      }
      writer_waiting_ = false;
      batch.swap(queue_);
      reopen = std::exchange(reopen_requested_, false);
      stop = stopping_ && batch.empty();
    }
    if (reopen || (fd_ < 0 && !config_.file.empty() && !batch.empty())) OpenFile();
    busy = !batch.empty();
    if (batch.empty()) {
      if (stream_ != nullptr) stream_->Retry();
      if (stop) break;
      continue;
    }
    buffer.clear();
    // Sized once for the batch (the buffer keeps its capacity from one batch to the next).
    buffer.reserve(std::min(batch.size() * kTypicalLine, kWriteChunk + kTypicalLine));
    size_t lost = 0;  // records of this batch that did not reach the file
    for (const AuditRecord& record : batch) {
      const size_t start = buffer.size();
      AppendAuditRecord(record, &buffer);
      if (stream_ != nullptr) stream_lines.emplace_back(buffer, start);
      if (record.status == 401 || record.status == 403 || record.status == 429) {
        refusal_lines.emplace_back(buffer, start);
      }
      buffer.push_back('\n');
      if (buffer.size() >= kWriteChunk) {
        lost += WriteFile(buffer);
        buffer.clear();
      }
    }
    lost += WriteFile(buffer);
    if (!refusal_lines.empty()) {
      std::lock_guard<std::mutex> lock(refusals_mu_);
      for (std::string& line : refusal_lines) refusals_.push_back(std::move(line));
      while (refusals_.size() > kRecentRefusals) refusals_.pop_front();
      refusal_lines.clear();
    }
    if (stream_ != nullptr) {
      stream_->Send(std::move(stream_lines));
      stream_lines.clear();
    }
    written_.fetch_add(batch.size() - lost, std::memory_order_relaxed);
    if (lost > 0) file_dropped_.fetch_add(lost, std::memory_order_relaxed);
    // Only now are the batch's places free: a writer stuck in write() keeps holding them, so the
    // bound counts every record not yet through the sink. (Before Flush is told, so that its
    // return means the places of every record it waited for are free again.)
    used_.fetch_sub(batch.size(), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mu_);
      completed_ += batch.size();
      if (flush_waiters_ > 0) done_cv_.notify_all();
    }
    batch.clear();
  }
  if (stream_ != nullptr) stream_->Close();
  if (fd_owned_) close(fd_);
  fd_ = -1;
}

void AuditLog::OpenFile() {
  if (fd_owned_) close(fd_);
  fd_ = -1;
  fd_owned_ = false;
  if (config_.file.empty()) return;
  if (config_.file == "-") {
    fd_ = STDOUT_FILENO;
    return;
  }
  fd_ = open(config_.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd_ >= 0) {
    fd_owned_ = true;
    // A file that ends inside a record (a full disk, a crash) gets that fragment ended first.
    struct stat st {};
    char last = '\n';
    torn_line_ = fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
                 pread(fd_, &last, 1, st.st_size - 1) == 1 && last != '\n';
    return;
  }
  file_errors_.fetch_add(1, std::memory_order_relaxed);
  if (!file_failing_) {
    std::fprintf(stderr, "tollgate: audit: cannot open %s: %s\n", config_.file.c_str(),
                 std::strerror(errno));
    file_failing_ = true;
  }
}

size_t AuditLog::WriteFile(const std::string& data) {
  if (config_.file.empty() || data.empty()) return 0;
  // A record is in the file once its newline is: whatever follows the last byte written is lost.
  const auto lost_after = [&data](size_t done) {
    return static_cast<size_t>(
        std::count(data.begin() + static_cast<ptrdiff_t>(done), data.end(), '\n'));
  };
  if (fd_ < 0) return lost_after(0);  // OpenFile failed and said so
  if (torn_line_) {
    // An earlier write stopped inside a record: end that fragment, so the next record does not
    // run into it and become unreadable too.
    if (write(fd_, "\n", 1) != 1) return FileFailed(lost_after(0));
    torn_line_ = false;
  }
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // No retry here (ENOSPC, EIO, EFBIG... do not pass by themselves): the records are counted
      // as lost and the writer moves on, so a full disk cannot stall every request behind it.
      torn_line_ = done > 0 && data[done - 1] != '\n';
      return FileFailed(lost_after(done));
    }
    done += static_cast<size_t>(n);
  }
  if (file_failing_) {
    std::fprintf(stderr, "tollgate: audit: writing to %s again\n", config_.file.c_str());
    file_failing_ = false;
  }
  return 0;
}

size_t AuditLog::FileFailed(size_t lost) {
  const int error = errno;
  file_errors_.fetch_add(1, std::memory_order_relaxed);
  if (!file_failing_) {
    std::fprintf(stderr, "tollgate: audit: write to %s failed: %s\n", config_.file.c_str(),
                 std::strerror(error));
    file_failing_ = true;
  }
  return lost;
}

}  // namespace tollgate::gateway
