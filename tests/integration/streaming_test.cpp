// Answers stream (issue 9): through the real gateway to the fake upstream's streaming modes,
// which behave like Devo's query API (rows, continuous queries with keep-alive whitespace, large
// results). What is asserted is order and state (what the fake had sent when the caller got a
// row, what the fake saw when the caller left), never a wall-clock window.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/gateway_fixture.h"
#include "tests/integration/raw_http.h"
#include "tests/unit/upstream_test_server.h"

namespace tollgate::testing {
namespace {

using std::chrono::milliseconds;

// VmHWM / VmRSS of a process, in KiB.
long StatusKiB(pid_t pid, const std::string& field) {
  std::string status = ReadFile("/proc/" + std::to_string(pid) + "/status");
  size_t at = status.find(field + ":");
  return at == std::string::npos ? -1 : std::stol(status.substr(at + field.size() + 1));
}

double Number(const Json& j, const std::string& pointer) {
  const rapidjson::Value* v = j.Get(pointer);
  return v != nullptr && v->IsNumber() ? v->GetDouble() : -1;
}

std::string Request(const std::string& target, const std::string& extra = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kDataKey + "\r\n" +
         extra + "\r\n";
}

// An HTTP/1.1 answer read from a raw socket as it arrives: the head, then the body de-chunked
// (or counted against Content-Length), with the time each body byte range arrived.
class StreamReader {
 public:
  explicit StreamReader(int fd) : fd_(fd), md_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(md_, EVP_sha256(), nullptr);
  }
  ~StreamReader() { EVP_MD_CTX_free(md_); }

  // Reads until the head is complete; false on close or timeout.
  bool ReadHead(int timeout_ms = 10000) {
    while (head_end_ == std::string::npos) {
      if (!Fill(timeout_ms)) return false;
      head_end_ = raw_.find("\r\n\r\n");
    }
    head_ = raw_.substr(0, head_end_ + 4);
    raw_.erase(0, head_end_ + 4);
    std::string lower = head_;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    chunked_ = lower.find("transfer-encoding: chunked") != std::string::npos;
    size_t cl = lower.find("content-length: ");
    if (cl != std::string::npos) length_ = std::stoll(lower.substr(cl + 16));
    Decode();
    return true;
  }
  // Reads body until `done()` holds, the body ends, or nothing arrives for timeout_ms.
  template <typename Done>
  void ReadBodyUntil(Done done, int timeout_ms = 10000) {
    while (!ended_ && !done()) {
      if (!Fill(timeout_ms)) return;
      Decode();
    }
  }
  void ReadToEnd(int timeout_ms = 10000) {
    ReadBodyUntil([] { return false; }, timeout_ms);
  }

