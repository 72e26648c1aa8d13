// Builds the typed Config (config/model.h) from a document that already passed the JSON Schema,
// doing the semantic checks the schema cannot express and resolving secrets. Internal to
// config/: LoadConfigString is its only user. One ModelBuilder per load; not thread-safe.
#pragma once

#include <rapidjson/document.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "config/loader.h"

namespace tollgate::config {

class ModelBuilder {
 public:
  // `removed`: pointers the schema check removed (already reported); references to them are not
  // reported again.
  ModelBuilder(const SecretSource& secrets, const std::set<std::string>& removed,
               std::vector<ConfigError>* errors)
      : secrets_(secrets), removed_(removed), errors_(errors) {}

  // Every value in `root` must have the type the schema promises. Errors go to *errors; the
  // returned Config is meaningful only when none were added.
  Config Build(const rapidjson::Value& root);

 private:
  void Error(const std::string& pointer, const std::string& message) {
    errors_->push_back({pointer, message});
  }
  bool WasRemoved(const std::string& pointer) const;

  // model_builder.cpp: the server, Redis, audit and upstream sections, limits.
  void BuildServer(const rapidjson::Value& root, Config* config);
  void BuildRedis(const rapidjson::Value& redis, Config* config);
  std::vector<RedisEndpoint> BuildRedisAddresses(const rapidjson::Value& list,
                                                 const std::string& pointer);
  void BuildAudit(const rapidjson::Value& audit, Config* config);
  Upstream BuildUpstream(const std::string& name, const rapidjson::Value& value,
                         const std::string& pointer);
  // An upstream's forward_headers and client_ip_headers.
  void BuildForwarding(const rapidjson::Value& value, const std::string& pointer,
                       Upstream* upstream);
  UpstreamAuth BuildAuth(const rapidjson::Value& auth, const std::string& pointer);
  // A limit's quota fields into `limit->quota`; false (after an error) when they are wrong.
  bool BuildQuota(const rapidjson::Value& value, const std::string& at, Limit* limit);
  // wait_ms and max_waiting of a token bucket (issue 14).
  bool BuildWait(const rapidjson::Value& value, const std::string& at, Limit* limit);
  std::vector<Limit> BuildLimits(const rapidjson::Value& owner, const std::string& pointer,
                                 LimitScope default_scope);

  // model_builder_admin.cpp: admin tokens.
  void BuildAdmin(const rapidjson::Value& admin, Config* config);

  // model_builder_access.cpp: roles, rules and callers.
  Role BuildRole(const std::string& name, const rapidjson::Value& value, const std::string& pointer,
                 const Config& config);
  Rule BuildRule(const std::string& role, size_t index, const rapidjson::Value& value,
                 const std::string& pointer, const Config& config);
  void CheckWhere(const rapidjson::Value& where, const std::string& pointer,
                  const std::vector<std::string>& params, Rule* rule);
  void CheckCost(const Rule& rule, const Config& config);
  // record_owner, owner_group, query (issue 12; model_builder_access.cpp).
  void BuildOwnership(const rapidjson::Value& value, const std::string& pointer, Rule* rule);
  Caller BuildCaller(const std::string& name, const rapidjson::Value& value,
                     const std::string& pointer, const Config& config);

  // model_builder_body.cpp: a rule's `body` and `cost` (issue 12), and the callers whose
  // attributes a `set` reads.
  void BuildBody(const rapidjson::Value& rule_value, const std::string& pointer, Rule* rule);
  void CheckSetAttributes(const Caller& caller, const std::string& pointer, const Config& config);

  struct SeenLimit {
    Limit limit;
    std::string pointer;
  };

  const SecretSource& secrets_;
  const std::set<std::string>& removed_;
  std::vector<ConfigError>* errors_;
  std::map<std::string, SeenLimit> limits_by_name_;       // a name is one bucket everywhere
  std::map<std::string, std::string> key_owner_pointer_;  // key hash -> pointer of first use
};

// model_builder_admin.cpp: the fingerprint of each top-level entry (Config::entry_digests).
std::map<std::string, std::string> DigestEntries(const rapidjson::Value& root);

}  // namespace tollgate::config
