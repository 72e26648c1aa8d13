// FindNarrowDenies (policy_warnings.h), and the shipped example config it exists for (issue 10,
// point 9: a deny with `where` only denied inside the caller's own organizations).
#include <gtest/gtest.h>

#include <string>

#include "config/model.h"
#include "policies/policy.h"
#include "policies/policy_warnings.h"
#include "tests/unit/config_test_helpers.h"
#include "tests/unit/policy_test_helpers.h"

namespace tollgate::policies {
namespace {

using config::Effect;
using config::testing::AllErrors;
using config::testing::DummySecrets;
using config::testing::FakeSecrets;

config::Rule MakeRule(std::vector<std::string> methods, std::string path,
                      Effect effect = Effect::kAllow, std::map<std::string, std::string> where = {},
                      std::string upstream = "devin") {
  config::Rule rule;
  rule.upstream = std::move(upstream);
  rule.methods = std::move(methods);
  rule.path = std::move(path);
  rule.effect = effect;
  rule.where = std::move(where);
  return rule;
}

using testing::AddRole;

const std::map<std::string, std::string> kOrgWhere = {{"org_id", "devin_orgs"}};

// One deny rule with `where` in role "operator", and the given allow rule in role "other".
std::vector<PolicyWarning> WarningsFor(config::Rule allow,
                                       config::Rule deny = MakeRule({"DELETE"},
                                                                    "/v3/orgs/{org_id}/**",
                                                                    Effect::kDeny, kOrgWhere)) {
  config::Config config;
  AddRole(&config, "operator", {std::move(deny)});
  AddRole(&config, "other", {std::move(allow)});
  return FindNarrowDenies(config);
}

// The roles of config/tollgate.example.json as shipped before issue 10, reduced to the two that
// make the hole: the operator's deny has `where`, the admin allows every method everywhere.
constexpr const char* kExampleBeforePoint9 = R"json({
  "upstreams": {"devin": {"base_url": "https://api.devin.ai",
                          "auth": {"type": "bearer", "secret_env": "DEVIN_SERVICE_USER_TOKEN"}}},
  "roles": {
    "devin-operator": {"rules": [
      {"upstream": "devin", "methods": ["GET"], "path": "/v3beta1/organizations/{org_id}/sessions/**",
       "where": {"org_id": "caller.devin_orgs"}},
      {"upstream": "devin", "methods": ["DELETE"], "path": "/v3beta1/organizations/{org_id}/**",
       "effect": "deny", "description": "Operators never delete anything, whatever else allows it",
       "where": {"org_id": "caller.devin_orgs"}}
    ]},
    "devin-admin": {"rules": [
      {"upstream": "devin", "path": "/v3beta1/**"},
      {"upstream": "devin", "path": "/v3/**"}
    ]}
  }
})json";

TEST(PolicyWarnings, Point9_DenyNarrowerThanAnAllowIsWarned) {
  FakeSecrets secrets = DummySecrets();
  config::LoadResult loaded = config::LoadConfigString(kExampleBeforePoint9, secrets.source());
  ASSERT_TRUE(loaded.ok()) << AllErrors(loaded);
  std::vector<PolicyWarning> warnings = FindNarrowDenies(*loaded.config);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].pointer, "/roles/devin-operator/rules/1");
  EXPECT_EQ(warnings[0].other_pointer, "/roles/devin-admin/rules/0");
  for (const char* part :
       {"/roles/devin-operator/rules/1", "/roles/devin-admin/rules/0", "narrower", "DELETE",
        "{org_id} is in caller.devin_orgs", "devin-operator and devin-admin"}) {
    EXPECT_NE(warnings[0].message.find(part), std::string::npos)
        << part << " missing from: " << warnings[0].message;
  }
}

config::LoadResult LoadExample(const char* file) {
  FakeSecrets secrets = DummySecrets();
  return config::LoadConfigFile(std::string(TOLLGATE_SOURCE_DIR) + "/config/" + file,
                                secrets.source());
}

