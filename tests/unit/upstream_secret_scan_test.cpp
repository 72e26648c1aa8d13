// SecretScanner / SecretScan: every occurrence of every secret is replaced, whole answer or
// streamed in chunks split anywhere, overlapping and adjacent occurrences and secrets that
// prefix each other included; and the stream holds back no more than it must.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "upstream/secret_scan.h"

namespace tollgate::upstream {
namespace {

// The specification, naively: every occurrence of every secret, overlapping ones merged into
// one mark (touching ones kept apart).
std::string Reference(const std::string& text, const std::vector<std::string>& secrets,
                      size_t* marks) {
  std::vector<std::pair<size_t, size_t>> found;
  for (const auto& s : secrets) {
    for (size_t p = 0; p + s.size() <= text.size(); ++p) {
      if (text.compare(p, s.size(), s) == 0) found.emplace_back(p, p + s.size());
    }
  }
  std::sort(found.begin(), found.end());
  std::string out;
  size_t done = 0;
  *marks = 0;
  for (size_t i = 0; i < found.size();) {
    size_t start = found[i].first, end = found[i].second;
    for (++i; i < found.size() && found[i].first < end; ++i) end = std::max(end, found[i].second);
    out += text.substr(done, start - done);
    out += "[redacted]";
    ++*marks;
    done = end;
  }
  out += text.substr(done);
  return out;
}

// Feeds `text` cut at `cuts` (ascending offsets) and returns everything emitted. `strict`: no
// secret overlaps another, so the scan never holds more than longest-1 bytes.
std::string Streamed(const SecretScanner& scanner, const std::string& text,
                     const std::vector<size_t>& cuts, size_t* marks, bool strict = true) {
  SecretScan scan(&scanner);
  std::string out;
  size_t from = 0;
  *marks = 0;
  for (size_t cut : cuts) {
    *marks += scan.Feed(std::string_view(text).substr(from, cut - from), &out);
    if (strict) {
      EXPECT_LE(scan.held(), scanner.longest() - 1) << "after a cut at " << cut;
    }
    from = cut;
  }
  *marks += scan.Feed(std::string_view(text).substr(from), &out);
  *marks += scan.Finish(&out);
  EXPECT_EQ(scan.held(), 0u);
  EXPECT_EQ(scan.replacements(), *marks);
  return out;
}

const std::vector<std::string> kSecrets = {"Bearer-tok-0123456789", "devo-key-ABCDEFGH",
                                           "devo-key-ABCDEFGH-long", "s3cr3t!!"};

TEST(SecretScannerTest, LeavesTextWithoutSecretsUntouched) {
  SecretScanner scanner(kSecrets);
  std::string text = "{\"ok\":true,\"token\":\"devo-key-ABCDEFG\"}";  // one byte short
  const std::string before = text;
  EXPECT_EQ(scanner.ReplaceAll(&text), 0u);
  EXPECT_EQ(text, before);
}

TEST(SecretScannerTest, ReplacesEveryOccurrenceOfEverySecret) {
  SecretScanner scanner(kSecrets);
  std::string text =
      "s3cr3t!!{\"a\":\"Bearer-tok-0123456789\",\"b\":\"devo-key-ABCDEFGH\"}s3cr3t!!";
  EXPECT_EQ(scanner.ReplaceAll(&text), 4u);
  EXPECT_EQ(text, "[redacted]{\"a\":\"[redacted]\",\"b\":\"[redacted]\"}[redacted]");
}

TEST(SecretScannerTest, ASecretThatPrefixesAnotherLeavesNoTailOfTheLongerOne) {
  SecretScanner scanner(kSecrets);
  std::string text = "x devo-key-ABCDEFGH-long y devo-key-ABCDEFGH-lon z";
  EXPECT_EQ(scanner.ReplaceAll(&text), 2u);
  EXPECT_EQ(text, "x [redacted] y [redacted]-lon z");
}

TEST(SecretScannerTest, OverlappingOccurrencesBecomeOneMarkTouchingOnesTwo) {
  SecretScanner scanner({"abcdefgh12", "gh12345678", "aaaaaaaa"});
  std::string overlap = "<abcdefgh12345678>";
  EXPECT_EQ(scanner.ReplaceAll(&overlap), 1u);
  EXPECT_EQ(overlap, "<[redacted]>");
  std::string run = "b" + std::string(13, 'a') + "b";  // a secret overlapping itself
  EXPECT_EQ(scanner.ReplaceAll(&run), 1u);
  EXPECT_EQ(run, "b[redacted]b");
  std::string adjacent = "abcdefgh12abcdefgh12";
  EXPECT_EQ(scanner.ReplaceAll(&adjacent), 2u);
  EXPECT_EQ(adjacent, "[redacted][redacted]");
}

TEST(SecretScanTest, CatchesASecretSplitAtEveryOffsetIntoTwoAndThreeChunks) {
  SecretScanner scanner(kSecrets);
  const std::string text =
      "head devo-key-ABCDEFGH-long, Bearer-tok-0123456789s3cr3t!!devo-key-ABCDEFGH tail";
  size_t want_marks = 0;
  const std::string want = Reference(text, kSecrets, &want_marks);
  ASSERT_EQ(want_marks, 4u);
  for (size_t i = 0; i <= text.size(); ++i) {
    size_t marks = 0;
    EXPECT_EQ(Streamed(scanner, text, {i}, &marks), want) << "cut at " << i;
    EXPECT_EQ(marks, want_marks) << "cut at " << i;
    for (size_t j = i; j <= text.size(); ++j) {
      EXPECT_EQ(Streamed(scanner, text, {i, j}, &marks), want) << "cuts at " << i << ", " << j;
      EXPECT_EQ(marks, want_marks);
    }
  }
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < text.size(); ++i) every_byte.push_back(i);
  size_t marks = 0;
  EXPECT_EQ(Streamed(scanner, text, every_byte, &marks), want);
}

TEST(SecretScanTest, HoldsBackOnlyATailThatCouldBeginASecret) {
  SecretScanner scanner(kSecrets);
  SecretScan scan(&scanner);
  std::string out;
  scan.Feed("plain text with nothing to hide.", &out);
  EXPECT_EQ(out, "plain text with nothing to hide.");
  EXPECT_EQ(scan.held(), 0u);
  out.clear();
  scan.Feed("and then devo-k", &out);
  EXPECT_EQ(out, "and then ");
  EXPECT_EQ(scan.held(), 6u);
  out.clear();
  // Not a secret after all: the held bytes pass with the next chunk.
  scan.Feed("ind of text", &out);
  EXPECT_EQ(out, "devo-kind of text");
  EXPECT_EQ(scan.replacements(), 0u);
}

TEST(SecretScanTest, FirstMarkIsWhereTheCleanBytesEnd) {
  SecretScanner scanner(kSecrets);
  SecretScan scan(&scanner);
  std::string out = "earlier";
  size_t first = 99;
  EXPECT_EQ(scan.Feed("abc Bearer-tok-012", &out, &first), 0u);
  EXPECT_EQ(out, "earlierabc ");
  out.clear();
  EXPECT_EQ(scan.Feed("3456789 and s3cr3t!!", &out, &first), 2u);
  EXPECT_EQ(first, 0u);  // the held secret starts the output: no clean byte before it
  EXPECT_EQ(out, "[redacted] and [redacted]");
}

TEST(SecretScanTest, MatchesTheReferenceOnRandomOverlappingTextAndChunks) {
  const std::vector<std::string> secrets = {"abababab", "aabbaabbab", "babbbaba", "abababababa"};
  SecretScanner scanner(secrets);
  std::mt19937 rng(20261201);
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const size_t size = rng() % 300;
    for (size_t i = 0; i < size; ++i) text.push_back("ab"[rng() % 2]);
    std::vector<size_t> cuts;
    for (size_t at = 0; size > 0 && (at += 1 + rng() % 40) < size;) cuts.push_back(at);
    size_t want_marks = 0, marks = 0;
    const std::string want = Reference(text, secrets, &want_marks);
    ASSERT_EQ(Streamed(scanner, text, cuts, &marks, /*strict=*/false), want) << text;
    ASSERT_EQ(marks, want_marks) << text;
    std::string whole = text;
    ASSERT_EQ(scanner.ReplaceAll(&whole), want_marks) << text;
    ASSERT_EQ(whole, want) << text;
  }
}

TEST(SecretScanTest, AScannerWithoutSecretsPassesEverything) {
  SecretScanner scanner({"", ""});
  EXPECT_TRUE(scanner.empty());
  SecretScan scan(&scanner);
  std::string out;
  EXPECT_EQ(scan.Feed("anything at all", &out), 0u);
  EXPECT_EQ(out, "anything at all");
}

}  // namespace
}  // namespace tollgate::upstream
