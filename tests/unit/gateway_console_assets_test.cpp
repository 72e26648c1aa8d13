// The console's embedded files and the headers every console answer carries (issue 13).
#include <regex>
#include <string>
#include <vector>

#include "gateway/console_assets.h"
#include "gtest/gtest.h"

namespace tollgate::gateway {
namespace {

std::string HeaderOf(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

int HeaderCount(const HttpResponse& r, const std::string& name) {
  int n = 0;
  for (const auto& h : r.headers) n += h.first == name;
  return n;
}

HttpRequest Get(const std::string& target, HeaderList headers = {}) {
  HttpRequest req;
  req.method = "GET";
  req.target = target;
  req.headers = std::move(headers);
  return req;
}

void ExpectSecurityHeaders(const HttpResponse& r) {
  EXPECT_EQ(HeaderCount(r, "Content-Security-Policy"), 1);
  EXPECT_EQ(HeaderOf(r, "Content-Security-Policy"),
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  EXPECT_EQ(HeaderOf(r, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(HeaderOf(r, "Referrer-Policy"), "no-referrer");
  EXPECT_EQ(HeaderOf(r, "Cache-Control"), "no-store");
}

TEST(ConsoleAssetsTest, EveryFileIsEmbeddedWithItsContentType) {
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"/console/", "text/html; charset=utf-8"},
      {"/console/app.js", "text/javascript; charset=utf-8"},
      {"/console/app.css", "text/css; charset=utf-8"},
      {"/console/chart.umd.js", "text/javascript; charset=utf-8"},
  };
  for (const auto& [path, type] : expected) {
    SCOPED_TRACE(path);
    const ConsoleAsset* asset = FindConsoleAsset(path);
    ASSERT_NE(asset, nullptr);
    EXPECT_EQ(asset->content_type, type);
    EXPECT_GT(asset->body.size(), 100u);
    EXPECT_EQ(asset->body.find('\0'), std::string_view::npos);  // the size excludes the NUL

    const HttpResponse r = ConsoleResponse(Get(path), path);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(HeaderOf(r, "Content-Type"), type);
    EXPECT_EQ(r.body, asset->body);
    ExpectSecurityHeaders(r);
  }
  EXPECT_NE(FindConsoleAsset("/console/chart.umd.js")->body.find("Chart.js v"), std::string::npos);
  EXPECT_EQ(FindConsoleAsset("/console"), nullptr);
  EXPECT_EQ(FindConsoleAsset("/console/index.html.bak"), nullptr);
  EXPECT_EQ(FindConsoleAsset("/console/../status"), nullptr);
}

// The CSP forbids inline code; the page must not need any, or the browser would refuse it.
TEST(ConsoleAssetsTest, ThePageHasNoInlineScriptOrStyle) {
  const std::string html(FindConsoleAsset("/console/")->body);
  const std::string js(FindConsoleAsset("/console/app.js")->body);
  EXPECT_FALSE(std::regex_search(html, std::regex("<script(?![^>]*\\bsrc=)", std::regex::icase)))
      << "a <script> without src";
  EXPECT_FALSE(std::regex_search(html, std::regex("<style", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(html, std::regex("\\sstyle=", std::regex::icase)));
  EXPECT_FALSE(std::regex_search(html, std::regex("\\son[a-z]+=", std::regex::icase)));
  EXPECT_NE(html.find("<noscript>"), std::string::npos);
  EXPECT_NE(html.find("src=\"chart.umd.js\""), std::string::npos);
  EXPECT_NE(html.find("src=\"app.js\""), std::string::npos);
  // Data goes into the page as text only.
  EXPECT_EQ(js.find("innerHTML"), std::string::npos);
  EXPECT_EQ(js.find("outerHTML"), std::string::npos);
  EXPECT_EQ(js.find("insertAdjacentHTML"), std::string::npos);
  EXPECT_EQ(js.find("document.write"), std::string::npos);
  EXPECT_EQ(js.find("localStorage"), std::string::npos);  // the token stays in the tab
}

TEST(ConsoleAssetsTest, PathsUnderTheConsole) {
  EXPECT_TRUE(IsConsolePath("/console"));
  EXPECT_TRUE(IsConsolePath("/console/"));
  EXPECT_TRUE(IsConsolePath("/console/app.js"));
  EXPECT_FALSE(IsConsolePath("/consoles"));
  EXPECT_FALSE(IsConsolePath("/console.js"));
  EXPECT_FALSE(IsConsolePath("/status"));
  EXPECT_FALSE(IsConsolePath("/"));

  HttpResponse r = ConsoleResponse(Get("/console"), "/console");
  EXPECT_EQ(r.status, 301);
  EXPECT_EQ(HeaderOf(r, "Location"), "/console/");
  ExpectSecurityHeaders(r);

  r = ConsoleResponse(Get("/console/secret.txt"), "/console/secret.txt");
  EXPECT_EQ(r.status, 404);
  ExpectSecurityHeaders(r);

  HttpRequest post = Get("/console/");
  post.method = "POST";
  r = ConsoleResponse(post, "/console/");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(HeaderOf(r, "Allow"), "GET, HEAD");
  ExpectSecurityHeaders(r);
}

TEST(ConsoleAssetsTest, OnlyItsOwnPagesAndTypedAddressesLoadIt) {
  for (const char* site : {"none", "same-origin"}) {
    SCOPED_TRACE(site);
    const HttpResponse r =
        ConsoleResponse(Get("/console/", {{"Sec-Fetch-Site", site}}), "/console/");
    EXPECT_EQ(r.status, 200);
  }
  for (const char* site : {"cross-site", "same-site"}) {
    SCOPED_TRACE(site);
    const HttpResponse r =
        ConsoleResponse(Get("/console/app.js", {{"Sec-Fetch-Site", site}}), "/console/app.js");
    EXPECT_EQ(r.status, 403);
    EXPECT_EQ(r.body.find("Chart"), std::string::npos);
    ExpectSecurityHeaders(r);
  }
}

}  // namespace
}  // namespace tollgate::gateway
