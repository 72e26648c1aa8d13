#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "policies/normalise.h"

namespace tollgate::policies {
namespace {

struct BadTarget {
  std::string target;
  std::string reason_part;  // a fragment the error message must contain
};

void PrintTo(const BadTarget& bad, std::ostream* os) {
  *os << ::testing::PrintToString(bad.target);
}

class RejectedTargetTest : public ::testing::TestWithParam<BadTarget> {};

TEST_P(RejectedTargetTest, IsRejectedWithReason) {
  const BadTarget& bad = GetParam();
  NormalisedTarget result = NormaliseTarget(bad.target);
  EXPECT_FALSE(result.ok) << "accepted: " << bad.target << " as " << result.path;
  EXPECT_NE(result.error.find(bad.reason_part), std::string::npos)
      << bad.target << " -> " << result.error;
  EXPECT_TRUE(result.path.empty());
}

const BadTarget kBadTargets[] = {
    // Dot segments, raw and encoded in every case and mix.
    {"/a/../b", "dot segment"},
    {"/a/./b", "dot segment"},
    {"/..", "dot segment"},
    {"/.", "dot segment"},
    {"/a/..", "dot segment"},
    {"/a/%2e%2e/b", "dot segment"},
    {"/a/%2E%2E/b", "dot segment"},
    {"/a/%2e%2E/b", "dot segment"},
    {"/a/.%2e/b", "dot segment"},
    {"/a/%2e./b", "dot segment"},
    {"/a/%2E./b", "dot segment"},
    {"/a/%2e/b", "dot segment"},
    {"/a/%2E", "dot segment"},
    {"/%2e%2e?x=1", "dot segment"},
    // Double encoding.
    {"/a/%252e%252e/b", "double encoding"},
    {"/a/%252f", "double encoding"},
    {"/a/%255c", "double encoding"},
    {"/a/%2500", "double encoding"},
    {"/a/%25", "double encoding"},
    {"/a/%2541", "double encoding"},
    // Encoded separators and backslash.
    {"/a%2fb", "encoded '/'"},
    {"/a%2Fb", "encoded '/'"},
    {"/a/%2F..", "encoded '/'"},
    {"/a%5cb", "encoded '\\'"},
    {"/a%5C..%5Cb", "encoded '\\'"},
    {"/a\\b", "'\\'"},
    {"/a/..\\b", "'\\'"},
    // NUL and control characters, raw and encoded.
    {"/a%00", "NUL"},
    {std::string("/a\0b", 4), "NUL"},
    {"/a%0a", "control"},
    {"/a%0D%0Ab", "control"},
    {"/a%1f", "control"},
    {"/a%7F", "control"},
    {"/a\tb", "control"},
    {"/a\r\nb", "control"},
    {"/a\x7f", "control"},
    // Raw bytes that the client must encode.
    {"/a b", "space"},
    {"/caf\xc3\xa9", "non-ASCII"},
    {"/a\xff", "non-ASCII"},
    {"/a\"b", "invalid character"},
    {"/a<b>", "invalid character"},
    {"/a{b}", "invalid character"},
    {"/a|b", "invalid character"},
    {"/a`b", "invalid character"},
    {"/a[0]", "invalid character"},
    {"/a^b", "invalid character"},
    // Bad escapes.
    {"/a%zz", "invalid percent escape"},
    {"/a%g1", "invalid percent escape"},
    {"/a%4g", "invalid percent escape"},
    {"/a%4", "truncated"},
    {"/a%", "truncated"},
    {"/a%?x=1", "truncated"},
    {"/a%4?x=1", "truncated"},
    {"/a%-1b", "invalid percent escape"},
    // Encoded bytes that are not UTF-8: overlong dots and slashes, surrogates, strays.
    {"/a/%C0%AE%C0%AE/b", "UTF-8"},
    {"/a/%c0%af", "UTF-8"},
    {"/a/%E0%80%AE", "UTF-8"},
    {"/a/%F0%80%80%AE", "UTF-8"},
    {"/a/%ED%A0%80", "UTF-8"},
    {"/a/%80", "UTF-8"},
    {"/a/%C3", "UTF-8"},
    {"/a/%C3a", "UTF-8"},
    {"/a/%C3/b", "UTF-8"},
    {"/a/%F5%80%80%80", "UTF-8"},
    {"/a/%E2%82", "UTF-8"},
    // The edges of UTF-8 (RFC 3629): nothing above U+10FFFF, no F5-FF or C0-C1 leads, no
    // surrogates, no overlong three- or four-byte forms, no continuation byte out of 80-BF.
    {"/a/%F4%90%80%80", "UTF-8"},
    {"/a/%f4%bf%bf%bf", "UTF-8"},
    {"/a/%F7%BF%BF%BF", "UTF-8"},
    {"/a/%F8%88%80%80%80", "UTF-8"},
    {"/a/%FC%84%80%80%80%80", "UTF-8"},
    {"/a/%FE", "UTF-8"},
    {"/a/%FF", "UTF-8"},
    {"/a/%C1%BF", "UTF-8"},
    {"/a/%ED%BF%BF", "UTF-8"},
    {"/a/%ED%B0%80", "UTF-8"},
    {"/a/%E0%9F%BF", "UTF-8"},
    {"/a/%F0%8F%BF%BF", "UTF-8"},
    {"/a/%C2%C0", "UTF-8"},
    {"/a/%E1%80%C0", "UTF-8"},
    {"/a/%F1%80%80%C0", "UTF-8"},
    {"/a/%F1%80%80", "UTF-8"},
    {"/a/%C2%41", "UTF-8"},
    // A raw byte cannot sit inside an encoded sequence, even when the sequence then completes.
    {"/a/%C3a%A9", "UTF-8"},
    {"/a/%E2%82/%AC", "UTF-8"},
    // Empty segments and trailing slash.
    {"//a", "empty path segment"},
    {"/a//b", "empty path segment"},
    {"//", "empty path segment"},
    {"/a/", "trailing '/'"},
    {"/a/b/?x=1", "trailing '/'"},
    // Path parameters.
    {"/a;b", "';'"},
    {"/a/b;jsessionid=1", "';'"},
    {"/a/..;/b", "';'"},
    // Forms other than origin-form.
    {"http://evil.example/a", "absolute-form"},
    {"HTTPS://api.devin.ai/v3", "absolute-form"},
    {"api.devin.ai:443", "authority-form"},
    {"localhost:80", "authority-form"},
    {"*", "asterisk-form"},
    {"a/b", "must start with '/'"},
    {"", "empty request target"},
    {"%2fa", "must start with '/'"},
    // Fragments.
    {"/a#b", "fragment"},
    {"/a?x=1#frag", "fragment"},
    {"#", "fragment"},
    // Query checks.
    {"/a?x=1 2", "space in query"},
    {"/a?x=\x01", "control character in query"},
    {"/a?x=\r\nHost: evil", "control character in query"},
    {"/a?x=\x7f", "control character in query"},
    {"/a?x=\xc3\xa9", "non-ASCII byte in query"},
};

INSTANTIATE_TEST_SUITE_P(Table, RejectedTargetTest, ::testing::ValuesIn(kBadTargets));

struct GoodTarget {
  std::string target;
  std::string path;
  std::string query;
};

void PrintTo(const GoodTarget& good, std::ostream* os) {
  *os << ::testing::PrintToString(good.target);
}

class AcceptedTargetTest : public ::testing::TestWithParam<GoodTarget> {};

TEST_P(AcceptedTargetTest, NormalisesTo) {
  const GoodTarget& good = GetParam();
  NormalisedTarget result = NormaliseTarget(good.target);
  ASSERT_TRUE(result.ok) << good.target << " -> " << result.error;
  EXPECT_EQ(result.path, good.path);
  EXPECT_EQ(result.query, good.query);
  EXPECT_TRUE(result.error.empty());
}

const GoodTarget kGoodTargets[] = {
    {"/", "/", ""},
    {"/devin/v3beta1/enterprise/self", "/devin/v3beta1/enterprise/self", ""},
    {"/v3beta1/organizations/org-123/sessions", "/v3beta1/organizations/org-123/sessions", ""},
    // Unreserved escapes are decoded once, in any case.
    {"/%61%62%63", "/abc", ""},
    {"/%41%5A%30%39", "/AZ09", ""},
    {"/a%2Db%5Fc%7Ed%2Ee", "/a-b_c~d.e", ""},
    {"/%7e", "/~", ""},
    // A decoded dot inside a longer segment is not a dot segment.
    {"/a%2e", "/a.", ""},
    {"/%2e%2e%2e", "/...", ""},
    {"/.well-known/x", "/.well-known/x", ""},
    {"/...", "/...", ""},
    {"/a..b", "/a..b", ""},
    // Other escapes are kept, hex upper-cased.
    {"/caf%c3%a9", "/caf%C3%A9", ""},
    {"/a%20b", "/a%20b", ""},
    {"/%e2%82%ac/%F0%9F%98%80/%ef%bf%bd", "/%E2%82%AC/%F0%9F%98%80/%EF%BF%BD", ""},
    {"/a%3bb", "/a%3Bb", ""},
    {"/a%3fb", "/a%3Fb", ""},
    {"/a%23", "/a%23", ""},
    {"/a%2b", "/a%2B", ""},
    // The first and last code point of every UTF-8 form, and those next to the surrogates.
    {"/%C2%80%DF%BF", "/%C2%80%DF%BF", ""},
    {"/%E0%A0%80%EF%BF%BF", "/%E0%A0%80%EF%BF%BF", ""},
    {"/%ED%9F%BF%EE%80%80", "/%ED%9F%BF%EE%80%80", ""},
    {"/%F0%90%80%80%f4%8f%bf%bf", "/%F0%90%80%80%F4%8F%BF%BF", ""},
    {"/%F1%80%80%80%F3%BF%BF%BF", "/%F1%80%80%80%F3%BF%BF%BF", ""},
    // Sub-delimiters, ':' and '@' are fine raw.
    {"/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,=", ""},
    // The query is kept byte for byte: order, repeats, escapes, empty values.
    {"/a?x=1&x=2&a=%2f&b", "/a", "x=1&x=2&a=%2f&b"},
    {"/a?b=2&a=1&b=1", "/a", "b=2&a=1&b=1"},
    {"/a?q=%2e%2e/../x;y", "/a", "q=%2e%2e/../x;y"},
    {"/a?", "/a", ""},
    {"/a??x", "/a", "?x"},
    {"/a?x=%zz&y=%", "/a", "x=%zz&y=%"},
    {"/a?x=\\y{}", "/a", "x=\\y{}"},
    {"/%61?x=%61", "/a", "x=%61"},
};

INSTANTIATE_TEST_SUITE_P(Table, AcceptedTargetTest, ::testing::ValuesIn(kGoodTargets));

// Where the bad part sits does not matter: every refused path is refused for the same reason
// below another segment (a check that only looked at the first segment would pass the table).
TEST(NormaliseTargetTest, RejectionsHoldBelowAnotherSegment) {
  for (const BadTarget& bad : kBadTargets) {
    if (bad.target.empty() || bad.target[0] != '/') continue;  // not a path: nothing to nest
    const std::string nested = "/devin" + bad.target;
    NormalisedTarget result = NormaliseTarget(nested);
    EXPECT_FALSE(result.ok) << "accepted: " << nested << " as " << result.path;
    EXPECT_NE(result.error.find(bad.reason_part), std::string::npos)
        << nested << " -> " << result.error;
  }
}

// An independent statement of well-formed UTF-8 (RFC 3629 section 4) in terms of the code
// point: the shortest form, not a surrogate, at most U+10FFFF. The normaliser works on byte
// ranges instead; the two must agree on every sequence.
bool IsWellFormedUtf8(const std::vector<unsigned char>& bytes) {
  size_t i = 0;
  while (i < bytes.size()) {
    const unsigned char lead = bytes[i];
    size_t length = 0;
    uint32_t code_point = 0;
    if (lead < 0x80) {
      length = 1;
      code_point = lead;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2;
      code_point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3;
      code_point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4;
      code_point = lead & 0x07;
    } else {
      return false;
    }
    if (i + length > bytes.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((bytes[i + k] & 0xC0) != 0x80) return false;
      code_point = (code_point << 6) | (bytes[i + k] & 0x3F);
    }
    static constexpr uint32_t kShortest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (length > 1 && code_point < kShortest[length]) return false;
    if (code_point >= 0xD800 && code_point <= 0xDFFF) return false;
    if (code_point > 0x10FFFF) return false;
    i += length;
  }
  return true;
}

std::string Escaped(const std::vector<unsigned char>& bytes) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char b : bytes) {
    out += '%';
    out += kHex[b >> 4];
    out += kHex[b & 0xf];
  }
  return out;
}

