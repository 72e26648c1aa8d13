// Redis Cluster hash tags for the limiter's keys (issue 14). One request's script reads and
// writes its upstream's cooldown key and the state of every bucket that applies to it, and a
// cluster runs a script only when all its keys are in one hash slot. So those keys carry a hash
// tag, "{<tag>}", chosen per group of upstreams: an upstream is in the group of every other
// upstream that shares a limit with it (a limit named on both, or a caller's own limit, which
// applies to every upstream the caller's roles reach). Upstreams that share nothing are in
// groups of their own, and so on slots (and shards) of their own.
//
// The tag of a group is the smallest upstream name in it, with '{' and '}' replaced by '_' (two
// names that then collide only share a slot, which is always correct). Outside a cluster no key
// carries a tag (existing keys are not renamed).
#pragma once

#include <map>
#include <set>
#include <string>

#include "config/model.h"

namespace tollgate::config {

struct SlotTags {
  std::map<std::string, std::string> of_upstream;  // upstream name -> tag
  std::map<std::string, std::string> of_limit;     // limit name -> tag ("" when it reaches none)
  // For check-config: each tag's upstreams and the limits that joined them (a limit that
  // reaches two or more upstreams).
  struct Group {
    std::set<std::string> upstreams;
    std::set<std::string> joined_by;
  };
  std::map<std::string, Group> groups;
};

SlotTags ComputeSlotTags(const Config& config);

}  // namespace tollgate::config
