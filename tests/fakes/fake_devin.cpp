#include "tests/fakes/fake_devin.h"

#include <rapidjson/document.h>

#include <cstdio>
#include <ctime>

namespace tollgate::fake {
namespace {

constexpr int64_t kEpoch = 1700000000;  // timestamps of the seeded data
constexpr int kAuditLogCount = 10;

FakeResponse Json(int status, std::string body) {
  FakeResponse response;
  response.status = status;
  response.headers.emplace_back("Content-Type", "application/json");
  response.body = std::move(body);
  return response;
}

// Reads a required string member of a JSON object body.
bool BodyString(const std::string& body, const char* name, std::string* out) {
  rapidjson::Document doc;
  doc.Parse(body.c_str(), body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember(name) || !doc[name].IsString()) {
    return false;
  }
  *out = doc[name].GetString();
  return true;
}

bool ParseInt(const std::string& text, int64_t* out) {
  if (text.empty() || text.size() > 18) return false;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  *out = value;
  return true;
}

// Cursor paging shared by every list: `after` is "c<offset>" from an earlier end_cursor.
FakeResponse Page(const std::vector<std::string>& items, const std::string& query) {
  int64_t first = 100;
  std::string first_text = QueryValue(query, "first");
  if (!first_text.empty() && (!ParseInt(first_text, &first) || first < 1 || first > 200)) {
    return ProblemResponse(422, "first must be an integer from 1 to 200");
  }
  int64_t offset = 0;
  std::string after = QueryValue(query, "after");
  if (!after.empty() && (after[0] != 'c' || !ParseInt(after.substr(1), &offset))) {
    return ProblemResponse(422, "after is not a cursor from this API");
  }
  std::string body = "{\"items\":[";
  size_t end = items.size();
  if (static_cast<size_t>(offset) < items.size()) {
    end = std::min(items.size(), static_cast<size_t>(offset + first));
    for (size_t i = static_cast<size_t>(offset); i < end; ++i) {
      if (i > static_cast<size_t>(offset)) body += ",";
      body += items[i];
    }
  }
  bool more = end < items.size();
  std::string cursor = more ? JsonQuote("c" + std::to_string(end)) : "null";
  std::string more_text = more ? "true" : "false";
  body += "],\"has_more\":" + more_text + ",\"has_next_page\":" + more_text +
          ",\"end_cursor\":" + cursor + ",\"total\":" + std::to_string(items.size()) + "}";
  return Json(200, body);
}

bool ParseDate(const std::string& text, std::tm* out) {
  int y = 0, m = 0, d = 0;
  char tail = 0;
  if (text.size() != 10 || std::sscanf(text.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3) {
    return false;
  }
  if (m < 1 || m > 12 || d < 1 || d > 31) return false;
  *out = std::tm{};
  out->tm_year = y - 1900;
  out->tm_mon = m - 1;
  out->tm_mday = d;
  return true;
}

}  // namespace

FakeDevin::FakeDevin(std::string token) : token_(std::move(token)) {
  const char* names[] = {"org-123", "org-456", "org-789", "org-aaa", "org-bbb"};
  int64_t t = kEpoch;
  for (const char* id : names) organizations_.push_back({id, std::string("Fake ") + id, t++});
}

bool FakeDevin::Owns(const std::string& path) {
  return path.rfind("/v3beta1/", 0) == 0 || path.rfind("/v3/", 0) == 0;
}

FakeResponse FakeDevin::Handle(const FakeRequest& request) {
  const std::string* auth = request.Header("Authorization");
  if (token_.empty() || auth == nullptr || *auth != "Bearer " + token_) {
    return ProblemResponse(401, "missing or invalid service user credentials");
  }
  std::vector<std::string> segments = SplitPath(request.path);
  segments.erase(segments.begin());  // the version
  return Route(request, segments);
}

FakeResponse FakeDevin::Route(const FakeRequest& request, const std::vector<std::string>& s) {
  const std::string& m = request.method;
  auto is = [&s](std::initializer_list<const char*> want) {
    if (s.size() != want.size()) return false;
    size_t i = 0;
    for (const char* w : want) {
      if (*w != '*' && s[i] != w) return false;
      if (*w == '*' && s[i].empty()) return false;
      ++i;
    }
    return true;
  };
  auto method = [&m](const char* want, FakeResponse response) {
    return m == want ? response : ProblemResponse(405, "method not allowed");
  };
  if (is({"enterprise", "self"})) {
    return method("GET",
                  Json(200,
                       "{\"service_user_id\":\"su-fake\",\"name\":\"fake-service-user\","
                       "\"enterprise_id\":\"ent-fake\",\"permissions\":"
                       "[\"ManageOrganizations\",\"ViewAuditLogs\",\"ManageServiceUsers\"]}"));
  }
  if (is({"enterprise", "organizations"})) {
    if (m == "GET") return ListOrganizations(request.query);
    if (m == "POST") return CreateOrganization(request.body);
    return ProblemResponse(405, "method not allowed");
  }
  if (is({"organizations", "*", "sessions"})) {
    if (m == "GET") return ListSessions(s[1], request.query);
    if (m == "POST") return CreateSession(s[1], request.body);
    return ProblemResponse(405, "method not allowed");
  }
  if (is({"organizations", "*", "sessions", "*"})) {
    return m == "GET" ? GetSession(s[1], s[3]) : ProblemResponse(405, "method not allowed");
  }
  if (is({"enterprise", "consumption", "daily"})) {
    return m == "GET" ? Consumption(request.query) : ProblemResponse(405, "method not allowed");
  }
  if (is({"enterprise", "service-users"})) {
    return m == "POST" ? CreateServiceUser(request.body)
                       : ProblemResponse(405, "method not allowed");
  }
  if (is({"enterprise", "audit-logs"})) {
    return m == "GET" ? AuditLogs(request.query) : ProblemResponse(405, "method not allowed");
  }
  return ProblemResponse(404, "no such endpoint: " + request.path);
}

FakeResponse FakeDevin::ListOrganizations(const std::string& query) {
  std::vector<std::string> items;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& org : organizations_) {
      items.push_back("{\"org_id\":" + JsonQuote(org.id) + ",\"name\":" + JsonQuote(org.name) +
                      ",\"created_at\":" + std::to_string(org.created_at) +
                      ",\"updated_at\":" + std::to_string(org.created_at) +
                      ",\"max_session_acu_limit\":100,\"max_cycle_acu_limit\":1000}");
    }
  }
  return Page(items, query);
}