TEST(NormaliseTargetTest, EncodedBytesAreAcceptedExactlyWhenTheyAreWellFormedUtf8) {
  // Every lead byte from 80 to FF, followed by every byte from 80 to FF (and an ASCII letter),
  // completed with the lowest and the highest continuation byte up to four bytes, and cut
  // short: the edges of every range the normaliser checks.
  std::vector<unsigned char> seconds = {0x41};
  for (int b = 0x80; b <= 0xFF; ++b) seconds.push_back(static_cast<unsigned char>(b));
  size_t accepted = 0;
  for (int lead = 0x80; lead <= 0xFF; ++lead) {
    for (unsigned char second : seconds) {
      for (unsigned char tail : {0x80, 0xBF}) {
        for (size_t length = 2; length <= 4; ++length) {
          std::vector<unsigned char> bytes = {static_cast<unsigned char>(lead), second};
          while (bytes.size() < length) bytes.push_back(tail);
          const std::string target = "/a/" + Escaped(bytes) + "/b";
          const bool want = IsWellFormedUtf8(bytes);
          NormalisedTarget result = NormaliseTarget(target);
          ASSERT_EQ(result.ok, want) << target << " -> " << result.error;
          if (want) {
            ++accepted;
            EXPECT_EQ(result.path, target);  // kept as sent (upper-case hex)
          } else if (second >= 0x80) {
            EXPECT_NE(result.error.find("UTF-8"), std::string::npos) << target;
          }
        }
      }
    }
  }
  EXPECT_GT(accepted, 0u);
}

