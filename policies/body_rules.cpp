#include "policies/body_rules.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cmath>
#include <cstdio>
#include <optional>

namespace tollgate::policies {
namespace {

using rapidjson::Document;
using rapidjson::Value;

// Above 2^53 a double no longer holds every integer: no cost or bound that large is meant.
constexpr double kMaxExactNumber = 9007199254740992.0;

struct Refusal {
  int status;
  std::string message;
};

// RFC 6901 tokens of `pointer` ("" is the whole document). False when malformed.
bool SplitPointer(const std::string& pointer, std::vector<std::string>* tokens) {
  tokens->clear();
  if (pointer.empty()) return true;
  if (pointer.front() != '/') return false;
  std::string token;
  for (size_t i = 1; i <= pointer.size(); ++i) {
    if (i == pointer.size() || pointer[i] == '/') {
      tokens->push_back(std::move(token));
      token.clear();
    } else if (pointer[i] == '~') {
      if (i + 1 >= pointer.size() || (pointer[i + 1] != '0' && pointer[i + 1] != '1')) {
        return false;
      }
      token += pointer[i + 1] == '0' ? '~' : '/';
      ++i;
    } else {
      token += pointer[i];
    }
  }
  return true;
}

// A decimal array index without leading zeros, below `size`.
bool ArrayIndex(const std::string& token, rapidjson::SizeType size, rapidjson::SizeType* index) {
  if (token.empty() || token.size() > 9 || (token.size() > 1 && token[0] == '0')) return false;
  uint64_t n = 0;
  for (char c : token) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n >= size) return false;
  *index = static_cast<rapidjson::SizeType>(n);
  return true;
}

// The value at `tokens`, or nullptr when absent.
Value* Find(Value& root, const std::vector<std::string>& tokens) {
  Value* at = &root;
  for (const std::string& token : tokens) {
    if (at->IsObject()) {
      auto member =
          at->FindMember(Value(token.data(), static_cast<rapidjson::SizeType>(token.size())));
      if (member == at->MemberEnd()) return nullptr;
      at = &member->value;
    } else if (at->IsArray()) {
      rapidjson::SizeType index;
      if (!ArrayIndex(token, at->Size(), &index)) return nullptr;
      at = &(*at)[index];
    } else {
      return nullptr;
    }
  }
  return at;
}

// The parent of the field at `tokens`, objects created on the way; nullptr when something on
// the way is neither an object nor an array holding that index.
Value* Parent(Document& doc, const std::vector<std::string>& tokens) {
  Value* at = &doc;
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    const std::string& token = tokens[i];
    if (at->IsObject()) {
      Value name(token.data(), static_cast<rapidjson::SizeType>(token.size()));
      auto member = at->FindMember(name);
      if (member == at->MemberEnd()) {
        at->AddMember(
            Value(token.data(), static_cast<rapidjson::SizeType>(token.size()), doc.GetAllocator()),
            Value(rapidjson::kObjectType), doc.GetAllocator());
        at = &(at->MemberEnd() - 1)->value;
      } else {
        at = &member->value;
      }
    } else if (at->IsArray()) {
      rapidjson::SizeType index;
      if (!ArrayIndex(token, at->Size(), &index)) return nullptr;
      at = &(*at)[index];
    } else {
      return nullptr;
    }
  }
  return at->IsObject() || at->IsArray() ? at : nullptr;
}

// Stores `value` at `tokens` (never the root: config pointers are not ""). False when the path
// cannot hold it.
bool Store(Document& doc, const std::vector<std::string>& tokens, Value value) {
  Value* parent = Parent(doc, tokens);
  if (parent == nullptr) return false;
  const std::string& last = tokens.back();
  if (parent->IsArray()) {
    rapidjson::SizeType index;
    if (!ArrayIndex(last, parent->Size(), &index)) return false;
    (*parent)[index] = value;
    return true;
  }
  Value name(last.data(), static_cast<rapidjson::SizeType>(last.size()));
  auto member = parent->FindMember(name);
  if (member != parent->MemberEnd()) {
    member->value = value;
  } else {
    parent->AddMember(
        Value(last.data(), static_cast<rapidjson::SizeType>(last.size()), doc.GetAllocator()),
        value, doc.GetAllocator());
  }
  return true;
}

std::string ReplaceCaller(std::string text, const std::string& caller) {
  static const std::string kCaller = "{caller}";
  for (size_t at = text.find(kCaller); at != std::string::npos;
       at = text.find(kCaller, at + caller.size())) {
    text.replace(at, kCaller.size(), caller);
  }
  return text;
}

