#include "upstream/upstream_auth.h"

#include <gtest/gtest.h>

#include "upstream/headers.h"

namespace tollgate::upstream {
namespace {

TEST(HmacSha256HexTest, Rfc4231TestCase2) {
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HmacSha256HexTest, EmptyKeyIsValid) {
  // RFC 2104 HMAC with a zero-length key; value from `openssl dgst -sha256 -hmac ''`.
  EXPECT_EQ(HmacSha256Hex("", ""),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(Sha256HexTest, KnownVectors) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(InjectUpstreamAuthTest, Bearer) {
  config::UpstreamAuth auth;
  auth.type = config::AuthType::kBearer;
  auth.secret = "s3cret-token";
  HeaderList headers = {{"Accept", "application/json"}};
  InjectUpstreamAuth(auth, "", 0, &headers);
  HeaderList expected = {{"Accept", "application/json"}, {"Authorization", "Bearer s3cret-token"}};
  EXPECT_EQ(headers, expected);
}

TEST(InjectUpstreamAuthTest, BearerReplacesAnyCallerCopy) {
  config::UpstreamAuth auth;
  auth.secret = "real";
  HeaderList headers = {{"authorization", "Bearer caller-key"}, {"X-A", "1"}};
  InjectUpstreamAuth(auth, "", 0, &headers);
  HeaderList expected = {{"X-A", "1"}, {"Authorization", "Bearer real"}};
  EXPECT_EQ(headers, expected);
}

TEST(InjectUpstreamAuthTest, NamedHeader) {
  config::UpstreamAuth auth;
  auth.type = config::AuthType::kHeader;
  auth.header = "standAloneToken";
  auth.secret = "devo-token";
  HeaderList headers = {{"standalonetoken", "forged"}, {"Accept", "*/*"}};
  InjectUpstreamAuth(auth, "", 0, &headers);
  HeaderList expected = {{"Accept", "*/*"}, {"standAloneToken", "devo-token"}};
  EXPECT_EQ(headers, expected);
}

TEST(InjectUpstreamAuthTest, NamedHeaderReplacesACallerCopyOfACustomName) {
  // FilterRequestHeaders knows Devo's header names, not every upstream's: the injection itself
  // must remove a caller-supplied copy, whatever its case, so the upstream sees one credential.
  config::UpstreamAuth auth;
  auth.type = config::AuthType::kHeader;
  auth.header = "X-Api-Token";
  auth.secret = "real-token";
  HeaderList headers = {{"x-api-token", "forged"}, {"Accept", "*/*"}, {"X-API-TOKEN", "again"}};
  InjectUpstreamAuth(auth, "", 0, &headers);
  HeaderList expected = {{"Accept", "*/*"}, {"X-Api-Token", "real-token"}};
  EXPECT_EQ(headers, expected);
}

TEST(InjectUpstreamAuthTest, DevoHmacReplacesEveryForgedSigningHeader) {
  config::UpstreamAuth auth;
  auth.type = config::AuthType::kDevoHmac;
  auth.key = "myApiKey";
  auth.secret = "mySecret";
  HeaderList headers = {{"X-Logtrust-Apikey", "forged-key"},
                        {"x-logtrust-timestamp", "1"},
                        {"X-LOGTRUST-SIGN", "forged"},
                        {"Accept", "*/*"}};
  InjectUpstreamAuth(auth, "", 1700000000000, &headers);
  HeaderList expected = {
      {"Accept", "*/*"},
      {"x-logtrust-apikey", "myApiKey"},
      {"x-logtrust-timestamp", "1700000000000"},
      {"x-logtrust-sign", "209ea601e2bc8a139acbbe3501361b5f2e3fbb1af8076aec0d329288ecd3f9db"}};
  EXPECT_EQ(headers, expected);
}

TEST(InjectUpstreamAuthTest, DevoHmacSignsKeyBodyTimestamp) {
  config::UpstreamAuth auth;
  auth.type = config::AuthType::kDevoHmac;
  auth.key = "myApiKey";
  auth.secret = "mySecret";
  HeaderList headers = {{"Content-Type", "application/json"}, {"x-logtrust-sign", "forged"}};
  InjectUpstreamAuth(auth, R"({"query":"from demo.ecommerce.data select *"})", 1700000000000,
                     &headers);
  // printf '%s' 'myApiKey{"query":"from demo.ecommerce.data select *"}1700000000000' |
  //   openssl dgst -sha256 -hmac 'mySecret'
  HeaderList expected = {
      {"Content-Type", "application/json"},
      {"x-logtrust-apikey", "myApiKey"},
      {"x-logtrust-timestamp", "1700000000000"},
      {"x-logtrust-sign", "735be930bf2998040c16142c825747fb579a2d4d0340d9d2fad3d6c66d1392e8"}};
  EXPECT_EQ(headers, expected);
}

TEST(InjectUpstreamAuthTest, DevoHmacWithEmptyBody) {
  config::UpstreamAuth auth;
  auth.type = config::AuthType::kDevoHmac;
  auth.key = "myApiKey";
  auth.secret = "mySecret";
  HeaderList headers;
  InjectUpstreamAuth(auth, "", 1700000000000, &headers);
  ASSERT_EQ(headers.size(), 3u);
  EXPECT_EQ(headers[2].second, "209ea601e2bc8a139acbbe3501361b5f2e3fbb1af8076aec0d329288ecd3f9db");
}

}  // namespace
}  // namespace tollgate::upstream
