// StreamClient on a LoopThread against the in-process test server: streaming order, pause and
// resume with backpressure, the three time limits, Abort (also from inside a callback) and
// shutdown. Waits are for events (a chunk arrived, the server saw a close); the only timed waits
// are generous deadlines that a working client never reaches.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "loop/loop.h"
#include "tests/unit/upstream_test_server.h"
#include "upstream/stream_client.h"

namespace tollgate::upstream {
namespace {

using testing::HttpResponse;
using testing::ReceivedRequest;
using testing::Reply;
using testing::StreamConn;
using testing::TestServer;
using Reason = StreamEndReason;

constexpr std::chrono::seconds kWait(30);

// A count that threads wait on.
class Signal {
 public:
  void Add() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++count_;
    }
    cv_.notify_all();
  }
  bool WaitFor(int n, std::chrono::milliseconds timeout = kWait) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return count_ >= n; });
  }
  int count() {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
};

// Records every event of one transfer (on the loop thread) for the test thread.
class Recorder : public StreamSink {
 public:
  // Runs in OnData after the chunk is recorded; returns OnData's answer.
  std::function<bool(Recorder&)> on_data;
  StreamClient* client = nullptr;
  StreamClient::TransferId id = 0;

  void OnHeaders(int status, HeaderList headers) override {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back("H" + std::to_string(status));
    status_ = status;
    headers_ = std::move(headers);
    cv_.notify_all();
  }
  bool OnData(const char* data, size_t len) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      EXPECT_FALSE(end_.has_value()) << "OnData after OnEnd";
      events_.push_back("D");
      chunks_.emplace_back(data, len);
      body_.append(data, len);
    }
    cv_.notify_all();
    data_.Add();
    return on_data ? on_data(*this) : true;
  }
  void OnEnd(const StreamEnd& end) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      EXPECT_FALSE(end_.has_value()) << "OnEnd twice";
      events_.push_back(std::string("E:") + StreamEndReasonName(end.reason));
      end_ = end;
    }
    cv_.notify_all();
    ended_.Add();
  }

  bool WaitEnd(std::chrono::milliseconds timeout = kWait) { return ended_.WaitFor(1, timeout); }
  bool WaitData(int calls) { return data_.WaitFor(calls); }
  // True once `calls` chunks arrived; false once the transfer ended short of them.
  bool WaitDataOrEnd(size_t calls) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, kWait, [&] { return chunks_.size() >= calls || end_.has_value(); });
    return chunks_.size() >= calls;
  }
  int data_calls() { return data_.count(); }
  bool ended() { return ended_.count() > 0; }

  std::vector<std::string> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  std::vector<std::string> chunks() {
    std::lock_guard<std::mutex> lock(mu_);
    return chunks_;
  }
  std::string body() {
    std::lock_guard<std::mutex> lock(mu_);
    return body_;
  }
  HeaderList headers() {
    std::lock_guard<std::mutex> lock(mu_);
    return headers_;
  }
  StreamEnd end() {
    std::lock_guard<std::mutex> lock(mu_);
    return end_.value_or(StreamEnd());
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
  std::vector<std::string> chunks_;
  std::string body_;
  HeaderList headers_;
  int status_ = 0;
  std::optional<StreamEnd> end_;
  Signal data_;
  Signal ended_;
};

UpstreamRequest Get(const std::string& url) {
  UpstreamRequest r;
  r.method = "GET";
  r.url = url;
  return r;
}

std::string Chunk(const std::string& data) {
  char size[32];
  snprintf(size, sizeof size, "%zx\r\n", data.size());
  return size + data + "\r\n";
}

const char kChunkedHead[] =
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Stream: yes\r\n\r\n";

std::string Pattern(size_t size) {
  std::string s(size, '\0');
  uint32_t x = 12345;
  for (char& c : s) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 16);
  }
  return s;
}

class StreamClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("no_proxy", "127.0.0.1", 1);
    setenv("NO_PROXY", "127.0.0.1", 1);
    loop_.RunSync(
        [&] { client_ = std::make_unique<StreamClient>(&loop_.loop(), options_, &stats_); });
  }
  void TearDown() override { Destroy(); }

  void Destroy() {
    loop_.RunSync([&] { client_.reset(); });
  }

  StreamClient::TransferId Start(UpstreamRequest request, Recorder* sink) {
    StreamClient::TransferId id = 0;
    loop_.RunSync([&] {
      sink->client = client_.get();
      id = client_->Start(std::move(request), sink);
      sink->id = id;
    });
    return id;
  }

  size_t Active() {
    size_t n = 0;
    loop_.RunSync([&] { n = client_->active(); });
    return n;
  }

  UpstreamClientOptions options_;
  UpstreamClientStats stats_;
  loop::LoopThread loop_{"stream-test"};
  std::unique_ptr<StreamClient> client_;
};

TEST_F(StreamClientTest, HeadersComeFirstThenEachChunkAsTheServerPacesIt) {
  Recorder sink;
  TestServer server([&](const ReceivedRequest&) {
    Reply reply{kChunkedHead + Chunk("chunk-1")};
    reply.stream = [&](StreamConn& conn) {
      // Each chunk goes out only once the client handed the previous one to the sink.
      for (int i = 2; i <= 5; ++i) {
        if (!sink.WaitDataOrEnd(i - 1) || !conn.Write(Chunk("chunk-" + std::to_string(i)))) return;
      }
      conn.Write("0\r\n\r\n");
    };
    return reply;
  });
  ASSERT_NE(Start(Get(server.Url("/s")), &sink), 0u);
  ASSERT_TRUE(sink.WaitEnd());
  std::vector<std::string> expected = {"H200", "D", "D", "D", "D", "D", "E:complete"};
  EXPECT_EQ(sink.events(), expected);
  EXPECT_EQ(sink.chunks(),
            (std::vector<std::string>{"chunk-1", "chunk-2", "chunk-3", "chunk-4", "chunk-5"}));
  HeaderList headers = sink.headers();
  EXPECT_NE(std::find(headers.begin(), headers.end(),
                      std::make_pair(std::string("X-Stream"), std::string("yes"))),
            headers.end());
  StreamEnd end = sink.end();
  EXPECT_TRUE(end.headers_seen);
  EXPECT_EQ(end.body_bytes, 35u);
  EXPECT_GT(end.ttfb_ms, 0);
  EXPECT_GE(end.total_ms, end.ttfb_ms);
  EXPECT_EQ(stats_.started.load(), 1u);
  EXPECT_EQ(stats_.completed.load(), 1u);
  EXPECT_EQ(Active(), 0u);
}

TEST_F(StreamClientTest, HeadAndBodylessStatusesGetHeadersThenComplete) {
  TestServer server([](const ReceivedRequest& r) {
    if (r.target == "/204") return Reply{"HTTP/1.1 204 No Content\r\n\r\n", false, false};
    if (r.target == "/304") return Reply{"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"};
    return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, false};
  });
  for (const std::string target : {"/head", "/204", "/304"}) {
    SCOPED_TRACE(target);
    Recorder sink;
    UpstreamRequest request = Get(server.Url(target));
    if (target == "/head") request.method = "HEAD";
    Start(std::move(request), &sink);
    ASSERT_TRUE(sink.WaitEnd());
    std::string status = target == "/head" ? "200" : target.substr(1);
    EXPECT_EQ(sink.events(), (std::vector<std::string>{"H" + status, "E:complete"}));
    EXPECT_TRUE(sink.end().headers_seen);
  }
}

