// Building policy configs in code for the policies' unit tests.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "config/model.h"

namespace tollgate::policies::testing {

// Adds role `name` with `rules`, filling in what the loader would (role, index, JSON pointer).
inline void AddRole(config::Config* config, const std::string& name,
                    std::vector<config::Rule> rules) {
  config::Role& role = config->roles[name];
  role.name = name;
  for (size_t i = 0; i < rules.size(); ++i) {
    rules[i].role = name;
    rules[i].index = i;
    rules[i].pointer = "/roles/" + name + "/rules/" + std::to_string(i);
  }
  role.rules = std::move(rules);
}

}  // namespace tollgate::policies::testing
