#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "policies/body_rules.h"

namespace tollgate::policies {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

config::Caller Alice() {
  config::Caller caller;
  caller.name = "alice";
  caller.attributes["devin_user_id"] = {"user-123"};
  caller.attributes["teams"] = {"a", "b"};
  return caller;
}

config::BodyRule Field(const std::string& pointer) {
  config::BodyRule rule;
  rule.pointer = pointer;
  return rule;
}

config::Rule WithBody(std::vector<config::BodyRule> body) {
  config::Rule rule;
  rule.body = std::move(body);
  return rule;
}

BodyRulesOutcome Apply(const config::Rule& rule, const std::string& body) {
  return ApplyBodyRules(rule, body, Alice());
}

config::BodyRule Cap(double max, bool clamp) {
  config::BodyRule r = Field("/max_acu_limit");
  r.max = max;
  r.clamp = clamp;
  return r;
}

TEST(BodyRules, ClampLowersANumberOverTheMaximumAndNamesTheField) {
  auto out = Apply(WithBody({Cap(50, true)}), R"({"prompt":"x","max_acu_limit":80})");
  EXPECT_EQ(out.status, 0);
  ASSERT_TRUE(out.rewritten);
  EXPECT_EQ(out.body, R"({"prompt":"x","max_acu_limit":50})");
  EXPECT_THAT(out.changed, ElementsAre("/max_acu_limit"));
}

TEST(BodyRules, AValueWithinBoundsIsForwardedAsSent) {
  const std::string body = "{ \"max_acu_limit\" : 50 }";
  auto out = Apply(WithBody({Cap(50, true)}), body);
  EXPECT_EQ(out.status, 0);
  EXPECT_FALSE(out.rewritten);
  EXPECT_THAT(out.changed, IsEmpty());
}

TEST(BodyRules, RejectRefusesWith403NamingTheFieldAndTheLimit) {
  auto out = Apply(WithBody({Cap(50, false)}), R"({"max_acu_limit":50.5})");
  EXPECT_EQ(out.status, 403);
  EXPECT_THAT(out.message, HasSubstr("/max_acu_limit"));
  EXPECT_THAT(out.message, HasSubstr("50"));
  EXPECT_FALSE(out.rewritten);
}

TEST(BodyRules, MinClampsAndRejects) {
  config::BodyRule min = Field("/n");
  min.min = 2;
  min.clamp = true;
  EXPECT_EQ(Apply(WithBody({min}), R"({"n":1})").body, R"({"n":2})");
  min.clamp = false;
  auto out = Apply(WithBody({min}), R"({"n":1})");
  EXPECT_EQ(out.status, 403);
  EXPECT_THAT(out.message, HasSubstr("minimum 2"));
}

TEST(BodyRules, NumberRulesRefuseNonNumbersAndHugeNumbersWith400) {
  EXPECT_EQ(Apply(WithBody({Cap(50, true)}), R"({"max_acu_limit":"80"})").status, 400);
  EXPECT_EQ(Apply(WithBody({Cap(50, true)}), R"({"max_acu_limit":1e300})").status, 400);
  EXPECT_EQ(Apply(WithBody({Cap(50, true)}), R"({"max_acu_limit":1e999})").status, 400);
  EXPECT_EQ(Apply(WithBody({Cap(50, true)}), R"({"max_acu_limit":99999999999999999999})").status,
            400);
}

TEST(BodyRules, ABodyThatIsNotAJsonObjectIsRefusedWith400) {
  for (const char* body : {"", "[]", "\"x\"", "12", "{", "{\"a\":1} x"}) {
    auto out = Apply(WithBody({Cap(50, true)}), body);
    EXPECT_EQ(out.status, 400) << body;
    EXPECT_THAT(out.message, HasSubstr("JSON object")) << body;
  }
}

TEST(BodyRules, DefaultIsSetOnlyWhenAbsent) {
  config::BodyRule r = Cap(50, true);
  r.default_json = "10";
  auto absent = Apply(WithBody({r}), R"({"prompt":"x"})");
  EXPECT_EQ(absent.body, R"({"prompt":"x","max_acu_limit":10})");
  EXPECT_THAT(absent.changed, ElementsAre("/max_acu_limit"));
  EXPECT_FALSE(Apply(WithBody({r}), R"({"max_acu_limit":3})").rewritten);
}

TEST(BodyRules, EnumRefusesAValueNotListedWith403) {
  config::BodyRule r = Field("/devin_mode");
  r.enum_json = {"\"normal\""};
  EXPECT_EQ(Apply(WithBody({r}), R"({"devin_mode":"normal"})").status, 0);
  EXPECT_EQ(Apply(WithBody({r}), R"({})").status, 0);
  auto out = Apply(WithBody({r}), R"({"devin_mode":"fast"})");
  EXPECT_EQ(out.status, 403);
  EXPECT_THAT(out.message, HasSubstr("/devin_mode"));
  EXPECT_THAT(out.message, ::testing::Not(HasSubstr("fast")));
}

TEST(BodyRules, ForbidRefusesAPresentFieldWith403EvenWhenFalse) {
  config::BodyRule r = Field("/advanced_mode");
  r.forbid = true;
  EXPECT_EQ(Apply(WithBody({r}), R"({"advanced_mode":false})").status, 403);
  EXPECT_EQ(Apply(WithBody({r}), R"({"prompt":"x"})").status, 0);
}

TEST(BodyRules, RequireRefusesAnAbsentFieldWith400) {
  config::BodyRule r = Field("/prompt");
  r.require = true;
  auto out = Apply(WithBody({r}), R"({})");
  EXPECT_EQ(out.status, 400);
  EXPECT_THAT(out.message, HasSubstr("/prompt"));
  EXPECT_EQ(Apply(WithBody({r}), R"({"prompt":""})").status, 0);
}

TEST(BodyRules, SetReplacesWhatTheCallerSentWithTheAttributesSingleValue) {
  config::BodyRule r = Field("/create_as_user_id");
  r.set = "caller.devin_user_id";
  auto out = Apply(WithBody({r}), R"({"create_as_user_id":"someone-else"})");
  EXPECT_EQ(out.body, R"({"create_as_user_id":"user-123"})");
  EXPECT_THAT(out.changed, ElementsAre("/create_as_user_id"));
  EXPECT_EQ(Apply(WithBody({r}), R"({})").body, R"({"create_as_user_id":"user-123"})");
  // Already the right value: nothing changed.
  EXPECT_FALSE(Apply(WithBody({r}), R"({"create_as_user_id":"user-123"})").rewritten);
}

TEST(BodyRules, SetFromAnAttributeTheCallerLacksOrHoldsTwiceIsRefused) {
  config::BodyRule r = Field("/x");
  r.set = "caller.missing";
  EXPECT_EQ(Apply(WithBody({r}), R"({})").status, 403);
  r.set = "caller.teams";
  EXPECT_EQ(Apply(WithBody({r}), R"({})").status, 403);
}

TEST(BodyRules, SetTakesTheCallerNameOrALiteral) {
  config::BodyRule name = Field("/who");
  name.set = "{caller}";
  config::BodyRule literal = Field("/flags");
  literal.set = R"({"a":[1,true,null]})";
  config::BodyRule text = Field("/by");
  text.set = R"("by {caller}")";
  auto out = Apply(WithBody({name, literal, text}), R"({"who":"mallory"})");
  EXPECT_EQ(out.body, R"({"who":"alice","flags":{"a":[1,true,null]},"by":"by alice"})");
  EXPECT_THAT(out.changed, ElementsAre("/who", "/flags", "/by"));
}

TEST(BodyRules, AppendCreatesTheArrayAndSubstitutesTheCaller) {
  config::BodyRule r = Field("/tags");
  r.append = {"team:{caller}"};
  EXPECT_EQ(Apply(WithBody({r}), R"({})").body, R"({"tags":["team:alice"]})");
  EXPECT_EQ(Apply(WithBody({r}), R"({"tags":["x"]})").body, R"({"tags":["x","team:alice"]})");
  EXPECT_FALSE(Apply(WithBody({r}), R"({"tags":["team:alice"]})").rewritten);
  EXPECT_EQ(Apply(WithBody({r}), R"({"tags":"x"})").status, 400);
}

TEST(BodyRules, PointerEscapesAddressTildeAndSlash) {
  config::BodyRule r = Field("/a~1b/c~0d");
  r.set = "1";
  EXPECT_EQ(Apply(WithBody({r}), R"({"a/b":{"c~d":0}})").body, R"({"a/b":{"c~d":1}})");
  EXPECT_THAT(Apply(WithBody({r}), R"({"a/b":{"c~d":0}})").changed, ElementsAre("/a~1b/c~0d"));
}

TEST(BodyRules, NestedObjectsAreCreatedAndArrayIndexesAddressElements) {
  config::BodyRule nested = Field("/a/b/c");
  nested.default_json = "true";
  EXPECT_EQ(Apply(WithBody({nested}), R"({"a":{"x":1}})").body, R"({"a":{"x":1,"b":{"c":true}}})");
  config::BodyRule element = Field("/items/1/n");
  element.max = 5;
  element.clamp = true;
  EXPECT_EQ(Apply(WithBody({element}), R"({"items":[{"n":9},{"n":9}]})").body,
            R"({"items":[{"n":9},{"n":5}]})");
  // Through a string: cannot be written.
  nested.pointer = "/a/x/c";
  EXPECT_EQ(Apply(WithBody({nested}), R"({"a":{"x":1}})").status, 400);
}

TEST(BodyRules, CostIsReadAfterTheRulesAndRoundedUp) {
  config::Rule rule = WithBody({Cap(50, true)});
  rule.cost_pointer = "/max_acu_limit";
  auto clamped = Apply(rule, R"({"max_acu_limit":80})");
  EXPECT_TRUE(clamped.has_cost);
  EXPECT_EQ(clamped.cost, 50u);
  EXPECT_EQ(Apply(rule, R"({"max_acu_limit":2.1})").cost, 3u);
  EXPECT_EQ(Apply(rule, R"({})").status, 400);
  EXPECT_EQ(Apply(rule, R"({"max_acu_limit":-1})").status, 400);
  EXPECT_EQ(Apply(rule, R"({"max_acu_limit":"7"})").status, 400);
}

TEST(BodyRules, ARuleWithoutBodyRulesLeavesTheBodyUnread) {
  auto out = Apply(config::Rule{}, "not json");
  EXPECT_EQ(out.status, 0);
  EXPECT_FALSE(out.has_cost);
}

TEST(BodyRules, StepsSayWhatEachRuleDid) {
  config::BodyRule tags = Field("/tags");
  tags.append = {"team:{caller}"};
  auto out = Apply(WithBody({Cap(50, true), tags}), R"({"max_acu_limit":80})");
  EXPECT_THAT(out.steps, ElementsAre("/max_acu_limit: clamped to 50", "/tags: appended 1"));
}

}  // namespace
}  // namespace tollgate::policies
