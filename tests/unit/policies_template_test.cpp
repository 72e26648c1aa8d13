#include <gtest/gtest.h>

#include <string>

#include "policies/path_template.h"

namespace tollgate::policies {
namespace {

PathTemplate MustCompile(const std::string& text) {
  std::string error;
  std::optional<PathTemplate> compiled = PathTemplate::Compile(text, &error);
  EXPECT_TRUE(compiled.has_value()) << text << ": " << error;
  return compiled ? *compiled : *PathTemplate::Compile("/", nullptr);
}

TEST(PathTemplateTest, LiteralMatchesExactlyAndCaseSensitively) {
  PathTemplate t = MustCompile("/v3beta1/enterprise/self");
  EXPECT_TRUE(t.Match("/v3beta1/enterprise/self", nullptr));
  EXPECT_FALSE(t.Match("/v3beta1/enterprise/Self", nullptr));
  EXPECT_FALSE(t.Match("/V3beta1/enterprise/self", nullptr));
  EXPECT_FALSE(t.Match("/v3beta1/enterprise", nullptr));
  EXPECT_FALSE(t.Match("/v3beta1/enterprise/self/more", nullptr));
  EXPECT_FALSE(t.Match("/v3beta1/enterprise/selfish", nullptr));
  EXPECT_FALSE(t.Match("/v3beta1/enterprise/self/", nullptr));
  EXPECT_FALSE(t.Match("v3beta1/enterprise/self", nullptr));
  EXPECT_FALSE(t.Match("", nullptr));
  EXPECT_EQ(t.text(), "/v3beta1/enterprise/self");
}

TEST(PathTemplateTest, ParamBindsExactlyOneNonEmptySegment) {
  PathTemplate t = MustCompile("/v3beta1/organizations/{org_id}/sessions");
  PathParams params;
  ASSERT_TRUE(t.Match("/v3beta1/organizations/org-123/sessions", &params));
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0].first, "org_id");
  EXPECT_EQ(params[0].second, "org-123");

  EXPECT_FALSE(t.Match("/v3beta1/organizations//sessions", &params));
  EXPECT_FALSE(t.Match("/v3beta1/organizations/a/b/sessions", &params));
  EXPECT_FALSE(t.Match("/v3beta1/organizations/sessions", &params));
}

TEST(PathTemplateTest, ParamsAreReportedInTemplateOrder) {
  PathTemplate t = MustCompile("/{b}/x/{a}");
  PathParams params;
  ASSERT_TRUE(t.Match("/one/x/two", &params));
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0], std::make_pair(std::string("b"), std::string("one")));
  EXPECT_EQ(params[1], std::make_pair(std::string("a"), std::string("two")));
  EXPECT_EQ(t.ParamIndex("a"), 1);
  EXPECT_EQ(t.ParamIndex("b"), 0);
  EXPECT_EQ(t.ParamIndex("c"), -1);
}

TEST(PathTemplateTest, ParamValueKeepsEscapes) {
  PathTemplate t = MustCompile("/u/{name}");
  PathParams params;
  ASSERT_TRUE(t.Match("/u/caf%C3%A9", &params));
  EXPECT_EQ(params[0].second, "caf%C3%A9");
}

TEST(PathTemplateTest, RestMatchesZeroOrMoreSegments) {
  PathTemplate t = MustCompile("/v2/accounts/{account}/tokens/**");
  PathParams params;
  EXPECT_TRUE(t.Match("/v2/accounts/acme/tokens", &params));
  EXPECT_EQ(params[0].second, "acme");
  EXPECT_TRUE(t.Match("/v2/accounts/acme/tokens/1", nullptr));
  EXPECT_TRUE(t.Match("/v2/accounts/acme/tokens/1/2/3", nullptr));
  EXPECT_FALSE(t.Match("/v2/accounts/acme/token", nullptr));
  EXPECT_FALSE(t.Match("/v2/accounts/acme/tokensX/1", nullptr));
  EXPECT_FALSE(t.Match("/v2/accounts/acme", nullptr));
}

TEST(PathTemplateTest, RestRefusesMalformedPaths) {
  PathTemplate t = MustCompile("/a/**");
  EXPECT_FALSE(t.Match("/a/", nullptr));
  EXPECT_FALSE(t.Match("/a/b/", nullptr));
  EXPECT_FALSE(t.Match("/a/b//c", nullptr));
  EXPECT_FALSE(t.Match("/a//", nullptr));
}

TEST(PathTemplateTest, RootTemplates) {
  PathTemplate root = MustCompile("/");
  EXPECT_TRUE(root.Match("/", nullptr));
  EXPECT_FALSE(root.Match("/a", nullptr));

  PathTemplate everything = MustCompile("/**");
  EXPECT_TRUE(everything.Match("/", nullptr));
  EXPECT_TRUE(everything.Match("/a", nullptr));
  EXPECT_TRUE(everything.Match("/a/b/c", nullptr));
  EXPECT_FALSE(everything.Match("", nullptr));

  PathTemplate one = MustCompile("/{x}");
  EXPECT_FALSE(one.Match("/", nullptr));
  EXPECT_TRUE(one.Match("/a", nullptr));
}

TEST(PathTemplateTest, MatchViewsPointsIntoThePath) {
  PathTemplate t = MustCompile("/o/{org}/s/{session}");
  std::string path = "/o/org-1/s/sess-2";
  std::string_view values[PathTemplate::kMaxParams];
  ASSERT_TRUE(t.MatchViews(path, values));
  EXPECT_EQ(values[0], "org-1");
  EXPECT_EQ(values[1], "sess-2");
  EXPECT_EQ(values[0].data(), path.data() + 3);
}

TEST(PathTemplateTest, MalformedTemplatesAreRefused) {
  const char* bad[] = {
      "",            // empty
      "v3/x",        // no leading '/'
      "/a//b",       // empty segment
      "/a/",         // trailing '/'
      "/**/a",       // `**` not last
      "/a/**/**",    // `**` twice
      "/{}",         // empty name
      "/{a}/{a}",    // duplicate name
      "/{a-b}",      // bad name character
      "/a{b}",       // '{' inside a literal
      "/{a}b",       // '}' inside a literal... and '{'
      "/a}",         // stray '}'
      "/{a",         // unclosed
      "/a*",         // '*' in a literal
      "/*",          // single '*'
      "/a?x=1",      // query
      "/a/../b",     // dot segment can never match
      "/a/%2e%2e",   // encoded dot segment
      "/%61",        // not normalised (would be "a")
      "/caf%c3%a9",  // lower-case escape
      "/a b",        // raw space
      "/a;b",        // path parameter
      "/a%2Fb",      // encoded slash
  };
  for (const char* text : bad) {
    std::string error;
    EXPECT_FALSE(PathTemplate::Compile(text, &error).has_value()) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
}

TEST(PathTemplateTest, TooManyParamsAreRefused) {
  std::string text;
  for (size_t i = 0; i <= PathTemplate::kMaxParams; ++i) text += "/{p" + std::to_string(i) + "}";
  std::string error;
  EXPECT_FALSE(PathTemplate::Compile(text, &error).has_value());
  EXPECT_NE(error.find("parameters"), std::string::npos);
}

TEST(PathTemplateTest, NormalisedLiteralsAreAccepted) {
  PathTemplate t = MustCompile("/caf%C3%A9/a:b@c/.well-known");
  EXPECT_TRUE(t.Match("/caf%C3%A9/a:b@c/.well-known", nullptr));
  EXPECT_FALSE(t.Match("/caf%c3%a9/a:b@c/.well-known", nullptr));
}

}  // namespace
}  // namespace tollgate::policies