TEST_F(StreamClientTest, InterimResponsesAreNotTheHeaders) {
  TestServer server([](const ReceivedRequest&) {
    return Reply{"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + HttpResponse(201, "ok")};
  });
  Recorder sink;
  Start(Get(server.Url("/")), &sink);
  ASSERT_TRUE(sink.WaitEnd());
  EXPECT_EQ(sink.events(), (std::vector<std::string>{"H201", "D", "E:complete"}));
  EXPECT_EQ(sink.headers(), (HeaderList{{"Content-Length", "2"}}));
}

TEST_F(StreamClientTest, APausedTransferHoldsTheUpstreamAndResumeDeliversTheWholeBody) {
  const std::string body = Pattern(size_t{48} << 20);
  Signal stalled;
  std::atomic<size_t> sent_when_stalled{0};
  TestServer server([&](const ReceivedRequest&) {
    Reply reply{"HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n"};
    reply.stream = [&](StreamConn& conn) {
      size_t offset = 0;
      if (!conn.WriteUntilStalled(body, &offset, std::chrono::milliseconds(1000))) return;
      sent_when_stalled = offset;
      stalled.Add();
      conn.Write(body.substr(offset));
    };
    return reply;
  });
  Recorder sink;
  sink.on_data = [](Recorder& r) { return r.data_calls() > 1; };  // pause after the first chunk
  StreamClient::TransferId id = Start(Get(server.Url("/big")), &sink);
  ASSERT_TRUE(stalled.WaitFor(1)) << "the server never found the client holding it off";
  EXPECT_LT(sent_when_stalled.load(), body.size());
  ASSERT_TRUE(sink.WaitData(1));
  EXPECT_EQ(sink.data_calls(), 1);  // nothing more reached the sink while paused
  EXPECT_FALSE(sink.ended());
  loop_.RunSync([&] { client_->Resume(id); });
  ASSERT_TRUE(sink.WaitEnd());
  EXPECT_EQ(sink.end().reason, Reason::kComplete);
  EXPECT_EQ(sink.end().body_bytes, body.size());
  EXPECT_TRUE(sink.body() == body);
}

TEST_F(StreamClientTest, PausingOnEveryChunkAndResumingFromTheLoopKeepsEveryByte) {
  const std::string body = Pattern(size_t{4} << 20);
  TestServer server([&](const ReceivedRequest&) {
    Reply reply{kChunkedHead};
    reply.stream = [&](StreamConn& conn) {
      for (size_t at = 0; at < body.size(); at += 40000) {
        if (!conn.Write(Chunk(body.substr(at, 40000)))) return;
      }
      conn.Write("0\r\n\r\n");
    };
    return reply;
  });
  Recorder sink;
  loop::Loop* loop = &loop_.loop();
  // Every chunk pauses; the resume comes from a later loop iteration, where unpausing hands the
  // held rest of a block to OnData synchronously (which pauses again).
  sink.on_data = [loop](Recorder& r) {
    loop->After(std::chrono::milliseconds(0), [&r] { r.client->Resume(r.id); });
    r.client->Resume(r.id);  // inside OnData, not paused yet: nothing
    return false;
  };
  Start(Get(server.Url("/chunks")), &sink);
  ASSERT_TRUE(sink.WaitEnd());
  EXPECT_EQ(sink.end().reason, Reason::kComplete) << sink.end().error_message;
  EXPECT_TRUE(sink.body() == body) << sink.body().size();
  EXPECT_GT(sink.data_calls(), 100);
}

TEST_F(StreamClientTest, ReadIdleTimeoutEndsASilentStreamButNotAPausedOne) {
  Signal finish;
  TestServer server([&](const ReceivedRequest& r) {
    Reply reply{kChunkedHead + Chunk(r.target == "/paused" ? "a" : "b")};
    reply.stream = [&, target = r.target](StreamConn& conn) {
      if (target == "/silent") {
        conn.WaitClosed(kWait);
        return;
      }
      finish.WaitFor(1);
      conn.Write(Chunk("rest") + "0\r\n\r\n");
    };
    return reply;
  });
  Recorder paused;
  paused.on_data = [](Recorder& r) { return r.data_calls() > 1; };
  UpstreamRequest a = Get(server.Url("/paused"));
  a.read_idle_timeout_ms = 300;
  StreamClient::TransferId paused_id = Start(std::move(a), &paused);
  ASSERT_TRUE(paused.WaitData(1));
  // Started after `paused` stopped: its idle deadline is later than the paused one's would be,
  // so once it fired, a paused transfer under the idle limit would have ended too.
  Recorder silent;
  UpstreamRequest b = Get(server.Url("/silent"));
  b.read_idle_timeout_ms = 300;
  Start(std::move(b), &silent);
  ASSERT_TRUE(silent.WaitEnd());
  EXPECT_EQ(silent.end().reason, Reason::kReadIdleTimeout);
  EXPECT_TRUE(silent.end().headers_seen);
  EXPECT_EQ(silent.end().body_bytes, 1u);
  EXPECT_FALSE(paused.ended());
  EXPECT_EQ(stats_.timeouts.load(), 1u);

  finish.Add();
  loop_.RunSync([&] { client_->Resume(paused_id); });
  ASSERT_TRUE(paused.WaitEnd());
  EXPECT_EQ(paused.end().reason, Reason::kComplete);
  EXPECT_EQ(paused.body(), "arest");
}

TEST_F(StreamClientTest, MaxDurationEndsAnEndlessStream) {
  Signal closed;
  TestServer server([&](const ReceivedRequest&) {
    Reply reply{kChunkedHead};
    reply.stream = [&](StreamConn& conn) {
      while (conn.Write(Chunk("    "))) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      closed.Add();
    };
    return reply;
  });
  Recorder sink;
  UpstreamRequest request = Get(server.Url("/endless"));
  request.max_duration_ms = 300;
  request.read_idle_timeout_ms = 60000;
  Start(std::move(request), &sink);
  ASSERT_TRUE(sink.WaitEnd());
  EXPECT_EQ(sink.end().reason, Reason::kMaxDuration);
  EXPECT_TRUE(sink.end().headers_seen);
  EXPECT_GT(sink.end().body_bytes, 0u);
  EXPECT_GE(sink.end().total_ms, 300);
  EXPECT_TRUE(closed.WaitFor(1)) << "the upstream connection stayed open";
}

TEST_F(StreamClientTest, NoHeadersWithinTimeoutIsATimeout) {
  TestServer server([](const ReceivedRequest&) { return Reply{"", true, false}; });
  Recorder sink;
  UpstreamRequest request = Get(server.Url("/hang"));
  request.timeout_ms = 200;
  Start(std::move(request), &sink);
  ASSERT_TRUE(sink.WaitEnd());
  EXPECT_EQ(sink.events(), std::vector<std::string>{"E:timeout"});
  EXPECT_FALSE(sink.end().headers_seen);
  EXPECT_FALSE(sink.end().error_message.empty());
  EXPECT_EQ(stats_.timeouts.load(), 1u);
}

TEST_F(StreamClientTest, AnUpstreamThatClosesMidBodyIsUpstreamClosed) {
  TestServer server([](const ReceivedRequest&) {
    Reply reply{"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-ten!!"};
    reply.stream = [](StreamConn& conn) { shutdown(conn.fd(), SHUT_RDWR); };
    return reply;
  });
  Recorder sink;
  Start(Get(server.Url("/cut")), &sink);
  ASSERT_TRUE(sink.WaitEnd());
  EXPECT_EQ(sink.end().reason, Reason::kUpstreamClosed) << sink.end().error_message;
  EXPECT_EQ(sink.end().body_bytes, 10u);
}

// Server for the abort tests: "/stream" sends a chunk whenever the client took the previous
// one, until the client closes (counted in `closed`); anything else is a short answer.
class AbortServer {
 public:
  explicit AbortServer(Recorder* sink)
      : server_([this, sink](const ReceivedRequest& r) {
          if (r.target != "/stream") return Reply{HttpResponse(200, "next")};
          Reply reply{kChunkedHead + Chunk("c1")};
          reply.stream = [this, sink](StreamConn& conn) {
            if (sink->WaitDataOrEnd(1)) conn.Write(Chunk("c2"));
            if (sink->WaitDataOrEnd(2)) conn.Write(Chunk("c3"));
            if (conn.WaitClosed(kWait)) closed_.Add();
          };
          return reply;
        }) {}
  TestServer& server() { return server_; }
  bool WaitClosed() { return closed_.WaitFor(1); }

 private:
  Signal closed_;
  TestServer server_;
};

TEST_F(StreamClientTest, AbortMidBodyEndsAtOnceAndClosesTheUpstreamConnection) {
  Recorder sink;
  AbortServer upstream(&sink);
  StreamClient::TransferId id = Start(Get(upstream.server().Url("/stream")), &sink);
  ASSERT_TRUE(sink.WaitData(1));
  bool ended_inside_abort = false;
  loop_.RunSync([&] {
    client_->Abort(id);
    ended_inside_abort = sink.ended();
    client_->Abort(id);   // stale: nothing
    client_->Resume(id);  // stale: nothing
  });
  EXPECT_TRUE(ended_inside_abort);
  EXPECT_EQ(sink.end().reason, Reason::kAborted);
  EXPECT_TRUE(upstream.WaitClosed()) << "the aborted transfer's connection stayed open";

  Recorder next;
  Start(Get(upstream.server().Url("/next")), &next);
  ASSERT_TRUE(next.WaitEnd());
  EXPECT_EQ(next.end().reason, Reason::kComplete);
  EXPECT_EQ(next.body(), "next");
  std::vector<ReceivedRequest> seen = upstream.server().received();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].connection, 1);  // a new connection, not the aborted one
  EXPECT_EQ(Active(), 0u);
}

