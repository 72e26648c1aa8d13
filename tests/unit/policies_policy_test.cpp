#include <gtest/gtest.h>

#include <string>

#include "config/model.h"
#include "policies/policy.h"
#include "tests/unit/policy_test_helpers.h"

namespace tollgate::policies {
namespace {

using config::Effect;
using Outcome = PolicyDecision::Outcome;

config::Rule MakeRule(std::string upstream, std::vector<std::string> methods, std::string path,
                      Effect effect = Effect::kAllow,
                      std::map<std::string, std::string> where = {}) {
  config::Rule rule;
  rule.upstream = std::move(upstream);
  rule.methods = std::move(methods);
  rule.path = std::move(path);
  rule.effect = effect;
  rule.where = std::move(where);
  return rule;
}

using testing::AddRole;

config::Caller MakeCaller(std::vector<std::string> roles,
                          std::map<std::string, std::vector<std::string>> attributes = {}) {
  config::Caller caller;
  caller.name = "team";
  caller.roles = std::move(roles);
  caller.attributes = std::move(attributes);
  return caller;
}

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AddRole(&config_, "devin-reader",
            {MakeRule("devin", {"GET"}, "/v3beta1/enterprise/self"),
             MakeRule("devin", {"GET"}, "/v3beta1/enterprise/organizations")});
    AddRole(&config_, "devin-operator",
            {MakeRule("devin", {"POST"}, "/v3beta1/organizations/{org_id}/sessions", Effect::kAllow,
                      {{"org_id", "devin_orgs"}})});
    AddRole(&config_, "devo-token-reader",
            {MakeRule("devo", {"GET"}, "/v2/accounts/{account}/tokens/**", Effect::kAllow,
                      {{"account", "devo_accounts"}})});
    AddRole(&config_, "devin-all", {MakeRule("devin", {}, "/**")});
    AddRole(&config_, "no-organizations",
            {MakeRule("devin", {"GET"}, "/v3beta1/enterprise/organizations", Effect::kDeny)});
    AddRole(&config_, "no-deletes", {MakeRule("devin", {"DELETE"}, "/**", Effect::kDeny)});
    Compile();
  }

  void Compile() {
    std::string error;
    policy_ = Policy::Compile(config_, &error);
    ASSERT_NE(policy_, nullptr) << error;
  }

  PolicyDecision Decide(const config::Caller& caller, std::string_view method,
                        std::string_view upstream, std::string_view path) {
    return policy_->Decide(caller, method, upstream, path);
  }

  config::Config config_;
  std::unique_ptr<const Policy> policy_;
};

TEST_F(PolicyTest, AllowsAMatchingRuleAndReportsIt) {
  auto caller = MakeCaller({"devin-reader"});
  PolicyDecision d = Decide(caller, "GET", "devin", "/v3beta1/enterprise/organizations");
  EXPECT_EQ(d.outcome, Outcome::kAllow);
  EXPECT_TRUE(d.allowed());
  ASSERT_NE(d.rule, nullptr);
  EXPECT_EQ(d.rule, &config_.roles["devin-reader"].rules[1]);
  EXPECT_TRUE(d.params.empty());
  ASSERT_NE(d.redactor, nullptr);
  EXPECT_TRUE(d.redactor->empty());
}

TEST_F(PolicyTest, NothingMatchingIsNoMatch) {
  auto caller = MakeCaller({"devin-reader"});
  PolicyDecision d = Decide(caller, "GET", "devin", "/v3beta1/enterprise/members");
  EXPECT_EQ(d.outcome, Outcome::kNoMatch);
  EXPECT_FALSE(d.allowed());
  EXPECT_EQ(d.rule, nullptr);
  EXPECT_EQ(d.redactor, nullptr);
}

TEST_F(PolicyTest, MethodMustBeListed) {
  auto caller = MakeCaller({"devin-reader"});
  EXPECT_EQ(Decide(caller, "POST", "devin", "/v3beta1/enterprise/self").outcome, Outcome::kNoMatch);
  EXPECT_EQ(Decide(caller, "DELETE", "devin", "/v3beta1/enterprise/self").outcome,
            Outcome::kNoMatch);
  EXPECT_EQ(Decide(caller, "get", "devin", "/v3beta1/enterprise/self").outcome, Outcome::kNoMatch);
  EXPECT_EQ(Decide(caller, "OPTIONS", "devin", "/v3beta1/enterprise/self").outcome,
            Outcome::kNoMatch);
}

