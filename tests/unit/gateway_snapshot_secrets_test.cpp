// Snapshot::secrets(): the scanner every answer passes through knows every upstream's secret
// values (bearer tokens, header secrets, Devo HMAC keys and secrets), whichever upstream answers,
// and the spellings an upstream echoing them would use (JSON "\/", percent-encoding).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "gateway/snapshot.h"

namespace tollgate::gateway {
namespace {

std::shared_ptr<const Snapshot> BuildWith(const std::vector<config::UpstreamAuth>& auths) {
  auto config = std::make_shared<config::Config>();
  int i = 0;
  for (const auto& auth : auths) {
    config::Upstream up;
    up.name = "u" + std::to_string(i++);
    up.base_url = "http://127.0.0.1:1";
    up.auth = auth;
    config->upstreams[up.name] = up;
  }
  std::string error;
  auto snapshot = Snapshot::Build(config, &error);
  EXPECT_NE(snapshot, nullptr) << error;
  return snapshot;
}

TEST(SnapshotSecretsTest, EveryUpstreamsSecretValuesAreScannedFor) {
  config::UpstreamAuth bearer;
  bearer.secret = "bearer-token-0001";
  config::UpstreamAuth header;
  header.type = config::AuthType::kHeader;
  header.header = "standAloneToken";
  header.secret = "header-secret-0002";
  config::UpstreamAuth hmac;
  hmac.type = config::AuthType::kDevoHmac;
  hmac.key = "devo-api-key-0003";
  hmac.secret = "devo-api-secret-0004";
  auto snapshot = BuildWith({bearer, header, hmac});
  ASSERT_NE(snapshot, nullptr);
  std::string text =
      "bearer-token-0001 header-secret-0002 devo-api-key-0003 devo-api-secret-0004 plain";
  EXPECT_EQ(snapshot->secrets().ReplaceAll(&text), 4u);
  EXPECT_EQ(text, "[redacted] [redacted] [redacted] [redacted] plain");
}

TEST(SnapshotSecretsTest, TheJsonAndPercentEncodedSpellingsAreScannedForToo) {
  config::UpstreamAuth bearer;
  bearer.secret = "abc/def+ghi=jkl";
  auto snapshot = BuildWith({bearer});
  ASSERT_NE(snapshot, nullptr);
  for (const std::string spelled :
       {"abc/def+ghi=jkl", "abc\\/def+ghi=jkl", "abc%2Fdef%2Bghi%3Djkl", "abc%2fdef%2bghi%3djkl"}) {
    std::string text = "{\"echo\":\"" + spelled + "\"}";
    EXPECT_EQ(snapshot->secrets().ReplaceAll(&text), 1u) << spelled;
    EXPECT_EQ(text, "{\"echo\":\"[redacted]\"}") << spelled;
  }
}

}  // namespace
}  // namespace tollgate::gateway
