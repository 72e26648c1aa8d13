#include "config/loader.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <fstream>
#include <set>
#include <sstream>

#include "config/model_builder.h"
#include "config/schema_check.h"
#include "config/syntax.h"

namespace tollgate::config {
namespace {

ConfigError ParseError(std::string_view json, const rapidjson::Document& document) {
  size_t offset = document.GetErrorOffset();
  size_t line = 1;
  size_t column = 1;
  for (size_t i = 0; i < offset && i < json.size(); ++i) {
    if (json[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return {"", "invalid JSON at line " + std::to_string(line) + ", column " +
                  std::to_string(column) + " (offset " + std::to_string(offset) +
                  "): " + rapidjson::GetParseError_En(document.GetParseError())};
}

// RapidJSON keeps both members of a duplicated name and lookups find the first, so a second
// definition would be silently ignored: report it instead.
void CheckDuplicateNames(const rapidjson::Value& value, const std::string& pointer,
                         std::vector<ConfigError>* errors) {
  if (value.IsObject()) {
    std::set<std::string> seen;
    for (const auto& member : value.GetObject()) {
      std::string name(member.name.GetString(), member.name.GetStringLength());
      if (!seen.insert(name).second) {
        errors->push_back(
            {syntax::JoinPointer(pointer, name), "is defined twice in the same object"});
      }
      CheckDuplicateNames(member.value, syntax::JoinPointer(pointer, name), errors);
    }
  } else if (value.IsArray()) {
    for (rapidjson::SizeType i = 0; i < value.Size(); ++i) {
      CheckDuplicateNames(value[i], syntax::JoinPointer(pointer, i), errors);
    }
  }
}

}  // namespace

std::string FormatError(const ConfigError& error) {
  return error.pointer.empty() ? error.message : error.pointer + ": " + error.message;
}

LoadResult LoadConfigString(std::string_view json, const SecretSource& secrets,
                            const std::string& source_path) {
  LoadResult result;
  rapidjson::Document document;
  document.Parse(json.data(), json.size());
  if (document.HasParseError()) {
    result.errors.push_back(ParseError(json, document));
    return result;
  }
  CheckDuplicateNames(document, "", &result.errors);

  SchemaCheckResult schema = CheckAgainstSchema(&document);
  result.errors.insert(result.errors.end(), schema.errors.begin(), schema.errors.end());
  if (!schema.usable) return result;

  Config config = ModelBuilder(secrets, schema.removed, &result.errors).Build(document);
  if (!result.errors.empty()) return result;
  config.source_path = source_path;
  result.config = std::make_shared<const Config>(std::move(config));
  return result;
}

LoadResult LoadConfigFile(const std::string& path, const SecretSource& secrets) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  if (in) content << in.rdbuf();
  if (!in || in.bad()) {
    LoadResult result;
    result.errors.push_back({"", "cannot read config file \"" + path + "\""});
    return result;
  }
  return LoadConfigString(content.str(), secrets, path);
}

}  // namespace tollgate::config