  const std::string& head() const { return head_; }
  int status() const { return StatusOf(head_); }
  bool chunked() const { return chunked_; }
  bool ended() const { return ended_; }  // the last chunk, or Content-Length bytes, arrived
  bool closed() const { return closed_; }
  uint64_t body_bytes() const { return body_bytes_; }
  // The body kept in memory (only while keep_body is on) and when each byte range arrived.
  bool keep_body = true;
  const std::string& body() const { return body_; }
  std::string Sha256Hex() {
    unsigned char out[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(md_, out, &len);
    char hex[65];
    for (int i = 0; i < 32; ++i) std::snprintf(hex + 2 * i, 3, "%02x", out[i]);
    return std::string(hex, 64);
  }
  // Monotonic ms at which the body's first `offset` bytes had all arrived.
  int64_t ArrivedBy(size_t offset) const {
    for (const auto& [end, ms] : arrivals_) {
      if (end >= offset) return ms;
    }
    return -1;
  }

 private:
  bool Fill(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[65536];
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    raw_.append(buf, static_cast<size_t>(n));
    return true;
  }
  void Body(const char* data, size_t n) {
    if (n == 0) return;
    EVP_DigestUpdate(md_, data, n);
    body_bytes_ += n;
    if (keep_body) body_.append(data, n);
    arrivals_.emplace_back(body_bytes_, MonotonicMs());
  }
  void Decode() {
    if (!chunked_) {
      Body(raw_.data(), raw_.size());
      raw_.clear();
      if (length_ >= 0 && body_bytes_ >= static_cast<uint64_t>(length_)) ended_ = true;
      return;
    }
    for (;;) {
      if (chunk_left_ == 0) {
        size_t eol = raw_.find("\r\n");
        if (eol == std::string::npos) return;
        if (eol == 0) {  // the CRLF after a chunk's data
          raw_.erase(0, 2);
          continue;
        }
        chunk_left_ = std::stoull(raw_.substr(0, eol), nullptr, 16);
        raw_.erase(0, eol + 2);
        if (chunk_left_ == 0) {
          ended_ = true;
          return;
        }
      }
      size_t take = std::min<size_t>(chunk_left_, raw_.size());
      if (take == 0) return;
      Body(raw_.data(), take);
      raw_.erase(0, take);
      chunk_left_ -= take;
    }
  }

  int fd_;
  EVP_MD_CTX* md_;
  std::string raw_;
  size_t head_end_ = std::string::npos;
  std::string head_;
  bool chunked_ = false;
  int64_t length_ = -1;
  uint64_t chunk_left_ = 0;
  bool ended_ = false;
  bool closed_ = false;
  uint64_t body_bytes_ = 0;
  std::string body_;
  std::vector<std::pair<uint64_t, int64_t>> arrivals_;
};

int64_t StreamIdOf(const std::string& head) {
  std::string lower = head;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t at = lower.find("x-fake-stream-id: ");
  return at == std::string::npos ? -1 : std::stoll(lower.substr(at + 18));
}

class StreamingTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    StartGateway(StandardConfig());
  }
  // A raw connection that has sent a request for `spec` and read the answer's head.
  int Open(const FakeStreamSpec& spec, StreamReader** reader_out = nullptr) {
    int fd = ConnectLoopback(gateway_->listen_port());
    EXPECT_GE(fd, 0);
    EXPECT_TRUE(SendAll(fd, Request("/devin/stream/q?" + spec.Query())));
    (void)reader_out;
    return fd;
  }
  double Metric(const std::string& series) {
    HttpResponse m = Http("GET", gateway_->admin_url() + "/metrics");
    return MetricValue(m.body, series).value_or(-1);
  }
};

// Rows sent 300 ms apart reach the caller as they are sent: each row had arrived before the
// upstream sent the next one. Buffering the answer would deliver them all after the last.
TEST_F(StreamingTest, RowsReachTheCallerAsTheUpstreamSendsThem) {
  FakeStreamSpec spec;
  spec.mode = "rows";
  spec.rows = 6;
  spec.interval_ms = 300;
  int fd = Open(spec);
  StreamReader reader(fd);
  ASSERT_TRUE(reader.ReadHead()) << gateway_->log();
  EXPECT_EQ(reader.status(), 200) << reader.head();
  EXPECT_TRUE(reader.chunked()) << reader.head();  // the upstream gave no length
  reader.ReadToEnd();
  close(fd);
  ASSERT_TRUE(reader.ended()) << reader.body();
  // Each row is a line carrying the fake's monotonic send time.
  std::vector<std::pair<size_t, int64_t>> rows;  // end offset in the body, sent_ms
  const std::string& body = reader.body();
  for (size_t p = 0; p < body.size();) {
    size_t e = body.find('\n', p);
    if (e == std::string::npos) break;
    Json row = Json::Parse(body.substr(p, e - p));
    if (row.ok()) rows.emplace_back(e + 1, row.Int("/sent_ms"));
    p = e + 1;
  }
  ASSERT_EQ(rows.size(), 6u) << body;
  for (size_t k = 0; k + 1 < rows.size(); ++k) {
    int64_t arrived = reader.ArrivedBy(rows[k].first);
    EXPECT_LT(arrived, rows[k + 1].second)
        << "row " << k << " reached the caller only after row " << k + 1 << " was sent";
  }
  auto lines = gateway_->WaitForAuditLines(1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].String("/ended_by"), "complete");
  EXPECT_EQ(lines[0].Int("/status"), 200);
  EXPECT_EQ(lines[0].Int("/bytes_out"), static_cast<int64_t>(body.size()));
  EXPECT_FALSE(lines[0].IsNull("/ttfb_ms"));
  // Streamed: the caller had its status long before the last row (five intervals later).
  EXPECT_LT(Number(lines[0], "/latency_ms") + 1000, Number(lines[0], "/duration_ms"));
}