TEST_F(PolicyTest, HeadIsAllowedWhereGetIs) {
  auto caller = MakeCaller({"devin-reader", "devin-operator"}, {{"devin_orgs", {"org-1"}}});
  EXPECT_EQ(Decide(caller, "HEAD", "devin", "/v3beta1/enterprise/self").outcome, Outcome::kAllow);
  // HEAD is not implied by POST.
  EXPECT_EQ(Decide(caller, "HEAD", "devin", "/v3beta1/organizations/org-1/sessions").outcome,
            Outcome::kNoMatch);
}

// Issue 10 point 6: an allow rule without `methods` allows the six methods an API call uses,
// not OPTIONS (nor anything else); a deny rule without `methods` denies every method.
TEST_F(PolicyTest, Point6_NoMethodsOnAnAllowRuleMeansEveryMethodButOptions) {
  auto caller = MakeCaller({"devin-all"});
  for (const char* method : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}) {
    EXPECT_EQ(Decide(caller, method, "devin", "/anything/at/all").outcome, Outcome::kAllow)
        << method;
  }
  for (const char* method : {"OPTIONS", "TRACE", "CONNECT", "DELETE_"}) {
    EXPECT_EQ(Decide(caller, method, "devin", "/anything/at/all").outcome, Outcome::kNoMatch)
        << method;
  }
}

TEST_F(PolicyTest, Point6_NoMethodsOnADenyRuleDeniesEveryMethod) {
  config::Config config;
  AddRole(&config, "options-too",
          {MakeRule("devin", {"GET", "OPTIONS"}, "/v3beta1/**"),
           MakeRule("devin", {}, "/v3beta1/secret/**", Effect::kDeny)});
  std::string error;
  auto policy = Policy::Compile(config, &error);
  ASSERT_NE(policy, nullptr) << error;
  auto caller = MakeCaller({"options-too"});
  for (const char* method : {"GET", "OPTIONS"}) {
    EXPECT_EQ(policy->Decide(caller, method, "devin", "/v3beta1/secret/x").outcome, Outcome::kDeny)
        << method;
    EXPECT_EQ(policy->Decide(caller, method, "devin", "/v3beta1/open").outcome, Outcome::kAllow)
        << method;
  }
}

TEST_F(PolicyTest, DenyWinsOverAllowAcrossRoles) {
  // Allow first in the caller's list, deny second: deny still wins.
  auto caller = MakeCaller({"devin-reader", "no-organizations"});
  PolicyDecision d = Decide(caller, "GET", "devin", "/v3beta1/enterprise/organizations");
  EXPECT_EQ(d.outcome, Outcome::kDeny);
  EXPECT_EQ(d.rule, &config_.roles["no-organizations"].rules[0]);
  EXPECT_EQ(d.redactor, nullptr);
  // And in the other order.
  auto reversed = MakeCaller({"no-organizations", "devin-reader"});
  EXPECT_EQ(Decide(reversed, "GET", "devin", "/v3beta1/enterprise/organizations").outcome,
            Outcome::kDeny);
  // The deny rule does not touch other paths.
  EXPECT_EQ(Decide(caller, "GET", "devin", "/v3beta1/enterprise/self").outcome, Outcome::kAllow);
}

TEST_F(PolicyTest, DenyOnGetAlsoDeniesHead) {
  auto caller = MakeCaller({"devin-all", "no-organizations"});
  EXPECT_EQ(Decide(caller, "HEAD", "devin", "/v3beta1/enterprise/organizations").outcome,
            Outcome::kDeny);
  EXPECT_EQ(Decide(caller, "POST", "devin", "/v3beta1/enterprise/organizations").outcome,
            Outcome::kAllow);
}

TEST_F(PolicyTest, DenyByMethodOverBroadAllow) {
  auto caller = MakeCaller({"devin-all", "no-deletes"});
  EXPECT_EQ(Decide(caller, "DELETE", "devin", "/v3beta1/sessions/s1").outcome, Outcome::kDeny);
  EXPECT_EQ(Decide(caller, "GET", "devin", "/v3beta1/sessions/s1").outcome, Outcome::kAllow);
}

