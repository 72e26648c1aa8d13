#include "policies/policy_warnings.h"

#include <algorithm>
#include <set>
#include <string_view>

namespace tollgate::policies {
namespace {

// A template as the loader validated it, split into segments. Parsed here from the text rather
// than through PathTemplate, which keeps its segments private: the grammar is small (literal,
// `{name}`, `**` last) and the loader has already refused anything else.
struct Segment {
  enum class Kind { kLiteral, kParam, kRest } kind;
  std::string value;  // literal text or parameter name
};

std::vector<Segment> Split(std::string_view path) {
  std::vector<Segment> out;
  size_t start = 1;
  while (start <= path.size() && path.size() > 1) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view text = path.substr(start, end - start);
    if (text == "**") {
      out.push_back({Segment::Kind::kRest, ""});
    } else if (text.size() >= 2 && text.front() == '{' && text.back() == '}') {
      out.push_back({Segment::Kind::kParam, std::string(text.substr(1, text.size() - 2))});
    } else {
      out.push_back({Segment::Kind::kLiteral, std::string(text)});
    }
    start = end + 1;
  }
  return out;
}

// Some path matches both templates.
bool TemplatesOverlap(const std::vector<Segment>& a, const std::vector<Segment>& b) {
  for (size_t i = 0;; ++i) {
    bool a_rest = i < a.size() && a[i].kind == Segment::Kind::kRest;
    bool b_rest = i < b.size() && b[i].kind == Segment::Kind::kRest;
    // `**` matches zero or more segments, so it takes whatever the other has left.
    if (a_rest || b_rest) return true;
    if (i == a.size() || i == b.size()) return i == a.size() && i == b.size();
    if (a[i].kind == Segment::Kind::kLiteral && b[i].kind == Segment::Kind::kLiteral &&
        a[i].value != b[i].value) {
      return false;
    }
  }
}

// The methods a rule matches, GET standing for HEAD too (Decide's rule for both effects). No
// `methods`: every method the gateway forwards for a deny rule, all of them but OPTIONS for an
// allow rule (as Decide reads them).
std::set<std::string> Methods(const config::Rule& rule) {
  if (rule.methods.empty()) {
    std::set<std::string> all = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
    if (rule.effect == config::Effect::kDeny) all.insert("OPTIONS");
    return all;
  }
  std::set<std::string> out(rule.methods.begin(), rule.methods.end());
  if (out.count("GET")) out.insert("HEAD");
  return out;
}

// The methods both rules match, "/"-joined; empty when they share none.
std::string SharedMethods(const config::Rule& deny, const config::Rule& allow) {
  std::set<std::string> d = Methods(deny);
  std::set<std::string> a = Methods(allow);
  if (deny.methods.empty() && allow.methods.empty()) return "every method";
  std::vector<std::string> shared;
  std::set_intersection(d.begin(), d.end(), a.begin(), a.end(), std::back_inserter(shared));
  std::string text;
  for (const std::string& m : shared) text += (text.empty() ? "" : "/") + m;
  return text;
}

// The deny's `where` bindings the allow does not imply, as "{p} in caller.X" phrases.
std::vector<std::string> UnimpliedWhere(const config::Rule& deny,
                                        const std::vector<Segment>& deny_path,
                                        const config::Rule& allow,
                                        const std::vector<Segment>& allow_path) {
  std::vector<std::string> out;
  for (const auto& [param, attribute] : deny.where) {
    bool implied = false;
    for (size_t i = 0; i < deny_path.size(); ++i) {
      if (deny_path[i].kind != Segment::Kind::kParam || deny_path[i].value != param) continue;
      if (i < allow_path.size() && allow_path[i].kind == Segment::Kind::kParam) {
        auto bound = allow.where.find(allow_path[i].value);
        implied = bound != allow.where.end() && bound->second == attribute;
      }
      break;
    }
    if (!implied) out.push_back("{" + param + "} is in caller." + attribute);
  }
  return out;
}

std::string Pointer(const config::Rule& rule) {
  if (!rule.pointer.empty()) return rule.pointer;
  return "/roles/" + rule.role + "/rules/" + std::to_string(rule.index);
}

std::string Join(const std::vector<std::string>& items, const char* separator) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : separator) + item;
  return text;
}

}  // namespace

std::vector<PolicyWarning> FindNarrowDenies(const config::Config& config) {
  std::vector<PolicyWarning> warnings;
  for (const auto& [deny_role, deny_role_rules] : config.roles) {
    for (const config::Rule& deny : deny_role_rules.rules) {
      if (deny.effect != config::Effect::kDeny || deny.where.empty()) continue;
      std::vector<Segment> deny_path = Split(deny.path);
      for (const auto& [allow_role, allow_role_rules] : config.roles) {
        for (const config::Rule& allow : allow_role_rules.rules) {
          if (allow.effect != config::Effect::kAllow || allow.upstream != deny.upstream) continue;
          std::string methods = SharedMethods(deny, allow);
          if (methods.empty()) continue;
          std::vector<Segment> allow_path = Split(allow.path);
          if (!TemplatesOverlap(deny_path, allow_path)) continue;
          std::vector<std::string> unimplied = UnimpliedWhere(deny, deny_path, allow, allow_path);
          if (unimplied.empty()) continue;

          PolicyWarning w;
          w.pointer = Pointer(deny);
          w.other_pointer = Pointer(allow);
          std::string holder = deny_role == allow_role
                                   ? "a caller with role " + deny_role
                                   : "a caller holding roles " + deny_role + " and " + allow_role;
          w.message = w.pointer + ": deny rule is narrower than allow rule " + w.other_pointer +
                      ": both match " + methods + " on " + deny.upstream + " " + deny.path +
                      " (allow: " + allow.path + "), but the deny applies only where " +
                      Join(unimplied, " and ") + " and the allow has no such limit, so " + holder +
                      " is allowed those requests for every other value. Drop the deny's "
                      "`where` to deny everywhere, or give the allow the same `where`.";
          warnings.push_back(std::move(w));
        }
      }
    }
  }
  return warnings;
}

}  // namespace tollgate::policies
