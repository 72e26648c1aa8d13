#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "upstream/headers.h"

namespace tollgate::upstream {
namespace {

bool Contains(const HeaderList& headers, const std::string& name) {
  for (const auto& h : headers) {
    if (HeaderNameEquals(h.first, name)) return true;
  }
  return false;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// An upstream as the config builder makes it: forward_headers lower case, sorted and unique.
config::Upstream Upstream(std::vector<std::string> forward = {}) {
  config::Upstream up;
  up.name = "devin";
  up.base_url = "https://api.devin.ai";
  for (std::string& name : forward) name = Lower(name);
  std::sort(forward.begin(), forward.end());
  forward.erase(std::unique(forward.begin(), forward.end()), forward.end());
  up.forward_headers = std::move(forward);
  return up;
}

HeaderList Filter(const HeaderList& in, const config::Upstream& up = Upstream(),
                  bool redacted = false, RequestHeaderDrops* drops = nullptr,
                  std::string_view client_ip = "") {
  return FilterRequestHeaders(in, up, client_ip, redacted, drops);
}

config::Upstream Devin() { return Upstream(); }

// Filters `in` for an upstream whose forward_headers lists every name in it: what the Connection
// header names must still be dropped.
HeaderList FilterForwardingAll(const HeaderList& in) {
  std::vector<std::string> names;
  for (const auto& [name, value] : in) names.push_back(name);
  return Filter(in, Upstream(names));
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

TEST_P(RequestHeaderTableTest, ForwardsOnlyTheAllowlist) {
  const DropCase& c = GetParam();
  HeaderList in = {{"Accept", "application/json"}, {c.name, "v"}};
  HeaderList out = Filter(in);
  EXPECT_EQ(Contains(out, c.name), c.forwarded) << c.name;
  EXPECT_TRUE(Contains(out, "Accept"));
  // A name in forward_headers is forwarded, unless no config may forward it.
  HeaderList configured = Filter(in, Upstream({c.name}));
  EXPECT_EQ(Contains(configured, c.name), c.forwarded || NeverForwardedReason(c.name, "").empty())
      << c.name;
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
        // method overrides (issue 10 point 4 names the ones a denylist missed)
        DropCase{"X-HTTP-Method-Override", false}, DropCase{"X-Method-Override", false},
        DropCase{"X-HTTP-Method", false}, DropCase{"X-Original-Method", false},
        DropCase{"X-Method", false}, DropCase{"X-Override-Method", false},
        DropCase{"X-Original-HTTP-Method", false},
        // path and host overrides
        DropCase{"X-Original-URL", false}, DropCase{"x-original-url", false},
        DropCase{"X-Rewrite-URL", false}, DropCase{"X-Override-URL", false},
        DropCase{"X-Original-URI", false}, DropCase{"X-Envoy-Original-Path", false},
        DropCase{"X-Original-Path", false}, DropCase{"X-Host", false},
        DropCase{"X-Original-Host", false},
        // forwarding claims the upstream might trust
        DropCase{"X-Forwarded-For", false}, DropCase{"x-forwarded-host", false},
        DropCase{"X-Forwarded-Proto", false}, DropCase{"Forwarded", false},
        DropCase{"X-Real-IP", false}, DropCase{"True-Client-IP", false},
        DropCase{"X-Client-IP", false}, DropCase{"Client-IP", false},
        DropCase{"CF-Connecting-IP", false}, DropCase{"Via", false},
        // underscore spellings CGI-style frameworks read as the dashed ones
        DropCase{"X_HTTP_Method_Override", false}, DropCase{"X_Forwarded_For", false},
        DropCase{"Content_Type", false},
        // compression would hide secrets from the answer scan; Apache's old Range
        DropCase{"Accept-Encoding", false}, DropCase{"Request-Range", false},
        // anything else is not on the list
        DropCase{"X-Custom", false}, DropCase{"X-Forwarded", false}, DropCase{"Prefer", false},
        // the allowlist
        DropCase{"Accept", true}, DropCase{"Accept-Language", true},
        DropCase{"accept-charset", true}, DropCase{"Content-Type", true},
        DropCase{"Content-Encoding", true}, DropCase{"Content-Language", true},
        DropCase{"If-Match", true}, DropCase{"If-None-Match", true},
        DropCase{"If-Modified-Since", true}, DropCase{"If-Unmodified-Since", true},
        DropCase{"If-Range", true}, DropCase{"Range", true}, DropCase{"Cache-Control", true},
        DropCase{"Pragma", true}, DropCase{"User-Agent", true}, DropCase{"Idempotency-Key", true},
        DropCase{"traceparent", true}, DropCase{"TraceState", true}));

TEST(FilterRequestHeadersTest, ForwardHeadersAddNamesInAnyCase) {
  HeaderList in = {{"X-Custom", "1"}, {"x-other", "2"}, {"X-OTHER", "3"}, {"X-Unlisted", "4"}};
  HeaderList expected = {{"X-Custom", "1"}, {"x-other", "2"}, {"X-OTHER", "3"}};
  RequestHeaderDrops drops;
  EXPECT_EQ(Filter(in, Upstream({"x-custom", "X-Other"}), false, &drops), expected);
  EXPECT_EQ(drops.not_allowed, 1u);
}

TEST(FilterRequestHeadersTest, ForwardHeadersNeverAddWhatNoConfigMayForward) {
  // The config check refuses these; a model built another way still cannot forward them.
  config::Upstream up = Upstream({"x-forwarded-for", "authorization", "x_custom", "host"});
  up.auth.type = config::AuthType::kHeader;
  up.auth.header = "X-Api-Token";
  up.forward_headers.push_back("x-api-token");
  std::sort(up.forward_headers.begin(), up.forward_headers.end());
  HeaderList in = {{"X-Forwarded-For", "1.2.3.4"},
                   {"Authorization", "Bearer k"},
                   {"X_Custom", "v"},
                   {"Host", "h"},
                   {"X-Api-Token", "forged"},
                   {"Accept", "a"}};
  HeaderList expected = {{"Accept", "a"}};
  EXPECT_EQ(Filter(in, up), expected);
}

TEST(FilterRequestHeadersTest, AnyNameWithAnUnderscoreIsDroppedAndCounted) {
  HeaderList in = {{"X_Forwarded_For", "1.2.3.4"},
                   {"X_HTTP_Method_Override", "DELETE"},
                   {"accept_", "x"},
                   {"Accept", "a"}};
  RequestHeaderDrops drops;
  HeaderList expected = {{"Accept", "a"}};
  EXPECT_EQ(Filter(in, Upstream({"x_http_method_override"}), false, &drops), expected);
  EXPECT_EQ(drops.underscore, 3u);
  EXPECT_EQ(drops.not_allowed, 0u);
  EXPECT_EQ(drops.range, 0u);
}

TEST(FilterRequestHeadersTest, Point3_NoRangeOnARedactedRoute) {
  HeaderList in = {{"Range", "bytes=0-9"},
                   {"If-Range", "\"v1\""},
                   {"Request-Range", "bytes=0-9"},
                   {"Accept-Encoding", "gzip"},
                   {"Accept", "a"}};
  RequestHeaderDrops drops;
  HeaderList expected = {{"Accept", "a"}};
  EXPECT_EQ(Filter(in, Upstream({"range", "if-range"}), true, &drops), expected);
  EXPECT_EQ(drops.range, 2u);
  EXPECT_EQ(drops.not_allowed, 2u);  // Request-Range and Accept-Encoding: on no route
  // Elsewhere a byte range is the caller's business.
  HeaderList plain = {{"Range", "bytes=0-9"}, {"If-Range", "\"v1\""}, {"Accept", "a"}};
  EXPECT_EQ(Filter(in, Upstream(), false), plain);
}

TEST(FilterRequestHeadersTest, CountsOnlyWhatTheCallerChoseToSend) {
  // Every request carries some of these: counting them would make the metric noise.
  HeaderList in = {{"Host", "gw"},
                   {"Content-Length", "2"},
                   {"Connection", "keep-alive, X-Hop"},
                   {"X-Hop", "1"},
                   {"Keep-Alive", "timeout=5"},
                   {"Expect", "100-continue"},
                   {"Authorization", "Bearer key"},
                   {"X-Request-Id", "abc"},
                   {"Transfer-Encoding", "chunked"},
                   {"Accept", "a"}};
  RequestHeaderDrops drops;
  EXPECT_EQ(Filter(in, Upstream(), false, &drops), (HeaderList{{"Accept", "a"}}));
  EXPECT_EQ(drops.not_allowed + drops.underscore + drops.range, 0u);
  in.emplace_back("X-Original-Method", "DELETE");
  in.emplace_back("Via", "1.1 evil");
  EXPECT_EQ(Filter(in, Upstream(), false, &drops), (HeaderList{{"Accept", "a"}}));
  EXPECT_EQ(drops.not_allowed, 2u);
}

TEST(FilterRequestHeadersTest, ClientIpHeadersAreTheGatewaysOwn) {
  HeaderList in = {{"X-Forwarded-For", "6.6.6.6"}, {"Forwarded", "for=6.6.6.6"}, {"Accept", "a"}};
  config::Upstream up = Upstream();
  // Not asked for: none, and the caller's are dropped.
  EXPECT_EQ(Filter(in, up, false, nullptr, "10.1.2.3"), (HeaderList{{"Accept", "a"}}));
  up.send_x_forwarded_for = true;
  EXPECT_EQ(Filter(in, up, false, nullptr, "10.1.2.3"),
            (HeaderList{{"Accept", "a"}, {"X-Forwarded-For", "10.1.2.3"}}));
  up.send_forwarded = true;
  EXPECT_EQ(Filter(in, up, false, nullptr, "10.1.2.3"),
            (HeaderList{
                {"Accept", "a"}, {"X-Forwarded-For", "10.1.2.3"}, {"Forwarded", "for=10.1.2.3"}}));
  up.send_x_forwarded_for = false;
  EXPECT_EQ(Filter(in, up, false, nullptr, "2001:db8::1"),
            (HeaderList{{"Accept", "a"}, {"Forwarded", "for=\"[2001:db8::1]\""}}));
  EXPECT_EQ(Filter(in, up, false, nullptr, "[::1]"),
            (HeaderList{{"Accept", "a"}, {"Forwarded", "for=\"[::1]\""}}));
  // An address the gateway does not know, or that does not read as one, is not sent.
  EXPECT_EQ(Filter(in, up, false, nullptr, ""), (HeaderList{{"Accept", "a"}}));
  EXPECT_EQ(Filter(in, up, false, nullptr, "1.2.3.4\r\nX-Evil: 1"), (HeaderList{{"Accept", "a"}}));
}

TEST(NeverForwardedReasonTest, NamesWhyAndKnowsTheUpstreamsAuthHeader) {
  EXPECT_EQ(NeverForwardedReason("X-Custom", ""), "");
  EXPECT_EQ(NeverForwardedReason("X-Api-Token", ""), "");
  EXPECT_EQ(NeverForwardedReason("Accept", ""), "");
  EXPECT_EQ(NeverForwardedReason("X-Forwarded", ""), "");  // not a forwarding claim
  EXPECT_NE(NeverForwardedReason("X-Api-Token", "x-api-token"), "");
  // No forward_headers entry can make any of these cross (issue 10 point 4 lists most).
  for (const char* name : {"bad name",
                           "",
                           "X:Y",
                           "X_Y",
                           "Connection",
                           "Keep-Alive",
                           "TE",
                           "Trailer",
                           "Upgrade",
                           "Proxy-Foo",
                           "Host",
                           "Content-Length",
                           "Expect",
                           "X-Request-Id",
                           "Transfer-Encoding",
                           "Authorization",
                           "authorization",
                           "Cookie",
                           "Proxy-Authorization",
                           "standAloneToken",
                           "X-Logtrust-Whatever",
                           "X-Forwarded-For",
                           "x-forwarded-host",
                           "Forwarded",
                           "X-Real-IP",
                           "True-Client-IP",
                           "X-Client-IP",
                           "Client-IP",
                           "CF-Connecting-IP",
                           "Via",
                           "X-HTTP-Method-Override",
                           "X-Method-Override",
                           "X-HTTP-Method",
                           "X-Method",
                           "X-Override-Method",
                           "X-Original-Method",
                           "X-Original-HTTP-Method",
                           "X-Original-URL",
                           "X-Original-URI",
                           "X-Original-Path",
                           "X-Rewrite-URL",
                           "X-Override-URL",
                           "X-Envoy-Original-Path",
                           "X-Host",
                           "X-Original-Host",
                           "X_HTTP_Method_Override",
                           "X_Forwarded_For",
                           "Accept-Encoding",
                           "Request-Range"}) {
    EXPECT_NE(NeverForwardedReason(name, ""), "") << name;
  }
}

TEST(FilterRequestHeadersTest, DropsHeadersNamedByConnection) {
  HeaderList in = {{"Connection", "keep-alive, X-Secret-Hop ,\tX-Other"},
                   {"X-Secret-Hop", "1"},
                   {"x-other", "2"},
                   {"X-Kept", "3"}};
  HeaderList out = FilterForwardingAll(in);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].first, "X-Kept");
}

TEST(FilterRequestHeadersTest, ConnectionTokensFromEveryConnectionHeader) {
  HeaderList in = {{"Connection", "X-A"}, {"connection", "X-B"}, {"X-A", "1"}, {"X-B", "2"}};
  EXPECT_TRUE(FilterForwardingAll(in).empty());
}

TEST(FilterRequestHeadersTest, KeepsOrderValuesAndDuplicates) {
  HeaderList in = {{"X-B", "1"}, {"Cookie", "c=1"}, {"X-A", "2"}, {"X-B", "3"}};
  HeaderList expected = {{"X-B", "1"}, {"X-A", "2"}, {"X-B", "3"}};
  EXPECT_EQ(FilterForwardingAll(in), expected);
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
  EXPECT_EQ(FilterForwardingAll(in), expected);
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
  EXPECT_EQ(FilterForwardingAll(in), expected);
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
  EXPECT_EQ(FilterForwardingAll(in), expected);
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
  EXPECT_EQ(FilterForwardingAll(in), expected);
}

TEST(FilterRequestHeadersTest, ATokenDropsEveryCopyOfTheFieldItNames) {
  HeaderList in = {{"X-Dup", "1"},          {"Accept", "a"}, {"x-dup", "2"},
                   {"Connection", "X-DUP"}, {"X-Dup", "3"},  {"X-Trace", "t"}};
  HeaderList expected = {{"Accept", "a"}, {"X-Trace", "t"}};
  EXPECT_EQ(FilterForwardingAll(in), expected);
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
  EXPECT_EQ(FilterForwardingAll(in), expected);
}

TEST(FilterRequestHeadersTest, TokensNamingAuthorizationAndHostStillDropThem) {
  HeaderList in = {{"Connection", "authorization, HOST"},
                   {"Host", "gw"},
                   {"Authorization", "Bearer caller-key"},
                   {"Proxy-Authorization", "Basic x"},
                   {"Accept", "application/json"}};
  HeaderList expected = {{"Accept", "application/json"}};
  EXPECT_EQ(FilterForwardingAll(in), expected);
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
  EXPECT_EQ(FilterResponseHeaders(in, Devin()), expected);
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
  EXPECT_EQ(FilterResponseHeaders(in, Devin()), expected);
}

class ResponseHeaderTableTest : public ::testing::TestWithParam<DropCase> {};

TEST_P(ResponseHeaderTableTest, PassesOnlySafeHeaders) {
  const DropCase& c = GetParam();
  HeaderList in = {{"Content-Type", "application/json"}, {c.name, "v"}};
  HeaderList out = FilterResponseHeaders(in, Devin());
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
        // credentials (issue 10 point 5): an upstream echoing them would hand them out
        DropCase{"Authorization", false}, DropCase{"proxy-authorization", false},
        DropCase{"standAloneToken", false}, DropCase{"X-Logtrust-Sign", false},
        DropCase{"x-logtrust-apikey", false}, DropCase{"Cookie", false},
        // end-to-end fields pass (WWW-Authenticate is a challenge, not a credential)
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
  EXPECT_EQ(FilterResponseHeaders(in, Devin()), expected);
}

TEST(FilterResponseHeadersTest, Point5_DropsTheUpstreamsConfiguredAuthHeader) {
  config::Upstream up = Devin();
  up.auth.type = config::AuthType::kHeader;
  up.auth.header = "X-Api-Token";
  HeaderList in = {{"x-api-token", "the-secret"},
                   {"X-Echo", "kept"},
                   {"WWW-Authenticate", "Bearer error=\"invalid_token\""}};
  HeaderList expected = {{"X-Echo", "kept"},
                         {"WWW-Authenticate", "Bearer error=\"invalid_token\""}};
  EXPECT_EQ(FilterResponseHeaders(in, up), expected);
  up.auth.type = config::AuthType::kBearer;  // the name is an ordinary one for other upstreams
  EXPECT_EQ(FilterResponseHeaders(in, up).size(), 3u);
}

TEST(FilterResponseHeadersTest, Point9_StripsUserInfoFromLocation) {
  HeaderList in = {{"Location", "https://svc:hunter2@api.devin.ai/v3/x"},
                   {"Content-Location", "https://svc:hunter2@elsewhere.example/y"}};
  HeaderList out = FilterResponseHeaders(in, Devin());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].second, "/devin/v3/x");
  EXPECT_EQ(out[1].second, "https://svc:hunter2@elsewhere.example/y");  // only Location
}

