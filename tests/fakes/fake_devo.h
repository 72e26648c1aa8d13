// A small in-memory model of two Devo APIs:
// - tokens API v2 under /v2/accounts/{account}/tokens (list and get with the token values,
//   create -> 201 + absolute Location, enable, disable, rename, delete), authenticated by
//   `standAloneToken: <token>` or `Authorization: Bearer <token>`;
// - the query API, POST /search/query, authenticated by the HMAC headers x-logtrust-apikey,
//   x-logtrust-timestamp and x-logtrust-sign = hex HMAC-SHA256(secret, apikey + body + timestamp).
// Errors are {"error":{"code":..,"message":..}}; every response carries a random x-devo-cid.
//
// Thread-safety: Handle() may be called from any thread (one mutex guards the data).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tests/fakes/fake_http.h"

namespace tollgate::fake {

struct DevoCredentials {
  std::string token;        // tokens API
  std::string hmac_key;     // query API
  std::string hmac_secret;  // query API
};

class FakeDevo {
 public:
  // `base_url` ("http://127.0.0.1:PORT") makes the absolute Location of created tokens.
  FakeDevo(DevoCredentials credentials, std::string base_url);

  // True for paths this model owns (/v2/... and /search/...).
  static bool Owns(const std::string& path);

  // The answer, always with an x-devo-cid header.
  FakeResponse Handle(const FakeRequest& request);

  // Hex HMAC-SHA256(secret, apikey + body + timestamp), as the query API expects.
  static std::string Sign(const std::string& secret, const std::string& apikey,
                          const std::string& body, const std::string& timestamp);

 private:
  struct Token {
    std::string id;
    std::string name;
    std::string value;
    bool enabled = true;
    int64_t created_at = 0;
  };

  FakeResponse Dispatch(const FakeRequest& request);
  FakeResponse Tokens(const FakeRequest& request, const std::vector<std::string>& segments);
  FakeResponse Query(const FakeRequest& request);
  std::vector<Token>& AccountLocked(const std::string& account);
  static std::string TokenJson(const std::string& account, const Token& token, bool with_value);

  const DevoCredentials credentials_;
  const std::string base_url_;
  std::mutex mu_;
  std::map<std::string, std::vector<Token>> accounts_;
  int next_id_ = 1;
};

}  // namespace tollgate::fake
