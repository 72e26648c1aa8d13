#include "upstream/upstream_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/upstream_test_server.h"

namespace tollgate::upstream {
namespace {

using testing::HttpResponse;
using testing::ReceivedRequest;
using testing::Reply;
using testing::TestServer;
using Error = UpstreamResponse::Error;

// Generous: only reached when something is broken, never part of an assertion on speed.
constexpr std::chrono::seconds kWait(30);

class UpstreamClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A proxy configured in the environment must not capture loopback test traffic.
    setenv("no_proxy", "127.0.0.1", 1);
    setenv("NO_PROXY", "127.0.0.1", 1);
  }
};

UpstreamRequest Request(const std::string& method, const std::string& url, HeaderList headers = {},
                        std::string body = "") {
  UpstreamRequest r;
  r.method = method;
  r.url = url;
  r.headers = std::move(headers);
  r.body = std::move(body);
  return r;
}

UpstreamResponse SendAndWait(UpstreamClient& client, UpstreamRequest request) {
  auto promise = std::make_shared<std::promise<UpstreamResponse>>();
  std::future<UpstreamResponse> future = promise->get_future();
  client.Send(std::move(request), [promise](UpstreamResponse r) { promise->set_value(r); });
  if (future.wait_for(kWait) != std::future_status::ready) {
    ADD_FAILURE() << "no answer from the upstream client";
    return UpstreamResponse();
  }
  return future.get();
}

Reply Echo(const ReceivedRequest& r) {
  return Reply{HttpResponse(200, r.method == "HEAD" ? "" : "hello-" + r.method), false, false};
}

std::string BinaryBody(size_t size = 5000) {
  static const char kBytes[] = "\0\r\n\xff\x01 a=1&a=2\r\n\r\n";
  std::string body(kBytes, sizeof(kBytes) - 1);
  for (size_t i = 0; body.size() < size; ++i) body.push_back(static_cast<char>(i * 7));
  return body;
}

TEST_F(UpstreamClientTest, EveryMethodSendsTargetHeadersAndBodyAsGiven) {
  TestServer server(Echo);
  UpstreamClient client;
  const std::string body = BinaryBody();
  for (const std::string method : {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}) {
    SCOPED_TRACE(method);
    bool with_body = method != "GET" && method != "HEAD";
    HeaderList headers = {{"X-Custom", "one two"}, {"X-Dup", "1"}, {"X-Empty", ""}, {"X-Dup", "2"}};
    if (with_body) headers.emplace_back("Content-Type", "application/octet-stream");
    UpstreamResponse response = SendAndWait(
        client,
        Request(method, server.Url("/v2/x%2Fy?a=1&b=2&a=3"), headers, with_body ? body : ""));
    ASSERT_EQ(response.error, Error::kNone) << response.error_message;
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.body, method == "HEAD" ? "" : "hello-" + method);

    std::vector<ReceivedRequest> seen = server.received();
    ASSERT_FALSE(seen.empty());
    const ReceivedRequest& r = seen.back();
    EXPECT_EQ(r.method, method);
    EXPECT_EQ(r.target, "/v2/x%2Fy?a=1&b=2&a=3");
    EXPECT_EQ(r.body, with_body ? body : "");
    EXPECT_EQ(r.Values("X-Custom"), std::vector<std::string>{"one two"});
    EXPECT_EQ(r.Values("X-Dup"), (std::vector<std::string>{"1", "2"}));
    EXPECT_EQ(r.Values("X-Empty"), std::vector<std::string>{""});
    EXPECT_FALSE(r.Has("Expect"));
    EXPECT_FALSE(r.Has("Accept-Encoding"));
    if (with_body) {
      EXPECT_EQ(r.Values("Content-Type"), std::vector<std::string>{"application/octet-stream"});
      EXPECT_EQ(r.Values("Content-Length"), std::vector<std::string>{std::to_string(body.size())});
    } else {
      EXPECT_FALSE(r.Has("Content-Length"));
    }
  }
}

