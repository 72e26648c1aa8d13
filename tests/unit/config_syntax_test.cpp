#include <gtest/gtest.h>

#include "config/loader.h"
#include "config/syntax.h"

namespace tollgate::config {
namespace {

using namespace std::chrono;

TEST(ParseRate, AcceptsTheFourUnits) {
  struct Case {
    const char* text;
    uint64_t tokens;
    uint64_t period;
  };
  for (const Case& c : {Case{"20/s", 20, 1}, Case{"120/min", 120, 60}, Case{"5/h", 5, 3600},
                        Case{"50/day", 50, 86400}, Case{"1/s", 1, 1}}) {
    std::optional<Rate> rate = ParseRate(c.text);
    ASSERT_TRUE(rate) << c.text;
    EXPECT_EQ(rate->tokens, c.tokens) << c.text;
    EXPECT_EQ(rate->period_seconds, c.period) << c.text;
  }
}

TEST(ParseRate, RejectsMalformedRates) {
  for (const char* text :
       {"", "20", "/s", "0/s", "-1/s", "+1/s", " 1/s", "1/s ", "1.5/s", "1/sec", "1/m", "1/hour",
        "1/days", "1//s", "1/S", "x/s", "99999999999999999999/s"}) {
    EXPECT_FALSE(ParseRate(text)) << text;
  }
}

TEST(Rfc3339, ParsesUtcOffsetsAndFractions) {
  auto utc = syntax::ParseRfc3339("2027-01-01T00:00:00Z");
  ASSERT_TRUE(utc);
  EXPECT_EQ(duration_cast<seconds>(utc->time_since_epoch()).count(), 1798761600);
  auto offset = syntax::ParseRfc3339("2027-01-01T02:00:00+02:00");
  ASSERT_TRUE(offset);
  EXPECT_EQ(*offset, *utc);
  auto fraction = syntax::ParseRfc3339("2027-01-01t00:00:00.5z");
  ASSERT_TRUE(fraction);
  EXPECT_EQ(duration_cast<milliseconds>(*fraction - *utc).count(), 500);
  EXPECT_EQ(syntax::FormatRfc3339(*utc), "2027-01-01T00:00:00Z");
  EXPECT_TRUE(syntax::ParseRfc3339("2028-02-29T23:59:59-05:30"));
}

TEST(Rfc3339, RejectsMalformedTimes) {
  for (const char* text :
       {"", "2027-01-01", "2027-01-01T00:00:00", "2027-01-01 00:00:00Z", "2027-13-01T00:00:00Z",
        "2027-02-29T00:00:00Z", "2027-01-01T24:00:00Z", "2027-01-01T00:00:00+0200",
        "2027-01-01T00:00:00.Z", "2027-1-01T00:00:00Z", "2027-01-01T00:00:00Zjunk"}) {
    EXPECT_FALSE(syntax::ParseRfc3339(text)) << text;
  }
}

TEST(PathTemplateSyntax, AcceptsLiteralsParamsAndTrailingRest) {
  std::vector<std::string> params;
  EXPECT_EQ(syntax::CheckPathTemplate("/", &params), "");
  EXPECT_EQ(syntax::CheckPathTemplate("/v2/accounts/{account}/tokens/**", &params), "");
  EXPECT_EQ(params, std::vector<std::string>{"account"});
  EXPECT_EQ(syntax::CheckPathTemplate("/a/{x}/b/{y_2}", &params), "");
  EXPECT_EQ(params, (std::vector<std::string>{"x", "y_2"}));
}

TEST(PathTemplateSyntax, NamesTheProblem) {
  std::vector<std::string> params;
  EXPECT_NE(syntax::CheckPathTemplate("v3/x", &params).find("start with '/'"), std::string::npos);
  EXPECT_NE(syntax::CheckPathTemplate("/a/**/b", &params).find("last"), std::string::npos);
  EXPECT_NE(syntax::CheckPathTemplate("/a/{x", &params).find("'}'"), std::string::npos);
  EXPECT_NE(syntax::CheckPathTemplate("/a/x}", &params).find("whole segment"), std::string::npos);
  EXPECT_NE(syntax::CheckPathTemplate("/a/{}", &params).find("empty"), std::string::npos);
  EXPECT_NE(syntax::CheckPathTemplate("/a//b", &params).find("empty segment"), std::string::npos);
  EXPECT_NE(syntax::CheckPathTemplate("/a/", &params).find("empty segment"), std::string::npos);
  EXPECT_NE(syntax::CheckPathTemplate("/{x}/{x}", &params).find("twice"), std::string::npos);
  EXPECT_NE(syntax::CheckPathTemplate("/a*", &params).find("'*'"), std::string::npos);
  EXPECT_NE(syntax::CheckPathTemplate("/{a-b}", &params).find("parameter names"),
            std::string::npos);
}

TEST(HostPort, AcceptsHostsAndRejectsTheRest) {
  for (const char* text : {"127.0.0.1:8080", "localhost:1", "[::1]:9090", "0.0.0.0:65535"}) {
    EXPECT_TRUE(syntax::IsHostPort(text)) << text;
  }
  for (const char* text : {"", "8080", ":8080", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
                           "127.0.0.1:80x", "a b:80", "http://x:80"}) {
    EXPECT_FALSE(syntax::IsHostPort(text)) << text;
  }
}

TEST(BaseUrl, StripsTrailingSlashAndRejectsOthers) {
  std::string error;
  EXPECT_EQ(syntax::NormaliseBaseUrl("https://api.devin.ai/", &error), "https://api.devin.ai");
  EXPECT_EQ(syntax::NormaliseBaseUrl("http://127.0.0.1:18081", &error), "http://127.0.0.1:18081");
  EXPECT_EQ(syntax::NormaliseBaseUrl("https://x.example/api//", &error), "https://x.example/api");
  for (const char* text : {"ftp://x", "api.devin.ai", "https://", "https://u:p@x", "https://x?q",
                           "https://x:99999", "HTTPS//x"}) {
    EXPECT_FALSE(syntax::NormaliseBaseUrl(text, &error)) << text;
  }
}

TEST(RedisUrl, ParsesHostPortAndDb) {
  std::string error;
  auto address = syntax::ParseRedisUrl("redis://redis.internal:6380/3", &error);
  ASSERT_TRUE(address) << error;
  EXPECT_EQ(address->host, "redis.internal");
  EXPECT_EQ(address->port, 6380);
  EXPECT_EQ(address->db, 3);
  address = syntax::ParseRedisUrl("redis://127.0.0.1", &error);
  ASSERT_TRUE(address) << error;
  EXPECT_EQ(address->port, 6379);
  EXPECT_EQ(address->db, 0);
  EXPECT_FALSE(syntax::ParseRedisUrl("rediss://x:6379", &error));
  EXPECT_FALSE(syntax::ParseRedisUrl("redis://x:6379/abc", &error));
  EXPECT_FALSE(syntax::ParseRedisUrl("redis://:hunter2@x:6379", &error));
  EXPECT_NE(error.find("password_env"), std::string::npos);
  EXPECT_EQ(error.find("hunter2"), std::string::npos);
}

TEST(Sha256Hex, NeedsExactly64HexDigits) {
  EXPECT_TRUE(syntax::IsSha256Hex(std::string(64, 'a')));
  EXPECT_TRUE(syntax::IsSha256Hex(std::string(64, 'F')));
  EXPECT_FALSE(syntax::IsSha256Hex(std::string(63, 'a')));
  EXPECT_FALSE(syntax::IsSha256Hex(std::string(65, 'a')));
  EXPECT_FALSE(syntax::IsSha256Hex(std::string(63, 'a') + "g"));
}

TEST(JoinPointer, EscapesTildeAndSlash) {
  EXPECT_EQ(syntax::JoinPointer("/callers", "a/b~c"), "/callers/a~1b~0c");
  EXPECT_EQ(syntax::JoinPointer("", size_t{3}), "/3");
}

TEST(FormatError, JoinsPointerAndMessage) {
  EXPECT_EQ(FormatError({"/a/b", "broken"}), "/a/b: broken");
  EXPECT_EQ(FormatError({"", "broken"}), "broken");
}

}  // namespace
}  // namespace tollgate::config
