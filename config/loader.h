// Loads and validates a tollgate config document into the immutable model (config/model.h).
//
// Validation has two layers: the JSON Schema in config/tollgate.schema.json (compiled into the
// binary, applied with RapidJSON's SchemaValidator), then semantic checks the schema cannot
// express (unknown upstream/role references, malformed rates, bad key hashes, duplicate keys,
// bad `where` values, templates with `**` not last, ...). Every error names the JSON pointer of
// the offending value and a reason a person can act on; none ever contains a secret value.
// Stateless and thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"

namespace tollgate::config {

struct ConfigError {
  std::string pointer;  // JSON pointer, "" for the document itself
  std::string message;
};

// "pointer: message", or just the message when the pointer is empty.
std::string FormatError(const ConfigError& error);

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when errors is not empty
  std::vector<ConfigError> errors;
  bool ok() const { return config != nullptr; }
};

// Where secrets come from. The default reads the process environment and the file system;
// tests pass their own.
struct SecretSource {
  std::function<std::optional<std::string>(const std::string& name)> env;
  std::function<std::optional<std::string>(const std::string& path)> file;
  static SecretSource FromProcess();
};

LoadResult LoadConfigFile(const std::string& path,
                          const SecretSource& secrets = SecretSource::FromProcess());
LoadResult LoadConfigString(std::string_view json,
                            const SecretSource& secrets = SecretSource::FromProcess(),
                            const std::string& source_path = "");

// "N/s" | "N/min" | "N/h" | "N/day" (N a positive integer). nullopt when malformed.
std::optional<Rate> ParseRate(std::string_view text);

// The top-level entries ("listen", "roles/ops", "admin/tokens/ops", ...) added, removed or
// changed between two loads of a document, in name order (Config::entry_digests). Names only.
std::vector<std::string> ChangedEntries(const Config& before, const Config& after);

// Human summary printed by `tollgate check-config`: upstreams, roles, callers, limits. No secrets.
std::string DescribeConfig(const Config& config);

}  // namespace tollgate::config
