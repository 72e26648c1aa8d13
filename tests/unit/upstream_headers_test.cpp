#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "upstream/headers.h"

namespace tollgate::upstream {
namespace {

bool Contains(const HeaderList& headers, const std::string& name) {
  for (const auto& h : headers) {
    if (HeaderNameEquals(h.first, name)) return true;
  }
  return false;
}

TEST(HeaderNameEqualsTest, IgnoresAsciiCaseOnly) {
  EXPECT_TRUE(HeaderNameEquals("Content-Type", "content-type"));
  EXPECT_TRUE(HeaderNameEquals("X-LOGTRUST-SIGN", "x-logtrust-sign"));
  EXPECT_FALSE(HeaderNameEquals("Content-Type", "Content-Typ"));
  EXPECT_FALSE(HeaderNameEquals("a-b", "a_b"));
}

struct DropCase {
  const char* name;
  bool forwarded;
};

class RequestHeaderTableTest : public ::testing::TestWithParam<DropCase> {};

TEST_P(RequestHeaderTableTest, ForwardsOnlySafeHeaders) {
  const DropCase& c = GetParam();
  HeaderList in = {{"Accept", "application/json"}, {c.name, "v"}};
  HeaderList out = FilterRequestHeaders(in);
  EXPECT_EQ(Contains(out, c.name), c.forwarded) << c.name;
  EXPECT_TRUE(Contains(out, "Accept"));
}

INSTANTIATE_TEST_SUITE_P(
    Table, RequestHeaderTableTest,
    ::testing::Values(
        // hop-by-hop
        DropCase{"Connection", false}, DropCase{"Keep-Alive", false}, DropCase{"TE", false},
        DropCase{"Trailer", false}, DropCase{"Transfer-Encoding", false},
        DropCase{"Upgrade", false}, DropCase{"Proxy-Connection", false},
        DropCase{"Proxy-Authorization", false},
        // owned by libcurl or the gateway
        DropCase{"Host", false}, DropCase{"Content-Length", false}, DropCase{"Expect", false},
        DropCase{"X-Request-Id", false},
        // the caller's credentials
        DropCase{"Authorization", false}, DropCase{"authorization", false},
        DropCase{"Cookie", false}, DropCase{"standAloneToken", false},
        DropCase{"STANDALONETOKEN", false}, DropCase{"x-logtrust-apikey", false},
        DropCase{"X-Logtrust-Sign", false}, DropCase{"x-logtrust-timestamp", false},
        // method overrides
        DropCase{"X-HTTP-Method-Override", false}, DropCase{"X-Method-Override", false},
        DropCase{"X-HTTP-Method", false},
        // forwarding claims the upstream might trust
        DropCase{"X-Forwarded-For", false}, DropCase{"x-forwarded-host", false},
        DropCase{"X-Forwarded-Proto", false}, DropCase{"Forwarded", false},
        DropCase{"X-Real-IP", false},
        // path overrides some backends route by
        DropCase{"X-Original-URL", false}, DropCase{"x-original-url", false},
        DropCase{"X-Rewrite-URL", false}, DropCase{"X-Override-URL", false},
        // ordinary end-to-end headers pass
        DropCase{"Content-Type", true}, DropCase{"User-Agent", true},
        DropCase{"If-None-Match", true}, DropCase{"X-Custom", true},
        DropCase{"Accept-Encoding", true}, DropCase{"X-Forwarded", true}));

TEST(FilterRequestHeadersTest, DropsHeadersNamedByConnection) {
  HeaderList in = {{"Connection", "keep-alive, X-Secret-Hop ,\tX-Other"},
                   {"X-Secret-Hop", "1"},
                   {"x-other", "2"},
                   {"X-Kept", "3"}};
  HeaderList out = FilterRequestHeaders(in);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].first, "X-Kept");
}

TEST(FilterRequestHeadersTest, ConnectionTokensFromEveryConnectionHeader) {
  HeaderList in = {{"Connection", "X-A"}, {"connection", "X-B"}, {"X-A", "1"}, {"X-B", "2"}};
  EXPECT_TRUE(FilterRequestHeaders(in).empty());
}

TEST(FilterRequestHeadersTest, KeepsOrderValuesAndDuplicates) {
  HeaderList in = {{"X-B", "1"}, {"Cookie", "c=1"}, {"X-A", "2"}, {"X-B", "3"}};
  HeaderList expected = {{"X-B", "1"}, {"X-A", "2"}, {"X-B", "3"}};
  EXPECT_EQ(FilterRequestHeaders(in), expected);
}