TEST_F(StreamClientTest, AbortFromInsideOnDataEndsThereAndNothingFollows) {
  Recorder sink;
  AbortServer upstream(&sink);
  sink.on_data = [](Recorder& r) {
    if (r.data_calls() == 2) {
      r.client->Abort(r.id);
      EXPECT_TRUE(r.ended());  // OnEnd ran inside Abort
    }
    return true;
  };
  Start(Get(upstream.server().Url("/stream")), &sink);
  ASSERT_TRUE(sink.WaitEnd());
  EXPECT_TRUE(upstream.WaitClosed());
  EXPECT_EQ(sink.events(), (std::vector<std::string>{"H200", "D", "D", "E:aborted"}));
  EXPECT_EQ(stats_.other_errors.load(), 0u);

  Recorder next;
  Start(Get(upstream.server().Url("/next")), &next);
  ASSERT_TRUE(next.WaitEnd());
  EXPECT_EQ(next.end().reason, Reason::kComplete);
  EXPECT_EQ(upstream.server().received().back().connection, 1);
}

TEST_F(StreamClientTest, ATransferStartedInsideACallbackRuns) {
  TestServer server([](const ReceivedRequest& r) { return Reply{HttpResponse(200, r.target)}; });
  Recorder second;
  Recorder first;
  first.on_data = [&](Recorder& r) {
    second.client = r.client;
    second.id = r.client->Start(Get(server.Url("/second")), &second);
    EXPECT_NE(second.id, 0u);
    return true;
  };
  Start(Get(server.Url("/first")), &first);
  ASSERT_TRUE(first.WaitEnd());
  ASSERT_TRUE(second.WaitEnd());
  EXPECT_EQ(second.end().reason, Reason::kComplete);
  EXPECT_EQ(second.body(), "/second");
}

