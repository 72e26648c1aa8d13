// Issue 10, points 1, 6, 8 and two of point 9: what a request must be before any byte of it
// reaches an upstream. Each test sends its bytes over a raw socket (a client library would
// refuse or rewrite them) to the real gateway, in front of an upstream of the test's own that
// keeps every byte it receives (TestServer::raw), and checks what that upstream got.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <functional>
#include <string>
#include <vector>

#include "tests/integration/gateway_fixture.h"
#include "tests/integration/raw_http.h"
#include "tests/unit/upstream_test_server.h"

namespace tollgate::testing {
namespace {

using upstream::testing::ReceivedRequest;
using upstream::testing::Reply;
using upstream::testing::TestServer;

Reply Ok(const ReceivedRequest&) {
  return Reply(
      upstream::testing::HttpResponse(200, R"({"ok":true})", "Content-Type: application/json\r\n"));
}

// The data team's rules for these tests: everything on devin with the default methods, OPTIONS
// where listed, a body on GET where `allow_body` says so.
const char kRules[] = R"([
        {"upstream": "devin", "path": "/v3beta1/enterprise/**"},
        {"upstream": "devin", "methods": ["GET", "HEAD", "DELETE", "OPTIONS"],
         "path": "/v3beta1/listed/**"},
        {"upstream": "devin", "methods": ["GET"], "path": "/v3beta1/search", "allow_body": true},
        {"upstream": "devo", "path": "/**"},
        {"upstream": "devo-query", "path": "/**"}])";

class HardeningTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    std::string config = StandardConfig("", kRules);
    // Bodies up to 1 MB, so that one can be far larger than what a single read takes in.
    const std::string limit = R"("max_body_bytes": 65536,)";
    config.replace(config.find(limit), limit.size(), R"("max_body_bytes": 1048576,)");
    // One reactor thread: every upstream connection is in one pool, so whether a call reused
    // one is seen in how many the test's upstream accepted.
    const std::string threads = R"("threads": 2,)";
    config.replace(config.find(threads), threads.size(), R"("threads": 1,)");
    GatewayOptions options = StandardOptions(fake_, config);
    options.upstream = upstream_.Url("");
    gateway_ = std::make_unique<GatewayProcess>(options);
    ASSERT_TRUE(gateway_->started()) << gateway_->log();
  }

  std::string Head(const std::string& method, const std::string& path,
                   const std::string& extra = "", const std::string& key = kDataKey) {
    return method + " " + path + " HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + key + "\r\n" +
           extra + "\r\n";
  }

  // The audit record of the only request so far.
  Json OnlyAuditRecord() {
    auto lines = gateway_->WaitForAuditLines(1);
    EXPECT_EQ(lines.size(), 1u);
    return lines.empty() ? Json::Parse("{}") : lines.back();
  }

  // What the test's upstream answers (set before the first call).
  std::function<Reply(const ReceivedRequest&)> reply_ = Ok;
  TestServer upstream_{[this](const ReceivedRequest& r) { return reply_(r); }};
};

// --- Point 1: a body on GET/HEAD/DELETE/OPTIONS --------------------------------------------

TEST_F(HardeningTest, Point1_ABodyOnGetHeadDeleteOptionsIs400AndNothingReachesTheUpstream) {
  const std::string smuggled =
      "DELETE /v3beta1/organizations/org-999 HTTP/1.1\r\nHost: up\r\nContent-Length: 0\r\n\r\n";
  for (const char* method : {"GET", "HEAD", "DELETE", "OPTIONS"}) {
    SCOPED_TRACE(method);
    std::string raw =
        Head(method, "/devin/v3beta1/listed/x",
             "Content-Length: " + std::to_string(smuggled.size()) + "\r\nConnection: close\r\n") +
        smuggled;
    std::string answer = RawExchange(gateway_->listen_port(), raw);
    EXPECT_EQ(StatusOf(answer), 400) << answer;
    if (std::string(method) != "HEAD") {
      EXPECT_NE(answer.find("\"body_not_allowed\""), std::string::npos) << answer;
    }
    // Chunked counts as a body too, even an empty one.
    std::string chunked = RawExchange(gateway_->listen_port(),
                                      Head(method, "/devin/v3beta1/listed/x",
                                           "Transfer-Encoding: chunked\r\nConnection: close\r\n") +
                                          "0\r\n\r\n");
    EXPECT_EQ(StatusOf(chunked), 400) << chunked;
  }
  EXPECT_EQ(upstream_.raw_all(), "");  // not one byte, of the request or of the smuggled one
  // A bodiless call on the same route is forwarded: the refusals were about the body.
  std::string ok = RawExchange(gateway_->listen_port(),
                               Head("DELETE", "/devin/v3beta1/listed/x", "Connection: close\r\n"));
  EXPECT_EQ(StatusOf(ok), 200) << ok;
  auto records = gateway_->WaitForAuditLines(9);
  ASSERT_EQ(records.size(), 9u);
  EXPECT_EQ(records[0].String("/decision"), "bad_request");
  EXPECT_EQ(records[0].Int("/status"), 400);
}

