// Role-based authorisation, deny by default. Compiled once per config load from the model's
// roles; immutable afterwards, so Decide is const and thread-safe.
//
// Semantics: the caller's roles' rules are considered for (upstream, method, path). A rule
// matches when its upstream is the request's, its methods include the method (HEAD is allowed
// wherever GET is; no methods = GET, HEAD, POST, PUT, PATCH, DELETE for an allow rule and
// every method for a deny rule), its template matches, and every `where`
// binding's value is in the caller's attribute list (a "*" entry allows any value; a missing
// attribute allows nothing). A matching `deny` rule wins over any `allow`. No match = denied.
// A deny rule that names GET also denies HEAD, so HEAD never reaches what GET may not.
// `where` compares the bound segment as it appears in the normalised path (escapes kept), so
// an attribute value must be written the way the path carries it. Roles the caller names that
// the config lacks are ignored. Among several matching allow rules, the first in role order
// (the caller's list), then document order, is reported, except that a rule without an "owner"
// binding in `where` is preferred to one with (an owner check is a condition the pipeline
// checks after Decide: a rule that needs none allows at once).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"
#include "policies/path_template.h"
#include "policies/redact.h"

namespace tollgate::policies {

struct PolicyDecision {
  enum class Outcome { kAllow, kDeny, kNoMatch };
  Outcome outcome = Outcome::kNoMatch;
  const config::Rule* rule = nullptr;  // the allow rule that let it through, or the deny rule
  PathParams params;                   // the template bindings of `rule`
  const Redactor* redactor = nullptr;  // kAllow: the rule's compiled `redact` list (owned by
                                       // the Policy; never null for kAllow, maybe empty())
  // kAllow: the non-empty `redact` lists of EVERY allow rule that matched, `rule`'s first. All of
  // them apply: a broad rule listed first must not shadow the redactions of a narrower one.
  std::vector<const Redactor*> redactors;
  // kAllow: the values of `rule`'s parameters that `where` binds to "owner" (issue 12). Not
  // checked here: the caller must find each recorded as owned by it (or its owner_group) before
  // the request goes on. Empty when `rule` has no such binding.
  std::vector<std::string> owner_values;
  bool allowed() const { return outcome == Outcome::kAllow; }
};

class Policy {
 public:
  // The config must outlive the Policy (the gateway keeps both in one snapshot).
  // Templates were validated by the loader; a template that still fails to compile here is a
  // programming error and makes Compile return null with *error set.
  static std::unique_ptr<const Policy> Compile(const config::Config& config, std::string* error);

  PolicyDecision Decide(const config::Caller& caller, std::string_view method,
                        std::string_view upstream, std::string_view path) const;

 private:
  struct WhereCheck {
    size_t param;                  // index into the template's parameters
    const std::string* attribute;  // the caller attribute's name (points into the config)
    bool owner;                    // bound to "owner": reported in owner_values, not checked
  };
  struct CompiledRule {
    const config::Rule* rule;
    PathTemplate path;
    bool any_method;       // a deny rule without `methods`
    bool default_methods;  // an allow rule without `methods`: all but OPTIONS
    bool allows_head;      // methods contains GET or HEAD
    std::vector<WhereCheck> where;
    bool checks_owner;  // some `where` binding is "owner"
    Redactor redactor;
  };
  // Rules grouped by (role, upstream) and sorted, so Decide reads only the caller's roles'
  // rules for the request's upstream, each group in document order.
  struct RuleGroup {
    std::string role;
    std::string upstream;
    std::vector<CompiledRule> rules;
  };
  std::vector<RuleGroup> groups_;
  const std::vector<CompiledRule>* FindRules(std::string_view role,
                                             std::string_view upstream) const;
};

}  // namespace tollgate::policies
