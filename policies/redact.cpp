#include "policies/redact.h"

#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>

namespace tollgate::policies {
namespace {

using Pointers = std::vector<std::vector<std::string>>;

bool IsArrayIndexToken(std::string_view token) {
  if (token.empty() || token.size() > 19) return false;
  if (token.size() > 1 && token[0] == '0') return false;
  for (char c : token) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// A SAX handler that copies events to a Writer, except for the values some pointer addresses.
// `alive` bit i set at a depth means pointer i's tokens so far equal the path to that depth.
class RedactingHandler {
 public:
  RedactingHandler(const Pointers& pointers, rapidjson::Writer<rapidjson::StringBuffer>* writer)
      : pointers_(pointers), writer_(writer) {
    for (size_t i = 0; i < pointers.size(); ++i) {
      if (pointers[i].empty()) {
        root_removed_ = true;
      } else {
        root_alive_ |= uint64_t{1} << i;
      }
    }
  }

  size_t removed() const { return removed_; }

  bool Null() { return Scalar() ? writer_->Null() : true; }
  bool Bool(bool b) { return Scalar() ? writer_->Bool(b) : true; }
  // Numbers arrive as raw text (kParseNumbersAsStringsFlag), so they are copied as written.
  bool RawNumber(const char* str, rapidjson::SizeType length, bool) {
    return Scalar() ? writer_->RawValue(str, length, rapidjson::kNumberType) : true;
  }
  bool Int(int) { return false; }
  bool Uint(unsigned) { return false; }
  bool Int64(int64_t) { return false; }
  bool Uint64(uint64_t) { return false; }
  bool Double(double) { return false; }
  bool String(const char* str, rapidjson::SizeType length, bool) {
    return Scalar() ? writer_->String(str, length) : true;
  }
  bool StartObject() { return StartContainer(false) ? writer_->StartObject() : true; }
  bool StartArray() { return StartContainer(true) ? writer_->StartArray() : true; }
  bool EndObject(rapidjson::SizeType) { return EndContainer() ? writer_->EndObject() : true; }
  bool EndArray(rapidjson::SizeType) { return EndContainer() ? writer_->EndArray() : true; }

  bool Key(const char* str, rapidjson::SizeType length, bool) {
    if (skip_depth_ > 0) return true;
    Frame& frame = frames_.back();
    std::string_view key(str, length);
    next_alive_ = 0;
    next_removed_ = false;
    for (size_t i = 0; i < pointers_.size(); ++i) {
      if ((frame.alive >> i & 1) == 0) continue;
      const std::string& token = pointers_[i][frame.depth];
      if (token != "*" && token != key) continue;
      if (pointers_[i].size() == frame.depth + 1) {
        next_removed_ = true;
      } else {
        next_alive_ |= uint64_t{1} << i;
      }
    }
    // The key of a removed member is dropped along with its value.
    return next_removed_ ? true : writer_->Key(str, length);
  }

 private:
  struct Frame {
    bool is_array;
    size_t depth;  // number of tokens leading to this container
    size_t next_index;
    uint64_t alive;
  };

  // Decides for the value that starts now; false means it is removed. Sets next_alive_.
  bool Keep() {
    if (frames_.empty()) {
      next_alive_ = root_alive_;
      next_removed_ = root_removed_;
    } else if (frames_.back().is_array) {
      Frame& frame = frames_.back();
      size_t index = frame.next_index++;
      next_alive_ = 0;
      next_removed_ = false;
      for (size_t i = 0; i < pointers_.size(); ++i) {
        if ((frame.alive >> i & 1) == 0) continue;
        const std::string& token = pointers_[i][frame.depth];
        if (token != "*" && (!IsArrayIndexToken(token) || std::stoull(token) != index)) continue;
        if (pointers_[i].size() == frame.depth + 1) {
          next_removed_ = true;
        } else {
          next_alive_ |= uint64_t{1} << i;
        }
      }
    }
    // In an object, Key() has already decided.
    if (next_removed_) ++removed_;
    return !next_removed_;
  }

  bool Scalar() {
    if (skip_depth_ > 0) return false;
    return Keep();
  }

  bool StartContainer(bool is_array) {
    if (skip_depth_ > 0) {
      ++skip_depth_;
      return false;
    }
    if (!Keep()) {
      skip_depth_ = 1;
      return false;
    }
    size_t depth = frames_.empty() ? 0 : frames_.back().depth + 1;
    frames_.push_back(Frame{is_array, depth, 0, next_alive_});
    return true;
  }

  bool EndContainer() {
    if (skip_depth_ > 0) {
      --skip_depth_;
      return false;
    }
    frames_.pop_back();
    return true;
  }

  const Pointers& pointers_;
  rapidjson::Writer<rapidjson::StringBuffer>* writer_;
  uint64_t root_alive_ = 0;
  bool root_removed_ = false;
  std::vector<Frame> frames_;
  uint64_t next_alive_ = 0;
  bool next_removed_ = false;
  size_t skip_depth_ = 0;  // > 0 while inside a removed container
  size_t removed_ = 0;
};

}  // namespace

std::optional<Redactor> Redactor::Compile(const std::vector<std::string>& pointers,
                                          std::string* error) {
  auto fail = [error](std::string message) {
    if (error != nullptr) *error = std::move(message);
    return std::nullopt;
  };
  if (pointers.size() > kMaxPointers) {
    return fail("more than " + std::to_string(kMaxPointers) + " redact pointers");
  }
  Redactor result;
  for (const std::string& pointer : pointers) {
    std::vector<std::string> tokens;
    if (!pointer.empty()) {
      if (pointer[0] != '/') return fail("JSON pointer '" + pointer + "' must start with '/'");
      tokens.emplace_back();
      for (size_t i = 1; i < pointer.size(); ++i) {
        char c = pointer[i];
        if (c == '/') {
          tokens.emplace_back();
        } else if (c == '~') {
          char next = i + 1 < pointer.size() ? pointer[i + 1] : '\0';
          if (next != '0' && next != '1') {
            return fail("JSON pointer '" + pointer + "' has '~' not followed by '0' or '1'");
          }
          tokens.back().push_back(next == '0' ? '~' : '/');
          ++i;
        } else {
          tokens.back().push_back(c);
        }
      }
    }
    result.pointers_.push_back(std::move(tokens));
  }
  return result;
}

Redactor::Outcome Redactor::Apply(std::string* body) const {
  if (pointers_.empty() || body->empty()) return Outcome::kUnchanged;
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> writer(out);
  RedactingHandler handler(pointers_, &writer);
  rapidjson::Reader reader;
  rapidjson::StringStream in(body->c_str());
  constexpr unsigned kFlags = rapidjson::kParseIterativeFlag |
                              rapidjson::kParseNumbersAsStringsFlag |
                              rapidjson::kParseValidateEncodingFlag;
  rapidjson::ParseResult parsed = reader.Parse<kFlags>(in, handler);
  // StringStream stops at the first NUL; a NUL before the end is not JSON either.
  if (parsed.IsError() || in.Tell() != body->size()) return Outcome::kNotJson;
  if (handler.removed() == 0) return Outcome::kUnchanged;
  if (out.GetSize() == 0) {
    *body = "null";
  } else {
    body->assign(out.GetString(), out.GetSize());
  }
  return Outcome::kRedacted;
}

}  // namespace tollgate::policies
