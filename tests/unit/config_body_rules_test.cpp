// A rule's `body` and `cost` (issue 12): what the model holds, and errors naming the pointer.
#include <gtest/gtest.h>

#include <string>

#include "config/loader.h"
#include "tests/unit/config_test_helpers.h"

namespace tollgate::config {
namespace {

using testing::AllErrors;
using testing::DummySecrets;
using testing::HasError;

// A config whose one rule carries `rule_extra` (members of the rule object, after a comma) and
// whose caller carries `attributes`.
LoadResult Load(const std::string& rule_extra,
                const std::string& attributes = R"({"devin_user_id": ["u-1"]})") {
  std::string json = R"json({
  "upstreams": {
    "devin": {"base_url": "https://api.devin.ai",
              "auth": {"type": "bearer", "secret_env": "DEVIN_SERVICE_USER_TOKEN"},
              "limits": [{"name": "acu", "rate": "100/h", "burst": 100}]}
  },
  "roles": {
    "creator": {"rules": [
      {"upstream": "devin", "methods": ["POST"], "path": "/v3/organizations/o/sessions")json" +
                     rule_extra + R"json(}
    ]}
  },
  "callers": {
    "team": {"key_sha256": ["daff0a6505b26e14ac642a2cbc3a08b61be19b30d4c277664fc1cb3725de4121"],
             "roles": ["creator"], "attributes": )json" +
                     attributes + R"json(}
  }
})json";
  return LoadConfigString(json, DummySecrets().source());
}

const Rule& TheRule(const LoadResult& result) {
  return result.config->roles.at("creator").rules[0];
}

constexpr const char* kRule = "/roles/creator/rules/0";

TEST(ConfigBodyRules, TheIssuesExampleBuildsTheModel) {
  LoadResult result = Load(R"(, "cost": "/max_acu_limit", "body": {
    "/max_acu_limit": {"max": 50, "default": 10, "on_exceed": "clamp"},
    "/devin_mode": {"enum": ["normal"]},
    "/advanced_mode": {"forbid": true},
    "/prompt": {"require": true},
    "/tags": {"append": ["team:{caller}"]},
    "/create_as_user_id": {"set": "caller.devin_user_id"},
    "/who": {"set": "{caller}"},
    "/flags": {"set": {"a": 1}},
    "/a~1b": {"set": "literal", "min": 1, "on_exceed": "reject"}
  })");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  const Rule& rule = TheRule(result);
  EXPECT_EQ(rule.cost_pointer, "/max_acu_limit");
  ASSERT_EQ(rule.body.size(), 9u);
  EXPECT_EQ(rule.body[0].pointer, "/max_acu_limit");
  EXPECT_EQ(rule.body[0].max, 50);
  EXPECT_TRUE(rule.body[0].clamp);
  EXPECT_EQ(rule.body[0].default_json, "10");
  EXPECT_EQ(rule.body[1].enum_json, std::vector<std::string>{"\"normal\""});
  EXPECT_TRUE(rule.body[2].forbid);
  EXPECT_TRUE(rule.body[3].require);
  EXPECT_EQ(rule.body[4].append, std::vector<std::string>{"team:{caller}"});
  EXPECT_EQ(rule.body[5].set, "caller.devin_user_id");
  EXPECT_EQ(rule.body[6].set, "{caller}");
  EXPECT_EQ(rule.body[7].set, R"({"a":1})");
  EXPECT_EQ(rule.body[8].set, "\"literal\"");  // a literal string is kept as JSON text
  EXPECT_FALSE(rule.body[8].clamp);
  EXPECT_EQ(rule.body[8].min, 1);
}

TEST(ConfigBodyRules, AnIntegerCostIsStillACost) {
  LoadResult result = Load(R"(, "cost": 3)");
  ASSERT_TRUE(result.ok()) << AllErrors(result);
  EXPECT_EQ(TheRule(result).cost, 3u);
  EXPECT_EQ(TheRule(result).cost_pointer, "");
}

TEST(ConfigBodyRules, ACostThatIsNotAPointerIsNamed) {
  LoadResult result = Load(R"(, "cost": "max_acu_limit")");
  EXPECT_TRUE(HasError(result, std::string(kRule) + "/cost", "JSON pointer")) << AllErrors(result);
}

TEST(ConfigBodyRules, BadPointersAreNamedByTheirEscapedKey) {
  LoadResult result = Load(R"(, "body": {"tags": {"forbid": true}, "/a~2": {"forbid": true}})");
  EXPECT_TRUE(HasError(result, std::string(kRule) + "/body/tags", "JSON pointer"))
      << AllErrors(result);
  EXPECT_TRUE(HasError(result, std::string(kRule) + "/body/~1a~02", "~0")) << AllErrors(result);
}

TEST(ConfigBodyRules, WrongOperatorTypesAndOnExceedValuesAreSchemaErrors) {
  const std::string at = std::string(kRule) + "/body/~1n";
  EXPECT_TRUE(HasError(Load(R"(, "body": {"/n": {"max": "50"}})"), at + "/max", "number"));
  EXPECT_TRUE(
      HasError(Load(R"(, "body": {"/n": {"max": 5, "on_exceed": "cap"}})"), at + "/on_exceed", ""));
  EXPECT_TRUE(HasError(Load(R"(, "body": {"/n": {"append": [1]}})"), at + "/append/0", "string"));
  EXPECT_TRUE(HasError(Load(R"(, "body": {"/n": {"maximum": 5}})"), at, "maximum"));
}

TEST(ConfigBodyRules, ContradictionsAreErrors) {
  const std::string at = std::string(kRule) + "/body/~1n";
  EXPECT_TRUE(HasError(Load(R"(, "body": {"/n": {"min": 5, "max": 1}})"), at + "/min", "max"));
  EXPECT_TRUE(
      HasError(Load(R"(, "body": {"/n": {"on_exceed": "clamp"}})"), at + "/on_exceed", "needs"));
  EXPECT_TRUE(
      HasError(Load(R"(, "body": {"/n": {"forbid": true, "set": 1}})"), at + "/forbid", "set"));
}

TEST(ConfigBodyRules, SetFromAnAttributeWithSeveralValuesIsAnErrorOnTheCaller) {
  LoadResult result = Load(R"(, "body": {"/create_as_user_id": {"set": "caller.devin_user_id"}})",
                           R"({"devin_user_id": ["u-1", "u-2"]})");
  EXPECT_TRUE(HasError(result, "/callers/team/attributes/devin_user_id", "2 values"))
      << AllErrors(result);
  EXPECT_TRUE(HasError(result, "/callers/team/attributes/devin_user_id",
                       std::string(kRule) + "/body/~1create_as_user_id"))
      << AllErrors(result);
}

TEST(ConfigBodyRules, SetNamingNoAttributeIsAnError) {
  LoadResult result = Load(R"(, "body": {"/x": {"set": "caller."}})");
  EXPECT_TRUE(HasError(result, std::string(kRule) + "/body/~1x/set", "attribute"))
      << AllErrors(result);
}

}  // namespace
}  // namespace tollgate::config