TEST_F(PolicyTest, WhereChecksTheBoundParameter) {
  auto caller = MakeCaller({"devin-operator"}, {{"devin_orgs", {"org-1", "org-2"}}});
  PolicyDecision d = Decide(caller, "POST", "devin", "/v3beta1/organizations/org-2/sessions");
  EXPECT_EQ(d.outcome, Outcome::kAllow);
  ASSERT_EQ(d.params.size(), 1u);
  EXPECT_EQ(d.params[0].first, "org_id");
  EXPECT_EQ(d.params[0].second, "org-2");
  EXPECT_EQ(Decide(caller, "POST", "devin", "/v3beta1/organizations/org-3/sessions").outcome,
            Outcome::kNoMatch);
  EXPECT_EQ(Decide(caller, "POST", "devin", "/v3beta1/organizations/ORG-1/sessions").outcome,
            Outcome::kNoMatch);
}

TEST_F(PolicyTest, WhereComparesWholeValuesNotPrefixesOrSuffixes) {
  auto caller = MakeCaller({"devin-operator"}, {{"devin_orgs", {"org-1"}}});
  for (const char* org : {"org-10", "org-1x", "org-", "xorg-1", "org-1%20", "org"}) {
    EXPECT_EQ(
        Decide(caller, "POST", "devin", std::string("/v3beta1/organizations/") + org + "/sessions")
            .outcome,
        Outcome::kNoMatch)
        << org;
  }
  EXPECT_EQ(Decide(caller, "POST", "devin", "/v3beta1/organizations/org-1/sessions").outcome,
            Outcome::kAllow);
}

TEST_F(PolicyTest, WhereStarAllowsAnyValue) {
  auto caller = MakeCaller({"devo-token-reader"}, {{"devo_accounts", {"*"}}});
  PolicyDecision d = Decide(caller, "GET", "devo", "/v2/accounts/whatever/tokens/t1");
  EXPECT_EQ(d.outcome, Outcome::kAllow);
  ASSERT_EQ(d.params.size(), 1u);
  EXPECT_EQ(d.params[0].second, "whatever");
}

TEST_F(PolicyTest, MissingOrEmptyAttributeAllowsNothing) {
  auto missing = MakeCaller({"devo-token-reader"});
  EXPECT_EQ(Decide(missing, "GET", "devo", "/v2/accounts/acme/tokens").outcome, Outcome::kNoMatch);
  auto other = MakeCaller({"devo-token-reader"}, {{"devin_orgs", {"*"}}});
  EXPECT_EQ(Decide(other, "GET", "devo", "/v2/accounts/acme/tokens").outcome, Outcome::kNoMatch);
  auto empty = MakeCaller({"devo-token-reader"}, {{"devo_accounts", {}}});
  EXPECT_EQ(Decide(empty, "GET", "devo", "/v2/accounts/acme/tokens").outcome, Outcome::kNoMatch);
}

TEST_F(PolicyTest, DenyWithWhereAppliesOnlyToMatchingValues) {
  AddRole(&config_, "no-prod",
          {MakeRule("devin", {}, "/v3beta1/organizations/{org_id}/**", Effect::kDeny,
                    {{"org_id", "frozen_orgs"}})});
  Compile();
  auto caller = MakeCaller({"devin-all", "no-prod"}, {{"frozen_orgs", {"prod"}}});
  EXPECT_EQ(Decide(caller, "GET", "devin", "/v3beta1/organizations/prod/sessions").outcome,
            Outcome::kDeny);
  EXPECT_EQ(Decide(caller, "GET", "devin", "/v3beta1/organizations/dev/sessions").outcome,
            Outcome::kAllow);
}

TEST_F(PolicyTest, UnknownRolesAreIgnored) {
  auto caller = MakeCaller({"no-such-role", "devin-reader", ""});
  EXPECT_EQ(Decide(caller, "GET", "devin", "/v3beta1/enterprise/self").outcome, Outcome::kAllow);
  auto only_unknown = MakeCaller({"no-such-role"});
  EXPECT_EQ(Decide(only_unknown, "GET", "devin", "/v3beta1/enterprise/self").outcome,
            Outcome::kNoMatch);
  auto none = MakeCaller({});
  EXPECT_EQ(Decide(none, "GET", "devin", "/v3beta1/enterprise/self").outcome, Outcome::kNoMatch);
}

TEST_F(PolicyTest, UpstreamMustMatch) {
  auto caller = MakeCaller({"devin-reader", "devin-all"});
  EXPECT_EQ(Decide(caller, "GET", "devo", "/v3beta1/enterprise/self").outcome, Outcome::kNoMatch);
  EXPECT_EQ(Decide(caller, "GET", "", "/v3beta1/enterprise/self").outcome, Outcome::kNoMatch);
  EXPECT_EQ(Decide(caller, "GET", "Devin", "/v3beta1/enterprise/self").outcome, Outcome::kNoMatch);
}

