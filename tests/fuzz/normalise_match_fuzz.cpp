// libFuzzer target for the path checks: whatever NormaliseTarget accepts must be free of every
// encoding trick it exists to stop, stable under a second pass, and matched the same way by
// route templates before and after. Any violation aborts, so libFuzzer reports the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "policies/normalise.h"
#include "policies/path_template.h"

namespace {

using tollgate::policies::NormalisedTarget;
using tollgate::policies::NormaliseTarget;
using tollgate::policies::PathParams;
using tollgate::policies::PathTemplate;

[[noreturn]] void Fail(const char* what, std::string_view subject) {
  std::fprintf(stderr, "invariant violated: %s: [%.*s]\n", what, static_cast<int>(subject.size()),
               subject.data());
  std::abort();
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lower-case hex would already be a violation
}

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// Decodes every escape once, as a careless upstream would. The result must still be harmless.
std::string DecodeSegment(std::string_view segment, std::string_view path) {
  std::string decoded;
  for (size_t i = 0; i < segment.size(); ++i) {
    if (segment[i] != '%') {
      decoded.push_back(segment[i]);
      continue;
    }
    if (i + 2 >= segment.size()) Fail("truncated escape kept", path);
    int high = HexValue(segment[i + 1]);
    int low = HexValue(segment[i + 2]);
    if (high < 0 || low < 0) Fail("escape not upper-case hex", path);
    auto byte = static_cast<unsigned char>(high * 16 + low);
    if (IsUnreserved(byte)) Fail("unreserved escape left encoded", path);
    decoded.push_back(static_cast<char>(byte));
    i += 2;
  }
  return decoded;
}

void CheckPath(const std::string& path) {
  if (path.empty() || path[0] != '/') Fail("path does not start with '/'", path);
  for (char ch : path) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f) Fail("raw control, space or non-ASCII byte", path);
    if (ch == '\\' || ch == ';' || ch == '#' || ch == '?') Fail("forbidden raw character", path);
  }
  if (path == "/") return;
  size_t start = 1;
  while (true) {
    size_t end = path.find('/', start);
    std::string_view segment = std::string_view(path).substr(
        start, end == std::string::npos ? std::string::npos : end - start);
    if (segment.empty()) Fail("empty segment", path);
    if (segment == "." || segment == "..") Fail("dot segment", path);
    std::string decoded = DecodeSegment(segment, path);
    if (decoded == "." || decoded == "..") Fail("dot segment after decoding", path);
    for (char ch : decoded) {
      auto c = static_cast<unsigned char>(ch);
      // No '%' survives decoding, so no second decoding can produce anything new.
      if (ch == '/' || ch == '\\' || ch == '%' || c < 0x20 || c == 0x7f) {
        Fail("decoding yields a separator, '%' or control byte", path);
      }
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

// The bytes the path's escapes stand for must be UTF-8 as RFC 3629 defines it: shortest form
// only, no UTF-16 surrogates, nothing above U+10FFFF. An upstream that decodes an overlong form
// (%C0%AE) could see a '.' the normaliser never saw. Written apart from the normaliser's own
// validator (it decodes code points instead of tracking byte ranges), so one can check the other.
void CheckUtf8(const std::string& path) {
  std::string bytes;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size()) {
      bytes.push_back(static_cast<char>(HexValue(path[i + 1]) * 16 + HexValue(path[i + 2])));
      i += 2;
    } else {
      bytes.push_back(path[i]);
    }
  }
  static constexpr uint32_t kShortest[] = {0, 0, 0x80, 0x800, 0x10000};
  for (size_t i = 0; i < bytes.size();) {
    auto lead = static_cast<unsigned char>(bytes[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length = lead >= 0xF8 ? 0 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0;
    if (length == 0) Fail("UTF-8: stray continuation or invalid lead byte", path);
    if (i + length > bytes.size()) Fail("UTF-8: truncated sequence", path);
    uint32_t code_point = lead & (0x7Fu >> length);
    for (size_t k = 1; k < length; ++k) {
      auto next = static_cast<unsigned char>(bytes[i + k]);
      if ((next & 0xC0) != 0x80) Fail("UTF-8: missing continuation byte", path);
      code_point = (code_point << 6) | (next & 0x3Fu);
    }
    if (code_point < kShortest[length]) Fail("UTF-8: overlong form", path);
    if (code_point >= 0xD800 && code_point <= 0xDFFF) Fail("UTF-8: UTF-16 surrogate", path);
    if (code_point > 0x10FFFF) Fail("UTF-8: code point above U+10FFFF", path);
    i += length;
  }
}

void CheckQuery(const std::string& query) {
  for (char ch : query) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f || ch == '#') Fail("bad byte in query", query);
  }
}

const std::vector<PathTemplate>& Templates() {
  static const std::vector<PathTemplate> templates = [] {
    std::vector<PathTemplate> compiled;
    for (const char* text : {"/", "/**", "/a/{x}", "/{x}/**", "/v2/accounts/{account}/tokens/**",
                             "/v3beta1/organizations/{org_id}/sessions", "/{a}/{b}/{c}"}) {
      std::string error;
      auto t = PathTemplate::Compile(text, &error);
      if (!t) Fail("fixed template does not compile", text);
      compiled.push_back(std::move(*t));
    }
    return compiled;
  }();
  return templates;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view target(reinterpret_cast<const char*>(data), size);
  NormalisedTarget first = NormaliseTarget(target);
  if (!first.ok) {
    if (first.error.empty()) Fail("rejected without a reason", target);
    return 0;
  }
  CheckPath(first.path);
  CheckUtf8(first.path);
  CheckQuery(first.query);

  std::string again = first.path + (first.query.empty() ? "" : "?" + first.query);
  NormalisedTarget second = NormaliseTarget(again);
  if (!second.ok) Fail("normalised target rejected on a second pass", again);
  if (second.path != first.path) Fail("normalisation not idempotent (path)", again);
  if (second.query != first.query) Fail("normalisation not idempotent (query)", again);

  for (const PathTemplate& t : Templates()) {
    PathParams before;
    PathParams after;
    bool matched_before = t.Match(first.path, &before);
    bool matched_after = t.Match(second.path, &after);
    if (matched_before != matched_after || before != after) Fail("template match changed", again);
    for (const auto& param : before) {
      if (param.second.empty() || param.second.find('/') != std::string::npos) {
        Fail("parameter bound to an empty or multi-segment value", again);
      }
    }
  }
  return 0;
}
