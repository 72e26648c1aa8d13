#include "policies/path_template.h"

#include <array>

#include "policies/normalise.h"

namespace tollgate::policies {
namespace {

bool IsParamNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

std::optional<PathTemplate> Fail(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
  return std::nullopt;
}

// A literal that NormaliseTarget would rewrite or refuse can never equal a normalised path
// segment, so a rule holding one would silently never match: refuse it instead.
std::string LiteralProblem(std::string_view literal) {
  if (literal.find_first_of("{}") != std::string_view::npos) {
    return "'{' or '}' inside literal segment '" + std::string(literal) + "'";
  }
  if (literal.find('*') != std::string_view::npos) {
    return "'*' is only allowed as a whole '**' segment, in '" + std::string(literal) + "'";
  }
  if (literal.find('?') != std::string_view::npos) return "a template holds no query";
  std::string as_path = "/" + std::string(literal);
  NormalisedTarget normalised = NormaliseTarget(as_path);
  if (!normalised.ok) {
    return "literal segment '" + std::string(literal) +
           "' is not a valid path segment: " + normalised.error;
  }
  if (normalised.path != as_path) {
    return "literal segment '" + std::string(literal) + "' is not in normalised form (write '" +
           normalised.path.substr(1) + "')";
  }
  return "";
}

}  // namespace

std::optional<PathTemplate> PathTemplate::Compile(std::string_view text, std::string* error) {
  if (text.empty() || text[0] != '/') return Fail(error, "template must start with '/'");
  PathTemplate result;
  result.text_ = std::string(text);
  if (text == "/") return result;

  size_t start = 1;
  while (true) {
    size_t end = text.find('/', start);
    std::string_view segment =
        text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    bool last = end == std::string_view::npos;
    if (segment.empty()) return Fail(error, "empty segment in template");
    if (!result.segments_.empty() && result.segments_.back().kind == Segment::Kind::kRest) {
      return Fail(error, "'**' must be the last segment");
    }
    if (segment == "**") {
      result.segments_.push_back({Segment::Kind::kRest, ""});
    } else if (segment.front() == '{' && segment.back() == '}' && segment.size() >= 2) {
      std::string_view name = segment.substr(1, segment.size() - 2);
      if (name.empty()) return Fail(error, "empty parameter name '{}'");
      for (char c : name) {
        if (!IsParamNameChar(c)) {
          return Fail(error, "parameter name '" + std::string(name) +
                                 "' may hold only letters, digits and '_'");
        }
      }
      if (result.ParamIndex(name) >= 0) {
        return Fail(error, "duplicate parameter name '" + std::string(name) + "'");
      }
      if (result.param_names_.size() == kMaxParams) {
        return Fail(error, "more than " + std::to_string(kMaxParams) + " parameters");
      }
      result.param_names_.emplace_back(name);
      result.segments_.push_back({Segment::Kind::kParam, std::string(name)});
    } else {
      std::string problem = LiteralProblem(segment);
      if (!problem.empty()) return Fail(error, problem);
      result.segments_.push_back({Segment::Kind::kLiteral, std::string(segment)});
    }
    if (last) break;
    start = end + 1;
  }
  return result;
}

int PathTemplate::ParamIndex(std::string_view name) const {
  for (size_t i = 0; i < param_names_.size(); ++i) {
    if (param_names_[i] == name) return static_cast<int>(i);
  }
  return -1;
}

bool PathTemplate::MatchViews(std::string_view path, std::string_view* values) const {
  if (path.empty() || path[0] != '/') return false;
  // "/" is the root: zero segments. Otherwise `pos` is where the next unread segment starts.
  bool at_end = path.size() == 1;
  size_t pos = 1;
  size_t param = 0;
  for (const Segment& segment : segments_) {
    if (segment.kind == Segment::Kind::kRest) {
      if (at_end) return true;
      // Paths reaching here are normalised; refusing malformed rests keeps Match safe even if
      // a caller forgets, instead of letting "**" swallow "//" or a trailing '/'.
      std::string_view rest = path.substr(pos);
      return !rest.empty() && rest.back() != '/' && rest.find("//") == std::string_view::npos;
    }
    if (at_end) return false;
    size_t end = path.find('/', pos);
    std::string_view value =
        path.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos);
    if (value.empty()) return false;
    if (segment.kind == Segment::Kind::kLiteral) {
      if (value != segment.value) return false;
    } else {
      values[param++] = value;
    }
    if (end == std::string_view::npos) {
      at_end = true;
    } else {
      pos = end + 1;
    }
  }
  return at_end;
}

bool PathTemplate::Match(std::string_view path, PathParams* params) const {
  std::array<std::string_view, kMaxParams> values;
  if (!MatchViews(path, values.data())) return false;
  if (params != nullptr) {
    params->clear();
    params->reserve(param_names_.size());
    for (size_t i = 0; i < param_names_.size(); ++i) {
      params->emplace_back(param_names_[i], std::string(values[i]));
    }
  }
  return true;
}

}  // namespace tollgate::policies
