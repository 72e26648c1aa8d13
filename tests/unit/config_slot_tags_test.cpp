// Redis Cluster hash tags (issue 14): upstreams that share a limit share a tag (a slot), the
// others get one each; the tag is the group's smallest upstream name, braces replaced.
#include <gtest/gtest.h>

#include "config/slot_tags.h"

namespace tollgate::config {
namespace {

Limit Named(const std::string& name) {
  Limit limit;
  limit.name = name;
  limit.rate.tokens = 10;
  limit.rate.period_seconds = 1;
  return limit;
}

Rule RuleOn(const std::string& upstream) {
  Rule rule;
  rule.upstream = upstream;
  rule.path = "/x";
  return rule;
}

// Three upstreams, nothing shared: three tags, each its own name.
Config ThreeUpstreams() {
  Config config;
  for (const char* name : {"devin", "devo", "search"}) config.upstreams[name].name = name;
  Role role;
  role.name = "all";
  role.rules = {RuleOn("devin"), RuleOn("devo"), RuleOn("search")};
  config.roles["all"] = role;
  Caller caller;
  caller.name = "team";
  caller.roles = {"all"};
  config.callers["team"] = caller;
  return config;
}

TEST(ConfigSlotTags, UpstreamsThatShareNothingHaveTagsOfTheirOwn) {
  Config config = ThreeUpstreams();
  config.upstreams["devin"].limits = {Named("devin-rate")};
  config.roles["all"].rules[1].limits = {Named("devo-rate")};
  const SlotTags tags = ComputeSlotTags(config);
  EXPECT_EQ(tags.of_upstream.at("devin"), "devin");
  EXPECT_EQ(tags.of_upstream.at("devo"), "devo");
  EXPECT_EQ(tags.of_upstream.at("search"), "search");
  EXPECT_EQ(tags.of_limit.at("devin-rate"), "devin");
  EXPECT_EQ(tags.of_limit.at("devo-rate"), "devo");
  EXPECT_EQ(tags.groups.size(), 3u);
  EXPECT_TRUE(tags.groups.at("devo").joined_by.empty());
}

TEST(ConfigSlotTags, ALimitNamedOnTwoUpstreamsJoinsThem) {
  Config config = ThreeUpstreams();
  config.upstreams["search"].limits = {Named("shared")};
  config.roles["all"].rules[1].limits = {Named("shared")};  // devo
  const SlotTags tags = ComputeSlotTags(config);
  EXPECT_EQ(tags.of_upstream.at("devo"), "devo");
  EXPECT_EQ(tags.of_upstream.at("search"), "devo");  // the smaller name leads
  EXPECT_EQ(tags.of_upstream.at("devin"), "devin");
  EXPECT_EQ(tags.of_limit.at("shared"), "devo");
  ASSERT_EQ(tags.groups.count("devo"), 1u);
  EXPECT_EQ(tags.groups.at("devo").upstreams, (std::set<std::string>{"devo", "search"}));
  EXPECT_EQ(tags.groups.at("devo").joined_by, (std::set<std::string>{"shared"}));
}

TEST(ConfigSlotTags, ACallersOwnLimitJoinsEveryUpstreamItsRolesReach) {
  Config config = ThreeUpstreams();
  Role narrow;
  narrow.name = "narrow";
  narrow.rules = {RuleOn("devo"), RuleOn("search")};
  config.roles["narrow"] = narrow;
  Caller other;
  other.name = "other";
  other.roles = {"narrow"};
  other.limits = {Named("other-rate")};
  config.callers["other"] = other;
  const SlotTags tags = ComputeSlotTags(config);
  EXPECT_EQ(tags.of_upstream.at("search"), "devo");
  EXPECT_EQ(tags.of_upstream.at("devin"), "devin");  // "team" has no limit of its own
  EXPECT_EQ(tags.of_limit.at("other-rate"), "devo");

  config.callers["team"].limits = {Named("team-rate")};  // reaches all three
  const SlotTags joined = ComputeSlotTags(config);
  for (const char* name : {"devin", "devo", "search"}) {
    EXPECT_EQ(joined.of_upstream.at(name), "devin") << name;
  }
  EXPECT_EQ(joined.groups.size(), 1u);
}

TEST(ConfigSlotTags, BracesInANameCannotBreakTheTag) {
  Config config;
  config.upstreams["a{b}"].name = "a{b}";
  const SlotTags tags = ComputeSlotTags(config);
  EXPECT_EQ(tags.of_upstream.at("a{b}"), "a_b_");
}

TEST(ConfigSlotTags, ALimitThatReachesNoUpstreamHasNoTag) {
  Config config = ThreeUpstreams();
  Caller idle;
  idle.name = "idle";
  idle.limits = {Named("idle-rate")};
  config.callers["idle"] = idle;
  EXPECT_EQ(ComputeSlotTags(config).of_limit.at("idle-rate"), "");
}

}  // namespace
}  // namespace tollgate::config
