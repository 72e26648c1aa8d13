#include "upstream/secret_scan.h"

#include <string.h>  // memmem (GNU)

#include <algorithm>
#include <cstring>
#include <limits>

namespace tollgate::upstream {
namespace {

constexpr size_t kNone = std::numeric_limits<size_t>::max();

// A run of overlapping occurrences is held back whole while a secret cut by the chunk's end
// could still extend it; past this many bytes it is replaced as far as it is known, so that an
// adversarial answer (one long run of a periodic secret) cannot make the scan hold it all.
constexpr size_t kMaxHeldRun = 64 * 1024;

}  // namespace

SecretScanner::SecretScanner(std::vector<std::string> secrets) {
  std::sort(secrets.begin(), secrets.end());
  secrets.erase(std::unique(secrets.begin(), secrets.end()), secrets.end());
  for (auto& s : secrets) {
    if (s.empty()) continue;
    longest_ = std::max(longest_, s.size());
    first_byte_[static_cast<unsigned char>(s[0])] = true;
    secrets_.push_back(std::move(s));
  }
}

size_t SecretScanner::PartialAt(const char* buf, size_t len, size_t from) const {
  for (size_t p = from; p < len; ++p) {
    if (!first_byte_[static_cast<unsigned char>(buf[p])]) continue;
    const size_t rest = len - p;
    for (const std::string& s : secrets_) {
      if (s.size() > rest && std::memcmp(s.data(), buf + p, rest) == 0) return p;
    }
  }
  return len;
}

size_t SecretScanner::Scan(const char* buf, size_t len, bool final, std::string* out, size_t* marks,
                           size_t* first_mark) const {
  const size_t count = secrets_.size();
  // next[i]: secret i's first occurrence at or after the scan position (kNone: no more).
  thread_local std::vector<size_t> next;
  next.assign(count, kNone);
  auto find = [&](size_t i, size_t from) -> size_t {
    const std::string& s = secrets_[i];
    if (from >= len || len - from < s.size()) return kNone;
    const void* at = memmem(buf + from, len - from, s.data(), s.size());
    return at == nullptr ? kNone : static_cast<size_t>(static_cast<const char*>(at) - buf);
  };
  for (size_t i = 0; i < count; ++i) next[i] = find(i, 0);
  // Where a secret cut by the end of buf could start: everything from there waits for more.
  const size_t tail = final ? len : PartialAt(buf, len, len > longest_ ? len - longest_ + 1 : 0);
  size_t done = 0;     // bytes of buf written to *out (or replaced)
  size_t stop = tail;  // where this scan ends
  while (true) {
    size_t start = kNone;
    for (size_t i = 0; i < count; ++i) start = std::min(start, next[i]);
    if (start == kNone || start >= tail) break;
    // The run of occurrences that overlap the one at `start`.
    size_t end = start;
    for (bool grew = true; grew;) {
      grew = false;
      for (size_t i = 0; i < count; ++i) {
        while (next[i] < std::max(end, start + 1)) {
          end = std::max(end, next[i] + secrets_[i].size());
          next[i] = find(i, next[i] + 1);
          grew = true;
        }
      }
    }
    if (end > tail && len - start <= kMaxHeldRun) {
      // A secret cut by the chunk's end overlaps this run: hold the run until it is known whole.
      stop = start;
      break;
    }
    out->append(buf + done, start - done);
    if (*marks == 0) *first_mark = out->size();
    out->append(kRedactedMark);
    ++*marks;
    done = std::min(end, len);
    if (done > stop) stop = done;
  }
  out->append(buf + done, stop - done);
  return stop;
}

size_t SecretScanner::ReplaceAll(std::string* text) const {
  bool any = false;
  for (const std::string& s : secrets_) {
    if (text->size() >= s.size() && memmem(text->data(), text->size(), s.data(), s.size())) {
      any = true;
      break;
    }
  }
  if (!any) return 0;
  std::string out;
  out.reserve(text->size());
  size_t marks = 0, first = 0;
  Scan(text->data(), text->size(), /*final=*/true, &out, &marks, &first);
  text->swap(out);
  return marks;
}

size_t SecretScan::Feed(std::string_view chunk, std::string* out, size_t* first_mark) {
  if (scanner_ == nullptr || scanner_->empty()) {
    out->append(chunk);
    return 0;
  }
  const size_t base = out->size();
  const char* buf = chunk.data();
  size_t len = chunk.size();
  if (!pending_.empty()) {
    work_.assign(pending_);
    work_.append(chunk);
    buf = work_.data();
    len = work_.size();
  }
  size_t marks = 0, first = 0;
  const size_t covered = scanner_->Scan(buf, len, /*final=*/false, out, &marks, &first);
  pending_.assign(buf + covered, len - covered);
  replacements_ += marks;
  if (marks > 0 && first_mark != nullptr) *first_mark = first - base;
  return marks;
}

size_t SecretScan::Finish(std::string* out, size_t* first_mark) {
  if (pending_.empty()) return 0;
  const size_t base = out->size();
  size_t marks = 0, first = 0;
  scanner_->Scan(pending_.data(), pending_.size(), /*final=*/true, out, &marks, &first);
  pending_.clear();
  replacements_ += marks;
  if (marks > 0 && first_mark != nullptr) *first_mark = first - base;
  return marks;
}

}  // namespace tollgate::upstream