// A JSON value written in the config (as text), parsed into `doc`'s allocator; strings have
// {caller} replaced.
Value Literal(const std::string& json, const config::Caller& caller, Document& doc) {
  Document parsed(&doc.GetAllocator());
  parsed.Parse(json.data(), json.size());
  if (parsed.HasParseError()) return Value();  // the config builder checked it: not reached
  if (parsed.IsString()) {
    std::string text = ReplaceCaller(parsed.GetString(), caller.name);
    return Value(text.data(), static_cast<rapidjson::SizeType>(text.size()), doc.GetAllocator());
  }
  return Value(parsed, doc.GetAllocator());
}

std::string Number(double n) {
  if (std::floor(n) == n && std::fabs(n) < kMaxExactNumber) {
    return std::to_string(static_cast<int64_t>(n));
  }
  char text[32];
  snprintf(text, sizeof text, "%g", n);
  return text;
}

Value NumberValue(double n) {
  if (std::floor(n) == n && std::fabs(n) < kMaxExactNumber) {
    return Value(static_cast<int64_t>(n));
  }
  return Value(n);
}

class Applier {
 public:
  Applier(const config::Caller& caller, Document* doc, BodyRulesOutcome* out)
      : caller_(caller), doc_(*doc), out_(*out) {}

  // nullopt: the rule passed (and may have changed the body).
  std::optional<Refusal> Apply(const config::BodyRule& rule) {
    const std::string& field = rule.pointer;
    std::vector<std::string> tokens;
    if (!SplitPointer(field, &tokens) || tokens.empty()) {
      return Refusal{400, "body rule " + field + " is not a JSON pointer to a field"};
    }
    std::vector<std::string> did;
    Value* value = Find(doc_, tokens);
    if (rule.require && value == nullptr) {
      return Refusal{400, "body field " + field + " is required"};
    }
    if (rule.forbid && value != nullptr) {
      return Refusal{403, "body field " + field + " is not allowed here"};
    }
    if (rule.set) {
      Value wanted;
      if (auto refusal = Template(*rule.set, field, &wanted)) return refusal;
      if (value == nullptr || *value != wanted) {
        if (!Store(doc_, tokens, std::move(wanted))) return Unreachable(field);
        Changed(field, &did, "set");
      }
      value = Find(doc_, tokens);
    }
    if (rule.default_json && value == nullptr) {
      if (!Store(doc_, tokens, Literal(*rule.default_json, caller_, doc_))) {
        return Unreachable(field);
      }
      Changed(field, &did, "default");
      value = Find(doc_, tokens);
    }
    if (!rule.enum_json.empty() && value != nullptr) {
      bool listed = false;
      std::string allowed;
      for (const std::string& option : rule.enum_json) {
        if (Literal(option, caller_, doc_) == *value) listed = true;
        allowed += (allowed.empty() ? "" : ", ") + option;
      }
      if (!listed) {
        return Refusal{403, "body field " + field + " must be one of " + allowed};
      }
    }
    if ((rule.max || rule.min) && value != nullptr) {
      if (!value->IsNumber()) return Refusal{400, "body field " + field + " must be a number"};
      const double n = value->GetDouble();
      if (!std::isfinite(n) || std::fabs(n) > kMaxExactNumber) {
        return Refusal{400, "body field " + field + " is too large a number"};
      }
      if (rule.max && n > *rule.max) {
        if (!rule.clamp) {
          return Refusal{403, "body field " + field + " exceeds the maximum " + Number(*rule.max)};
        }
        *value = NumberValue(*rule.max);
        Changed(field, &did, "clamped to " + Number(*rule.max));
      } else if (rule.min && n < *rule.min) {
        if (!rule.clamp) {
          return Refusal{403, "body field " + field + " is below the minimum " + Number(*rule.min)};
        }
        *value = NumberValue(*rule.min);
        Changed(field, &did, "clamped to " + Number(*rule.min));
      }
    }
    if (!rule.append.empty()) {
      if (value != nullptr && !value->IsArray()) {
        return Refusal{400, "body field " + field + " must be an array"};
      }
      if (value == nullptr) {
        if (!Store(doc_, tokens, Value(rapidjson::kArrayType))) return Unreachable(field);
        value = Find(doc_, tokens);
      }
      size_t appended = 0;
      for (const std::string& item : rule.append) {
        std::string text = ReplaceCaller(item, caller_.name);
        Value element(text.data(), static_cast<rapidjson::SizeType>(text.size()));
        bool present = false;
        for (const Value& existing : value->GetArray()) present = present || existing == element;
        if (present) continue;  // a repeated tag would say nothing more
        value->PushBack(
            Value(text.data(), static_cast<rapidjson::SizeType>(text.size()), doc_.GetAllocator()),
            doc_.GetAllocator());
        ++appended;
      }
      if (appended > 0) Changed(field, &did, "appended " + std::to_string(appended));
    }
    std::string step = field + ": ";
    if (did.empty()) {
      step += value == nullptr ? "absent, unchanged" : "allowed, unchanged";
    } else {
      for (size_t i = 0; i < did.size(); ++i) step += (i ? ", " : "") + did[i];
    }
    out_.steps.push_back(std::move(step));
    return std::nullopt;
  }

