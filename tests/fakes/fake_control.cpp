#include "tests/fakes/fake_control.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace tollgate::fake {
namespace {

FakeResponse Json(int status, std::string body) {
  FakeResponse response;
  response.status = status;
  response.headers.emplace_back("Content-Type", "application/json");
  response.body = std::move(body);
  return response;
}

void WriteString(rapidjson::Writer<rapidjson::StringBuffer>& w, const std::string& s) {
  w.String(s.c_str(), static_cast<rapidjson::SizeType>(s.size()));
}

}  // namespace

void FakeState::Record(const FakeRequest& request) {
  total_requests_.fetch_add(1);
  std::lock_guard<std::mutex> lock(mu_);
  requests_.push_back(request);
}

bool FakeState::TakeBehaviour(const std::string& path, Behaviour* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto best = behaviours_.end();
  for (auto it = behaviours_.begin(); it != behaviours_.end(); ++it) {
    if (path.compare(0, it->prefix.size(), it->prefix) != 0) continue;
    // On a tie the newest rule wins, so a test can override an earlier one.
    if (best == behaviours_.end() || it->prefix.size() >= best->prefix.size()) best = it;
  }
  if (best == behaviours_.end()) return false;
  *out = *best;
  if (best->times > 0 && --best->times == 0) behaviours_.erase(best);
  return true;
}

FakeResponse FakeState::HandleControl(const FakeRequest& request) {
  const std::string& m = request.method;
  if (request.path == "/_fake/requests") {
    if (m == "GET") return RequestsJson();
    if (m == "DELETE") {
      std::lock_guard<std::mutex> lock(mu_);
      requests_.clear();
      return Json(200, "{\"cleared\":true}");
    }
  } else if (request.path == "/_fake/behaviour") {
    if (m == "POST") return AddBehaviour(request.body);
    if (m == "DELETE") {
      std::lock_guard<std::mutex> lock(mu_);
      behaviours_.clear();
      return Json(200, "{\"cleared\":true}");
    }
  } else if (request.path == "/_fake/stats") {
    if (m == "GET") {
      return Json(200, "{\"requests\":" + std::to_string(total_requests_.load()) +
                           ",\"connections\":" + std::to_string(connections_.load()) +
                           ",\"in_flight\":" + std::to_string(in_flight_.load()) + "}");
    }
  } else {
    return DevoErrorResponse(404, "no such control endpoint: " + request.path);
  }
  return DevoErrorResponse(405, "method not allowed: " + m + " " + request.path);
}

FakeResponse FakeState::RequestsJson() {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  std::lock_guard<std::mutex> lock(mu_);
  w.StartArray();
  for (const auto& r : requests_) {
    w.StartObject();
    w.Key("method");
    WriteString(w, r.method);
    w.Key("path");
    WriteString(w, r.path);
    w.Key("query");
    WriteString(w, r.query);
    w.Key("headers");
    w.StartArray();
    for (const auto& [name, value] : r.headers) {
      w.StartObject();
      w.Key("name");
      WriteString(w, name);
      w.Key("value");
      WriteString(w, value);
      w.EndObject();
    }
    w.EndArray();
    w.Key("body");
    WriteString(w, r.body);
    w.EndObject();
  }
  w.EndArray();
  return Json(200, buffer.GetString());
}

FakeResponse FakeState::AddBehaviour(const std::string& body) {
  rapidjson::Document doc;
  doc.Parse(body.c_str(), body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("prefix") ||
      !doc["prefix"].IsString()) {
    return DevoErrorResponse(400, "expected {\"prefix\": \"/...\", ...}");
  }
  Behaviour rule;
  rule.prefix = doc["prefix"].GetString();
  auto int_member = [&doc](const char* name, int* out) {
    if (!doc.HasMember(name)) return true;
    if (!doc[name].IsInt()) return false;
    *out = doc[name].GetInt();
    return true;
  };
  if (!int_member("delay_ms", &rule.delay_ms) || !int_member("status", &rule.status) ||
      !int_member("times", &rule.times) || rule.delay_ms < 0 || rule.times == 0 ||
      (rule.status != 0 && (rule.status < 100 || rule.status > 599))) {
    return DevoErrorResponse(400, "delay_ms, status and times must be integers in range");
  }
  auto string_member = [&doc](const char* name, bool* present, std::string* out) {
    if (!doc.HasMember(name)) return true;
    if (!doc[name].IsString()) return false;
    *present = true;
    out->assign(doc[name].GetString(), doc[name].GetStringLength());
    return true;
  };
  if (!string_member("retry_after", &rule.has_retry_after, &rule.retry_after) ||
      !string_member("body", &rule.has_body, &rule.body) ||
      !string_member("content_type", &rule.has_content_type, &rule.content_type)) {
    return DevoErrorResponse(400, "retry_after, body and content_type must be strings");
  }
  if (doc.HasMember("hold")) {
    if (!doc["hold"].IsBool()) return DevoErrorResponse(400, "hold must be a boolean");
    rule.hold = doc["hold"].GetBool();
  }
  if (doc.HasMember("headers")) {
    const auto& headers = doc["headers"];
    bool ok = headers.IsArray();
    for (rapidjson::SizeType i = 0; ok && i < headers.Size(); ++i) {
      const auto& h = headers[i];
      ok = h.IsObject() && h.HasMember("name") && h["name"].IsString() &&
           h["name"].GetStringLength() > 0 && h.HasMember("value") && h["value"].IsString();
      if (ok) {
        rule.headers.emplace_back(
            std::string(h["name"].GetString(), h["name"].GetStringLength()),
            std::string(h["value"].GetString(), h["value"].GetStringLength()));
      }
    }
    if (!ok) {
      return DevoErrorResponse(400, "headers must be [{\"name\": \"...\", \"value\": \"...\"}]");
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  behaviours_.push_back(std::move(rule));
  return Json(201, "{\"added\":true}");
}

}  // namespace tollgate::fake
