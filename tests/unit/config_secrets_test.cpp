#include <gtest/gtest.h>
#include <stdlib.h>

#include "config/loader.h"
#include "tests/support/process.h"
#include "tests/unit/config_test_helpers.h"

namespace tollgate::config {
namespace {

using testing::AllErrors;
using testing::FakeSecrets;
using testing::HasError;

std::string WithAuth(const std::string& auth) {
  return R"({"upstreams": {"u": {"base_url": "http://127.0.0.1:1", "auth": )" + auth + "}}}";
}

TEST(Secrets, FromEnvRecordsTheSource) {
  FakeSecrets secrets;
  secrets.env["UP_TOKEN"] = "s3cret-env";
  LoadResult result = LoadConfigString(WithAuth(R"({"type": "bearer", "secret_env": "UP_TOKEN"})"),
                                       secrets.source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_EQ(result.config->upstreams.at("u").auth.secret, "s3cret-env");
  EXPECT_EQ(result.config->upstreams.at("u").auth.secret_source, "env:UP_TOKEN");
}

TEST(Secrets, FromFileTrimsTheTrailingNewline) {
  FakeSecrets secrets;
  secrets.files["/run/secrets/up"] = "s3cret-file\n";
  LoadResult result = LoadConfigString(
      WithAuth(R"({"type": "bearer", "secret_file": "/run/secrets/up"})"), secrets.source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_EQ(result.config->upstreams.at("u").auth.secret, "s3cret-file");
  EXPECT_EQ(result.config->upstreams.at("u").auth.secret_source, "file:/run/secrets/up");
}

TEST(Secrets, MissingEnvNamesTheVariableOnly) {
  FakeSecrets secrets;
  secrets.env["OTHER"] = "s3cret-other";
  LoadResult result = LoadConfigString(WithAuth(R"({"type": "bearer", "secret_env": "UP_TOKEN"})"),
                                       secrets.source());
  EXPECT_TRUE(HasError(result, "/upstreams/u/auth/secret_env", "\"UP_TOKEN\" is not set"))
      << AllErrors(result);
  EXPECT_EQ(AllErrors(result).find("s3cret"), std::string::npos);
}

TEST(Secrets, EmptyEnvIsAnError) {
  FakeSecrets secrets;
  secrets.env["UP_TOKEN"] = "";
  LoadResult result = LoadConfigString(WithAuth(R"({"type": "bearer", "secret_env": "UP_TOKEN"})"),
                                       secrets.source());
  EXPECT_TRUE(HasError(result, "/upstreams/u/auth/secret_env", "UP_TOKEN")) << AllErrors(result);
}

TEST(Secrets, UnreadableOrEmptyFileNamesTheFile) {
  FakeSecrets secrets;
  secrets.files["/run/secrets/empty"] = "\n";
  LoadResult result = LoadConfigString(
      WithAuth(R"({"type": "bearer", "secret_file": "/run/secrets/missing"})"), secrets.source());
  EXPECT_TRUE(HasError(result, "/upstreams/u/auth/secret_file",
                       "cannot read secret file \"/run/secrets/missing\""))
      << AllErrors(result);
  result = LoadConfigString(WithAuth(R"({"type": "bearer", "secret_file": "/run/secrets/empty"})"),
                            secrets.source());
  EXPECT_TRUE(HasError(result, "/upstreams/u/auth/secret_file", "\"/run/secrets/empty\" is empty"))
      << AllErrors(result);
}

TEST(Secrets, ExactlyOneOfEnvAndFile) {
  FakeSecrets secrets;
  secrets.env["UP_TOKEN"] = "s3cret-env";
  secrets.files["/f"] = "s3cret-file";
  LoadResult result = LoadConfigString(
      WithAuth(R"({"type": "bearer", "secret_env": "UP_TOKEN", "secret_file": "/f"})"),
      secrets.source());
  EXPECT_TRUE(HasError(result, "/upstreams/u/auth", "not both")) << AllErrors(result);
  result = LoadConfigString(WithAuth(R"({"type": "bearer"})"), secrets.source());
  EXPECT_TRUE(HasError(result, "/upstreams/u/auth", "needs \"secret_env\" or \"secret_file\""))
      << AllErrors(result);
  EXPECT_EQ(AllErrors(result).find("s3cret"), std::string::npos);
}

TEST(Secrets, ControlCharacterInSecretIsRefusedWithoutEchoingIt) {
  FakeSecrets secrets;
  secrets.env["UP_TOKEN"] = "s3cret\r\nX-Injected: 1";
  LoadResult result = LoadConfigString(WithAuth(R"({"type": "bearer", "secret_env": "UP_TOKEN"})"),
                                       secrets.source());
  EXPECT_TRUE(HasError(result, "/upstreams/u/auth/secret_env", "control character"))
      << AllErrors(result);
  EXPECT_EQ(AllErrors(result).find("s3cret"), std::string::npos);
}

TEST(Secrets, DevoHmacResolvesKeyAndSecret) {
  FakeSecrets secrets;
  secrets.env["DEVO_API_SECRET"] = "s3cret-sign";
  secrets.files["/k"] = "the-api-key\n";
  LoadResult result = LoadConfigString(
      WithAuth(R"({"type": "devo_hmac", "key_file": "/k", "secret_env": "DEVO_API_SECRET"})"),
      secrets.source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_EQ(result.config->upstreams.at("u").auth.key, "the-api-key");
  EXPECT_EQ(result.config->upstreams.at("u").auth.secret, "s3cret-sign");

  result = LoadConfigString(WithAuth(R"({"type": "devo_hmac", "secret_env": "DEVO_API_SECRET"})"),
                            secrets.source());
  EXPECT_TRUE(HasError(result, "/upstreams/u/auth", "needs \"key_env\" or \"key_file\""))
      << AllErrors(result);
  result = LoadConfigString(
      WithAuth(R"({"type": "devo_hmac", "key_env": "NO_KEY", "secret_env": "DEVO_API_SECRET"})"),
      secrets.source());
  EXPECT_TRUE(HasError(result, "/upstreams/u/auth/key_env", "\"NO_KEY\" is not set"))
      << AllErrors(result);
  EXPECT_EQ(AllErrors(result).find("s3cret"), std::string::npos);
}

TEST(Secrets, RedisPassword) {
  FakeSecrets secrets;
  secrets.env["TOKEN"] = "token-value-1";
  secrets.env["REDIS_PW"] = "s3cret-redis";
  const std::string upstreams =
      R"("upstreams": {"u": {"base_url": "http://a", "auth": {"type": "bearer", "secret_env": "TOKEN"}}})";
  LoadResult result = LoadConfigString(
      R"({"redis": {"url": "redis://127.0.0.1:6379", "username": "tg", "password_env": "REDIS_PW"}, )" +
          upstreams + "}",
      secrets.source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_EQ(result.config->redis->password, "s3cret-redis");

  result = LoadConfigString(R"({"redis": {"url": "redis://127.0.0.1:6379"}, )" + upstreams + "}",
                            secrets.source());
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_EQ(result.config->redis->password, "");

  result = LoadConfigString(
      R"({"redis": {"url": "redis://127.0.0.1:6379", "password_env": "NOPE"}, )" + upstreams + "}",
      secrets.source());
  EXPECT_TRUE(HasError(result, "/redis/password_env", "\"NOPE\" is not set")) << AllErrors(result);
  result = LoadConfigString(
      R"({"redis": {"url": "redis://127.0.0.1:6379", "username": "tg"}, )" + upstreams + "}",
      secrets.source());
  EXPECT_TRUE(HasError(result, "/redis/username", "password_env")) << AllErrors(result);
}

// Answers are scanned for every upstream secret value (and it is replaced): a short one would
// match ordinary text. The error names where the secret came from, never the value.
TEST(Secrets, AnUpstreamSecretShorterThanEightBytesIsRefusedAtItsSource) {
  FakeSecrets secrets;
  secrets.env["SHORT"] = "s3cr3t7";
  secrets.env["LONG_ENOUGH"] = "s3cr3t78";
  secrets.files["/run/short"] = "k3y4567\n";
  LoadResult result =
      LoadConfigString(WithAuth(R"({"type": "bearer", "secret_env": "SHORT"})"), secrets.source());
  EXPECT_TRUE(HasError(result, "/upstreams/u/auth/secret_env", "at least 8")) << AllErrors(result);
  EXPECT_EQ(AllErrors(result).find("s3cr3t7"), std::string::npos) << AllErrors(result);
  result = LoadConfigString(
      WithAuth(R"({"type": "devo_hmac", "key_file": "/run/short", "secret_env": "LONG_ENOUGH"})"),
      secrets.source());
  EXPECT_TRUE(HasError(result, "/upstreams/u/auth/key_file", "at least 8")) << AllErrors(result);
  EXPECT_FALSE(HasError(result, "/upstreams/u/auth/secret_env", "")) << AllErrors(result);
  result = LoadConfigString(WithAuth(R"({"type": "bearer", "secret_env": "LONG_ENOUGH"})"),
                            secrets.source());
  EXPECT_TRUE(result.ok()) << AllErrors(result);
}

TEST(Secrets, FromProcessReadsTheRealEnvironmentAndFiles) {
  SecretSource source = SecretSource::FromProcess();
  ::setenv("TOLLGATE_CONFIG_TEST_SECRET", "from-env", 1);
  EXPECT_EQ(source.env("TOLLGATE_CONFIG_TEST_SECRET"), "from-env");
  ::unsetenv("TOLLGATE_CONFIG_TEST_SECRET");
  EXPECT_FALSE(source.env("TOLLGATE_CONFIG_TEST_SECRET"));

  tollgate::testing::TempDir dir;
  std::string path = dir.Write("secret", "from-file\n");
  EXPECT_EQ(source.file(path), "from-file\n");
  EXPECT_FALSE(source.file(dir.path() + "/missing"));
}

}  // namespace
}  // namespace tollgate::config
