// TLS peer verification against a real TLS server (`openssl s_server -www`) on loopback.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>

#include "tests/support/process.h"
#include "upstream/upstream_client.h"

namespace tollgate::upstream {
namespace {

using Error = UpstreamResponse::Error;
namespace support = tollgate::testing;

class UpstreamTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("no_proxy", "127.0.0.1", 1);
    setenv("NO_PROXY", "127.0.0.1", 1);
    cert_ = dir_.path() + "/cert.pem";
    std::string key = dir_.path() + "/key.pem";
    std::string output;
    ASSERT_EQ(support::RunCommand(
                  {"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                   "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert_},
                  &output),
              0)
        << output;
    port_ = support::FreePort();
    server_ =
        support::ChildProcess({"/usr/bin/openssl", "s_server", "-quiet", "-www", "-accept",
                               "127.0.0.1:" + std::to_string(port_), "-cert", cert_, "-key", key},
                              {}, dir_.path() + "/s_server.log");
    ASSERT_TRUE(support::WaitForPort(port_, std::chrono::seconds(20)));
  }

  UpstreamResponse Get(UpstreamClient& client) {
    UpstreamRequest request;
    request.method = "GET";
    request.url = "https://127.0.0.1:" + std::to_string(port_) + "/";
    auto promise = std::make_shared<std::promise<UpstreamResponse>>();
    auto future = promise->get_future();
    client.Send(std::move(request), [promise](UpstreamResponse r) { promise->set_value(r); });
    if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << "no answer from the upstream client";
      return UpstreamResponse();
    }
    return future.get();
  }

  support::TempDir dir_;
  std::string cert_;
  int port_ = 0;
  support::ChildProcess server_;
};

TEST_F(UpstreamTlsTest, UntrustedCertificateIsAConnectError) {
  UpstreamClient client;  // system CAs only: the self-signed test certificate is not trusted
  UpstreamResponse response = Get(client);
  EXPECT_EQ(response.error, Error::kConnect) << response.error_message;
  EXPECT_EQ(response.status, 0);
}

TEST_F(UpstreamTlsTest, TrustedCertificateFromCaFileConnects) {
  UpstreamClientOptions options;
  options.ca_file = cert_;
  UpstreamClient client(options);
  UpstreamResponse response = Get(client);
  ASSERT_EQ(response.error, Error::kNone) << response.error_message;
  EXPECT_EQ(response.status, 200);
  EXPECT_NE(response.body.find("s_server"), std::string::npos);
}

}  // namespace
}  // namespace tollgate::upstream