TEST_F(PolicyTest, FirstAllowInRoleOrderIsReported) {
  auto caller = MakeCaller({"devin-all", "devin-reader"});
  PolicyDecision d = Decide(caller, "GET", "devin", "/v3beta1/enterprise/self");
  EXPECT_EQ(d.rule, &config_.roles["devin-all"].rules[0]);
}

TEST_F(PolicyTest, RedactorOfTheAllowingRuleIsReturned) {
  config_.roles["devo-token-reader"].rules[0].redact = {"/token", "/*/token"};
  Compile();
  auto caller = MakeCaller({"devo-token-reader"}, {{"devo_accounts", {"acme"}}});
  PolicyDecision d = Decide(caller, "GET", "devo", "/v2/accounts/acme/tokens");
  ASSERT_EQ(d.outcome, Outcome::kAllow);
  ASSERT_NE(d.redactor, nullptr);
  std::string body = R"({"token":"s3cret","name":"n"})";
  EXPECT_EQ(d.redactor->Apply(&body), Redactor::Outcome::kRedacted);
  EXPECT_EQ(body, R"({"name":"n"})");
}

// A broad allow rule listed first (no redactions) must not shadow a narrower rule's
// redactions: every matching allow rule's list applies (issue 10, the redaction of point 2).
TEST_F(PolicyTest, Point2_TheRedactionsOfEveryMatchingAllowRuleApply) {
  config_.roles["devo-token-reader"].rules[0].redact = {"/*/token"};
  AddRole(&config_, "devo-everything", {MakeRule("devo", {}, "/**")});
  AddRole(&config_, "devo-names-too",
          {MakeRule("devo", {"GET"}, "/v2/accounts/{account}/tokens/**")});
  config_.roles["devo-names-too"].rules[0].redact = {"/*/name"};
  Compile();
  auto caller = MakeCaller({"devo-everything", "devo-token-reader", "devo-names-too"},
                           {{"devo_accounts", {"acme"}}});
  PolicyDecision d = Decide(caller, "GET", "devo", "/v2/accounts/acme/tokens");
  ASSERT_EQ(d.outcome, Outcome::kAllow);
  EXPECT_EQ(d.rule, &config_.roles["devo-everything"].rules[0]);  // the first is reported
  ASSERT_EQ(d.redactors.size(), 2u);
  std::string body = R"([{"token":"s3cret","name":"n","id":1}])";
  for (const Redactor* r : d.redactors) r->Apply(&body);
  EXPECT_EQ(body, R"([{"id":1}])");
  // A path only the broad rule matches has nothing to redact.
  EXPECT_TRUE(Decide(caller, "GET", "devo", "/v2/other").redactors.empty());
}

TEST(PolicyCompileTest, BadTemplateNamesTheRule) {
  config::Config config;
  AddRole(&config, "r", {MakeRule("devin", {"GET"}, "/a/**/b")});
  std::string error;
  EXPECT_EQ(Policy::Compile(config, &error), nullptr);
  EXPECT_NE(error.find("/roles/r/rules/0/path"), std::string::npos) << error;
}

TEST(PolicyCompileTest, WhereOnUnknownParameterIsRefused) {
  config::Config config;
  AddRole(&config, "r", {MakeRule("devin", {"GET"}, "/a/{x}", Effect::kAllow, {{"y", "attr"}})});
  std::string error;
  EXPECT_EQ(Policy::Compile(config, &error), nullptr);
  EXPECT_NE(error.find("'y'"), std::string::npos) << error;
}

TEST(PolicyCompileTest, BadRedactPointerIsRefused) {
  config::Config config;
  AddRole(&config, "r", {MakeRule("devin", {"GET"}, "/a")});
  config.roles["r"].rules[0].redact = {"token"};
  std::string error;
  EXPECT_EQ(Policy::Compile(config, &error), nullptr);
  EXPECT_NE(error.find("/redact"), std::string::npos) << error;
}

TEST(PolicyCompileTest, EmptyConfigDeniesEverything) {
  config::Config config;
  std::string error;
  auto policy = Policy::Compile(config, &error);
  ASSERT_NE(policy, nullptr);
  EXPECT_EQ(policy->Decide(MakeCaller({"x"}), "GET", "devin", "/").outcome, Outcome::kNoMatch);
}

}  // namespace
}  // namespace tollgate::policies