TEST(NormaliseTargetTest, IsIdempotentOnItsOutput) {
  for (const GoodTarget& good : kGoodTargets) {
    NormalisedTarget first = NormaliseTarget(good.target);
    ASSERT_TRUE(first.ok);
    std::string again = first.path + (first.query.empty() ? "" : "?" + first.query);
    NormalisedTarget second = NormaliseTarget(again);
    ASSERT_TRUE(second.ok) << again;
    EXPECT_EQ(second.path, first.path);
    EXPECT_EQ(second.query, first.query);
  }
}

TEST(NormaliseTargetTest, EveryEncodedControlByteIsRejected) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int c = 0; c < 0x20; ++c) {
    std::string target = std::string("/a%") + kHex[c >> 4] + kHex[c & 0xf];
    EXPECT_FALSE(NormaliseTarget(target).ok) << target;
  }
  EXPECT_FALSE(NormaliseTarget("/a%7f").ok);
}

TEST(NormaliseTargetTest, EveryEncodedUnreservedByteIsDecoded) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string unreserved = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
  for (char c : unreserved) {
    auto byte = static_cast<unsigned char>(c);
    std::string target = std::string("/x%") + kHex[byte >> 4] + kHex[byte & 0xf];
    NormalisedTarget result = NormaliseTarget(target);
    ASSERT_TRUE(result.ok) << target;
    EXPECT_EQ(result.path, std::string("/x") + c);
  }
}

}  // namespace
}  // namespace tollgate::policies
