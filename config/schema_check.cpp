#include "config/schema_check.h"

#include <rapidjson/pointer.h>
#include <rapidjson/schema.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdlib>
#include <memory>

#include "config/syntax.h"

namespace tollgate::config {

extern const char kConfigSchemaJson[];

namespace {

// Far more than any real config has errors; bounds the repair loop on a pathological document.
constexpr int kMaxSchemaErrors = 100;

using rapidjson::Pointer;
using rapidjson::Value;

// The schema is a constant compiled into the binary, parsed once. A malformed schema is a build
// defect, caught by the unit tests, so it aborts rather than returning an error. It is destroyed
// at exit rather than leaked: RapidJSON packs string pointers into 48 bits, so a leak checker
// cannot see them from a live object and would report them as leaks.
struct EmbeddedSchema {
  EmbeddedSchema() {
    json.Parse(kConfigSchemaJson);
    if (json.HasParseError()) std::abort();
    schema = std::make_unique<rapidjson::SchemaDocument>(json);
  }
  rapidjson::Document json;
  std::unique_ptr<rapidjson::SchemaDocument> schema;  // refers into `json`; destroyed first
};

const EmbeddedSchema& Embedded() {
  static const EmbeddedSchema embedded;
  return embedded;
}

std::string PointerText(const Pointer& pointer) {
  rapidjson::StringBuffer buffer;
  pointer.Stringify(buffer);
  return buffer.GetString();
}

std::string ValueText(const Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  std::string text = buffer.GetString();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

std::string Join(const Value& array, const char* separator) {
  std::string text;
  for (const auto& item : array.GetArray()) {
    if (!text.empty()) text += separator;
    text += item.IsString() ? item.GetString() : ValueText(item);
  }
  return text;
}

std::string Quoted(const std::string& text) { return "\"" + text + "\""; }

// The reason for a failed keyword, worded for a person editing the config. `schema` is the
// schema node that failed and `value` the document value it failed on.
std::string Reason(const std::string& keyword, const Value& schema, const Value* value) {
  auto limit = [&](const char* name) -> std::string {
    auto it = schema.FindMember(name);
    return it == schema.MemberEnd() ? "?" : ValueText(it->value);
  };
  if (keyword == "type") {
    auto it = schema.FindMember("type");
    if (it == schema.MemberEnd()) return "wrong type";
    return "expected " +
           (it->value.IsArray() ? Join(it->value, " or ") : std::string(it->value.GetString()));
  }
  if (keyword == "enum") {
    std::string options;
    for (const auto& item : schema["enum"].GetArray()) {
      if (!options.empty()) options += ", ";
      options += ValueText(item);
    }
    return (value ? ValueText(*value) + " is not one of " : "expected one of ") + options;
  }
  if (keyword == "minimum") return "must be at least " + limit("minimum");
  if (keyword == "maximum") return "must be at most " + limit("maximum");
  if (keyword == "minLength") return "must not be empty";
  if (keyword == "maxLength") return "must be at most " + limit("maxLength") + " characters";
  if (keyword == "minItems") return "must list at least " + limit("minItems") + " item(s)";
  if (keyword == "maxItems") return "must list at most " + limit("maxItems") + " items";
  return "does not match the schema (" + keyword + ")";
}

// The required properties `object` lacks, per `schema`.
std::vector<std::string> MissingRequired(const Value& schema, const Value& object) {
  std::vector<std::string> missing;
  auto it = schema.FindMember("required");
  if (it == schema.MemberEnd() || !object.IsObject()) return missing;
  for (const auto& name : it->value.GetArray()) {
    if (!object.HasMember(name)) missing.emplace_back(name.GetString());
  }
  return missing;
}

// The first `count` tokens of `pointer`, as a pointer owning its tokens (RapidJSON's
// Pointer(tokens, count) constructor only borrows them).
Pointer Prefix(const Pointer& pointer, size_t count) {
  Pointer result;
  for (size_t i = 0; i < count; ++i) result = result.Append(pointer.GetTokens()[i]);
  return result;
}

// Removes the value at `pointer`, or rather its nearest ancestor that is an object member, so
// that array indices in later error messages keep matching the file. Returns the pointer of
// what was removed, or "" when nothing could be (the root itself is wrong).
std::string RemoveNearestMember(rapidjson::Document* document, Pointer pointer) {
  while (pointer.GetTokenCount() > 0) {
    size_t count = pointer.GetTokenCount();
    Pointer parent = Prefix(pointer, count - 1);
    Value* container = parent.Get(*document);
    const auto& last = pointer.GetTokens()[count - 1];
    if (container && container->IsObject()) {
      // EraseMember, not RemoveMember: keep the members' order, which later messages follow.
      container->EraseMember(
          container->FindMember(Value(rapidjson::StringRef(last.name, last.length))));
      return PointerText(pointer);
    }
    pointer = parent;
  }
  return "";
}

}  // namespace

bool WasRemoved(const std::set<std::string>& removed, const std::string& pointer) {
  for (const std::string& gone : removed) {
    if (pointer == gone ||
        (pointer.size() > gone.size() && pointer.compare(0, gone.size(), gone) == 0 &&
         pointer[gone.size()] == '/')) {
      return true;
    }
  }
  return false;
}

SchemaCheckResult CheckAgainstSchema(rapidjson::Document* document) {
  SchemaCheckResult result;
  for (int round = 0; round < kMaxSchemaErrors; ++round) {
    rapidjson::SchemaValidator validator(*Embedded().schema);
    if (document->Accept(validator)) return result;

    std::string keyword = validator.GetInvalidSchemaKeyword();
    Pointer value_pointer = validator.GetInvalidDocumentPointer();
    const Value* schema_node = validator.GetInvalidSchemaPointer().Get(Embedded().json);
    const Value* value = value_pointer.Get(*document);
    std::string pointer = PointerText(value_pointer);
    static const Value kEmptySchema(rapidjson::kObjectType);
    const Value& schema = schema_node ? *schema_node : kEmptySchema;

    bool report = true;
    std::string reason;
    if (keyword == "additionalProperties") {
      // The validator points at the unknown property itself; name it on its object.
      size_t count = value_pointer.GetTokenCount();
      const auto& last = value_pointer.GetTokens()[count - 1];
      reason = "unknown property " + Quoted(std::string(last.name, last.length));
      pointer = PointerText(Prefix(value_pointer, count - 1));
    } else if (keyword == "required") {
      std::vector<std::string> missing =
          value ? MissingRequired(schema, *value) : std::vector<std::string>{};
      std::string names;
      for (const std::string& name : missing) {
        // A property we removed ourselves was already reported: drop its object silently.
        if (result.removed.count(syntax::JoinPointer(pointer, name))) report = false;
        names += (names.empty() ? "" : ", ") + Quoted(name);
      }
      reason = std::string("missing required property ") + names;
    } else {
      reason = Reason(keyword, schema, value);
    }
    if (report) result.errors.push_back({pointer, reason});
    std::string removed = RemoveNearestMember(document, value_pointer);
    if (removed.empty()) {
      result.usable = false;
      return result;
    }
    result.removed.insert(removed);
  }
  result.errors.push_back({"", "too many schema errors; fix these first"});
  result.usable = false;
  return result;
}

}  // namespace tollgate::config