TEST_F(UpstreamClientTest, LargeBodiesGoBothWaysWithoutExpectContinue) {
  // Past libcurl's 1 MiB threshold for "Expect: 100-continue" (a stall on upstreams that
  // never answer it).
  const std::string big = BinaryBody(size_t{2} << 20);
  TestServer server([&](const ReceivedRequest& r) {
    return Reply{HttpResponse(200, r.body == big ? big : "mismatch"), false, false};
  });
  UpstreamClient client;
  UpstreamResponse response = SendAndWait(client, Request("PUT", server.Url("/big"), {}, big));
  ASSERT_EQ(response.error, Error::kNone) << response.error_message;
  EXPECT_TRUE(response.body == big);
  std::vector<ReceivedRequest> seen = server.received();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_FALSE(seen[0].Has("Expect"));
}

TEST_F(UpstreamClientTest, AResponseBodyOverTheLimitIsRefusedNotBuffered) {
  const std::string big(300000, 'b');
  TestServer server([&](const ReceivedRequest&) {
    return Reply{HttpResponse(200, big), false, false};
  });
  UpstreamClientOptions options;
  options.max_response_bytes = 100000;
  UpstreamClient client(options);
  UpstreamResponse response = SendAndWait(client, Request("GET", server.Url("/big")));
  EXPECT_EQ(response.error, Error::kTooLarge) << response.error_message;
  EXPECT_TRUE(response.body.empty());
  // Under the limit the same client passes the body whole.
  options.max_response_bytes = 300000;
  UpstreamClient roomy(options);
  UpstreamResponse ok = SendAndWait(roomy, Request("GET", server.Url("/big")));
  EXPECT_EQ(ok.error, Error::kNone) << ok.error_message;
  EXPECT_EQ(ok.body.size(), big.size());
}

TEST_F(UpstreamClientTest, ASmallBodyOverTheLimitInOneChunkIsRefused) {
  TestServer server([](const ReceivedRequest&) {
    return Reply{HttpResponse(200, "eleven-byte"), false, false};
  });
  UpstreamClientOptions options;
  options.max_response_bytes = 10;
  UpstreamClient client(options);
  UpstreamResponse response = SendAndWait(client, Request("GET", server.Url("/")));
  EXPECT_EQ(response.error, Error::kTooLarge) << response.error_message;
  EXPECT_EQ(client.stats().other_errors.load(), 1u);
}

TEST_F(UpstreamClientTest, EmptyPostSendsZeroLengthAndNoInventedContentType) {
  TestServer server(Echo);
  UpstreamClient client;
  UpstreamResponse response = SendAndWait(client, Request("POST", server.Url("/p")));
  ASSERT_EQ(response.error, Error::kNone) << response.error_message;
  std::vector<ReceivedRequest> seen = server.received();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].Values("Content-Length"), std::vector<std::string>{"0"});
  EXPECT_FALSE(seen[0].Has("Content-Type"));
}

TEST_F(UpstreamClientTest, PathIsSentAsIsWithoutDotSegmentSquashing) {
  TestServer server(Echo);
  UpstreamClient client;
  ASSERT_EQ(SendAndWait(client, Request("GET", server.Url("/a/./b/../c?x=/../"))).status, 200);
  std::vector<ReceivedRequest> seen = server.received();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/a/./b/../c?x=/../");
}

TEST_F(UpstreamClientTest, ReusedTransferCarriesNothingFromThePreviousOne) {
  TestServer server(Echo);
  UpstreamClient client;  // one loop thread: the second request reuses the first's easy handle
  ASSERT_EQ(
      SendAndWait(client, Request("PATCH", server.Url("/a"), {{"X-First", "1"}}, "body")).error,
      Error::kNone);
  ASSERT_EQ(SendAndWait(client, Request("GET", server.Url("/b"))).error, Error::kNone);
  std::vector<ReceivedRequest> seen = server.received();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].method, "GET");
  EXPECT_EQ(seen[1].target, "/b");
  EXPECT_EQ(seen[1].body, "");
  EXPECT_FALSE(seen[1].Has("X-First"));
  EXPECT_FALSE(seen[1].Has("Content-Length"));
}

