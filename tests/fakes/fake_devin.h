// A small in-memory model of the Devin enterprise API (v3beta1 and v3: same routes under both
// prefixes): self, organizations, sessions, daily consumption, service users and audit logs,
// with cursor paging (`first`, `after` -> items, has_more/has_next_page, end_cursor).
//
// Errors are application/problem+json like the real API. Every request needs
// `Authorization: Bearer <token>`; with no token configured every request is 401.
//
// Thread-safety: Handle() may be called from any thread (one mutex guards the data).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tests/fakes/fake_http.h"

namespace tollgate::fake {

class FakeDevin {
 public:
  explicit FakeDevin(std::string token);

  // True for paths this model owns (/v3beta1/... and /v3/...).
  static bool Owns(const std::string& path);

  FakeResponse Handle(const FakeRequest& request);

 private:
  struct Organization {
    std::string id;
    std::string name;
    int64_t created_at;
  };
  struct Session {
    std::string id;
    std::string org_id;
    std::string prompt;
    int64_t created_at;
  };

  FakeResponse Route(const FakeRequest& request, const std::vector<std::string>& segments);
  FakeResponse ListOrganizations(const std::string& query);
  FakeResponse CreateOrganization(const std::string& body);
  FakeResponse CreateSession(const std::string& org_id, const std::string& body);
  FakeResponse GetSession(const std::string& org_id, const std::string& id);
  FakeResponse ListSessions(const std::string& org_id, const std::string& query);
  FakeResponse Consumption(const std::string& query);
  FakeResponse CreateServiceUser(const std::string& body);
  FakeResponse AuditLogs(const std::string& query);

  const std::string token_;
  std::mutex mu_;
  std::vector<Organization> organizations_;
  std::vector<Session> sessions_;
  int next_id_ = 1;
};

}  // namespace tollgate::fake
