// Session ownership fields (issue 12): record_owner, owner_group, `where` "owner", query and
// ownership_ttl_days, and each bad value named by its JSON pointer.
#include <gtest/gtest.h>

#include <string>

#include "config/loader.h"
#include "tests/unit/config_test_helpers.h"

namespace tollgate::config {
namespace {

using testing::AllErrors;
using testing::DummySecrets;
using testing::HasError;

// A config with one rule (its members after upstream/path given as JSON text) and, optionally,
// top-level members.
LoadResult Load(const std::string& rule, const std::string& top = "") {
  std::string text = R"({"upstreams": {"devin": {"base_url": "https://api.devin.ai",)"
                     R"( "auth": {"type": "bearer", "secret_env": "TOKEN"}}},)"
                     R"( "roles": {"team": {"rules": [{"upstream": "devin",)" +
                     rule +
                     R"(}]}}, "callers": {"a": {"key_sha256": )"
                     R"(["daff0a6505b26e14ac642a2cbc3a08b61be19b30d4c277664fc1cb3725de4121"],)"
                     R"( "roles": ["team"], "attributes": {"team": ["x"]}}})" +
                     (top.empty() ? "" : ", " + top) + "}";
  return LoadConfigString(text, DummySecrets().source());
}

const char* kSession = R"( "path": "/v3/organizations/{org}/sessions/{devin_id}")";

TEST(ConfigOwnership, TheFieldsParse) {
  LoadResult created =
      Load(R"( "methods": ["POST"], "path": "/v3/organizations/{org}/sessions",)"
           R"( "record_owner": "/session_id"})" +
               std::string(R"(, {"upstream": "devin", "methods": ["GET"],)") + kSession +
               R"(, "where": {"devin_id": "owner"}, "owner_group": "team"},)"
               R"( {"upstream": "devin", "path": "/v3/organizations/{org}/sessions",)"
               R"( "query": {"tags": "team:{caller}"})",
           R"("ownership_ttl_days": 30)");
  ASSERT_TRUE(created.ok()) << AllErrors(created);
  const std::vector<Rule>& rules = created.config->roles.at("team").rules;
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules[0].record_owner, "/session_id");
  EXPECT_EQ(rules[1].where.at("devin_id"), "owner");
  EXPECT_EQ(rules[1].owner_group, "team");
  EXPECT_EQ(rules[2].query.at("tags"), "team:{caller}");
  EXPECT_EQ(created.config->ownership_ttl_days, 30);
}

TEST(ConfigOwnership, TtlDefaultsToNinetyDays) {
  LoadResult result = Load(kSession);
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_EQ(result.config->ownership_ttl_days, 90);
  EXPECT_TRUE(HasError(Load(kSession, R"("ownership_ttl_days": 0)"), "/ownership_ttl_days", ""));
}

TEST(ConfigOwnership, RecordOwnerMustBeAPointer) {
  for (const char* bad : {R"("session_id")", R"("")", R"("/a~2")", R"("/a~")"}) {
    LoadResult result = Load(std::string(kSession) + R"(, "record_owner": )" + bad);
    EXPECT_TRUE(HasError(result, "/roles/team/rules/0/record_owner", "JSON pointer"))
        << bad << ": " << AllErrors(result);
  }
}

TEST(ConfigOwnership, OwnerInWhereNeedsAParamOfTheTemplateAndAnAllowRule) {
  LoadResult result = Load(std::string(kSession) + R"(, "where": {"session": "owner"})");
  EXPECT_TRUE(HasError(result, "/roles/team/rules/0/where/session", "not a {parameter}"))
      << AllErrors(result);
  result = Load(std::string(kSession) + R"(, "effect": "deny", "where": {"devin_id": "owner"})");
  EXPECT_TRUE(HasError(result, "/roles/team/rules/0/where/devin_id", "allow rule"))
      << AllErrors(result);
  result = Load(std::string(kSession) + R"(, "where": {"devin_id": "caller.owner"})");
  EXPECT_TRUE(HasError(result, "/roles/team/rules/0/where/devin_id", "\"owner\""))
      << AllErrors(result);
}

TEST(ConfigOwnership, OwnerGroupNeedsAnOwnerCheckAndAnAttributeName) {
  LoadResult result = Load(std::string(kSession) + R"(, "owner_group": "team")");
  EXPECT_TRUE(HasError(result, "/roles/team/rules/0/owner_group", "\"owner\""))
      << AllErrors(result);
  result = Load(std::string(kSession) +
                R"(, "where": {"devin_id": "owner"}, "owner_group": "caller.team")");
  EXPECT_TRUE(HasError(result, "/roles/team/rules/0/owner_group", "the attribute itself"))
      << AllErrors(result);
  result =
      Load(std::string(kSession) + R"(, "where": {"devin_id": "owner"}, "owner_group": "te am")");
  EXPECT_TRUE(HasError(result, "/roles/team/rules/0/owner_group", "attribute name"))
      << AllErrors(result);
}

TEST(ConfigOwnership, QueryNamesAreNotEmptyAndValuesAreStrings) {
  LoadResult result = Load(std::string(kSession) + R"(, "query": {"": "x"})");
  EXPECT_TRUE(HasError(result, "/roles/team/rules/0/query", "needs a name")) << AllErrors(result);
  result = Load(std::string(kSession) + R"(, "query": {"tags": 1})");
  EXPECT_TRUE(HasError(result, "/roles/team/rules/0/query/tags", "")) << AllErrors(result);
}

}  // namespace
}  // namespace tollgate::config
