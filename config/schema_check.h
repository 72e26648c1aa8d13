// Validation of a parsed config document against the embedded JSON Schema
// (config/tollgate.schema.json), turning RapidJSON's validator result into ConfigErrors.
//
// RapidJSON 1.1's validator stops at the first error, so to report every error at once the
// offending value is removed from the document and validation runs again, until the document
// passes. The caller then runs its semantic checks on the repaired document, knowing every value
// has the type the schema promises, and uses the set of removed pointers to stay quiet about
// references to things that were removed (they were already reported).
// Stateless and thread-safe.
#pragma once

#include <rapidjson/document.h>

#include <set>
#include <string>
#include <vector>

#include "config/loader.h"

namespace tollgate::config {

struct SchemaCheckResult {
  std::vector<ConfigError> errors;
  std::set<std::string> removed;  // JSON pointers of values removed from the document
  bool usable = true;  // false when the document root itself is wrong: no semantic checks
};

// Validates *document, removing offending values from it as described above.
SchemaCheckResult CheckAgainstSchema(rapidjson::Document* document);

// True when `pointer` or one of its ancestors is in `removed`.
bool WasRemoved(const std::set<std::string>& removed, const std::string& pointer);

}  // namespace tollgate::config