// The tests below send many Connection tokens, in orders and mixes of case that a lookup in
// sorted tokens gets wrong if the order and the comparison disagree.

std::string FieldName(int i) { return "X-Field-" + std::to_string(1000 + i); }

TEST(FilterRequestHeadersTest, ManyConnectionHeadersEachNamingOneField) {
  // 200 Connection headers, in a shuffled order, naming fields 0, 7, 14, ..., 196 and fields
  // that are absent; the fields are sent twice, once in each case.
  HeaderList in;
  for (int k = 0; k < 200; ++k) {
    int i = (k * 11) % 200;
    in.emplace_back("Connection", FieldName(i % 7 == 0 ? i : 200 + i));
  }
  HeaderList expected;
  for (int i = 0; i < 200; ++i) {
    in.emplace_back(FieldName(i), "a");
    std::string lower = FieldName(i);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    in.emplace_back(lower, "b");
    if (i % 7 != 0) {
      expected.emplace_back(FieldName(i), "a");
      expected.emplace_back(lower, "b");
    }
  }
  EXPECT_EQ(FilterRequestHeaders(in), expected);
}

TEST(FilterRequestHeadersTest, OneConnectionHeaderWithHundredsOfTokensInAnyOrder) {
  // One header listing 100 tokens (every third field, from the last one down), plus fields that
  // no token names but that sort between, before and after the named ones.
  std::string tokens;
  for (int i = 299; i >= 0; i -= 3) tokens += FieldName(i) + (i % 2 == 0 ? "," : " ,\t");
  HeaderList in = {{"Connection", tokens}};
  HeaderList expected;
  for (int i = 0; i < 300; ++i) {
    in.emplace_back(FieldName(i), "v");
    if ((299 - i) % 3 != 0) expected.emplace_back(FieldName(i), "v");
  }
  for (const char* unnamed : {"X-Field-", "X-Field-1", "X-Field-10", "X-Field-12990", "X-Field-2",
                              "X-Field-9999", "A", "Z", "~"}) {
    in.emplace_back(unnamed, "kept");
    expected.emplace_back(unnamed, "kept");
  }
  EXPECT_EQ(FilterRequestHeaders(in), expected);
}

TEST(FilterRequestHeadersTest, RepeatedEmptyAndPaddedTokens) {
  HeaderList in = {{"Connection", ""},
                   {"Connection", ",, ,\t,"},
                   {"Connection", "X-A,X-A, X-A ,\tX-B\t\t,,  X-C"},
                   {"Connection", " x-a "},
                   {"X-A", "1"},
                   {"X-B", "2"},
                   {"X-C", "3"},
                   {"X-A-B", "4"},
                   {"X-", "5"},
                   {"X-D", "6"}};
  HeaderList expected = {{"X-A-B", "4"}, {"X-", "5"}, {"X-D", "6"}};
  EXPECT_EQ(FilterRequestHeaders(in), expected);
}

TEST(FilterRequestHeadersTest, ConnectionTokensInAnyCase) {
  // Tokens alternate case, and each field is sent in the other case: ordering the tokens by
  // their bytes ('X' < 'x') would put them out of the order a case-insensitive lookup walks.
  std::string tokens;
  HeaderList in;
  for (char c = 'a'; c <= 'z'; ++c) {
    std::string upper = std::string("X-HOP-") + static_cast<char>(std::toupper(c));
    std::string lower = std::string("x-hop-") + c;
    bool upper_token = (c - 'a') % 2 == 0;
    tokens += (upper_token ? upper : lower) + ",";
    in.emplace_back(upper_token ? lower : upper, "v");
  }
  in.insert(in.begin(), {"connection", tokens});
  in.emplace_back("x-hop-kept", "v");
  in.emplace_back("X-HOP-KEPT", "v");
  HeaderList expected = {{"x-hop-kept", "v"}, {"X-HOP-KEPT", "v"}};
  EXPECT_EQ(FilterRequestHeaders(in), expected);
}

TEST(FilterRequestHeadersTest, ATokenDropsEveryCopyOfTheFieldItNames) {
  HeaderList in = {{"X-Dup", "1"},          {"Accept", "a"}, {"x-dup", "2"},
                   {"Connection", "X-DUP"}, {"X-Dup", "3"},  {"X-Trace", "t"}};
  HeaderList expected = {{"Accept", "a"}, {"X-Trace", "t"}};
  EXPECT_EQ(FilterRequestHeaders(in), expected);
}

