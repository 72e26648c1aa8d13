#include "tests/fakes/fake_devin.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
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

// The string members of an optional array member (`tags`); false if present and not such an array.
bool BodyStringArray(const std::string& body, const char* name, std::vector<std::string>* out) {
  rapidjson::Document doc;
  doc.Parse(body.c_str(), body.size());
  if (doc.HasParseError() || !doc.IsObject()) return false;
  if (!doc.HasMember(name)) return true;
  if (!doc[name].IsArray()) return false;
  for (const auto& v : doc[name].GetArray()) {
    if (!v.IsString()) return false;
    out->push_back(v.GetString());
  }
  return true;
}

// `,"name":<value>` for each of `names` present in a JSON object body (the cost-relevant fields
// a session echoes, so a test or the demo sees what the gateway's body rules made of them).
std::string EchoMembers(const std::string& body, std::initializer_list<const char*> names) {
  rapidjson::Document doc;
  doc.Parse(body.c_str(), body.size());
  if (doc.HasParseError() || !doc.IsObject()) return "";
  std::string out;
  for (const char* name : names) {
    if (!doc.HasMember(name)) continue;
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    doc[name].Accept(w);
    out += ",\"" + std::string(name) + "\":" + buf.GetString();
  }
  return out;
}

std::string JsonStringArray(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + JsonQuote(items[i]);
  return out + "]";
}

// The `file` part of a multipart/form-data body: its filename, Content-Type and bytes.
bool MultipartFile(const FakeRequest& request, std::string* name, std::string* type,
                   std::string* data) {
  const std::string* content_type = request.Header("Content-Type");
  if (content_type == nullptr || content_type->rfind("multipart/form-data", 0) != 0) return false;
  size_t at = content_type->find("boundary=");
  if (at == std::string::npos) return false;
  std::string boundary = content_type->substr(at + 9);
  boundary = boundary.substr(0, boundary.find(';'));
  if (boundary.size() >= 2 && boundary.front() == '"') boundary = boundary.substr(1);
  if (!boundary.empty() && boundary.back() == '"') boundary.pop_back();
  if (boundary.empty()) return false;
  const std::string& body = request.body;
  const std::string delimiter = "--" + boundary;
  size_t pos = body.find(delimiter);
  while (pos != std::string::npos) {
    size_t head = pos + delimiter.size();
    if (body.compare(head, 2, "--") == 0) return false;  // the closing delimiter
    size_t head_end = body.find("\r\n\r\n", head);
    if (head_end == std::string::npos) return false;
    size_t next = body.find("\r\n" + delimiter, head_end + 4);
    if (next == std::string::npos) return false;
    std::string headers = body.substr(head, head_end - head);
    if (headers.find("; name=\"file\"") != std::string::npos) {
      size_t f = headers.find("filename=\"");
      *name = f == std::string::npos ? "file"
                                     : headers.substr(f + 10, headers.find('"', f + 10) - f - 10);
      size_t t = headers.find("Content-Type:");
      *type = t == std::string::npos ? "application/octet-stream"
                                     : headers.substr(t + 13, headers.find("\r\n", t) - t - 13);
      type->erase(0, type->find_first_not_of(' '));
      *data = body.substr(head_end + 4, next - head_end - 4);
      return !name->empty() && name->find('/') == std::string::npos;
    }
    pos = next + 2;
  }
  return false;
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

FakeDevin::FakeDevin(std::string token, std::string presigned_origin)
    : token_(std::move(token)), presigned_origin_(std::move(presigned_origin)) {
  const char* names[] = {"org-123", "org-456", "org-789", "org-aaa", "org-bbb"};
  int64_t t = kEpoch;
  for (const char* id : names) organizations_.push_back({id, std::string("Fake ") + id, t++});
}

bool FakeDevin::Owns(const std::string& path) {
  return path.rfind("/v3beta1/", 0) == 0 || path.rfind("/v3/", 0) == 0;
}

bool FakeDevin::IsPresigned(const std::string& path) { return path.rfind("/presigned/", 0) == 0; }

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
  if (is({"organizations", "*", "sessions", "*", "messages"})) {
    return m == "GET" || m == "POST" ? SessionMessages(request, s[1], s[3])
                                     : ProblemResponse(405, "method not allowed");
  }
  if (is({"organizations", "*", "attachments"})) {
    return m == "POST" ? UploadAttachment(request, s[1])
                       : ProblemResponse(405, "method not allowed");
  }
  if (is({"organizations", "*", "attachments", "*", "*"})) {
    return m == "GET" ? DownloadAttachment(s[1], s[3], s[4])
                      : ProblemResponse(405, "method not allowed");
  }
  if (is({"organizations", "*", "secrets"})) {
    if (m == "GET") return ListSecrets(s[1], request.query);
    if (m == "POST") return CreateSecret(s[1], request.body);
    return ProblemResponse(405, "method not allowed");
  }
  if (is({"organizations", "*", "secrets", "*"})) {
    return m == "DELETE" ? DeleteSecret(s[1], s[3]) : ProblemResponse(405, "method not allowed");
  }
  if (is({"enterprise", "consumption", "acu-limits", "devin"})) {
    return m == "GET" ? ListAcuLimits(request.query) : ProblemResponse(405, "method not allowed");
  }
  if (is({"enterprise", "consumption", "acu-limits", "devin", "organizations", "*"})) {
    if (m == "PUT") return SetAcuLimit(s[5], request.body);
    if (m == "DELETE") return RemoveAcuLimit(s[5]);
    return ProblemResponse(405, "method not allowed");
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
  std::vector<std::string> tags;
  if (!BodyStringArray(body, "tags", &tags)) return ProblemResponse(422, "tags: array of strings");
  std::lock_guard<std::mutex> lock(mu_);
  std::string echo = EchoMembers(body, {"max_acu_limit", "devin_mode", "advanced_mode",
                                        "bypass_approval", "create_as_user_id"});
  Session session{
      "devin-" + RandomHex(8), org_id, prompt, kEpoch + 2000 + next_id_++, tags, {}, echo};
  sessions_.push_back(session);
  return Json(200, "{\"session_id\":" + JsonQuote(session.id) +
                       ",\"url\":" + JsonQuote("https://app.devin.ai/sessions/" + session.id) +
                       ",\"org_id\":" + JsonQuote(org_id) +
                       ",\"status\":\"new\",\"tags\":" + JsonStringArray(tags) + echo + "}");
}

FakeResponse FakeDevin::GetSession(const std::string& org_id, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& s : sessions_) {
    if (s.org_id == org_id && s.id == id) {
      return Json(200, "{\"session_id\":" + JsonQuote(s.id) + ",\"org_id\":" + JsonQuote(org_id) +
                           ",\"status\":\"running\",\"prompt\":" + JsonQuote(s.prompt) +
                           ",\"tags\":" + JsonStringArray(s.tags) + s.echo +
                           ",\"created_at\":" + std::to_string(s.created_at) + "}");
    }
  }
  return ProblemResponse(404, "session not found");
}