// A continuous query (no end) is read for a while, then the caller leaves: the gateway ends the
// upstream transfer, the fake sees its client go, and the record says client_closed.
TEST_F(StreamingTest, AContinuousStreamClosedByTheCallerEndsTheUpstreamStream) {
  FakeStreamSpec spec;
  spec.mode = "continuous";
  spec.interval_ms = 50;
  int fd = Open(spec);
  StreamReader reader(fd);
  ASSERT_TRUE(reader.ReadHead()) << gateway_->log();
  ASSERT_EQ(reader.status(), 200) << reader.head();
  int64_t id = StreamIdOf(reader.head());
  ASSERT_GT(id, 0) << reader.head();
  reader.ReadBodyUntil([&] { return reader.body().find("\"seq\":3") != std::string::npos; });
  ASSERT_NE(reader.body().find("\"seq\":3"), std::string::npos) << reader.body();
  EXPECT_EQ(Metric("tollgate_open_streams"), 1);
  int64_t closed_at = MonotonicMs();
  close(fd);
  auto record = fake_.WaitForStream(id, [](const FakeStreamRecord& r) { return r.ended; });
  ASSERT_TRUE(record && record->ended) << "the upstream stream is still open";
  EXPECT_EQ(record->ended_by, "client_closed");
  // The issue asks for 100 ms; only "not held open" is asserted (a loaded machine may be slow
  // to schedule the fake), and the figure is printed for the record.
  std::printf("measured: upstream stream ended %lld ms after the caller closed\n",
              static_cast<long long>(record->ended_at_ms - closed_at));
  EXPECT_LT(record->ended_at_ms - closed_at, 5000);
  auto lines = gateway_->WaitForAuditLines(1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].String("/ended_by"), "client_closed");
  EXPECT_EQ(lines[0].Int("/status"), 200);
  EXPECT_GE(lines[0].Int("/bytes_out"), static_cast<int64_t>(reader.body_bytes()));
  EXPECT_EQ(Metric("tollgate_open_streams"), 0);
}

// A gigabyte passes intact (same SHA-256 as the fake wrote), with Content-Length kept, while the
// gateway's peak memory grows by less than 64 MiB.
TEST_F(StreamingTest, AGigabyteAnswerPassesIntactInBoundedMemory) {
  long before = StatusKiB(gateway_->pid(), "VmHWM");
  FakeStreamSpec spec;
  spec.mode = "big";
  spec.bytes = int64_t{1} << 30;
  spec.seed = 7;
  int fd = Open(spec);
  StreamReader reader(fd);
  reader.keep_body = false;
  ASSERT_TRUE(reader.ReadHead()) << gateway_->log();
  ASSERT_EQ(reader.status(), 200) << reader.head();
  EXPECT_NE(reader.head().find("Content-Length: 1073741824"), std::string::npos) << reader.head();
  reader.ReadToEnd(30000);
  close(fd);
  ASSERT_TRUE(reader.ended()) << reader.body_bytes();
  EXPECT_EQ(reader.body_bytes(), uint64_t{1} << 30);
  int64_t id = StreamIdOf(reader.head());
  auto record = fake_.WaitForStream(id, [](const FakeStreamRecord& r) { return r.ended; });
  ASSERT_TRUE(record);
  EXPECT_EQ(reader.Sha256Hex(), record->sha256);
  long after = StatusKiB(gateway_->pid(), "VmHWM");
  RecordProperty("vmhwm_growth_kib", static_cast<int>(after - before));
  std::printf("measured: 1 GiB answer, gateway VmHWM grew by %ld KiB\n", after - before);
  EXPECT_LT(after - before, 64 * 1024) << "VmHWM grew from " << before << " to " << after << " KiB";
  auto lines = gateway_->WaitForAuditLines(1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].Int("/bytes_out"), int64_t{1} << 30);
  EXPECT_EQ(lines[0].String("/ended_by"), "complete");
}

// An answer without a length is re-chunked to the caller, byte for byte.
TEST_F(StreamingTest, AChunkedAnswerIsRechunkedIntact) {
  FakeStreamSpec spec;
  spec.mode = "big";
  spec.bytes = (int64_t{24} << 20) + 5;
  spec.chunked = true;
  spec.seed = 3;
  int fd = Open(spec);
  StreamReader reader(fd);
  reader.keep_body = false;
  ASSERT_TRUE(reader.ReadHead()) << gateway_->log();
  EXPECT_TRUE(reader.chunked()) << reader.head();
  reader.ReadToEnd();
  close(fd);
  ASSERT_TRUE(reader.ended());
  EXPECT_EQ(reader.body_bytes(), static_cast<uint64_t>(spec.bytes));
  auto record = fake_.WaitForStream(StreamIdOf(reader.head()),
                                    [](const FakeStreamRecord& r) { return r.ended; });
  ASSERT_TRUE(record);
  EXPECT_EQ(reader.Sha256Hex(), record->sha256);
}