TEST(FilterRequestHeadersTest, TokensNamingFieldsDroppedAnywayChangeNothingElse) {
  HeaderList in = {{"Connection",
                    "Keep-Alive, Connection, X-Forwarded-For, Cookie, "
                    "Transfer-Encoding, standAloneToken, x-logtrust-sign"},
                   {"Keep-Alive", "timeout=5"},
                   {"X-Forwarded-For", "10.0.0.1"},
                   {"Cookie", "c=1"},
                   {"Transfer-Encoding", "chunked"},
                   {"standAloneToken", "t"},
                   {"X-Logtrust-Sign", "s"},
                   {"Accept", "application/json"},
                   {"X-Forwarded", "kept"}};
  HeaderList expected = {{"Accept", "application/json"}, {"X-Forwarded", "kept"}};
  EXPECT_EQ(FilterRequestHeaders(in), expected);
}

TEST(FilterRequestHeadersTest, TokensNamingAuthorizationAndHostStillDropThem) {
  HeaderList in = {{"Connection", "authorization, HOST"},
                   {"Host", "gw"},
                   {"Authorization", "Bearer caller-key"},
                   {"Proxy-Authorization", "Basic x"},
                   {"Accept", "application/json"}};
  HeaderList expected = {{"Accept", "application/json"}};
  EXPECT_EQ(FilterRequestHeaders(in), expected);
}

