// Finds the upstream secrets' literal values in what an upstream answers, and replaces each with
// `[redacted]` before it reaches a caller (an upstream that echoes its request, or a debug page,
// would otherwise hand the service credential to whoever called it).
//
// SecretScanner is built once per config (from every upstream's secret values) and is immutable:
// any number of threads may share one. SecretScan is one answer's streaming state (one thread):
// it takes the body chunk by chunk and emits what may pass, holding back only the tail of a chunk
// that could be the start of a secret (at most longest-1 bytes, or a secret it is about to
// replace and what could still overlap it), so a secret split across chunks is still caught.
// Overlapping occurrences (of one secret or of several) are replaced by one mark, so no byte of
// any occurrence passes; occurrences that only touch get one mark each.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::upstream {

inline constexpr std::string_view kRedactedMark = "[redacted]";

class SecretScanner {
 public:
  // Empty values are ignored; duplicates are kept once. Short values would match ordinary text:
  // the config refuses secrets shorter than config::kMinUpstreamSecretLength.
  explicit SecretScanner(std::vector<std::string> secrets);

  bool empty() const { return secrets_.empty(); }
  size_t longest() const { return longest_; }

  // Replaces every occurrence in *text; returns how many marks were written (0: text untouched).
  size_t ReplaceAll(std::string* text) const;

 private:
  friend class SecretScan;
  // Scans buf[0, len): appends to *out what may pass (occurrences replaced), and returns how
  // many leading bytes of buf that covers; the rest must be scanned again with what follows
  // (unless `final`, when everything is covered). *marks counts the marks written; *first_mark
  // is set to the offset in *out of the first one.
  size_t Scan(const char* buf, size_t len, bool final, std::string* out, size_t* marks,
              size_t* first_mark) const;
  // The first position p >= from where buf[p, len) is a proper prefix of some secret (len if
  // none): where a secret cut by the chunk's end could start.
  size_t PartialAt(const char* buf, size_t len, size_t from) const;

  std::vector<std::string> secrets_;
  size_t longest_ = 0;
  bool first_byte_[256] = {};  // the first bytes of the secrets
};

class SecretScan {
 public:
  // `scanner` must outlive this state (the Snapshot that owns it is held by the request).
  explicit SecretScan(const SecretScanner* scanner) : scanner_(scanner) {}

  // Appends to *out the bytes of `chunk` (and of what was held back) that may pass now, every
  // secret replaced. Returns how many marks this call wrote; when some, *first_mark (if given)
  // is the offset, from out's size on entry, where the first one starts: the bytes before it
  // are the answer's last clean ones.
  size_t Feed(std::string_view chunk, std::string* out, size_t* first_mark = nullptr);
  // The answer ended: appends what was held back (replaced where needed).
  size_t Finish(std::string* out, size_t* first_mark = nullptr);

  size_t replacements() const { return replacements_; }
  size_t held() const { return pending_.size(); }

 private:
  const SecretScanner* scanner_;
  std::string pending_;  // bytes held back from the previous chunks
  std::string work_;     // pending_ + chunk, reused
  size_t replacements_ = 0;
};

}  // namespace tollgate::upstream