// A caller that stops reading pauses the upstream: the fake's writes stop advancing (its socket
// is full) with far less than the answer sent; reading again delivers all of it.
TEST_F(StreamingTest, ASlowReaderHoldsTheUpstreamPaused) {
  FakeStreamSpec spec;
  spec.mode = "big";
  spec.bytes = int64_t{512} << 20;
  spec.seed = 11;
  int fd = Open(spec);
  StreamReader reader(fd);
  reader.keep_body = false;
  ASSERT_TRUE(reader.ReadHead()) << gateway_->log();
  int64_t id = StreamIdOf(reader.head());
  // Stop reading. The fake must find its socket full and stay there.
  std::optional<FakeStreamRecord> held;
  int64_t last = -1;
  for (int i = 0; i < 100; ++i) {
    auto r = fake_.Stream(id);
    ASSERT_TRUE(r);
    if (r->blocked && r->bytes_written == last) {
      held = r;
      break;
    }
    last = r->bytes_written;
    std::this_thread::sleep_for(milliseconds(200));
  }
  ASSERT_TRUE(held) << "the upstream never stopped writing";
  EXPECT_FALSE(held->ended);
  // Kernel socket buffers on both sides plus the gateway's bounded buffers: tens of MiB at
  // most, nowhere near the 512 MiB answer.
  EXPECT_LT(held->bytes_written, int64_t{64} << 20) << held->bytes_written;
  reader.ReadToEnd(30000);
  close(fd);
  ASSERT_TRUE(reader.ended());
  auto record = fake_.WaitForStream(id, [](const FakeStreamRecord& r) { return r.ended; });
  ASSERT_TRUE(record);
  EXPECT_EQ(record->ended_by, "complete");
  EXPECT_EQ(reader.Sha256Hex(), record->sha256);
}

// Devo's keep-alive whitespace keeps a quiet continuous query inside read_idle_timeout_ms; a
// truly silent upstream is cut at it, and max_duration_ms bounds the whole answer.
TEST_F(StreamingTest, IdleAndDurationLimitsEndStreamsAndKeepAlivesKeepThemOpen) {
  std::string config = StandardConfig();
  gateway_.reset();
  // read_idle_timeout_ms 1000 on devin; max_duration_ms 1500 on devo.
  size_t devin = config.find("\"devin\": {");
  ASSERT_NE(devin, std::string::npos);
  config.insert(devin + 10, "\"read_idle_timeout_ms\": 1000, ");
  size_t devo = config.find("\"devo\": {");
  ASSERT_NE(devo, std::string::npos);
  config.insert(devo + 9, "\"max_duration_ms\": 1500, ");
  StartGateway(config);

  // Rows every 1500 ms with keep-alives every 100 ms: never 1000 ms of silence.
  FakeStreamSpec alive;
  alive.mode = "continuous";
  alive.interval_ms = 1500;
  alive.keepalive_ms = 100;
  int fd = Open(alive);
  StreamReader reader(fd);
  ASSERT_TRUE(reader.ReadHead()) << gateway_->log();
  reader.ReadBodyUntil([&] { return reader.body().find("\"seq\":2") != std::string::npos; });
  EXPECT_NE(reader.body().find("\"seq\":2"), std::string::npos)
      << "cut before the third row: " << reader.body();
  EXPECT_FALSE(reader.closed());
  close(fd);

  // Rows every 3000 ms, one keep-alive halfway: 1500 ms of silence, over the limit.
  FakeStreamSpec silent;
  silent.mode = "continuous";
  silent.interval_ms = 3000;
  int fd2 = Open(silent);
  StreamReader cut(fd2);
  ASSERT_TRUE(cut.ReadHead());
  cut.ReadToEnd(10000);
  close(fd2);
  EXPECT_TRUE(cut.closed());
  EXPECT_FALSE(cut.ended()) << "a cut stream must not look complete to the caller";

  // max_duration_ms on devo: a continuous stream that is never quiet still ends.
  int fd3 = ConnectLoopback(gateway_->listen_port());
  ASSERT_TRUE(SendAll(fd3, Request("/devo/stream/q?" + alive.Query())));
  StreamReader bounded(fd3);
  ASSERT_TRUE(bounded.ReadHead());
  bounded.ReadToEnd(10000);
  close(fd3);
  EXPECT_TRUE(bounded.closed());
  EXPECT_FALSE(bounded.ended());

  auto lines = gateway_->WaitForAuditLines(3);
  ASSERT_EQ(lines.size(), 3u);
  std::vector<std::string> ended;
  for (const auto& l : lines) ended.push_back(l.String("/ended_by"));
  EXPECT_EQ(ended[0], "client_closed");
  EXPECT_EQ(ended[1], "read_idle_timeout");
  EXPECT_EQ(ended[2], "max_duration");
}