TEST_F(HardeningTest, Point1_ARuleWithAllowBodyForwardsABodyOnGet) {
  std::string answer = RawExchange(
      gateway_->listen_port(),
      Head("GET", "/devin/v3beta1/search", "Content-Length: 9\r\nConnection: close\r\n") +
          "{\"q\":\"x\"}");
  EXPECT_EQ(StatusOf(answer), 200) << answer;
  auto received = upstream_.received();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].method, "GET");
  EXPECT_EQ(received[0].body, "{\"q\":\"x\"}");
}

TEST_F(HardeningTest, Point1_AnUpstreamConnectionThatAnsweredBeforeTheBodyEndedIsNotReused) {
  upstream_.AnswerBeforeBody();
  // The caller sends half of its body and waits for the answer, which the upstream gives on
  // the head alone (without a length, so that the gateway streams it at once); then it sends
  // the rest.
  reply_ = [](const ReceivedRequest&) {
    return Reply(
        "HTTP/1.1 200 X\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\nb\r\n{\"ok\":true}\r\n0\r\n\r\n");
  };
  const std::string half(20000, 'a');
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, Head("POST", "/devin/v3beta1/enterprise/upload",
                               "Content-Type: application/octet-stream\r\nContent-Length: " +
                                   std::to_string(2 * half.size()) + "\r\n") +
                              half));
  std::string answer = ReadUntil(fd, "{\"ok\":true}", 10000);
  EXPECT_EQ(StatusOf(answer), 200) << answer;
  ASSERT_TRUE(SendAll(fd, half));
  ReadUntil(fd, "", 10000);  // the answer ends and the connection closes (its body was late)
  close(fd);
  ASSERT_TRUE(upstream_.WaitForRequests(1, std::chrono::seconds(10)));
  EXPECT_EQ(upstream_.received()[0].body.size(), 2 * half.size());

  // The next call, on a connection of its own, must not ride the upstream connection whose
  // framing the upstream may have read differently.
  std::string next =
      RawExchange(gateway_->listen_port(),
                  Head("GET", "/devin/v3beta1/enterprise/self", "Connection: close\r\n"));
  EXPECT_EQ(StatusOf(next), 200) << next;
  ASSERT_TRUE(upstream_.WaitForRequests(2, std::chrono::seconds(10)));
  EXPECT_EQ(upstream_.accepted(), 2);
  EXPECT_EQ(upstream_.received()[1].connection, 1);
  // And only that connection was given up: the next call rides the new one.
  std::string third =
      RawExchange(gateway_->listen_port(),
                  Head("GET", "/devin/v3beta1/enterprise/self", "Connection: close\r\n"));
  EXPECT_EQ(StatusOf(third), 200) << third;
  ASSERT_TRUE(upstream_.WaitForRequests(3, std::chrono::seconds(10)));
  EXPECT_EQ(upstream_.accepted(), 2);
}

TEST_F(HardeningTest, Point1_AConnectionWhoseBodyWasWholeBeforeTheAnswerIsReused) {
  // The counterpart: an ordinary POST leaves its upstream connection reusable.
  for (int i = 0; i < 2; ++i) {
    std::string answer = RawExchange(
        gateway_->listen_port(),
        Head("POST", "/devin/v3beta1/enterprise/x", "Content-Length: 2\r\nConnection: close\r\n") +
            "{}");
    EXPECT_EQ(StatusOf(answer), 200) << answer;
  }
  EXPECT_EQ(upstream_.accepted(), 1);
}

// --- Point 6: methods -----------------------------------------------------------------------