TEST(PolicyWarnings, ShippedConfigsHaveNoNarrowDeny) {
  for (const char* file : {"tollgate.example.json", "demo.json"}) {
    config::LoadResult loaded = LoadExample(file);
    ASSERT_TRUE(loaded.ok()) << file << ": " << AllErrors(loaded);
    for (const PolicyWarning& w : FindNarrowDenies(*loaded.config)) {
      ADD_FAILURE() << file << ": " << w.message;
    }
  }
}

// The example's words: "Operators never delete anything, whatever else allows it". A caller who
// is an operator in org-123 and also holds the all-organizations admin role is denied DELETE in
// an organization that is not theirs, as well as in their own.
TEST(PolicyWarnings, Point9_ShippedExampleDeniesDeleteElsewhereToAnOperatorWithAnAllOrgsRole) {
  config::LoadResult loaded = LoadExample("tollgate.example.json");
  ASSERT_TRUE(loaded.ok()) << AllErrors(loaded);
  std::string error;
  std::unique_ptr<const Policy> policy = Policy::Compile(*loaded.config, &error);
  ASSERT_NE(policy, nullptr) << error;

  config::Caller caller;
  caller.name = "operator-and-admin";
  caller.roles = {"devin-operator", "devin-admin"};
  caller.attributes = {{"devin_orgs", {"org-123"}}};
  for (const char* path :
       {"/v3beta1/organizations/org-999/sessions/s1", "/v3beta1/organizations/org-123/sessions/s1",
        "/v3beta1/organizations/org-999", "/v3/organizations/org-999/sessions/s1"}) {
    PolicyDecision d = policy->Decide(caller, "DELETE", "devin", path);
    EXPECT_EQ(d.outcome, PolicyDecision::Outcome::kDeny) << path;
  }
  // The admin role still grants everything else there.
  EXPECT_TRUE(policy->Decide(caller, "GET", "devin", "/v3beta1/organizations/org-999/sessions/s1")
                  .allowed());
  // And the platform team, which holds devin-admin without devin-operator, may still delete.
  EXPECT_TRUE(policy
                  ->Decide(loaded.config->callers.at("platform-team"), "DELETE", "devin",
                           "/v3beta1/organizations/org-999/sessions/s1")
                  .allowed());
}

TEST(PolicyWarnings, AllowWithTheSameTemplateAndNoWhereIsWarned) {
  EXPECT_EQ(WarningsFor(MakeRule({"DELETE"}, "/v3/orgs/{org_id}/**")).size(), 1u);
  // Any parameter name: it is the position that counts.
  EXPECT_EQ(WarningsFor(MakeRule({}, "/v3/orgs/{o}/**")).size(), 1u);
}

TEST(PolicyWarnings, AllowRestPrefixOfTheDenyIsWarned) {
  EXPECT_EQ(WarningsFor(MakeRule({}, "/**")).size(), 1u);
  EXPECT_EQ(WarningsFor(MakeRule({}, "/v3/**")).size(), 1u);
  EXPECT_EQ(WarningsFor(MakeRule({}, "/v3/orgs/**")).size(), 1u);
}

TEST(PolicyWarnings, AllowInsideTheDenyButOutsideItsWhereIsWarned) {
  // Narrower than the deny's template, but not limited to the caller's orgs.
  EXPECT_EQ(WarningsFor(MakeRule({"DELETE"}, "/v3/orgs/{x}/sessions/{s}")).size(), 1u);
  // A literal organization: a caller whose devin_orgs lacks it may still DELETE there.
  EXPECT_EQ(WarningsFor(MakeRule({"DELETE"}, "/v3/orgs/acme/sessions")).size(), 1u);
  // `where` on another attribute does not imply the deny's.
  EXPECT_EQ(WarningsFor(MakeRule({"DELETE"}, "/v3/orgs/{org_id}/**", Effect::kAllow,
                                 {{"org_id", "admin_orgs"}}))
                .size(),
            1u);
}