FakeResponse FakeDevin::CreateOrganization(const std::string& body) {
  std::string name;
  if (!BodyString(body, "name", &name)) return ProblemResponse(422, "name is required");
  std::lock_guard<std::mutex> lock(mu_);
  Organization org{"org-new-" + std::to_string(next_id_++), name, kEpoch + 1000 + next_id_};
  organizations_.push_back(org);
  return Json(201, "{\"org_id\":" + JsonQuote(org.id) + ",\"name\":" + JsonQuote(org.name) +
                       ",\"created_at\":" + std::to_string(org.created_at) + "}");
}

FakeResponse FakeDevin::CreateSession(const std::string& org_id, const std::string& body) {
  std::string prompt;
  if (!BodyString(body, "prompt", &prompt)) return ProblemResponse(422, "prompt is required");
  std::lock_guard<std::mutex> lock(mu_);
  Session session{"devin-" + RandomHex(8), org_id, prompt, kEpoch + 2000 + next_id_++};
  sessions_.push_back(session);
  return Json(200, "{\"session_id\":" + JsonQuote(session.id) +
                       ",\"url\":" + JsonQuote("https://app.devin.ai/sessions/" + session.id) +
                       ",\"org_id\":" + JsonQuote(org_id) + ",\"status\":\"new\"}");
}

FakeResponse FakeDevin::GetSession(const std::string& org_id, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& s : sessions_) {
    if (s.org_id == org_id && s.id == id) {
      return Json(200, "{\"session_id\":" + JsonQuote(s.id) + ",\"org_id\":" + JsonQuote(org_id) +
                           ",\"status\":\"running\",\"prompt\":" + JsonQuote(s.prompt) +
                           ",\"created_at\":" + std::to_string(s.created_at) + "}");
    }
  }
  return ProblemResponse(404, "session not found");
}

FakeResponse FakeDevin::ListSessions(const std::string& org_id, const std::string& query) {
  std::vector<std::string> items;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& s : sessions_) {
      if (s.org_id != org_id) continue;
      items.push_back("{\"session_id\":" + JsonQuote(s.id) + ",\"org_id\":" + JsonQuote(org_id) +
                      ",\"status\":\"running\",\"created_at\":" + std::to_string(s.created_at) +
                      "}");
    }
  }
  return Page(items, query);
}

FakeResponse FakeDevin::Consumption(const std::string& query) {
  std::tm start{}, end{};
  if (!ParseDate(QueryValue(query, "start_date"), &start) ||
      !ParseDate(QueryValue(query, "end_date"), &end)) {
    return ProblemResponse(422, "start_date and end_date (YYYY-MM-DD) are required");
  }
  time_t from = timegm(&start), to = timegm(&end);
  if (to < from || to - from > 366 * 86400) {
    return ProblemResponse(422, "end_date must follow start_date, at most a year later");
  }
  std::string body = "{\"items\":[";
  int day = 0;
  for (time_t t = from; t <= to; t += 86400, ++day) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    char date[16];
    std::strftime(date, sizeof date, "%Y-%m-%d", &tm);
    if (day > 0) body += ",";
    body += "{\"date\":\"" + std::string(date) + "\",\"acus\":" + std::to_string(day % 7 + 1) +
            ".5,\"sessions\":" + std::to_string(day % 5) + "}";
  }
  return Json(200, body + "],\"total_acus\":" + std::to_string(day) + "}");
}

FakeResponse FakeDevin::CreateServiceUser(const std::string& body) {
  std::string name;
  if (!BodyString(body, "name", &name)) return ProblemResponse(422, "name is required");
  std::string id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = "su-" + std::to_string(next_id_++);
  }
  // The one-time credential: the real API shows it once, at creation.
  std::string secret = JsonQuote("cog_" + RandomHex(20));
  return Json(201, "{\"service_user_id\":" + JsonQuote(id) + ",\"name\":" + JsonQuote(name) +
                       ",\"token\":" + secret + ",\"api_key\":" + secret + "}");
}

FakeResponse FakeDevin::AuditLogs(const std::string& query) {
  int64_t after = -1, before = INT64_MAX;
  std::string after_text = QueryValue(query, "time_after");
  std::string before_text = QueryValue(query, "time_before");
  if ((!after_text.empty() && !ParseInt(after_text, &after)) ||
      (!before_text.empty() && !ParseInt(before_text, &before))) {
    return ProblemResponse(422, "time_after and time_before are epoch seconds");
  }
  std::vector<std::string> items;
  for (int i = 0; i < kAuditLogCount; ++i) {
    int64_t at = kEpoch + 3600 * i;
    if (at <= after || at >= before) continue;
    items.push_back(
        "{\"audit_log_id\":\"al-" + std::to_string(i) + "\",\"created_at\":" + std::to_string(at) +
        ",\"action\":\"session.create\",\"actor\":\"user-" + std::to_string(i % 3) + "\"}");
  }
  return Page(items, query);
}

}  // namespace tollgate::fake