 private:
  // `set`: "{caller}", "caller.<attribute>" (its single value), or a JSON value as text.
  std::optional<Refusal> Template(const std::string& set, const std::string& field, Value* out) {
    static const std::string kPrefix = "caller.";
    if (set == "{caller}") {
      out->SetString(caller_.name.data(), static_cast<rapidjson::SizeType>(caller_.name.size()),
                     doc_.GetAllocator());
    } else if (set.compare(0, kPrefix.size(), kPrefix) == 0) {
      auto attribute = caller_.attributes.find(set.substr(kPrefix.size()));
      // Without exactly one value the field would be guessed: refused rather than forwarded.
      if (attribute == caller_.attributes.end() || attribute->second.size() != 1) {
        return Refusal{403, "body field " + field + " is set from the caller attribute \"" +
                                set.substr(kPrefix.size()) +
                                "\", which this caller does not have exactly once"};
      }
      const std::string& v = attribute->second.front();
      out->SetString(v.data(), static_cast<rapidjson::SizeType>(v.size()), doc_.GetAllocator());
    } else {
      *out = Literal(set, caller_, doc_);
    }
    return std::nullopt;
  }

  static Refusal Unreachable(const std::string& field) {
    return Refusal{400, "body field " + field + " cannot be written: its parent is not an object"};
  }

  void Changed(const std::string& field, std::vector<std::string>* did, std::string what) {
    did->push_back(std::move(what));
    for (const std::string& c : out_.changed) {
      if (c == field) return;
    }
    out_.changed.push_back(field);
  }

  const config::Caller& caller_;
  Document& doc_;
  BodyRulesOutcome& out_;
};

std::optional<Refusal> ReadCost(const std::string& pointer, Document& doc, uint64_t* cost) {
  std::vector<std::string> tokens;
  Value* value = SplitPointer(pointer, &tokens) ? Find(doc, tokens) : nullptr;
  if (value == nullptr) return Refusal{400, "body field " + pointer + " (the cost) is required"};
  if (!value->IsNumber()) {
    return Refusal{400, "body field " + pointer + " (the cost) must be a number"};
  }
  const double n = value->GetDouble();
  if (!std::isfinite(n) || n < 0 || n > kMaxExactNumber) {
    return Refusal{400, "body field " + pointer + " (the cost) must be a number from 0 to 2^53"};
  }
  *cost = static_cast<uint64_t>(std::ceil(n));
  return std::nullopt;
}

}  // namespace

BodyRulesOutcome ApplyBodyRules(const config::Rule& rule, std::string_view body,
                                const config::Caller& caller) {
  BodyRulesOutcome out;
  auto refuse = [&out](Refusal r) {
    out.status = r.status;
    out.message = std::move(r.message);
    out.rewritten = false;
    out.body.clear();
    return out;
  };
  if (!NeedsBody(rule)) return out;
  Document doc;
  // Iterative: a deeply nested body cannot exhaust the stack.
  doc.Parse<rapidjson::kParseIterativeFlag>(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return refuse({400, "the request body must be a JSON object (this route has body rules)"});
  }
  Applier applier(caller, &doc, &out);
  for (const config::BodyRule& body_rule : rule.body) {
    if (auto refusal = applier.Apply(body_rule)) return refuse(std::move(*refusal));
  }
  if (!rule.cost_pointer.empty()) {
    if (auto refusal = ReadCost(rule.cost_pointer, doc, &out.cost)) {
      return refuse(std::move(*refusal));
    }
    out.has_cost = true;
  }
  if (!out.changed.empty()) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    doc.Accept(writer);
    out.body.assign(buffer.GetString(), buffer.GetSize());
    out.rewritten = true;
  }
  return out;
}

}  // namespace tollgate::policies
