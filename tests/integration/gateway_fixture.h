// Shared set-up for the gateway's integration tests: one fake Devin/Devo upstream, a gateway
// with a config that exercises every upstream auth type, and the callers' keys.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "tests/support/harness.h"
#include "upstream/upstream_auth.h"

namespace tollgate::testing {

inline const std::string kDataKey = "tg_it_data_team_key_0123456789";
inline const std::string kOpsKey = "tg_it_ops_team_key_9876543210";
inline const std::string kDisabledKey = "tg_it_disabled_key";
inline const std::string kExpiredKey = "tg_it_expired_key";
// Admin tokens of the standard config: `it-ops` may reload (and read), `it-reader` only read.
inline const std::string kAdminToken = "tga_it_admin_token_0123456789";
inline const std::string kReaderAdminToken = "tga_it_reader_token_9876543210";
// The standard config's admin section, for a test that takes it out.
inline const std::string kStandardAdmin = R"(
  "admin": {"tokens": [
    {"name": "it-ops", "sha256": "${ADMIN_HASH}", "scopes": ["reload", "read"]},
    {"name": "it-reader", "sha256": "${READER_HASH}", "scopes": ["read"]}]},)";

inline HeaderList Bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

// A config with three upstreams on the one fake: `devin` (bearer), `devo` (standAloneToken
// header) and `devo-query` (Devo HMAC signing). ${RULES_DATA} lets a test narrow the data
// team's rules; by default it may call everything.
inline std::string StandardConfig(const std::string& extra_top_level = "",
                                  const std::string& data_rules = "") {
  std::string rules = data_rules.empty() ? R"([
        {"upstream": "devin", "path": "/**"},
        {"upstream": "devo", "path": "/**"},
        {"upstream": "devo-query", "path": "/**"}])"
                                         : data_rules;
  return R"({
  "listen": "${LISTEN}", "admin_listen": "${ADMIN}", "threads": 2,
  "max_body_bytes": 65536,
  "audit": {"file": "${AUDIT}"},)" +
         kStandardAdmin + extra_top_level + R"(
  "upstreams": {
    "devin": {"base_url": "${UPSTREAM}", "timeout_ms": 10000, "connect_timeout_ms": 5000,
              "auth": {"type": "bearer", "secret_env": "IT_DEVIN_TOKEN"}},
    "devo": {"base_url": "${UPSTREAM}", "timeout_ms": 2000,
             "auth": {"type": "header", "header": "standAloneToken", "secret_env": "IT_DEVO_TOKEN"}},
    "devo-query": {"base_url": "${UPSTREAM}",
                   "auth": {"type": "devo_hmac", "key_env": "IT_DEVO_KEY", "secret_env": "IT_DEVO_SECRET"}},
    "nowhere": {"base_url": "http://127.0.0.1:${DEAD_PORT}", "connect_timeout_ms": 500,
                "auth": {"type": "bearer", "secret_env": "IT_DEVIN_TOKEN"}}
  },
  "roles": {
    "everything": {"rules": )" +
         rules + R"(},
    "nowhere-caller": {"rules": [{"upstream": "nowhere", "path": "/**"}]}
  },
  "callers": {
    "data-team": {"key_sha256": ["${DATA_HASH}"], "roles": ["everything", "nowhere-caller"],
                  "attributes": {"devin_orgs": ["org-123"], "devo_accounts": ["sampleAccount"]}},
    "ops-team": {"key_sha256": ["${OPS_HASH}"], "roles": ["everything"]},
    "disabled-team": {"key_sha256": ["${DISABLED_HASH}"], "roles": ["everything"], "disabled": true},
    "expired-team": {"key_sha256": ["${EXPIRED_HASH}"], "roles": ["everything"],
                     "expires": "2020-01-01T00:00:00Z"}
  }
})";
}

inline GatewayOptions StandardOptions(const FakeUpstream& fake, const std::string& config) {
  GatewayOptions o;
  o.config = config;
  o.upstream = fake.base_url();
  o.env = {{"IT_DEVIN_TOKEN", fake.options().devin_token},
           {"IT_DEVO_TOKEN", fake.options().devo_token},
           {"IT_DEVO_KEY", fake.options().devo_hmac_key},
           {"IT_DEVO_SECRET", fake.options().devo_hmac_secret}};
  o.vars = {{"DATA_HASH", upstream::Sha256Hex(kDataKey)},
            {"OPS_HASH", upstream::Sha256Hex(kOpsKey)},
            {"DISABLED_HASH", upstream::Sha256Hex(kDisabledKey)},
            {"EXPIRED_HASH", upstream::Sha256Hex(kExpiredKey)},
            {"ADMIN_HASH", upstream::Sha256Hex(kAdminToken)},
            {"READER_HASH", upstream::Sha256Hex(kReaderAdminToken)},
            {"DEAD_PORT", std::to_string(FreePort())}};
  return o;
}

// A fake upstream and a gateway in front of it, fresh for each test.
class GatewayTest : public ::testing::Test {
 protected:
  void StartGateway(const std::string& config) {
    gateway_ = std::make_unique<GatewayProcess>(StandardOptions(fake_, config));
    ASSERT_TRUE(gateway_->started()) << gateway_->log();
  }
  void SetUp() override { ASSERT_TRUE(fake_.started()) << fake_.log(); }

  HttpResponse Call(const std::string& method, const std::string& path,
                    const std::string& key = kDataKey, const std::string& body = "",
                    HeaderList headers = {}) {
    if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + key);
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    return Http(method, gateway_->url() + path, headers, body);
  }

  // A call to the admin listener with `Authorization: Bearer <token>` (none when empty).
  HttpResponse AdminCall(const std::string& method, const std::string& path,
                         const std::string& token = kAdminToken, HeaderList headers = {},
                         const std::string& body = "") {
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    return Http(method, gateway_->admin_url() + path, headers, body);
  }

  FakeUpstream fake_;
  std::unique_ptr<GatewayProcess> gateway_;
};

}  // namespace tollgate::testing
