#include "config/slot_tags.h"

#include <vector>

namespace tollgate::config {
namespace {

// Union-find over upstream names; the representative of a set is its smallest name.
class Groups {
 public:
  void Add(const std::string& name) { parent_.emplace(name, name); }
  const std::string& Find(const std::string& name) {
    std::string& parent = parent_.at(name);
    if (parent == name) return parent;
    parent = Find(parent);
    return parent;
  }
  void Join(const std::string& a, const std::string& b) {
    const std::string ra = Find(a);
    const std::string rb = Find(b);
    if (ra == rb) return;
    if (ra < rb) {
      parent_[rb] = ra;
    } else {
      parent_[ra] = rb;
    }
  }

 private:
  std::map<std::string, std::string> parent_;
};

std::string TagOf(std::string name) {
  for (char& c : name) {
    if (c == '{' || c == '}') c = '_';
  }
  return name;
}

}  // namespace

SlotTags ComputeSlotTags(const Config& config) {
  Groups groups;
  for (const auto& [name, upstream] : config.upstreams) groups.Add(name);
  // Every upstream each limit (by name: same-named limits share their state) can be charged on.
  std::map<std::string, std::set<std::string>> reach;
  for (const auto& [name, upstream] : config.upstreams) {
    for (const Limit& limit : upstream.limits) reach[limit.name].insert(name);
  }
  for (const auto& [role_name, role] : config.roles) {
    for (const Rule& rule : role.rules) {
      for (const Limit& limit : rule.limits) reach[limit.name].insert(rule.upstream);
    }
  }
  for (const auto& [caller_name, caller] : config.callers) {
    std::set<std::string> upstreams;
    for (const std::string& role_name : caller.roles) {
      auto role = config.roles.find(role_name);
      if (role == config.roles.end()) continue;
      for (const Rule& rule : role->second.rules) upstreams.insert(rule.upstream);
    }
    for (const Limit& limit : caller.limits) {
      std::set<std::string>& into = reach[limit.name];
      into.insert(upstreams.begin(), upstreams.end());
    }
  }
  for (auto& [limit, upstreams] : reach) {
    // A rule naming an upstream that does not exist is the loader's error, not a group.
    for (auto it = upstreams.begin(); it != upstreams.end();) {
      it = config.upstreams.count(*it) != 0 ? std::next(it) : upstreams.erase(it);
    }
    for (const std::string& upstream : upstreams) groups.Join(*upstreams.begin(), upstream);
  }
  SlotTags tags;
  for (const auto& [name, upstream] : config.upstreams) {
    const std::string tag = TagOf(groups.Find(name));
    tags.of_upstream[name] = tag;
    tags.groups[tag].upstreams.insert(name);
  }
  for (const auto& [limit, upstreams] : reach) {
    const std::string tag = upstreams.empty() ? "" : tags.of_upstream[*upstreams.begin()];
    tags.of_limit[limit] = tag;
    if (upstreams.size() > 1) tags.groups[tag].joined_by.insert(limit);
  }
  return tags;
}

}  // namespace tollgate::config
