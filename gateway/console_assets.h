// The admin console (GET /console/ on the admin listener): a single page, compiled into the
// binary by cmake/embed_console.cmake from console/index.html, app.js, app.css and Debian's
// Chart.js (libjs-chart.js), so nothing is fetched from elsewhere and nothing is read from disk.
//
// The page holds no data: it asks for an admin token, keeps it in the tab's sessionStorage and
// reads the token endpoints (/callers, /limits, /usage, /refusals, /status) with
// `Authorization: Bearer`, so serving the files needs no token and writes no audit record. Every
// answer carries kConsoleCsp (no inline script or style, nothing from another origin, no
// framing), nosniff, no-referrer and no-store.
//
// A browser asks for the files itself (Sec-Fetch-Site "none": the address was typed) or for its
// own page ("same-origin"); any other Sec-Fetch-Site (another site's page) is refused.
//
// Thread-safety: everything here is immutable after static initialisation.
#pragma once

#include <string_view>

#include "gateway/http_codec.h"

namespace tollgate::gateway {

inline constexpr std::string_view kConsoleCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

struct ConsoleAsset {
  std::string_view path;  // "/console/", "/console/app.js", ...
  std::string_view content_type;
  std::string_view body;
};

// The asset served at `path` (no query), or nullptr.
const ConsoleAsset* FindConsoleAsset(std::string_view path);

// True for "/console" and every path under "/console/": the console answers them all.
bool IsConsolePath(std::string_view path);

// The answer to `req` for `path` (IsConsolePath): an asset (GET, HEAD), a 301 from "/console"
// to "/console/", 404 for another path under it, 405 for another method, 403 for a request from
// another site's page. Every one carries the console's security headers.
HttpResponse ConsoleResponse(const HttpRequest& req, std::string_view path);

}  // namespace tollgate::gateway
