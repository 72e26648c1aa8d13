// GET /usage's query and answer (issue 13, notes/api13.md): the parameters, the rows grouped by
// day, caller and/or upstream, and their JSON and CSV forms; and the CLI's table of that JSON.
// Pure functions on values. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "usage/usage_counts.h"

namespace tollgate::usage {

struct UsageQuery {
  int64_t from = 0;  // days since 1970-01-01, inclusive
  int64_t to = 0;
  std::string caller;    // "" = every caller ("-": the unauthenticated requests)
  std::string upstream;  // "" = every upstream
  std::vector<std::string> group_by = {"day"};  // of "day", "caller", "upstream"
  bool csv = false;
};

// Parses the raw query string (percent-encoded). Defaults: the last 30 days up to `today`.
// Returns "" or the error, which starts with the parameter's name ("from: not a date...").
std::string ParseUsageQuery(std::string_view raw, int64_t today, int retention_days,
                            UsageQuery* out);

struct UsageRow {
  std::vector<std::string> keys;  // the values of query.group_by, in that order
  UsageCounts counts;
};

// The rows of `table` that pass the query's filters and days, summed by the grouping keys and
// sorted by them (days sort as text).
std::vector<UsageRow> BuildUsageRows(const UsageQuery& query, const UsageTable& table);

std::string UsageJson(const UsageQuery& query, const std::vector<UsageRow>& rows);
// RFC 4180: a header line, then one line per row, CRLF line ends.
std::string UsageCsv(const UsageQuery& query, const std::vector<UsageRow>& rows);
// One CSV field, quoted when it holds a comma, a quote, CR or LF.
std::string CsvField(std::string_view text);

// The CLI's table of a GET /usage JSON answer; `error` set when it is not one.
std::string FormatUsageTable(std::string_view json, std::string* error);

}  // namespace tollgate::usage