TEST(FilterResponseHeadersTest, ManyConnectionTokensInAnyOrderAndCase) {
  // One header naming every other field, from the last one down, a quarter of them upper-cased.
  std::string tokens;
  for (int i = 299; i >= 0; i -= 2) {
    std::string token = FieldName(i);
    if (i % 4 == 1) {
      for (char& c : token) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    tokens += token + ", ";
  }
  HeaderList in = {{"Connection", tokens}, {"Location", "https://api.devin.ai/v3/x"}};
  HeaderList expected = {{"Location", "/devin/v3/x"}};
  for (int i = 0; i < 300; ++i) {
    in.emplace_back(FieldName(i), "v");
    if (i % 2 == 0) expected.emplace_back(FieldName(i), "v");
  }
  in.emplace_back("Content-Type", "application/json");
  expected.emplace_back("Content-Type", "application/json");
  EXPECT_EQ(FilterResponseHeaders(in, "https://api.devin.ai", "devin"), expected);
}

TEST(IsSecretHeaderTest, KnowsEverySecretHeader) {
  for (const char* name : {"Authorization", "proxy-authorization", "standAloneToken",
                           "x-logtrust-sign", "X-Logtrust-Apikey", "Cookie", "Set-Cookie"}) {
    EXPECT_TRUE(IsSecretHeader(name)) << name;
  }
  EXPECT_FALSE(IsSecretHeader("Content-Type"));
  EXPECT_FALSE(IsSecretHeader("X-Api-Token"));
}

TEST(IsSecretHeaderTest, IncludesTheConfiguredAuthHeader) {
  config::UpstreamAuth auth;
  auth.type = config::AuthType::kHeader;
  auth.header = "X-Api-Token";
  EXPECT_TRUE(IsSecretHeader("x-api-token", auth));
  EXPECT_TRUE(IsSecretHeader("Authorization", auth));
  EXPECT_FALSE(IsSecretHeader("X-Other", auth));
  auth.type = config::AuthType::kBearer;
  EXPECT_FALSE(IsSecretHeader("x-api-token", auth));
}

TEST(FilterResponseHeadersTest, DropsHopByHopSetCookieAndLength) {
  HeaderList in = {{"Content-Type", "application/json"},
                   {"Connection", "close, X-Hop"},
                   {"X-Hop", "1"},
                   {"Transfer-Encoding", "chunked"},
                   {"Keep-Alive", "timeout=5"},
                   {"Set-Cookie", "s=1"},
                   {"Content-Length", "12"},
                   {"Content-Encoding", "gzip"},
                   {"X-Request-Id", "upstream-id"},
                   {"x-devo-cid", "cid-1"},
                   {"Retry-After", "3"}};
  HeaderList expected = {{"Content-Type", "application/json"},
                         {"Content-Encoding", "gzip"},
                         {"x-devo-cid", "cid-1"},
                         {"Retry-After", "3"}};
  EXPECT_EQ(FilterResponseHeaders(in, "https://api.devin.ai", "devin"), expected);
}

class ResponseHeaderTableTest : public ::testing::TestWithParam<DropCase> {};

TEST_P(ResponseHeaderTableTest, PassesOnlySafeHeaders) {
  const DropCase& c = GetParam();
  HeaderList in = {{"Content-Type", "application/json"}, {c.name, "v"}};
  HeaderList out = FilterResponseHeaders(in, "https://api.devin.ai", "devin");
  EXPECT_EQ(Contains(out, c.name), c.forwarded) << c.name;
  EXPECT_TRUE(Contains(out, "Content-Type"));
}

INSTANTIATE_TEST_SUITE_P(
    Table, ResponseHeaderTableTest,
    ::testing::Values(
        // hop-by-hop (RFC 9110 7.6.1) and the proxy hop's own fields
        DropCase{"Connection", false}, DropCase{"Keep-Alive", false}, DropCase{"TE", false},
        DropCase{"te", false}, DropCase{"Trailer", false}, DropCase{"Trailers", false},
        DropCase{"Transfer-Encoding", false}, DropCase{"Upgrade", false},
        DropCase{"UPGRADE", false}, DropCase{"Proxy-Authenticate", false},
        DropCase{"proxy-authenticate", false}, DropCase{"Proxy-Authentication-Info", false},
        DropCase{"Proxy-Connection", false}, DropCase{"Proxy-Status", false},
        // the upstream's cookies are its business with the gateway, not with the caller
        DropCase{"Set-Cookie", false}, DropCase{"set-cookie", false},
        // the gateway's own
        DropCase{"Content-Length", false}, DropCase{"X-Request-Id", false},
        // end-to-end fields pass
        DropCase{"Cache-Control", true}, DropCase{"ETag", true}, DropCase{"Vary", true},
        DropCase{"Content-Encoding", true}, DropCase{"Retry-After", true},
        DropCase{"WWW-Authenticate", true}, DropCase{"x-devo-cid", true},
        DropCase{"RateLimit-Remaining", true}, DropCase{"X-Proxy-Hint", true}));

TEST(FilterResponseHeadersTest, DropsWhatEveryUpstreamConnectionHeaderNames) {
  HeaderList in = {{"Connection", "X-A"},
                   {"connection", " x-b ,\tKeep-Alive,"},
                   {"x-a", "1"},
                   {"X-B", "2"},
                   {"X-C", "3"},
                   {"Content-Type", "application/json"},
                   {"X-A-Longer", "not named"}};
  HeaderList expected = {
      {"X-C", "3"}, {"Content-Type", "application/json"}, {"X-A-Longer", "not named"}};
  EXPECT_EQ(FilterResponseHeaders(in, "https://api.devin.ai", "devin"), expected);
}

TEST(FilterResponseHeadersTest, RewritesLocation) {
  HeaderList in = {{"location", "https://api.devin.ai/v3/sessions/1"},
                   {"Location", "/v3beta1/x?y=1"}};
  HeaderList out = FilterResponseHeaders(in, "https://api.devin.ai", "devin");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].first, "location");
  EXPECT_EQ(out[0].second, "/devin/v3/sessions/1");
  EXPECT_EQ(out[1].second, "/devin/v3beta1/x?y=1");
}

struct LocationCase {
  const char* base;
  const char* location;
  const char* expected;
};

class RewriteLocationTest : public ::testing::TestWithParam<LocationCase> {};

TEST_P(RewriteLocationTest, Rewrites) {
  const LocationCase& c = GetParam();
  EXPECT_EQ(RewriteLocation(c.location, c.base, "up"), c.expected) << c.base << " " << c.location;
}

