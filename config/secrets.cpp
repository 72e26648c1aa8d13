#include "config/secrets.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "config/syntax.h"

namespace tollgate::config {
namespace {

std::string Quoted(const std::string& text) { return "\"" + text + "\""; }

// A secret ends up in an HTTP header or a Redis AUTH: a CR or LF inside one would let it split
// the header, so it is refused here rather than trusted downstream.
bool HasControlCharacter(const std::string& value) {
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

SecretSource SecretSource::FromProcess() {
  SecretSource source;
  source.env = [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
  source.file = [](const std::string& path) -> std::optional<std::string> {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream content;
    content << in.rdbuf();
    if (in.bad()) return std::nullopt;
    return content.str();
  };
  return source;
}

ResolvedSecret ResolveSecret(const rapidjson::Value& object, const std::string& pointer,
                             const std::string& prefix, bool optional, const SecretSource& source,
                             std::vector<ConfigError>* errors) {
  const std::string env_key = prefix + "_env";
  const std::string file_key = prefix + "_file";
  const bool has_env = object.HasMember(env_key.c_str());
  const bool has_file = object.HasMember(file_key.c_str());
  ResolvedSecret secret;
  if (has_env && has_file) {
    errors->push_back(
        {pointer, "give " + Quoted(env_key) + " or " + Quoted(file_key) + ", not both"});
    return secret;
  }
  if (!has_env && !has_file) {
    if (!optional) {
      errors->push_back({pointer, "needs " + Quoted(env_key) + " or " + Quoted(file_key)});
    }
    return secret;
  }

  std::optional<std::string> value;
  std::string what;
  std::string at;
  if (has_env) {
    std::string name = object[env_key.c_str()].GetString();
    at = syntax::JoinPointer(pointer, env_key);
    what = "environment variable " + Quoted(name);
    secret.source = "env:" + name;
    value = source.env ? source.env(name) : std::nullopt;
    if (!value || value->empty()) {
      errors->push_back({at, what + " is not set or is empty"});
      return {};
    }
  } else {
    std::string path = object[file_key.c_str()].GetString();
    at = syntax::JoinPointer(pointer, file_key);
    what = "secret file " + Quoted(path);
    secret.source = "file:" + path;
    value = source.file ? source.file(path) : std::nullopt;
    if (!value) {
      errors->push_back({at, "cannot read " + what});
      return {};
    }
    // Files written by editors and `echo` end with a newline that is not part of the secret.
    while (!value->empty() && (value->back() == '\n' || value->back() == '\r')) value->pop_back();
    if (value->empty()) {
      errors->push_back({at, what + " is empty"});
      return {};
    }
  }
  if (HasControlCharacter(*value)) {
    errors->push_back(
        {at, "the secret in " + what + " holds a control character (e.g. a newline)"});
    return {};
  }
  secret.value = std::move(*value);
  return secret;
}

}  // namespace tollgate::config