// A caller that stops reading a streamed answer is closed once it has taken nothing for
// client_idle_timeout_ms, and its upstream transfer ends with it: a stalled reader cannot hold a
// stream (and its upstream) open for ever.
TEST_F(StreamingTest, ACallerThatStopsReadingIsClosedAfterTheClientIdleTimeout) {
  gateway_.reset();
  StartGateway(StandardConfig(R"("client_idle_timeout_ms": 600,)"));
  FakeStreamSpec spec;
  spec.mode = "big";
  spec.bytes = int64_t{512} << 20;
  spec.seed = 5;
  int fd = Open(spec);
  StreamReader reader(fd);
  reader.keep_body = false;
  ASSERT_TRUE(reader.ReadHead()) << gateway_->log();
  int64_t id = StreamIdOf(reader.head());
  // Not a byte more is read: the gateway's output to this caller waits, the timer runs out.
  auto record = fake_.WaitForStream(
      id, [](const FakeStreamRecord& r) { return r.ended; }, milliseconds(30000));
  ASSERT_TRUE(record && record->ended) << "the stalled caller still holds the upstream stream";
  EXPECT_EQ(record->ended_by, "client_closed");
  EXPECT_LT(record->body_bytes, spec.bytes);
  auto lines = gateway_->WaitForAuditLines(1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].String("/ended_by"), "client_closed");
  close(fd);
}

// A caller that fell behind (its output waited, so its connection's timer runs) and then caught
// up is not cut by client_idle_timeout_ms while the upstream is quiet: only the upstream's own
// limits bound an answer that is still being produced. The quiet spell is longer than the idle
// timeout on purpose; the answer must still end complete.
TEST_F(StreamingTest, AQuietUpstreamIsNotCutByTheClientIdleTimeoutOnceTheCallerCaughtUp) {
  const std::string first(size_t{64} << 20, 'a');
  const std::string last = "-the end";
  std::mutex mu;
  std::condition_variable cv;
  bool stalled = false, held = false, go = false;
  upstream::testing::TestServer upstream([&](const upstream::testing::ReceivedRequest&) {
    upstream::testing::Reply reply{"HTTP/1.1 200 OK\r\nContent-Length: " +
                                   std::to_string(first.size() + last.size()) + "\r\n\r\n"};
    reply.stream = [&](upstream::testing::StreamConn& conn) {
      size_t offset = 0;
      bool was_held = conn.WriteUntilStalled(first, &offset, milliseconds(100));
      {
        std::lock_guard<std::mutex> lock(mu);
        stalled = true;
        held = was_held;
      }
      cv.notify_all();
      if (!conn.Write(first.substr(offset))) return;
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_for(lock, std::chrono::seconds(60), [&] { return go; });
      lock.unlock();
      conn.Write(last);
    };
    return reply;
  });
  gateway_.reset();
  GatewayOptions options =
      StandardOptions(fake_, StandardConfig(R"("client_idle_timeout_ms": 2000,)"));
  options.upstream = upstream.Url("");
  gateway_ = std::make_unique<GatewayProcess>(options);
  ASSERT_TRUE(gateway_->started()) << gateway_->log();

  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, Request("/devin/quiet")));
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return stalled; }))
        << gateway_->log();
    ASSERT_TRUE(held) << "the upstream was never held off: the caller's output never waited";
  }
  StreamReader reader(fd);
  reader.keep_body = false;
  ASSERT_TRUE(reader.ReadHead()) << gateway_->log();
  reader.ReadBodyUntil([&] { return reader.body_bytes() >= first.size(); });
  ASSERT_EQ(reader.body_bytes(), first.size());
  std::this_thread::sleep_for(milliseconds(4000));  // the upstream is quiet; the caller waits
  {
    std::lock_guard<std::mutex> lock(mu);
    go = true;
  }
  cv.notify_all();
  reader.ReadToEnd();
  EXPECT_TRUE(reader.ended()) << "cut after " << reader.body_bytes() << " bytes";
  EXPECT_EQ(reader.body_bytes(), first.size() + last.size());
  close(fd);
  auto lines = gateway_->WaitForAuditLines(1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].String("/ended_by"), "complete");
}