INSTANTIATE_TEST_SUITE_P(
    Table, RewriteLocationTest,
    ::testing::Values(
        // base without a path prefix
        LocationCase{"https://api.devin.ai", "https://api.devin.ai/v3/x?a=1&a=2",
                     "/up/v3/x?a=1&a=2"},
        LocationCase{"https://api.devin.ai", "https://api.devin.ai", "/up"},
        LocationCase{"https://api.devin.ai", "https://api.devin.ai/", "/up"},
        LocationCase{"https://api.devin.ai", "https://api.devin.ai?q=1", "/up?q=1"},
        LocationCase{"https://api.devin.ai", "https://api.devin.ai/?q=1#f", "/up?q=1#f"},
        LocationCase{"https://api.devin.ai", "HTTPS://API.Devin.AI/v3", "/up/v3"},
        LocationCase{"https://api.devin.ai", "https://api.devin.ai:443/v3", "/up/v3"},
        // base with a path prefix
        LocationCase{"http://127.0.0.1:8081/api", "http://127.0.0.1:8081/api/v2/t", "/up/v2/t"},
        LocationCase{"http://127.0.0.1:8081/api/", "http://127.0.0.1:8081/api/v2", "/up/v2"},
        LocationCase{"http://127.0.0.1:8081/api", "http://127.0.0.1:8081/api", "/up"},
        LocationCase{"http://127.0.0.1:8081/api", "http://127.0.0.1:8081/api/", "/up"},
        LocationCase{"http://127.0.0.1:8081/api/", "http://127.0.0.1:8081/api#f", "/up#f"},
        LocationCase{"http://127.0.0.1:8081/api", "http://127.0.0.1:8081/apikeys",
                     "http://127.0.0.1:8081/apikeys"},
        LocationCase{"http://127.0.0.1:8081/api", "http://127.0.0.1:8081/other",
                     "http://127.0.0.1:8081/other"},
        LocationCase{"http://127.0.0.1:8081/api", "http://127.0.0.1:8081/API/v2",
                     "http://127.0.0.1:8081/API/v2"},
        // another host, scheme or port: unchanged
        LocationCase{"https://api.devin.ai", "https://evil.example/v3", "https://evil.example/v3"},
        LocationCase{"https://api.devin.ai", "https://api.devin.ai.evil.example/v3",
                     "https://api.devin.ai.evil.example/v3"},
        LocationCase{"https://api.devin.ai", "http://api.devin.ai/v3", "http://api.devin.ai/v3"},
        LocationCase{"https://api.devin.ai", "https://api.devin.ai:8443/v3",
                     "https://api.devin.ai:8443/v3"},
        LocationCase{"https://api.devin.ai", "https://user:pw@api.devin.ai/v3",
                     "https://user:pw@api.devin.ai/v3"},
        // path-absolute: on the base's origin, so rewritten when under its path prefix
        LocationCase{"https://api.devin.ai", "/v3beta1/x?y=1", "/up/v3beta1/x?y=1"},
        LocationCase{"https://api.devin.ai", "/v3/sessions#top", "/up/v3/sessions#top"},
        LocationCase{"https://api.devin.ai", "/", "/up"},
        LocationCase{"https://api.devin.ai", "/?q=1", "/up?q=1"},
        LocationCase{"http://h:1/api", "/api/v3/x", "/up/v3/x"},
        LocationCase{"http://h:1/api", "/api/v3/x?a=1#f", "/up/v3/x?a=1#f"},
        LocationCase{"http://h:1/api", "/api", "/up"},
        LocationCase{"http://h:1/api", "/api/", "/up"},
        LocationCase{"http://h:1/api", "/api?q=1", "/up?q=1"},
        LocationCase{"http://h:1/api/", "/api/v3", "/up/v3"},
        LocationCase{"http://h:1/api", "/other", "/other"},
        LocationCase{"http://h:1/api", "/apikeys", "/apikeys"},
        LocationCase{"http://h:1/api", "/API/v3", "/API/v3"},
        // network-path: absolute when its host (and the base scheme's port) match, else unchanged
        LocationCase{"https://api.devin.ai", "//api.devin.ai/v3", "/up/v3"},
        LocationCase{"https://api.devin.ai", "//API.devin.ai:443/v3?q", "/up/v3?q"},
        LocationCase{"http://h:1/api", "//h:1/api/v3", "/up/v3"},
        LocationCase{"http://h:1/api", "//h:1/other", "//h:1/other"},
        LocationCase{"http://h:1/api", "//h/api/v3", "//h/api/v3"},
        LocationCase{"https://api.devin.ai", "//evil.example/v3", "//evil.example/v3"},
        LocationCase{"https://api.devin.ai", "//user@api.devin.ai/v3", "//user@api.devin.ai/v3"},
        // relative-path: unchanged (resolving it needs the request path)
        LocationCase{"https://api.devin.ai", "sessions/1", "sessions/1"},
        LocationCase{"https://api.devin.ai", "?page=2", "?page=2"},
        LocationCase{"https://api.devin.ai", "", ""}));

}  // namespace
}  // namespace tollgate::upstream