FakeResponse FakeDevin::ListSessions(const std::string& org_id, const std::string& query) {
  // `tags` (repeatable): only sessions carrying every one of them, as Devin's list filters.
  std::vector<std::string> wanted;
  for (const auto& [name, value] : ParseQuery(query)) {
    if (name == "tags") wanted.push_back(value);
  }
  std::vector<std::string> items;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& s : sessions_) {
      if (s.org_id != org_id) continue;
      bool all = std::all_of(wanted.begin(), wanted.end(), [&s](const std::string& tag) {
        return std::find(s.tags.begin(), s.tags.end(), tag) != s.tags.end();
      });
      if (!all) continue;
      items.push_back("{\"session_id\":" + JsonQuote(s.id) + ",\"org_id\":" + JsonQuote(org_id) +
                      ",\"status\":\"running\",\"tags\":" + JsonStringArray(s.tags) +
                      ",\"created_at\":" + std::to_string(s.created_at) + "}");
    }
  }
  return Page(items, query);
}

FakeResponse FakeDevin::SessionMessages(const FakeRequest& request, const std::string& org_id,
                                        const std::string& id) {
  std::string message;
  if (request.method == "POST" && !BodyString(request.body, "message", &message)) {
    return ProblemResponse(422, "message is required");
  }
  std::vector<std::string> items;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = std::find_if(sessions_.begin(), sessions_.end(),
                           [&](const Session& s) { return s.org_id == org_id && s.id == id; });
    if (it == sessions_.end()) return ProblemResponse(404, "session not found");
    if (request.method == "POST") {
      it->messages.push_back(message);
      return Json(200, "{\"event_id\":" + JsonQuote("ev-" + std::to_string(next_id_++)) +
                           ",\"session_id\":" + JsonQuote(id) + ",\"source\":\"user\"" +
                           ",\"message\":" + JsonQuote(message) + "}");
    }
    for (size_t i = 0; i < it->messages.size(); ++i) {
      items.push_back("{\"event_id\":" + JsonQuote("ev-" + std::to_string(i)) +
                      ",\"source\":\"user\",\"message\":" + JsonQuote(it->messages[i]) + "}");
    }
  }
  return Page(items, request.query);
}

FakeResponse FakeDevin::UploadAttachment(const FakeRequest& request, const std::string& org_id) {
  Attachment a;
  if (!MultipartFile(request, &a.name, &a.content_type, &a.data)) {
    return ProblemResponse(422, "a multipart/form-data body with a `file` part is required");
  }
  a.id = RandomHex(4) + "-" + RandomHex(2) + "-" + RandomHex(2) + "-" + RandomHex(2) + "-" +
         RandomHex(6);
  a.org_id = org_id;
  std::string url =
      "https://api.devin.ai/v3/organizations/" + org_id + "/attachments/" + a.id + "/" + a.name;
  std::string answer = "{\"attachment_id\":" + JsonQuote(a.id) + ",\"name\":" + JsonQuote(a.name) +
                       ",\"url\":" + JsonQuote(url) + "}";
  std::lock_guard<std::mutex> lock(mu_);
  attachments_.push_back(std::move(a));
  return Json(200, answer);
}