TEST_F(StreamClientTest, DestructorEndsEveryTransferInFlightWithShutdown) {
  TestServer server([](const ReceivedRequest& r) {
    if (r.target == "/hold") return Reply{"", true, false};
    Reply reply{kChunkedHead + Chunk("x")};
    reply.stream = [](StreamConn& conn) { conn.WaitClosed(kWait); };
    return reply;
  });
  Recorder held;
  Recorder paused;
  Recorder silent;
  paused.on_data = [](Recorder&) { return false; };
  Start(Get(server.Url("/hold")), &held);
  Start(Get(server.Url("/p")), &paused);
  Start(Get(server.Url("/s")), &silent);
  ASSERT_TRUE(paused.WaitData(1));
  ASSERT_TRUE(silent.WaitData(1));
  ASSERT_TRUE(server.WaitForRequests(3, kWait));
  EXPECT_EQ(Active(), 3u);
  Destroy();
  for (Recorder* r : {&held, &paused, &silent}) {
    ASSERT_TRUE(r->ended());
    EXPECT_EQ(r->end().reason, Reason::kShutdown);
  }
  EXPECT_EQ(held.events(), std::vector<std::string>{"E:shutdown"});
  EXPECT_EQ(stats_.timeouts.load() + stats_.other_errors.load(), 0u);
}

TEST_F(StreamClientTest, ARefusedConnectionIsAConnectEnd) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  Recorder sink;
  Start(Get("http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/"), &sink);
  ASSERT_TRUE(sink.WaitEnd());
  close(fd);
  EXPECT_EQ(sink.end().reason, Reason::kConnect);
  EXPECT_EQ(stats_.connect_errors.load(), 1u);
}

}  // namespace
}  // namespace tollgate::upstream