TEST_F(UpstreamClientTest, ReturnsOnlyTheFinalResponsesHeaders) {
  TestServer server([](const ReceivedRequest&) {
    return Reply{
        "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        "HTTP/1.1 201 Created\r\nX-Final: yes\r\nx-dup: a\r\nX-Dup: b\r\n"
        "Content-Length: 2\r\n\r\nok",
        false, false};
  });
  UpstreamClient client;
  UpstreamResponse response = SendAndWait(client, Request("POST", server.Url("/"), {}, "x"));
  ASSERT_EQ(response.error, Error::kNone) << response.error_message;
  EXPECT_EQ(response.status, 201);
  HeaderList expected = {
      {"X-Final", "yes"}, {"x-dup", "a"}, {"X-Dup", "b"}, {"Content-Length", "2"}};
  EXPECT_EQ(response.headers, expected);
  EXPECT_EQ(response.body, "ok");
}

TEST_F(UpstreamClientTest, PassesRedirectsAndEncodedBodiesThroughUntouched) {
  static const char kGzip[] = "\x1f\x8b\x08\x00not-really-gzip";
  const std::string gzip_bytes(kGzip, sizeof(kGzip) - 1);
  TestServer server([&](const ReceivedRequest& r) {
    if (r.target == "/redirect") {
      return Reply{HttpResponse(302, "", "Location: /elsewhere\r\n"), false, false};
    }
    return Reply{HttpResponse(200, gzip_bytes, "Content-Encoding: gzip\r\n"), false, false};
  });
  UpstreamClient client;
  UpstreamResponse redirect = SendAndWait(client, Request("GET", server.Url("/redirect")));
  ASSERT_EQ(redirect.error, Error::kNone) << redirect.error_message;
  EXPECT_EQ(redirect.status, 302);
  UpstreamResponse encoded =
      SendAndWait(client, Request("GET", server.Url("/gz"), {{"Accept-Encoding", "gzip"}}));
  ASSERT_EQ(encoded.error, Error::kNone) << encoded.error_message;
  EXPECT_EQ(encoded.body, gzip_bytes);
  std::vector<ReceivedRequest> seen = server.received();
  ASSERT_EQ(seen.size(), 2u);  // the redirect was not followed
  EXPECT_EQ(seen[1].target, "/gz");
}

TEST_F(UpstreamClientTest, SlowUpstreamIsATimeout) {
  TestServer server([](const ReceivedRequest&) { return Reply{"", true, false}; });
  UpstreamClient client;
  UpstreamRequest request = Request("GET", server.Url("/hang"));
  request.timeout_ms = 200;
  UpstreamResponse response = SendAndWait(client, std::move(request));
  EXPECT_EQ(response.error, Error::kTimeout);
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.error_message.empty());
  EXPECT_EQ(client.stats().timeouts.load(), 1u);
}

TEST_F(UpstreamClientTest, RefusedConnectionIsAConnectError) {
  // A bound socket that never listens: its port refuses connections and nobody can take it.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  UpstreamClient client;
  UpstreamResponse response = SendAndWait(
      client, Request("GET", "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/"));
  close(fd);
  EXPECT_EQ(response.error, Error::kConnect);
  EXPECT_EQ(client.stats().connect_errors.load(), 1u);
}

TEST_F(UpstreamClientTest, ErrorMessageNeverCarriesRequestHeaders) {
  TestServer server([](const ReceivedRequest&) { return Reply{"", true, false}; });
  UpstreamClient client;
  UpstreamRequest request =
      Request("GET", server.Url("/"), {{"Authorization", "Bearer top-secret-value"}});
  request.timeout_ms = 100;
  UpstreamResponse response = SendAndWait(client, std::move(request));
  EXPECT_EQ(response.error, Error::kTimeout);
  EXPECT_EQ(response.error_message.find("top-secret-value"), std::string::npos);
}

TEST_F(UpstreamClientTest, SequentialRequestsReuseOneConnection) {
  TestServer server(Echo);
  UpstreamClient client;
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(
        SendAndWait(client, Request(i % 2 ? "POST" : "GET", server.Url("/k"), {}, "b")).status,
        200);
  }
  EXPECT_EQ(server.accepted(), 1);
  for (const ReceivedRequest& r : server.received()) EXPECT_EQ(r.connection, 0);
}