TEST_F(HardeningTest, Point6_EveryMethodButTheSevenIs501AndNeverForwarded) {
  for (const char* method :
       {"TRACE", "CONNECT", "PROPFIND", "DELETE_", "get", "Delete", "FOO", "MKCOL", "PURGE"}) {
    SCOPED_TRACE(method);
    std::string answer =
        RawExchange(gateway_->listen_port(),
                    Head(method, "/devin/v3beta1/enterprise/self", "Connection: close\r\n"));
    EXPECT_EQ(StatusOf(answer), 501) << answer;
    EXPECT_NE(answer.find("\"not_implemented\""), std::string::npos) << answer;
  }
  EXPECT_EQ(upstream_.raw_all(), "");
  for (const char* method : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}) {
    SCOPED_TRACE(method);
    std::string body = std::string(method) == "POST" || std::string(method) == "PUT" ||
                               std::string(method) == "PATCH"
                           ? "Content-Length: 2\r\n"
                           : "";
    std::string answer =
        RawExchange(gateway_->listen_port(),
                    Head(method, "/devin/v3beta1/enterprise/self", body + "Connection: close\r\n") +
                        (body.empty() ? "" : "{}"));
    EXPECT_EQ(StatusOf(answer), 200) << answer;
  }
}

TEST_F(HardeningTest, Point6_ARuleWithoutMethodsDoesNotAllowOptions) {
  std::string options =
      RawExchange(gateway_->listen_port(),
                  Head("OPTIONS", "/devin/v3beta1/enterprise/self", "Connection: close\r\n"));
  EXPECT_EQ(StatusOf(options), 403) << options;
  std::string listed = RawExchange(
      gateway_->listen_port(), Head("OPTIONS", "/devin/v3beta1/listed/x", "Connection: close\r\n"));
  EXPECT_EQ(StatusOf(listed), 200) << listed;
  auto received = upstream_.received();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].target, "/v3beta1/listed/x");
}

// --- Point 8: the caller is known before its body is read ----------------------------------

