// Removal of JSON pointers from JSON response bodies (a rule's `redact` list). `*` as a
// pointer token matches every array element or object member (so a member literally named "*"
// cannot be addressed on its own). Pointers follow RFC 6901 (~0 is '~', ~1 is '/'); an array
// index token addresses the element at that index in the body as received, and every element
// or member a pointer addresses is removed. "" addresses the whole body, which is then replaced
// by `null`. At most kMaxPointers pointers per Redactor.
//
// The body is streamed through RapidJSON's SAX reader (iteratively, so deep nesting cannot
// exhaust the stack) and rewritten compactly only when something was removed; numbers are
// copied as written. An empty body is left alone (kUnchanged): there is nothing to leak.
// A default-constructed or empty Redactor leaves every body alone without parsing it.
// Immutable after Compile; Apply is const and thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::policies {

class Redactor {
 public:
  // Bounded so that the set of pointers alive at one depth fits one machine word.
  static constexpr size_t kMaxPointers = 64;

  // nullopt and *error set when a pointer is malformed (must be "" or start with '/').
  static std::optional<Redactor> Compile(const std::vector<std::string>& pointers,
                                         std::string* error);

  enum class Outcome { kUnchanged, kRedacted, kNotJson };
  // Rewrites *body in place when something was removed. kNotJson: the body did not parse as
  // JSON; the caller must withhold it (502) rather than leak it.
  Outcome Apply(std::string* body) const;

  bool empty() const { return pointers_.empty(); }

 private:
  std::vector<std::vector<std::string>> pointers_;  // unescaped tokens (~0 ~1 decoded)
};

}  // namespace tollgate::policies