// 2,000 continuous streams open at once through one gateway, in bounded memory; all end when
// their callers leave.
TEST_F(StreamingTest, TwoThousandConcurrentStreamsInBoundedMemory) {
  rlimit files{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &files), 0);
  files.rlim_cur = files.rlim_max;
  setrlimit(RLIMIT_NOFILE, &files);
  ASSERT_GE(files.rlim_cur, 2200u) << "needs 2,200 fds";
  FakeStreamSpec spec;
  spec.mode = "continuous";
  spec.interval_ms = 1000;
  std::vector<int> fds;
  for (int i = 0; i < 2000; ++i) {
    int fd = ConnectLoopback(gateway_->listen_port());
    ASSERT_GE(fd, 0) << i;
    ASSERT_TRUE(SendAll(fd, Request("/devin/stream/q?" + spec.Query()))) << i;
    fds.push_back(fd);
  }
  bool all = false;
  for (int i = 0; i < 300 && !all; ++i) {
    all = fake_.OpenStreams() >= 2000;
    if (!all) std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_TRUE(all) << fake_.OpenStreams() << " streams open\n" << gateway_->log().substr(0, 2000);
  EXPECT_EQ(Metric("tollgate_open_streams"), 2000);
  long rss = StatusKiB(gateway_->pid(), "VmRSS");
  std::printf("measured: 2,000 open streams, gateway VmRSS %ld KiB\n", rss);
  EXPECT_LT(rss, 300 * 1024) << "RSS " << rss << " KiB with 2,000 streams";
  for (int fd : fds) close(fd);
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {
    gone = fake_.OpenStreams() == 0;
    if (!gone) std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_TRUE(gone) << fake_.OpenStreams() << " upstream streams still open";
  auto lines = gateway_->WaitForAuditLines(2000, milliseconds(30000));
  std::string log = gateway_->log();
  EXPECT_EQ(lines.size(), 2000u) << "running: " << gateway_->running() << "\n"
                                 << log.substr(
                                        log.find("ERROR: AddressSanitizer") != std::string::npos
                                            ? log.find("ERROR: AddressSanitizer")
                                            : (log.size() > 4000 ? log.size() - 4000 : 0),
                                        16000);
}

// SIGTERM with streams open: they get drain_timeout_ms, are then ended (audited draining), the
// upstream streams are closed, and the gateway exits 0.
TEST_F(StreamingTest, SigtermEndsOpenStreamsAfterTheDrainTimeout) {
  gateway_.reset();
  StartGateway(StandardConfig(R"("drain_timeout_ms": 300,)"));
  FakeStreamSpec spec;
  spec.mode = "continuous";
  spec.interval_ms = 50;
  std::vector<int> fds;
  std::vector<int64_t> ids;
  for (int i = 0; i < 3; ++i) {
    int fd = Open(spec);
    StreamReader reader(fd);
    ASSERT_TRUE(reader.ReadHead()) << gateway_->log();
    ids.push_back(StreamIdOf(reader.head()));
    fds.push_back(fd);
  }
  gateway_->Signal(SIGTERM);
  int status = gateway_->Wait(milliseconds(20000));
  ASSERT_NE(status, -1) << gateway_->log();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << gateway_->log();
  for (int64_t id : ids) {
    auto r = fake_.WaitForStream(id, [](const FakeStreamRecord& s) { return s.ended; });
    ASSERT_TRUE(r && r->ended) << id;
  }
  for (int fd : fds) close(fd);
  auto lines = gateway_->AuditLines();
  ASSERT_EQ(lines.size(), 3u);
  for (const auto& l : lines) {
    EXPECT_EQ(l.String("/ended_by"), "draining");
    EXPECT_EQ(l.Int("/status"), 200);
  }
}

}  // namespace
}  // namespace tollgate::testing