TEST_F(HardeningTest, Point8_ARefusedRequestGetsNo100ContinueAndItsBodyIsNeverRead) {
  struct Case {
    std::string key;
    std::string path;
    int status;
  };
  for (const Case& c : {Case{"tg_wrong_key_000000000000", "/devin/v3beta1/enterprise/x", 401},
                        Case{kDataKey, "/devin/v3beta1/forbidden", 403}}) {
    SCOPED_TRACE(c.status);
    int fd = ConnectLoopback(gateway_->listen_port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(SendAll(fd, Head("POST", c.path,
                                 "Expect: 100-continue\r\nContent-Length: 60000\r\n"
                                 "Content-Type: application/json\r\n",
                                 c.key)));
    // The answer comes on the head alone: no "100 Continue" first, and the connection is
    // closed after it (a FIN: the body will never be read).
    std::string answer = ReadUntil(fd, "", 10000);
    close(fd);
    EXPECT_EQ(StatusOf(answer), c.status) << answer;
    EXPECT_EQ(answer.find("100 Continue"), std::string::npos) << answer;
    EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  }
  auto records = gateway_->WaitForAuditLines(2);
  ASSERT_EQ(records.size(), 2u);
  for (const auto& r : records) EXPECT_EQ(r.Int("/bytes_in"), 0) << r.String("/decision");
  EXPECT_EQ(upstream_.raw_all(), "");
}

TEST_F(HardeningTest, Point8_ABodySentWithoutWaitingIsNotTakenInBeforeTheRefusal) {
  // A caller that does not wait for 100: head and 1 MB of body at once, with a wrong key. The
  // answer is decided on the head; the body is never handed to the request (what one read took
  // in with the head stays in the connection's bounded input buffer and is dropped).
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  SendAll(fd, Head("POST", "/devin/v3beta1/enterprise/x",
                   "Content-Length: 1000000\r\nContent-Type: application/json\r\n",
                   "tg_wrong_key_000000000000") +
                  std::string(1000000, 'x'));  // may fail once the gateway closed: no matter
  std::string answer = ReadUntil(fd, "", 10000);
  close(fd);
  EXPECT_EQ(StatusOf(answer), 401) << answer;
  EXPECT_EQ(OnlyAuditRecord().Int("/bytes_in"), 0);
  EXPECT_EQ(upstream_.raw_all(), "");
}

TEST_F(HardeningTest, Point8_100ContinueIsSentOnlyToARequestThatWillBeForwarded) {
  int fd = ConnectLoopback(gateway_->listen_port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(SendAll(fd, Head("POST", "/devin/v3beta1/enterprise/x",
                               "Expect: 100-continue\r\nContent-Length: 2\r\n"
                               "Content-Type: application/json\r\n")));
  std::string interim = ReadUntil(fd, "\r\n\r\n", 10000);
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(SendAll(fd, "{}"));
  std::string answer = ReadUntil(fd, "{\"ok\":true}", 10000);
  close(fd);
  EXPECT_EQ(StatusOf(answer), 200) << answer;
  ASSERT_EQ(upstream_.received().size(), 1u);
  EXPECT_EQ(upstream_.received()[0].body, "{}");
}

// --- Point 9 ---------------------------------------------------------------------------------

// A caller-supplied X-Request-Id is kept (the caller's tracing goes on), but it need not be
// unique: the record also carries the gateway's own id, always.
TEST_F(HardeningTest, Point9_TheAuditRecordCarriesTheGatewaysOwnIdBesideTheCallers) {
  for (int i = 0; i < 2; ++i) {
    HttpResponse r = Call("GET", "/devin/v3beta1/enterprise/self", kDataKey, "",
                          {{"X-Request-Id", "same-id-every-time"}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Header("X-Request-Id"), "same-id-every-time");
  }
  EXPECT_EQ(Call("GET", "/devin/v3beta1/enterprise/self").status, 200);
  auto records = gateway_->WaitForAuditLines(3);
  ASSERT_EQ(records.size(), 3u);
  const std::string first = records[0].String("/gateway_request_id");
  const std::string second = records[1].String("/gateway_request_id");
  for (const auto& record : {records[0], records[1]}) {
    EXPECT_EQ(record.String("/request_id"), "same-id-every-time");
  }
  EXPECT_EQ(first.size(), 32u);
  EXPECT_EQ(second.size(), 32u);
  EXPECT_NE(first, second);
  // Without a caller's id, both are the gateway's one id.
  EXPECT_EQ(records[2].String("/gateway_request_id"), records[2].String("/request_id"));
  EXPECT_EQ(records[2].String("/request_id").size(), 32u);
}

// A caller that half-closes after its request is taken as leaving (as nginx does for proxied
// requests): it gets no answer, and its record says so (499, client_closed), whether the close
// was seen while the limiter decided (then nothing is forwarded) or while the upstream answered
// (then the transfer is ended). With Redis the limiter answers on a later loop iteration, the
// window in which the close used to go unnoticed and the record said 200.
TEST(HardeningRedisTest, Point9_ACallerThatHalfClosesIsAuditedAsWhatItGot) {
  FakeUpstream fake;
  ASSERT_TRUE(fake.started()) << fake.log();
  RedisServer redis;
  TestServer upstream([](const ReceivedRequest&) {
    Reply reply(upstream::testing::HttpResponse(200, R"({"ok":true})"));
    reply.gated = true;  // answered only once the caller is known to be gone
    return reply;
  });
  std::string config = StandardConfig(R"(
  "redis": {"url": "${REDIS}", "timeout_ms": 2000, "on_error": "deny"},)",
                                      kRules);
  GatewayOptions options = StandardOptions(fake, config);
  options.upstream = upstream.Url("");
  options.redis = redis.url();
  GatewayProcess gateway(options);
  ASSERT_TRUE(gateway.started()) << gateway.log();
  for (int i = 0; i < 5; ++i) {
    int fd = ConnectLoopback(gateway.listen_port());
    ASSERT_GE(fd, 0);
    // Corked, so that the FIN leaves in the request's own segment: the gateway sees both in one
    // event, before the limiter (Redis, a round trip away) has decided.
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
    ASSERT_TRUE(SendAll(fd,
                        "GET /devin/v3beta1/enterprise/self HTTP/1.1\r\nHost: gw\r\n"
                        "Authorization: Bearer " +
                            kDataKey + "\r\n\r\n"));
    ::shutdown(fd, SHUT_WR);
    std::string answer = ReadUntil(fd, "", 10000);  // the gateway closes: no answer
    close(fd);
    EXPECT_EQ(answer, "");
  }
  upstream.Release();
  auto records = gateway.WaitForAuditLines(5);
  // Nobody was waiting for an answer: nothing was forwarded.
  EXPECT_TRUE(upstream.received().empty()) << upstream.raw_all();
  ASSERT_EQ(records.size(), 5u) << gateway.log();
  for (const auto& record : records) {
    EXPECT_EQ(record.Int("/status"), 499);
    EXPECT_EQ(record.String("/ended_by"), "client_closed");
    EXPECT_EQ(record.Int("/bytes_out"), 0);
  }
}

}  // namespace
}  // namespace tollgate::testing
