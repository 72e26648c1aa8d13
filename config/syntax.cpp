#include "config/syntax.h"

#include <cctype>
#include <cstdio>
#include <set>

#include "config/loader.h"

namespace tollgate::config {
namespace {

bool IsDigits(std::string_view text) {
  if (text.empty()) return false;
  for (char c : text) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// Parses a run of digits into *value; false when empty, not all digits, or over `max`.
bool ParseUnsigned(std::string_view text, uint64_t max, uint64_t* value) {
  if (!IsDigits(text) || text.size() > 19) return false;
  uint64_t result = 0;
  for (char c : text) result = result * 10 + static_cast<uint64_t>(c - '0');
  if (result > max) return false;
  *value = result;
  return true;
}

bool IsHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

// host or [v6]; nothing else (no user info, no spaces).
bool IsHost(std::string_view host) {
  if (host.empty()) return false;
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return false;
    for (char c : host.substr(1, host.size() - 2)) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
    }
    return true;
  }
  for (char c : host) {
    if (!IsHostChar(c)) return false;
  }
  return true;
}

// Splits "host:port" at the last ':' outside brackets; the port part is empty when absent.
bool SplitHostPort(std::string_view text, std::string_view* host, std::string_view* port) {
  size_t colon = text.rfind(':');
  size_t bracket = text.rfind(']');
  if (colon == std::string_view::npos || (bracket != std::string_view::npos && colon < bracket)) {
    *host = text;
    *port = {};
    return false;
  }
  *host = text.substr(0, colon);
  *port = text.substr(colon + 1);
  return true;
}

bool IsPort(std::string_view text) {
  uint64_t port = 0;
  return ParseUnsigned(text, 65535, &port) && port > 0;
}

bool IsLeapYear(int64_t year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int DaysInMonth(int64_t year, int64_t month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeapYear(year) ? 29 : kDays[month - 1];
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void CivilFromDays(int64_t z, int64_t* y, int64_t* m, int64_t* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp + (mp < 10 ? 3 : -9);
  *y = yoe + era * 400 + (*m <= 2);
}

// Reads exactly `width` digits at text[*pos] into *value.
bool ReadFixed(std::string_view text, size_t* pos, size_t width, int64_t* value) {
  uint64_t parsed = 0;
  if (*pos + width > text.size() || !ParseUnsigned(text.substr(*pos, width), 9999, &parsed)) {
    return false;
  }
  *pos += width;
  *value = static_cast<int64_t>(parsed);
  return true;
}

bool Expect(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || std::tolower(static_cast<unsigned char>(text[*pos])) != c) {
    return false;
  }
  ++*pos;
  return true;
}

}  // namespace

std::optional<Rate> ParseRate(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  Rate rate;
  // Bounded well below 2^64 so that later products (burst * period * 1e6) are checked, not wrapped.
  if (!ParseUnsigned(text.substr(0, slash), 1000000000000ULL, &rate.tokens) || rate.tokens == 0) {
    return std::nullopt;
  }
  std::string_view unit = text.substr(slash + 1);
  if (unit == "s") {
    rate.period_seconds = 1;
  } else if (unit == "min") {
    rate.period_seconds = 60;
  } else if (unit == "h") {
    rate.period_seconds = 3600;
  } else if (unit == "day") {
    rate.period_seconds = 86400;
  } else {
    return std::nullopt;
  }
  return rate;
}

namespace syntax {

std::optional<std::chrono::system_clock::time_point> ParseRfc3339(std::string_view text) {
  int64_t year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  size_t pos = 0;
  if (!ReadFixed(text, &pos, 4, &year) || !Expect(text, &pos, '-') ||
      !ReadFixed(text, &pos, 2, &month) || !Expect(text, &pos, '-') ||
      !ReadFixed(text, &pos, 2, &day) || !Expect(text, &pos, 't') ||
      !ReadFixed(text, &pos, 2, &hour) || !Expect(text, &pos, ':') ||
      !ReadFixed(text, &pos, 2, &minute) || !Expect(text, &pos, ':') ||
      !ReadFixed(text, &pos, 2, &second)) {
    return std::nullopt;
  }
  // RFC 3339 allows second 60 (a leap second); it lands on the next second here.
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month) || hour > 23 ||
      minute > 59 || second > 60) {
    return std::nullopt;
  }
  int64_t micros = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t start = pos;
    int64_t scale = 100000;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
      micros += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  int64_t offset_minutes = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int64_t off_hour = 0, off_minute = 0;
    if (!ReadFixed(text, &pos, 2, &off_hour) || !Expect(text, &pos, ':') ||
        !ReadFixed(text, &pos, 2, &off_minute) || off_hour > 23 || off_minute > 59) {
      return std::nullopt;
    }
    offset_minutes = sign * (off_hour * 60 + off_minute);
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  int64_t seconds = DaysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second -
                    offset_minutes * 60;
  auto since_epoch = std::chrono::duration_cast<std::chrono::system_clock::duration>(
      std::chrono::seconds(seconds) + std::chrono::microseconds(micros));
  return std::chrono::system_clock::time_point(since_epoch);
}

