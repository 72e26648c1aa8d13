// Resolution of the secrets a config names (`secret_env` / `secret_file`, `key_env` / `key_file`,
// `password_env` / `password_file`) through a SecretSource. Errors name the variable or the file,
// never a value. Internal to config/; stateless and thread-safe (as far as the SecretSource is).
#pragma once

#include <rapidjson/document.h>

#include <string>
#include <vector>

#include "config/loader.h"

namespace tollgate::config {

struct ResolvedSecret {
  std::string value;
  std::string source;  // "env:NAME" or "file:PATH"
};

// Reads `<prefix>_env` / `<prefix>_file` from `object` (at JSON pointer `pointer`). Exactly one
// must be present unless `optional`, in which case neither is fine and the result is empty.
// Appends to *errors and returns an empty secret on failure.
ResolvedSecret ResolveSecret(const rapidjson::Value& object, const std::string& pointer,
                             const std::string& prefix, bool optional, const SecretSource& source,
                             std::vector<ConfigError>* errors);

}  // namespace tollgate::config
