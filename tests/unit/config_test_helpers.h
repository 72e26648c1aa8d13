// Helpers shared by the config unit tests: an in-memory SecretSource and error lookups.
// Not thread-safe (tests only).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "config/loader.h"

namespace tollgate::config::testing {

// A SecretSource backed by maps, so tests never touch the process environment or the disk.
struct FakeSecrets {
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> files;

  SecretSource source() const {
    SecretSource source;
    source.env = [this](const std::string& name) -> std::optional<std::string> {
      auto it = env.find(name);
      if (it == env.end()) return std::nullopt;
      return it->second;
    };
    source.file = [this](const std::string& path) -> std::optional<std::string> {
      auto it = files.find(path);
      if (it == files.end()) return std::nullopt;
      return it->second;
    };
    return source;
  }
};

// Every variable any test config names, with values no message may ever contain.
inline FakeSecrets DummySecrets() {
  FakeSecrets secrets;
  for (const char* name :
       {"DEVIN_SERVICE_USER_TOKEN", "DEVO_TOKEN", "DEVO_API_KEY", "DEVO_API_SECRET",
        "TOLLGATE_DEMO_DEVIN_TOKEN", "TOLLGATE_DEMO_DEVO_TOKEN", "TOKEN", "REDIS_PASSWORD"}) {
    secrets.env[name] = std::string("sekrit-value-of-") + name;
  }
  return secrets;
}

inline std::string AllErrors(const LoadResult& result) {
  std::string text;
  for (const ConfigError& error : result.errors) text += FormatError(error) + "\n";
  return text;
}

// True when some error sits at `pointer` and its message contains `reason`.
inline bool HasError(const LoadResult& result, const std::string& pointer,
                     const std::string& reason) {
  for (const ConfigError& error : result.errors) {
    if (error.pointer == pointer && error.message.find(reason) != std::string::npos) return true;
  }
  return false;
}

}  // namespace tollgate::config::testing