std::string FormatRfc3339(std::chrono::system_clock::time_point time) {
  int64_t seconds =
      std::chrono::duration_cast<std::chrono::seconds>(time.time_since_epoch()).count();
  int64_t days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400;
  int64_t rest = seconds - days * 86400;
  int64_t y = 0, m = 0, d = 0;
  CivilFromDays(days, &y, &m, &d);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lldZ",
                static_cast<long long>(y), static_cast<long long>(m), static_cast<long long>(d),
                static_cast<long long>(rest / 3600), static_cast<long long>(rest / 60 % 60),
                static_cast<long long>(rest % 60));
  return buf;
}

std::string FormatRate(const Rate& rate) {
  const char* unit = "s";
  if (rate.period_seconds == 60) unit = "min";
  if (rate.period_seconds == 3600) unit = "h";
  if (rate.period_seconds == 86400) unit = "day";
  return std::to_string(rate.tokens) + "/" + unit;
}

std::string CheckPathTemplate(std::string_view text, std::vector<std::string>* params) {
  params->clear();
  if (text.empty() || text.front() != '/') return "must start with '/'";
  if (text == "/") return "";
  std::set<std::string, std::less<>> seen;
  std::string_view rest = text.substr(1);
  while (true) {
    size_t slash = rest.find('/');
    std::string_view segment = rest.substr(0, slash);
    bool last = slash == std::string_view::npos;
    if (segment.empty()) return "has an empty segment ('//' or a trailing '/')";
    if (segment == "**") {
      if (!last) return "'**' must be the last segment";
    } else if (segment.front() == '{') {
      if (segment.back() != '}') return "'{' must close with '}' at the end of the segment";
      std::string_view name = segment.substr(1, segment.size() - 2);
      if (name.empty()) return "has an empty parameter name '{}'";
      for (char c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
          return "parameter names may hold only letters, digits and '_'";
        }
      }
      if (!seen.insert(std::string(name)).second) {
        return "names parameter '" + std::string(name) + "' twice";
      }
      params->emplace_back(name);
    } else {
      for (char c : segment) {
        if (c == '{' || c == '}') return "'{' and '}' must enclose a whole segment";
        if (c == '*') return "'*' is only allowed as the whole last segment '**'";
        if (c == '?' || c == '#') return "must not hold a query or fragment";
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
          return "must not hold spaces or control characters";
        }
      }
    }
    if (last) break;
    rest = rest.substr(slash + 1);
  }
  return "";
}

bool IsHostPort(std::string_view text) {
  std::string_view host, port;
  return SplitHostPort(text, &host, &port) && IsHost(host) && IsPort(port);
}

std::optional<std::string> NormaliseBaseUrl(std::string_view text, std::string* error) {
  std::string_view rest;
  if (text.substr(0, 7) == "http://") {
    rest = text.substr(7);
  } else if (text.substr(0, 8) == "https://") {
    rest = text.substr(8);
  } else {
    *error = "must start with http:// or https://";
    return std::nullopt;
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    *error = "must not hold user info (secrets come from secret_env / secret_file)";
    return std::nullopt;
  }
  std::string_view host, port;
  bool has_port = SplitHostPort(authority, &host, &port);
  if (!IsHost(host) || (has_port && !IsPort(port))) {
    *error = "must be http(s)://host[:port][/path]";
    return std::nullopt;
  }
  for (char c : path) {
    if (c == '?' || c == '#') {
      *error = "must not hold a query or fragment";
      return std::nullopt;
    }
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      *error = "must not hold spaces or control characters";
      return std::nullopt;
    }
  }
  std::string url(text);
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

std::optional<RedisAddress> ParseRedisUrl(std::string_view text, std::string* error) {
  constexpr std::string_view kScheme = "redis://";
  if (text.substr(0, kScheme.size()) != kScheme) {
    *error = "must be redis://host:port[/db] (rediss:// is not supported: hiredis 0.14 has no TLS)";
    return std::nullopt;
  }
  std::string_view rest = text.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (authority.find('@') != std::string_view::npos) {
    *error =
        "must not hold a user or password: use redis.username and password_env / password_file";
    return std::nullopt;
  }
  RedisAddress address;
  std::string_view host, port;
  bool has_port = SplitHostPort(authority, &host, &port);
  if (!IsHost(host) || (has_port && !IsPort(port))) {
    *error = "must be redis://host:port[/db]";
    return std::nullopt;
  }
  address.host = std::string(host);
  if (address.host.front() == '[') address.host = address.host.substr(1, address.host.size() - 2);
  if (has_port) address.port = std::stoi(std::string(port));
  if (slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    uint64_t number = 0;
    if (!db.empty() && !ParseUnsigned(db, 1000000, &number)) {
      *error = "database must be a number: redis://host:port/db";
      return std::nullopt;
    }
    address.db = static_cast<int>(number);
  }
  return address;
}

bool IsSha256Hex(std::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

bool IsValidName(std::string_view name) {
  if (name.empty() || !std::isalnum(static_cast<unsigned char>(name.front()))) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

std::string JoinPointer(const std::string& base, std::string_view token) {
  std::string result = base + "/";
  for (char c : token) {
    if (c == '~') {
      result += "~0";
    } else if (c == '/') {
      result += "~1";
    } else {
      result += c;
    }
  }
  return result;
}

std::string JoinPointer(const std::string& base, size_t index) {
  return base + "/" + std::to_string(index);
}

std::string ForEachQueryParam(
    std::string_view query,
    const std::function<std::string(std::string_view name, std::string_view value)>& each) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string error =
        each(pair.substr(0, eq),
             eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    if (!error.empty()) return error;
  }
  return "";
}

}  // namespace syntax
}  // namespace tollgate::config