TEST_F(UpstreamClientTest, FastRequestCompletesWhileManySlowOnesAreInFlight) {
  constexpr size_t kSlow = 200;
  TestServer server([](const ReceivedRequest& r) {
    return Reply{HttpResponse(200, r.target), false, r.target == "/slow"};
  });
  UpstreamClientOptions options;
  options.threads = 2;
  UpstreamClient client(options);

  std::mutex mu;
  std::vector<std::string> order;
  std::promise<void> all_done;
  auto record = [&](UpstreamResponse r) {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(r.error == Error::kNone ? r.body : "error");
    if (order.size() == kSlow + 1) all_done.set_value();
  };
  for (size_t i = 0; i < kSlow; ++i) client.Send(Request("GET", server.Url("/slow")), record);
  // Every slow request has reached the server and is waiting there, i.e. all are in flight.
  ASSERT_TRUE(server.WaitForRequests(kSlow, kWait));
  EXPECT_EQ(client.in_flight(), kSlow);

  UpstreamResponse fast = SendAndWait(client, Request("GET", server.Url("/fast")));
  EXPECT_EQ(fast.body, "/fast");
  {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back("/fast");
    if (order.size() == kSlow + 1) all_done.set_value();
  }
  server.Release();
  ASSERT_EQ(all_done.get_future().wait_for(kWait), std::future_status::ready);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(order.front(), "/fast");
  EXPECT_EQ(std::count(order.begin(), order.end(), "/slow"), static_cast<long>(kSlow));
  EXPECT_EQ(server.accepted(), static_cast<int>(kSlow) + 1);
}

TEST_F(UpstreamClientTest, DoneRunsOnTheLoopThreadAndMaySendAgain) {
  TestServer server(Echo);
  UpstreamClient client;
  std::promise<std::pair<std::thread::id, int>> second;
  std::thread::id first_thread;
  client.Send(Request("GET", server.Url("/1")), [&](UpstreamResponse) {
    first_thread = std::this_thread::get_id();
    client.Send(Request("GET", server.Url("/2")), [&](UpstreamResponse r) {
      second.set_value({std::this_thread::get_id(), r.status});
    });
  });
  auto future = second.get_future();
  ASSERT_EQ(future.wait_for(kWait), std::future_status::ready);
  auto [thread, status] = future.get();
  EXPECT_EQ(status, 200);
  EXPECT_NE(thread, std::this_thread::get_id());
  EXPECT_EQ(thread, first_thread);
}

TEST_F(UpstreamClientTest, DestructorFailsTransfersInFlightWithShutdown) {
  TestServer server([](const ReceivedRequest&) { return Reply{"", true, false}; });
  std::atomic<int> shutdowns{0};
  std::atomic<int> calls{0};
  {
    UpstreamClientOptions options;
    options.threads = 2;
    UpstreamClient client(options);
    for (int i = 0; i < 4; ++i) {
      client.Send(Request("POST", server.Url("/held"), {}, "b"), [&](UpstreamResponse r) {
        calls++;
        if (r.error == Error::kShutdown) shutdowns++;
      });
    }
    ASSERT_TRUE(server.WaitForRequests(4, kWait));
    EXPECT_EQ(client.in_flight(), 4u);
    EXPECT_EQ(calls.load(), 0);
  }
  EXPECT_EQ(calls.load(), 4);
  EXPECT_EQ(shutdowns.load(), 4);
}

TEST_F(UpstreamClientTest, CountsStartedAndCompleted) {
  TestServer server(Echo);
  UpstreamClient client;
  for (int i = 0; i < 3; ++i) SendAndWait(client, Request("GET", server.Url("/")));
  EXPECT_EQ(client.stats().started.load(), 3u);
  EXPECT_EQ(client.stats().completed.load(), 3u);
  EXPECT_EQ(client.stats().other_errors.load(), 0u);
}

TEST_F(UpstreamClientTest, MalformedUrlFailsWithoutHanging) {
  UpstreamClient client;
  UpstreamResponse response = SendAndWait(client, Request("GET", "ftp://127.0.0.1:1/x"));
  EXPECT_EQ(response.error, Error::kOther);
}

}  // namespace
}  // namespace tollgate::upstream