TEST(PolicyWarnings, AllowLimitedTheSameWayIsNotWarned) {
  EXPECT_TRUE(
      WarningsFor(MakeRule({"DELETE"}, "/v3/orgs/{org_id}/**", Effect::kAllow, kOrgWhere)).empty());
  EXPECT_TRUE(
      WarningsFor(MakeRule({}, "/v3/orgs/{o}/sessions", Effect::kAllow, {{"o", "devin_orgs"}}))
          .empty());
}

TEST(PolicyWarnings, DenyWithoutWhereIsNotWarned) {
  EXPECT_TRUE(WarningsFor(MakeRule({}, "/**"), MakeRule({"DELETE"}, "/**", Effect::kDeny)).empty());
  EXPECT_TRUE(
      WarningsFor(MakeRule({}, "/**"), MakeRule({"DELETE"}, "/v3/orgs/{org_id}/**", Effect::kDeny))
          .empty());
}

TEST(PolicyWarnings, NoSharedMethodIsNotWarned) {
  EXPECT_TRUE(WarningsFor(MakeRule({"GET", "POST"}, "/**")).empty());
  // GET stands for HEAD on both sides, as in Decide.
  auto deny_get = MakeRule({"GET"}, "/v3/orgs/{org_id}/**", Effect::kDeny, kOrgWhere);
  std::vector<PolicyWarning> head = WarningsFor(MakeRule({"HEAD"}, "/**"), deny_get);
  ASSERT_EQ(head.size(), 1u);
  EXPECT_NE(head[0].message.find("HEAD"), std::string::npos) << head[0].message;
  EXPECT_TRUE(WarningsFor(MakeRule({"POST"}, "/**"), deny_get).empty());
}

TEST(PolicyWarnings, DisjointPathsOrUpstreamsAreNotWarned) {
  EXPECT_TRUE(WarningsFor(MakeRule({}, "/v2/**")).empty());
  EXPECT_TRUE(WarningsFor(MakeRule({}, "/v3/users/**")).empty());
  // The deny's path needs an organization segment; `/v3/orgs` itself is not under it.
  EXPECT_TRUE(WarningsFor(MakeRule({}, "/v3/orgs")).empty());
  EXPECT_TRUE(WarningsFor(MakeRule({}, "/v3")).empty());
  EXPECT_TRUE(WarningsFor(MakeRule({}, "/")).empty());
  EXPECT_TRUE(WarningsFor(MakeRule({}, "/**", Effect::kAllow, {}, "devo")).empty());
}

TEST(PolicyWarnings, WhereOnAnotherSegmentDoesNotImplyTheDenys) {
  auto deny = MakeRule({"DELETE"}, "/orgs/{org}/users/{user}", Effect::kDeny,
                       {{"org", "orgs"}, {"user", "users"}});
  // The allow limits the user segment the same way, not the org segment.
  std::vector<PolicyWarning> w = WarningsFor(
      MakeRule({"DELETE"}, "/orgs/{a}/users/{b}", Effect::kAllow, {{"b", "users"}}), deny);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].message.find("{org} is in caller.orgs"), std::string::npos) << w[0].message;
  EXPECT_EQ(w[0].message.find("{user} is in caller.users"), std::string::npos) << w[0].message;
  // The same attribute on the wrong segment implies nothing.
  EXPECT_EQ(WarningsFor(MakeRule({"DELETE"}, "/orgs/{a}/users/{b}", Effect::kAllow,
                                 {{"a", "users"}, {"b", "orgs"}}),
                        deny)
                .size(),
            1u);
}

TEST(PolicyWarnings, AnAllowInTheDenysOwnRoleCounts) {
  config::Config config;
  AddRole(&config, "operator",
          {MakeRule({}, "/v3/**"),
           MakeRule({"DELETE"}, "/v3/orgs/{org_id}/**", Effect::kDeny, kOrgWhere)});
  std::vector<PolicyWarning> w = FindNarrowDenies(config);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].pointer, "/roles/operator/rules/1");
  EXPECT_EQ(w[0].other_pointer, "/roles/operator/rules/0");
  EXPECT_NE(w[0].message.find("a caller with role operator"), std::string::npos) << w[0].message;
}

}  // namespace
}  // namespace tollgate::policies
