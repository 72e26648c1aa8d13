// The `tollgate` command line: serve, check-config, keygen, explain, keys (see kUsage in
// cli.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tollgate::gateway {

// Returns the process exit code: 0 ok, 1 failure (or a denied `explain`, or the admin API
// refused a `keys` command), 2 usage/config error.
int RunCli(int argc, char** argv);

// A DURATION of `tollgate keys`: whole seconds ("90"), or a count with one unit s, m, h or d
// ("45s", "15m", "12h", "30d"). nullopt when malformed or beyond 100 years.
std::optional<int64_t> ParseDuration(std::string_view text);

// The table `tollgate keys list` prints from GET /keys's JSON: the columns ID, CALLER, STATE,
// CREATED, EXPIRES, LAST USED, NOTE, aligned; "-" for null; times to the second. Control
// characters in values are shown as '?'. "" and *error set when `json` is not such an answer.
std::string FormatKeyTable(std::string_view json, std::string* error);

}  // namespace tollgate::gateway
