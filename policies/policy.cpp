#include "policies/policy.h"

#include <algorithm>
#include <array>
#include <map>
#include <utility>

namespace tollgate::policies {
namespace {

std::string RuleName(const std::string& role, const config::Rule& rule) {
  if (!rule.pointer.empty()) return rule.pointer;
  return "/roles/" + role + "/rules/" + std::to_string(rule.index);
}

}  // namespace

std::unique_ptr<const Policy> Policy::Compile(const config::Config& config, std::string* error) {
  auto fail = [error](std::string message) {
    if (error != nullptr) *error = std::move(message);
    return nullptr;
  };
  std::map<std::pair<std::string, std::string>, std::vector<CompiledRule>> grouped;
  for (const auto& [role_name, role] : config.roles) {
    for (const config::Rule& rule : role.rules) {
      std::string name = RuleName(role_name, rule);
      std::string template_error;
      std::optional<PathTemplate> path = PathTemplate::Compile(rule.path, &template_error);
      if (!path) return fail(name + "/path: " + template_error);

      std::vector<WhereCheck> where;
      for (const auto& [param, attribute] : rule.where) {
        int index = path->ParamIndex(param);
        if (index < 0) {
          return fail(name + "/where: '" + param + "' is not a parameter of " + rule.path);
        }
        where.push_back({static_cast<size_t>(index), &attribute, attribute == "owner"});
      }
      const bool checks_owner =
          std::any_of(where.begin(), where.end(), [](const WhereCheck& w) { return w.owner; });

      std::string redact_error;
      std::optional<Redactor> redactor = Redactor::Compile(rule.redact, &redact_error);
      if (!redactor) return fail(name + "/redact: " + redact_error);

      // A rule without `methods`: an allow rule allows the six methods an API call uses (not
      // OPTIONS: a preflight answer can widen what a browser lets a page do, so it is granted
      // only where a rule lists it); a deny rule denies every method, so a method it forgot
      // cannot slip past it.
      bool any_method = rule.methods.empty() && rule.effect == config::Effect::kDeny;
      bool default_methods = rule.methods.empty() && rule.effect != config::Effect::kDeny;
      bool allows_head =
          std::any_of(rule.methods.begin(), rule.methods.end(),
                      [](const std::string& m) { return m == "GET" || m == "HEAD"; });
      grouped[{role_name, rule.upstream}].push_back(
          CompiledRule{&rule, std::move(*path), any_method, default_methods, allows_head,
                       std::move(where), checks_owner, std::move(*redactor)});
    }
  }

  auto policy = std::unique_ptr<Policy>(new Policy());
  policy->groups_.reserve(grouped.size());
  for (auto& [key, rules] : grouped) {
    policy->groups_.push_back(RuleGroup{key.first, key.second, std::move(rules)});
  }
  return policy;
}

const std::vector<Policy::CompiledRule>* Policy::FindRules(std::string_view role,
                                                           std::string_view upstream) const {
  auto it = std::lower_bound(groups_.begin(), groups_.end(), std::make_pair(role, upstream),
                             [](const RuleGroup& group, const auto& key) {
                               int c = std::string_view(group.role).compare(key.first);
                               if (c != 0) return c < 0;
                               return std::string_view(group.upstream) < key.second;
                             });
  if (it == groups_.end() || it->role != role || it->upstream != upstream) return nullptr;
  return &it->rules;
}

PolicyDecision Policy::Decide(const config::Caller& caller, std::string_view method,
                              std::string_view upstream, std::string_view path) const {
  // Bindings stay views into `path` until a decision is made, so a request that matches
  // nothing allocates nothing.
  using Values = std::array<std::string_view, PathTemplate::kMaxParams>;
  Values values;
  Values allow_values;
  const CompiledRule* allow = nullptr;
  std::vector<const Redactor*> redactors;  // allocates only for rules with redactions

  auto method_matches = [method](const CompiledRule& compiled) {
    if (compiled.any_method) return true;
    if (compiled.default_methods) {
      return method == "GET" || method == "HEAD" || method == "POST" || method == "PUT" ||
             method == "PATCH" || method == "DELETE";
    }
    if (method == "HEAD" && compiled.allows_head) return true;
    for (const std::string& m : compiled.rule->methods) {
      if (m == method) return true;
    }
    return false;
  };
  auto where_holds = [&caller, &values](const CompiledRule& compiled) {
    for (const WhereCheck& check : compiled.where) {
      if (check.owner) continue;  // the pipeline's to check (owner_values)
      auto attribute = caller.attributes.find(*check.attribute);
      if (attribute == caller.attributes.end()) return false;
      std::string_view value = values[check.param];
      bool found = false;
      for (const std::string& allowed : attribute->second) {
        if (allowed == "*" || allowed == value) {
          found = true;
          break;
        }
      }
      if (!found) return false;
    }
    return true;
  };
  auto decision_for = [](const CompiledRule& compiled, const Values& bound,
                         PolicyDecision::Outcome outcome) {
    PolicyDecision decision;
    decision.outcome = outcome;
    decision.rule = compiled.rule;
    const std::vector<std::string>& names = compiled.path.param_names();
    decision.params.reserve(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      decision.params.emplace_back(names[i], std::string(bound[i]));
    }
    if (outcome == PolicyDecision::Outcome::kAllow) {
      decision.redactor = &compiled.redactor;
      for (const WhereCheck& check : compiled.where) {
        if (check.owner) decision.owner_values.emplace_back(bound[check.param]);
      }
    }
    return decision;
  };

  for (const std::string& role : caller.roles) {
    const std::vector<CompiledRule>* rules = FindRules(role, upstream);
    if (rules == nullptr) continue;
    for (const CompiledRule& compiled : *rules) {
      if (!method_matches(compiled)) continue;
      if (!compiled.path.MatchViews(path, values.data())) continue;
      if (!where_holds(compiled)) continue;
      if (compiled.rule->effect == config::Effect::kDeny) {
        return decision_for(compiled, values, PolicyDecision::Outcome::kDeny);
      }
      // The first rule needing no owner check wins over any that needs one.
      if (allow == nullptr || (allow->checks_owner && !compiled.checks_owner)) {
        allow = &compiled;
        allow_values = values;
      }
      if (!compiled.redactor.empty()) redactors.push_back(&compiled.redactor);
    }
  }
  if (allow == nullptr) return PolicyDecision{};
  PolicyDecision decision = decision_for(*allow, allow_values, PolicyDecision::Outcome::kAllow);
  // The reported rule's own list first (the order does not change the result: each removes
  // what it names).
  if (!allow->redactor.empty()) {
    auto own = std::find(redactors.begin(), redactors.end(), &allow->redactor);
    std::rotate(redactors.begin(), own, own + 1);
  }
  decision.redactors = std::move(redactors);
  return decision;
}

}  // namespace tollgate::policies
