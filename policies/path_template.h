// A compiled route template: literal segments, `{name}` (exactly one segment, bound by name),
// `**` (the rest of the path, zero or more segments, last only). Matching is a linear walk over
// segments: no regex engine, cost proportional to the path length.
// Literal segments must already be in normalised form (see normalise.h: unreserved characters
// raw, other escapes upper-case), since they are compared byte for byte with normalised paths.
// The root template "/" has no segments and matches only the path "/".
// Immutable after Compile; Match is const and thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tollgate::policies {

using PathParams = std::vector<std::pair<std::string, std::string>>;

class PathTemplate {
 public:
  // Bounded so that matching on the hot path can bind parameters into a stack array.
  static constexpr size_t kMaxParams = 16;

  // nullopt and *error set when the template is malformed (no leading '/', `**` not last,
  // empty or duplicate `{}` names, a `{` inside a literal, ...).
  static std::optional<PathTemplate> Compile(std::string_view text, std::string* error);

  // `path` is a normalised path (see normalise.h) relative to the upstream, e.g.
  // "/v3beta1/organizations/org-1/sessions". Segments compare case-sensitively.
  // On a match, fills *params (if given) with the `{name}` bindings in template order.
  bool Match(std::string_view path, PathParams* params) const;

  // The allocation-free form of Match for the request path: on a match, values[i] is a view
  // into `path` of the segment bound to param_names()[i]. `values` must have room for
  // param_names().size() entries (at most kMaxParams).
  bool MatchViews(std::string_view path, std::string_view* values) const;

  const std::string& text() const { return text_; }
  // The `{name}` parameters in template order.
  const std::vector<std::string>& param_names() const { return param_names_; }
  // Position of `name` in param_names(), or -1 when the template has no such parameter.
  int ParamIndex(std::string_view name) const;

 private:
  struct Segment {
    enum class Kind { kLiteral, kParam, kRest } kind;
    std::string value;  // literal text or parameter name
  };
  std::string text_;
  std::vector<Segment> segments_;
  std::vector<std::string> param_names_;
};

}  // namespace tollgate::policies