FakeResponse FakeDevin::DownloadAttachment(const std::string& org_id, const std::string& id,
                                           const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& a : attachments_) {
    if (a.org_id != org_id || a.id != id || a.name != name) continue;
    a.signature = RandomHex(16);
    FakeResponse response;
    response.status = 307;
    response.headers.emplace_back("Location",
                                  presigned_origin_ + "/presigned/" + a.id + "/" + a.name +
                                      "?X-Amz-Expires=60&X-Amz-Signature=" + a.signature);
    return response;
  }
  return ProblemResponse(404, "attachment not found");
}

FakeResponse FakeDevin::HandlePresigned(const FakeRequest& request) {
  std::vector<std::string> s = SplitPath(request.path);  // {"presigned", uuid, name}
  std::string signature = QueryValue(request.query, "X-Amz-Signature");
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& a : attachments_) {
    if (s.size() != 3 || a.id != s[1] || a.name != s[2]) continue;
    if (request.method != "GET") return ProblemResponse(405, "method not allowed");
    if (a.signature.empty() || signature != a.signature) {
      return ProblemResponse(403, "the signature does not match");
    }
    FakeResponse response;
    response.headers.emplace_back("Content-Type", a.content_type);
    response.body = a.data;
    return response;
  }
  return ProblemResponse(404, "no such object");
}

FakeResponse FakeDevin::ListSecrets(const std::string& org_id, const std::string& query) {
  std::vector<std::string> items;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& secret : secrets_) {
      if (secret.org_id != org_id) continue;
      items.push_back("{\"secret_id\":" + JsonQuote(secret.id) + ",\"key\":" +
                      JsonQuote(secret.key) + ",\"type\":" + JsonQuote(secret.type) + "}");
    }
  }
  return Page(items, query);
}

FakeResponse FakeDevin::CreateSecret(const std::string& org_id, const std::string& body) {
  Secret secret;
  std::string value;
  if (!BodyString(body, "key", &secret.key) || !BodyString(body, "value", &value)) {
    return ProblemResponse(422, "key and value are required");
  }
  if (!BodyString(body, "type", &secret.type)) secret.type = "key-value";
  secret.org_id = org_id;
  std::lock_guard<std::mutex> lock(mu_);
  secret.id = "secret-" + std::to_string(next_id_++);
  secrets_.push_back(secret);
  return Json(200, "{\"secret_id\":" + JsonQuote(secret.id) + ",\"key\":" + JsonQuote(secret.key) +
                       ",\"type\":" + JsonQuote(secret.type) + "}");
}

FakeResponse FakeDevin::DeleteSecret(const std::string& org_id, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(secrets_.begin(), secrets_.end(), [&](const Secret& secret) {
    return secret.org_id == org_id && secret.id == id;
  });
  if (it == secrets_.end()) return ProblemResponse(404, "secret not found");
  std::string answer = "{\"secret_id\":" + JsonQuote(it->id) + ",\"key\":" + JsonQuote(it->key) +
                       ",\"type\":" + JsonQuote(it->type) + "}";
  secrets_.erase(it);
  return Json(200, answer);
}

FakeResponse FakeDevin::ListAcuLimits(const std::string& query) {
  std::vector<std::string> items;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [org_id, limit] : acu_limits_) {
      items.push_back("{\"cycle_acu_limit\":" + std::to_string(limit) +
                      ",\"scope\":\"organization\",\"org_id\":" + JsonQuote(org_id) + "}");
    }
  }
  return Page(items, query);
}

FakeResponse FakeDevin::SetAcuLimit(const std::string& org_id, const std::string& body) {
  rapidjson::Document doc;
  doc.Parse(body.c_str(), body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("cycle_acu_limit") ||
      !doc["cycle_acu_limit"].IsInt64() || doc["cycle_acu_limit"].GetInt64() < 0) {
    return ProblemResponse(422, "cycle_acu_limit: an integer >= 0 is required");
  }
  int64_t limit = doc["cycle_acu_limit"].GetInt64();
  std::lock_guard<std::mutex> lock(mu_);
  bool known = std::any_of(organizations_.begin(), organizations_.end(),
                           [&](const Organization& org) { return org.id == org_id; });
  if (!known) return ProblemResponse(404, "organization not found");
  acu_limits_[org_id] = limit;
  return Json(200, "{\"cycle_acu_limit\":" + std::to_string(limit) +
                       ",\"scope\":\"organization\",\"org_id\":" + JsonQuote(org_id) + "}");
}

FakeResponse FakeDevin::RemoveAcuLimit(const std::string& org_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (acu_limits_.erase(org_id) == 0) return ProblemResponse(404, "no ACU limit for this org");
  FakeResponse response;
  response.status = 204;
  return response;
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
