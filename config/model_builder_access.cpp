// The access-control half of ModelBuilder: roles, their rules, and callers.
#include <algorithm>
#include <cctype>

#include "config/model_builder.h"
#include "config/syntax.h"

namespace tollgate::config {
namespace {

using rapidjson::Value;
using syntax::JoinPointer;

// Bounded to match policies::PathTemplate::kMaxParams (config/ must not depend on policies/).
constexpr size_t kMaxTemplateParams = 16;

std::string Quoted(const std::string& text) { return "\"" + text + "\""; }

bool IsAttributeName(const std::string& name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

std::string Names(const std::map<std::string, Upstream>& upstreams) {
  std::string names;
  for (const auto& [name, upstream] : upstreams) names += (names.empty() ? "" : ", ") + name;
  return names;
}

}  // namespace

Role ModelBuilder::BuildRole(const std::string& name, const Value& value,
                             const std::string& pointer, const Config& config) {
  Role role;
  role.name = name;
  if (!syntax::IsValidName(name)) {
    Error(pointer,
          "role name must hold only letters, digits, '.', '_' and '-', and start with a letter or "
          "digit");
  }
  const Value& rules = value["rules"];
  const std::string base = JoinPointer(pointer, "rules");
  for (rapidjson::SizeType i = 0; i < rules.Size(); ++i) {
    role.rules.push_back(BuildRule(name, i, rules[i], JoinPointer(base, i), config));
  }
  return role;
}

Rule ModelBuilder::BuildRule(const std::string& role, size_t index, const Value& value,
                             const std::string& pointer, const Config& config) {
  Rule rule;
  rule.role = role;
  rule.index = index;
  rule.pointer = pointer;
  rule.upstream = value["upstream"].GetString();
  if (!config.upstreams.count(rule.upstream) &&
      !WasRemoved(JoinPointer("/upstreams", rule.upstream))) {
    Error(JoinPointer(pointer, "upstream"), "unknown upstream " + Quoted(rule.upstream) +
                                                " (defined: " + Names(config.upstreams) + ")");
  }
  if (value.HasMember("methods")) {
    for (const auto& method : value["methods"].GetArray()) {
      std::string name = method.GetString();
      if (std::find(rule.methods.begin(), rule.methods.end(), name) == rule.methods.end()) {
        rule.methods.push_back(name);
      }
    }
  }
  rule.path = value["path"].GetString();
  std::vector<std::string> params;
  std::string problem = syntax::CheckPathTemplate(rule.path, &params);
  if (!problem.empty()) {
    Error(JoinPointer(pointer, "path"), "path template " + Quoted(rule.path) + ": " + problem);
  } else if (params.size() > kMaxTemplateParams) {
    Error(JoinPointer(pointer, "path"),
          "path template has more than " + std::to_string(kMaxTemplateParams) + " parameters");
  }
  if (value.HasMember("effect") && std::string(value["effect"].GetString()) == "deny") {
    rule.effect = Effect::kDeny;
  }
  if (value.HasMember("where") && problem.empty()) {
    CheckWhere(value["where"], JoinPointer(pointer, "where"), params, &rule);
  }
  BuildBody(value, pointer, &rule);  // `body` and `cost`
  if (value.HasMember("allow_body")) rule.allow_body = value["allow_body"].GetBool();
  rule.limits = BuildLimits(value, pointer, LimitScope::kShared);
  if (value.HasMember("redact")) {
    const Value& redact = value["redact"];
    for (rapidjson::SizeType i = 0; i < redact.Size(); ++i) {
      std::string target = redact[i].GetString();
      if (!target.empty() && target.front() != '/') {
        Error(JoinPointer(JoinPointer(pointer, "redact"), i),
              "must be a JSON pointer: \"\" or starting with '/'");
      }
      rule.redact.push_back(std::move(target));
    }
  }
  BuildOwnership(value, pointer, &rule);
  CheckCost(rule, config);
  return rule;
}

void ModelBuilder::CheckWhere(const Value& where, const std::string& pointer,
                              const std::vector<std::string>& params, Rule* rule) {
  static const std::string kPrefix = "caller.";
  static const std::string kOwner = "owner";
  for (const auto& member : where.GetObject()) {
    std::string param = member.name.GetString();
    std::string value = member.value.GetString();
    std::string at = JoinPointer(pointer, param);
    if (std::find(params.begin(), params.end(), param) == params.end()) {
      Error(at, Quoted(param) + " is not a {parameter} of the path template " + Quoted(rule->path));
      continue;
    }
    if (value == kOwner) {  // issue 12: the value must be recorded as owned by the caller
      if (rule->effect == Effect::kDeny) {
        Error(at, "\"owner\" applies only to an allow rule");
        continue;
      }
      rule->where[param] = value;
      continue;
    }
    if (value == kPrefix + kOwner) {
      // The model spells an owner check "owner": an attribute of that name cannot be told apart.
      Error(at,
            "an attribute named \"owner\" cannot be used in `where` (\"owner\" alone asks "
            "for the value to be recorded as owned by the caller)");
      continue;
    }
    if (value.compare(0, kPrefix.size(), kPrefix) != 0 ||
        !IsAttributeName(value.substr(kPrefix.size()))) {
      Error(at, "must be \"caller.<attribute>\" or \"owner\", not " + Quoted(value));
      continue;
    }
    rule->where[param] = value.substr(kPrefix.size());
  }
}

// A JSON pointer (RFC 6901) to a member: starts with '/', every '~' is "~0" or "~1".
bool IsMemberPointer(const std::string& pointer) {
  if (pointer.empty() || pointer.front() != '/') return false;
  for (size_t i = 0; i < pointer.size(); ++i) {
    if (pointer[i] == '~' &&
        (i + 1 >= pointer.size() || (pointer[i + 1] != '0' && pointer[i + 1] != '1'))) {
      return false;
    }
  }
  return true;
}

void ModelBuilder::BuildOwnership(const Value& value, const std::string& pointer, Rule* rule) {
  if (value.HasMember("record_owner")) {
    rule->record_owner = value["record_owner"].GetString();
    if (!IsMemberPointer(rule->record_owner)) {
      Error(JoinPointer(pointer, "record_owner"),
            "must be a JSON pointer into the answer, starting with '/' (~ escaped as ~0, / as "
            "~1), not " +
                Quoted(rule->record_owner));
    } else if (rule->effect == Effect::kDeny) {
      Error(JoinPointer(pointer, "record_owner"), "a deny rule forwards nothing to record");
    }
  }
  if (value.HasMember("owner_group")) {
    rule->owner_group = value["owner_group"].GetString();
    const bool checks_owner =
        std::any_of(rule->where.begin(), rule->where.end(),
                    [](const auto& binding) { return binding.second == "owner"; });
    if (rule->owner_group.rfind("caller.", 0) == 0) {
      Error(JoinPointer(pointer, "owner_group"), "names the attribute itself (" +
                                                     Quoted(rule->owner_group.substr(7)) +
                                                     "), not " + Quoted(rule->owner_group));
    } else if (!IsAttributeName(rule->owner_group)) {
      Error(JoinPointer(pointer, "owner_group"),
            "must be a caller attribute name (letters, digits, '_', '-', '.'), not " +
                Quoted(rule->owner_group));
    } else if (!checks_owner) {
      Error(JoinPointer(pointer, "owner_group"),
            "applies only to a rule whose \"where\" binds a parameter to \"owner\"");
    }
  }
  if (value.HasMember("query")) {
    const std::string base = JoinPointer(pointer, "query");
    for (const auto& member : value["query"].GetObject()) {
      std::string name = member.name.GetString();
      if (name.empty()) {
        Error(base, "a forced query parameter needs a name");
        continue;
      }
      rule->query[name] = member.value.GetString();
    }
  }
}

// A cost above a bucket's burst could never be paid: every such call would be rejected.
void ModelBuilder::CheckCost(const Rule& rule, const Config& config) {
  std::vector<const Limit*> buckets;
  for (const Limit& limit : rule.limits) buckets.push_back(&limit);
  auto upstream = config.upstreams.find(rule.upstream);
  if (upstream != config.upstreams.end()) {
    for (const Limit& limit : upstream->second.limits) buckets.push_back(&limit);
  }
  for (const Limit* limit : buckets) {
    if (rule.cost_pointer.empty() && rule.cost > limit->burst) {
      Error(JoinPointer(rule.pointer, "cost"),
            "cost " + std::to_string(rule.cost) + " exceeds the burst " +
                std::to_string(limit->burst) + " of limit " + Quoted(limit->name) +
                ": no call could ever pass");
      return;
    }
  }
}

Caller ModelBuilder::BuildCaller(const std::string& name, const Value& value,
                                 const std::string& pointer, const Config& config) {
  Caller caller;
  caller.name = name;
  if (!syntax::IsValidName(name)) {
    Error(pointer,
          "caller name must hold only letters, digits, '.', '_' and '-', and start with a letter "
          "or digit");
  }

  const Value& keys = value["key_sha256"];
  const std::string keys_pointer = JoinPointer(pointer, "key_sha256");
  for (rapidjson::SizeType i = 0; i < keys.Size(); ++i) {
    std::string at = JoinPointer(keys_pointer, i);
    std::string hash = keys[i].GetString();
    // The value is never echoed: someone may have pasted the key itself here by mistake.
    if (!syntax::IsSha256Hex(hash)) {
      Error(at,
            "must be exactly 64 hex digits, the SHA-256 of the caller's key (tollgate keygen "
            "prints one); keys themselves never go in the config");
      continue;
    }
    std::transform(hash.begin(), hash.end(), hash.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    auto [owner, inserted] = key_owner_pointer_.emplace(hash, at);
    if (!inserted) {
      Error(at, "the same key hash is already listed at " + owner->second +
                    " (one key must identify one caller)");
      continue;
    }
    caller.key_sha256.push_back(std::move(hash));
  }

  const Value& roles = value["roles"];
  const std::string roles_pointer = JoinPointer(pointer, "roles");
  for (rapidjson::SizeType i = 0; i < roles.Size(); ++i) {
    std::string role = roles[i].GetString();
    if (!config.roles.count(role)) {
      if (!WasRemoved(JoinPointer("/roles", role))) {
        Error(JoinPointer(roles_pointer, i), "undefined role " + Quoted(role));
      }
      continue;
    }
    if (std::find(caller.roles.begin(), caller.roles.end(), role) == caller.roles.end()) {
      caller.roles.push_back(role);
    }
  }

  if (value.HasMember("attributes")) {
    for (const auto& attribute : value["attributes"].GetObject()) {
      std::vector<std::string>& values = caller.attributes[attribute.name.GetString()];
      for (const auto& item : attribute.value.GetArray()) values.emplace_back(item.GetString());
    }
  }

  caller.limits = BuildLimits(value, pointer, LimitScope::kCaller);
  // Only when every limit was built, so that index i is the document's index.
  const bool all_limits_built =
      !value.HasMember("limits") || value["limits"].Size() == caller.limits.size();
  for (size_t i = 0; all_limits_built && i < caller.limits.size(); ++i) {
    for (const std::string& role : caller.roles) {
      for (const Rule& rule : config.roles.at(role).rules) {
        if (rule.cost_pointer.empty() && rule.cost > caller.limits[i].burst) {
          Error(JoinPointer(JoinPointer(pointer, "limits"), i),
                "burst " + std::to_string(caller.limits[i].burst) + " is below the cost " +
                    std::to_string(rule.cost) + " of " + rule.pointer +
                    ": that rule could never pass for this caller");
        }
      }
    }
  }

  CheckSetAttributes(caller, pointer, config);
  if (value.HasMember("expires")) {
    std::string text = value["expires"].GetString();
    caller.expires = syntax::ParseRfc3339(text);
    if (!caller.expires) {
      Error(JoinPointer(pointer, "expires"),
            "must be an RFC 3339 time such as 2027-01-01T00:00:00Z, not " + Quoted(text));
    }
  }
  caller.disabled = value.HasMember("disabled") && value["disabled"].GetBool();
  if (value.HasMember("description")) caller.description = value["description"].GetString();
  return caller;
}

}  // namespace tollgate::config