TEST(RefusedResponseHeadTest, Point9_ABareCrOrAnyControlCharacterIsRefused) {
  EXPECT_EQ(RefusedResponseHead({}), "");
  EXPECT_EQ(RefusedResponseHead({{"X-A", "tab\tinside ok"}, {"X-B", "caf\xc3\xa9 \x80\xff"}}), "");
  for (const std::string& value :
       {std::string("a\rb"), std::string("a\r"), std::string("\rX-Injected: 1"),
        std::string("a\nb"), std::string("a\0b", 3), std::string("a\x7f"), std::string("a\x01"),
        std::string("\x1b[31m")}) {
    std::string why = RefusedResponseHead({{"X-Ok", "1"}, {"X-Bad", value}});
    EXPECT_NE(why, "") << value;
    EXPECT_NE(why.find("X-Bad"), std::string::npos) << why;
    EXPECT_EQ(why.find(value), std::string::npos) << "the value must not be quoted: " << why;
  }
  EXPECT_NE(RefusedResponseHead({{std::string("X-\rBad"), "v"}}), "");
  EXPECT_EQ(RefusedResponseHead({{std::string("X-\rBad"), "v"}}).find("X-"), std::string::npos);
}

TEST(FilterResponseHeadersTest, RewritesLocation) {
  HeaderList in = {{"location", "https://api.devin.ai/v3/sessions/1"},
                   {"Location", "/v3beta1/x?y=1"}};
  HeaderList out = FilterResponseHeaders(in, Devin());
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
        // user info: stripped (issue 10 point 9), then the rules above apply
        LocationCase{"https://api.devin.ai", "https://user:pw@api.devin.ai/v3", "/up/v3"},
        LocationCase{"https://api.devin.ai", "https://user:pw@evil.example/v3?a=b",
                     "https://evil.example/v3?a=b"},
        LocationCase{"https://api.devin.ai", "https://a@b:c@api.devin.ai:443", "/up"},
        LocationCase{"https://api.devin.ai", "http://user:pw@api.devin.ai/v3",
                     "http://api.devin.ai/v3"},
        LocationCase{"https://api.devin.ai", "https://@api.devin.ai/v3", "/up/v3"},
        LocationCase{"https://api.devin.ai", "ftp://u:p@files.example/x", "ftp://files.example/x"},
        LocationCase{"https://api.devin.ai", "https://api.devin.ai/v3?who=a@b", "/up/v3?who=a@b"},
        LocationCase{"https://api.devin.ai", "https://h.example/p@q#x@y",
                     "https://h.example/p@q#x@y"},
        LocationCase{"https://api.devin.ai", "/v3/a@b", "/up/v3/a@b"},
        LocationCase{"https://api.devin.ai", "sessions/a@b", "sessions/a@b"},
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
        LocationCase{"https://api.devin.ai", "//user@api.devin.ai/v3", "/up/v3"},
        LocationCase{"https://api.devin.ai", "//user:pw@evil.example/v3", "//evil.example/v3"},
        // relative-path: unchanged (resolving it needs the request path)
        LocationCase{"https://api.devin.ai", "sessions/1", "sessions/1"},
        LocationCase{"https://api.devin.ai", "?page=2", "?page=2"},
        LocationCase{"https://api.devin.ai", "", ""}));

}  // namespace
}  // namespace tollgate::upstream
