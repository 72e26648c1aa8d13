#include "tests/fakes/fake_devo.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rapidjson/document.h>

#include <algorithm>

namespace tollgate::fake {
namespace {

constexpr int64_t kEpoch = 1700000000;

FakeResponse Json(int status, std::string body) {
  FakeResponse response;
  response.status = status;
  response.headers.emplace_back("Content-Type", "application/json");
  response.body = std::move(body);
  return response;
}

// Compares without an early exit, so the fake does not model a timing oracle by accident.
bool SameText(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

FakeDevo::FakeDevo(DevoCredentials credentials, std::string base_url)
    : credentials_(std::move(credentials)), base_url_(std::move(base_url)) {}

bool FakeDevo::Owns(const std::string& path) {
  return path.rfind("/v2/", 0) == 0 || path == "/search/query" || path.rfind("/search/", 0) == 0;
}

std::string FakeDevo::Sign(const std::string& secret, const std::string& apikey,
                           const std::string& body, const std::string& timestamp) {
  std::string message = apikey + body + timestamp;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kDigits[digest[i] >> 4]);
    hex.push_back(kDigits[digest[i] & 15]);
  }
  return hex;
}

FakeResponse FakeDevo::Handle(const FakeRequest& request) {
  FakeResponse response = Dispatch(request);
  response.headers.emplace_back("x-devo-cid", RandomHex(16));
  return response;
}

FakeResponse FakeDevo::Dispatch(const FakeRequest& request) {
  if (request.path == "/search/query") {
    return request.method == "POST" ? Query(request) : DevoErrorResponse(405, "method not allowed");
  }
  std::vector<std::string> s = SplitPath(request.path);
  if (s.size() >= 4 && s[0] == "v2" && s[1] == "accounts" && !s[2].empty() && s[3] == "tokens") {
    const std::string* standalone = request.Header("standAloneToken");
    const std::string* bearer = request.Header("Authorization");
    bool ok = !credentials_.token.empty() &&
              ((standalone && SameText(*standalone, credentials_.token)) ||
               (bearer && SameText(*bearer, "Bearer " + credentials_.token)));
    if (!ok) return DevoErrorResponse(401, "invalid or missing token");
    return Tokens(request, s);
  }
  return DevoErrorResponse(404, "no such endpoint: " + request.path);
}

std::vector<FakeDevo::Token>& FakeDevo::AccountLocked(const std::string& account) {
  auto it = accounts_.find(account);
  if (it != accounts_.end()) return it->second;
  // Every account starts with two tokens, so a list is never trivially empty.
  std::vector<Token>& tokens = accounts_[account];
  tokens.push_back({"tok-1", "default-token", "devo-value-" + RandomHex(12), true, kEpoch});
  tokens.push_back({"tok-2", "ci-token", "devo-value-" + RandomHex(12), false, kEpoch + 60});
  return tokens;
}

std::string FakeDevo::TokenJson(const std::string& account, const Token& t, bool with_value) {
  std::string json = "{\"id\":" + JsonQuote(t.id) + ",\"name\":" + JsonQuote(t.name) +
                     ",\"account\":" + JsonQuote(account) +
                     ",\"enabled\":" + (t.enabled ? "true" : "false") +
                     ",\"status\":" + (t.enabled ? "\"enabled\"" : "\"disabled\"") +
                     ",\"createdAt\":" + std::to_string(t.created_at);
  if (with_value) json += ",\"token\":" + JsonQuote(t.value);
  return json + "}";
}

FakeResponse FakeDevo::Tokens(const FakeRequest& request, const std::vector<std::string>& s) {
  const std::string& m = request.method;
  const std::string& account = s[2];
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Token>& tokens = AccountLocked(account);
  if (s.size() == 4) {
    if (m == "GET") {
      // Like the real tokens API, the list carries every token's value: a gateway route that
      // shows lists to callers must redact "/*/token".
      std::string body = "[";
      for (size_t i = 0; i < tokens.size(); ++i) {
        body += (i ? "," : "") + TokenJson(account, tokens[i], true);
      }
      return Json(200, body + "]");
    }
    if (m == "POST") {
      rapidjson::Document doc;
      doc.Parse(request.body.c_str(), request.body.size());
      if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("name") ||
          !doc["name"].IsString()) {
        return DevoErrorResponse(400, "body must be {\"name\": \"...\"}");
      }
      Token t{"tok-new-" + std::to_string(next_id_++), doc["name"].GetString(),
              "devo-value-" + RandomHex(12), true, kEpoch + 3600};
      tokens.push_back(t);
      FakeResponse response = Json(201, TokenJson(account, t, true));
      response.headers.emplace_back("Location",
                                    base_url_ + "/v2/accounts/" + account + "/tokens/" + t.id);
      return response;
    }
    return DevoErrorResponse(405, "method not allowed");
  }
  auto it =
      std::find_if(tokens.begin(), tokens.end(), [&s](const Token& t) { return t.id == s[4]; });
  if (it == tokens.end()) return DevoErrorResponse(404, "token not found");
  if (s.size() == 5) {
    if (m == "GET") return Json(200, TokenJson(account, *it, true));
    if (m == "DELETE") {
      tokens.erase(it);
      FakeResponse response;
      response.status = 204;
      return response;
    }
    return DevoErrorResponse(405, "method not allowed");
  }
  if (s.size() == 6 && (s[5] == "enable" || s[5] == "disable")) {
    if (m != "POST") return DevoErrorResponse(405, "method not allowed");
    it->enabled = s[5] == "enable";
    return Json(200, TokenJson(account, *it, false));
  }
  if (s.size() == 6 && s[5] == "name") {
    if (m != "PUT" && m != "PATCH") return DevoErrorResponse(405, "method not allowed");
    rapidjson::Document doc;
    doc.Parse(request.body.c_str(), request.body.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("value") ||
        !doc["value"].IsString()) {
      return DevoErrorResponse(400, "body must be {\"value\": \"...\"}");
    }
    it->name = doc["value"].GetString();
    return Json(200, TokenJson(account, *it, false));
  }
  return DevoErrorResponse(404, "no such endpoint: " + request.path);
}

FakeResponse FakeDevo::Query(const FakeRequest& request) {
  const std::string* key = request.Header("x-logtrust-apikey");
  const std::string* timestamp = request.Header("x-logtrust-timestamp");
  const std::string* sign = request.Header("x-logtrust-sign");
  if (credentials_.hmac_key.empty() || !key || !timestamp || !sign || timestamp->empty() ||
      !SameText(*key, credentials_.hmac_key) ||
      !SameText(*sign, Sign(credentials_.hmac_secret, *key, request.body, *timestamp))) {
    return DevoErrorResponse(401, "invalid signature");
  }
  return Json(200,
              "{\"status\":0,\"msg\":\"\",\"object\":["
              "{\"eventdate\":1700000000000,\"domain\":\"fake\",\"message\":\"first row\"},"
              "{\"eventdate\":1700000060000,\"domain\":\"fake\",\"message\":\"second row\"}]}");
}

}  // namespace tollgate::fake
