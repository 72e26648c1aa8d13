#include "gateway/console_assets.h"

#include <cstddef>

#include "gateway/pipeline.h"

namespace tollgate::gateway {

namespace console_data {
// Defined in the generated console_data.cpp (cmake/embed_console.cmake).
extern const unsigned char kIndexHtml[];
extern const std::size_t kIndexHtmlSize;
extern const unsigned char kAppJs[];
extern const std::size_t kAppJsSize;
extern const unsigned char kAppCss[];
extern const std::size_t kAppCssSize;
extern const unsigned char kChartJs[];
extern const std::size_t kChartJsSize;
}  // namespace console_data

namespace {

std::string_view Bytes(const unsigned char* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

constexpr std::string_view kPrefix = "/console/";

void AddSecurityHeaders(HttpResponse* r) {
  r->headers.emplace_back("Content-Security-Policy", std::string(kConsoleCsp));
  r->headers.emplace_back("X-Content-Type-Options", "nosniff");
  r->headers.emplace_back("Referrer-Policy", "no-referrer");
  r->headers.emplace_back("Cache-Control", "no-store");
}

}  // namespace

const ConsoleAsset* FindConsoleAsset(std::string_view path) {
  using namespace console_data;
  static const ConsoleAsset kAssets[] = {
      {"/console/", "text/html; charset=utf-8", Bytes(kIndexHtml, kIndexHtmlSize)},
      {"/console/app.js", "text/javascript; charset=utf-8", Bytes(kAppJs, kAppJsSize)},
      {"/console/app.css", "text/css; charset=utf-8", Bytes(kAppCss, kAppCssSize)},
      {"/console/chart.umd.js", "text/javascript; charset=utf-8", Bytes(kChartJs, kChartJsSize)},
  };
  for (const ConsoleAsset& asset : kAssets) {
    if (asset.path == path) return &asset;
  }
  return nullptr;
}

bool IsConsolePath(std::string_view path) {
  return path == kPrefix.substr(0, kPrefix.size() - 1) || path.substr(0, kPrefix.size()) == kPrefix;
}

HttpResponse ConsoleResponse(const HttpRequest& req, std::string_view path) {
  HttpResponse r;
  // Another site's page may not load (or time) the console's files; the page itself and a typed
  // address may. Tools send no Sec-Fetch-Site at all.
  const std::string* site = req.Header("sec-fetch-site");
  if (site != nullptr && *site != "none" && *site != "same-origin") {
    r = ErrorResponse(403, "forbidden",
                      "the console is served to its own pages only (Sec-Fetch-Site)", "");
  } else if (req.method != "GET" && req.method != "HEAD") {
    r = ErrorResponse(405, "method_not_allowed", "method not allowed", "");
    r.headers.emplace_back("Allow", "GET, HEAD");
  } else if (path.size() + 1 == kPrefix.size()) {
    r.status = 301;
    r.headers.emplace_back("Location", std::string(kPrefix));
  } else if (const ConsoleAsset* asset = FindConsoleAsset(path)) {
    r.headers.emplace_back("Content-Type", std::string(asset->content_type));
    r.body = std::string(asset->body);
  } else {
    r = ErrorResponse(404, "not_found", "no such console file", "");
  }
  AddSecurityHeaders(&r);
  return r;
}

}  // namespace tollgate::gateway
