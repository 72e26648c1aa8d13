// A rule's body rules (issue 12) applied to a JSON request body for one caller, and the cost
// read from the body afterwards (`"cost": "<json pointer>"`).
//
// Body rules are keyed by RFC 6901 pointers (~0 is '~', ~1 is '/'; a token addressing an array
// is a decimal index). Each rule's operators run in the order of config::BodyRule: require,
// forbid, set, default, enum, min/max, append; the rules run in the order written. `set`,
// `default` and `append` create the objects on the way to their field when absent. The body is
// parsed once and serialized once, only when a rule changed it (else it is forwarded as sent).
//
// Refusals: 400 when the body is not a JSON object, a required field is absent, a number rule
// meets something that is not a number, or the cost cannot be read; 403 when the body asks for
// what the rule does not allow (over a `reject` bound, outside `enum`, a `forbid` field, a
// `set` from an attribute the caller lacks). Messages name the field (and the limit), never a
// value the caller sent. Pure and thread-safe: no state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"

namespace tollgate::policies {

struct BodyRulesOutcome {
  int status = 0;       // 0: the request may go on; 400 or 403: refused (reason "body_rule")
  std::string message;  // why it was refused
  bool rewritten = false;
  std::string body;  // the rewritten body when `rewritten`
  // The pointers of the fields a rule changed (for the audit record: names, never values).
  std::vector<std::string> changed;
  // What each body rule did, one line each (for `tollgate explain --body`).
  std::vector<std::string> steps;
  bool has_cost = false;  // the rule reads its cost from the body
  uint64_t cost = 0;      // rounded up
};

// True when the rule needs the request body before it is limited or forwarded.
inline bool NeedsBody(const config::Rule& rule) {
  return !rule.body.empty() || !rule.cost_pointer.empty();
}

// Applies `rule.body` and reads `rule.cost_pointer` (when set) from `body`.
BodyRulesOutcome ApplyBodyRules(const config::Rule& rule, std::string_view body,
                                const config::Caller& caller);

}  // namespace tollgate::policies
