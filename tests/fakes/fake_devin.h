// A small in-memory model of the Devin enterprise API (v3beta1 and v3: same routes under both
// prefixes): self, organizations, sessions (tags, `tags` list filter, messages), attachments,
// organization secrets, ACU limits, daily consumption, service users and audit logs, with
// cursor paging (`first`, `after` -> items, has_more/has_next_page, end_cursor).
//
// Attachments are uploaded as multipart/form-data (part `file`); their download answers 307 with
// a presigned-looking Location on `presigned_origin` (another origin than the API's, like S3's),
// which the fake serves too, without credentials: GET /presigned/<uuid>/<name>?X-Amz-Signature=..
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
  // `presigned_origin`: scheme://host:port of the attachment download URLs ("http://localhost:N").
  FakeDevin(std::string token, std::string presigned_origin);

  // True for paths this model owns (/v3beta1/... and /v3/...).
  static bool Owns(const std::string& path);
  // True for the presigned attachment downloads (/presigned/...), answered by HandlePresigned.
  static bool IsPresigned(const std::string& path);

  FakeResponse Handle(const FakeRequest& request);
  FakeResponse HandlePresigned(const FakeRequest& request);

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
    std::vector<std::string> tags;
    std::vector<std::string> messages;
    std::string echo;  // `,"max_acu_limit":..` etc. as created, repeated in every answer
  };
  struct Attachment {
    std::string id;
    std::string org_id;
    std::string name;
    std::string content_type;
    std::string data;
    std::string signature;  // of the latest presigned URL ("" before the first download)
  };
  struct Secret {
    std::string id;
    std::string org_id;
    std::string key;
    std::string type;
  };

  FakeResponse Route(const FakeRequest& request, const std::vector<std::string>& segments);
  FakeResponse ListOrganizations(const std::string& query);
  FakeResponse CreateOrganization(const std::string& body);
  FakeResponse CreateSession(const std::string& org_id, const std::string& body);
  FakeResponse GetSession(const std::string& org_id, const std::string& id);
  FakeResponse ListSessions(const std::string& org_id, const std::string& query);
  FakeResponse SessionMessages(const FakeRequest& request, const std::string& org_id,
                               const std::string& id);
  FakeResponse UploadAttachment(const FakeRequest& request, const std::string& org_id);
  FakeResponse DownloadAttachment(const std::string& org_id, const std::string& id,
                                  const std::string& name);
  FakeResponse ListSecrets(const std::string& org_id, const std::string& query);
  FakeResponse CreateSecret(const std::string& org_id, const std::string& body);
  FakeResponse DeleteSecret(const std::string& org_id, const std::string& id);
  FakeResponse ListAcuLimits(const std::string& query);
  FakeResponse SetAcuLimit(const std::string& org_id, const std::string& body);
  FakeResponse RemoveAcuLimit(const std::string& org_id);
  FakeResponse Consumption(const std::string& query);
  FakeResponse CreateServiceUser(const std::string& body);
  FakeResponse AuditLogs(const std::string& query);

  const std::string token_;
  const std::string presigned_origin_;
  std::mutex mu_;
  std::vector<Organization> organizations_;
  std::vector<Session> sessions_;
  std::vector<Attachment> attachments_;
  std::vector<Secret> secrets_;  // values are never kept: the API never shows them again
  std::map<std::string, int64_t> acu_limits_;  // org_id -> cycle_acu_limit
  int next_id_ = 1;
};

}  // namespace tollgate::fake
