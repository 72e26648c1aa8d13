// A rule's body rules and body cost (issue 12): the checks the schema cannot express.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cctype>
#include <string>

#include "config/model_builder.h"
#include "config/syntax.h"

namespace tollgate::config {
namespace {

using rapidjson::Value;
using syntax::JoinPointer;

const std::string kCallerPrefix = "caller.";

// "" when `pointer` is an RFC 6901 pointer to a field (not the whole body), else the problem.
std::string CheckFieldPointer(const std::string& pointer) {
  if (pointer.empty() || pointer.front() != '/') {
    return "must be a JSON pointer to a field, starting with '/'";
  }
  for (size_t i = 0; i < pointer.size(); ++i) {
    if (pointer[i] == '~' &&
        (i + 1 >= pointer.size() || (pointer[i + 1] != '0' && pointer[i + 1] != '1'))) {
      return "'~' must be followed by 0 or 1 in a JSON pointer (~0 is '~', ~1 is '/')";
    }
  }
  return "";
}

std::string JsonText(const Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

bool IsAttributeName(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace

void ModelBuilder::BuildBody(const Value& value, const std::string& pointer, Rule* rule) {
  if (value.HasMember("cost")) {
    const Value& cost = value["cost"];
    if (cost.IsString()) {
      rule->cost_pointer = cost.GetString();
      std::string problem = CheckFieldPointer(rule->cost_pointer);
      if (!problem.empty()) Error(JoinPointer(pointer, "cost"), problem);
    } else {
      rule->cost = cost.GetUint64();
    }
  }
  if (!value.HasMember("body")) return;
  const std::string base = JoinPointer(pointer, "body");
  for (const auto& member : value["body"].GetObject()) {
    BodyRule body;
    body.pointer = member.name.GetString();
    const std::string at = JoinPointer(base, body.pointer);
    std::string problem = CheckFieldPointer(body.pointer);
    if (!problem.empty()) {
      Error(at, problem);
      continue;
    }
    const Value& ops = member.value;
    if (ops.HasMember("max")) body.max = ops["max"].GetDouble();
    if (ops.HasMember("min")) body.min = ops["min"].GetDouble();
    if (body.max && body.min && *body.min > *body.max) {
      Error(JoinPointer(at, "min"), "is above \"max\": no value could pass");
    }
    if (ops.HasMember("on_exceed")) {
      body.clamp = std::string(ops["on_exceed"].GetString()) == "clamp";
      if (!body.max && !body.min) {
        Error(JoinPointer(at, "on_exceed"), "needs \"max\" or \"min\"");
      }
    }
    if (ops.HasMember("default")) body.default_json = JsonText(ops["default"]);
    if (ops.HasMember("enum")) {
      for (const auto& option : ops["enum"].GetArray()) body.enum_json.push_back(JsonText(option));
    }
    body.forbid = ops.HasMember("forbid") && ops["forbid"].GetBool();
    body.require = ops.HasMember("require") && ops["require"].GetBool();
    if (ops.HasMember("set")) {
      const Value& set = ops["set"];
      std::string text = set.IsString() ? set.GetString() : "";
      if (text == "{caller}") {
        body.set = text;
      } else if (set.IsString() && text.compare(0, kCallerPrefix.size(), kCallerPrefix) == 0) {
        if (!IsAttributeName(text.substr(kCallerPrefix.size()))) {
          Error(JoinPointer(at, "set"), "\"caller.<attribute>\" names no attribute");
        }
        body.set = text;
      } else {
        body.set = JsonText(set);
      }
    }
    if (ops.HasMember("append")) {
      for (const auto& item : ops["append"].GetArray()) body.append.emplace_back(item.GetString());
    }
    if (body.forbid && (body.require || body.set || body.default_json || !body.append.empty())) {
      Error(JoinPointer(at, "forbid"),
            "contradicts \"require\", \"set\", \"default\" or \"append\" on the same field");
    }
    rule->body.push_back(std::move(body));
  }
}

// `set` takes an attribute's single value: a caller holding several could not say which.
void ModelBuilder::CheckSetAttributes(const Caller& caller, const std::string& pointer,
                                      const Config& config) {
  for (const std::string& role : caller.roles) {
    for (const Rule& rule : config.roles.at(role).rules) {
      for (const BodyRule& body : rule.body) {
        if (!body.set || body.set->compare(0, kCallerPrefix.size(), kCallerPrefix) != 0) continue;
        const std::string name = body.set->substr(kCallerPrefix.size());
        auto attribute = caller.attributes.find(name);
        if (attribute != caller.attributes.end() && attribute->second.size() > 1) {
          Error(JoinPointer(JoinPointer(pointer, "attributes"), name),
                "holds " + std::to_string(attribute->second.size()) + " values, but " +
                    JoinPointer(JoinPointer(rule.pointer, "body"), body.pointer) +
                    " sets a field from it (one value needed)");
        }
      }
    }
  }
}

}  // namespace tollgate::config
