#include "policies/ownership.h"

#include <rapidjson/document.h>
#include <rapidjson/pointer.h>

#include <cctype>
#include <utility>

namespace tollgate::policies {
namespace {

constexpr int64_t kSecondsPerDay = 24 * 60 * 60;
constexpr size_t kSweepEvery = 1024;  // records between sweeps of the in-process map

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding of a name: "%xx" and '+'; a bad escape stays as is.
std::string DecodeComponent(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%' && i + 2 < text.size() && HexDigit(text[i + 1]) >= 0 &&
               HexDigit(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexDigit(text[i + 1]) * 16 + HexDigit(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

void AppendEncoded(std::string_view text, std::string* out) {
  static const char kHex[] = "0123456789ABCDEF";
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out->push_back(ch);
    } else {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    }
  }
}

}  // namespace

std::optional<std::string> OwnedValueAt(std::string_view body, const std::string& pointer) {
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError()) return std::nullopt;
  rapidjson::Pointer p(pointer.c_str(), pointer.size());
  if (!p.IsValid()) return std::nullopt;
  const rapidjson::Value* value = p.Get(doc);
  if (value == nullptr) return std::nullopt;
  if (value->IsString()) {
    if (value->GetStringLength() == 0) return std::nullopt;
    return std::string(value->GetString(), value->GetStringLength());
  }
  if (value->IsUint64()) return std::to_string(value->GetUint64());
  if (value->IsInt64()) return std::to_string(value->GetInt64());
  return std::nullopt;
}

std::string ForceQuery(std::string_view raw, const std::map<std::string, std::string>& forced,
                       std::string_view caller) {
  std::string out;
  out.reserve(raw.size() + 32);
  size_t start = 0;
  while (start <= raw.size() && !raw.empty()) {
    size_t end = raw.find('&', start);
    if (end == std::string_view::npos) end = raw.size();
    std::string_view part = raw.substr(start, end - start);
    std::string_view name = part.substr(0, part.find('='));
    if (!part.empty() && forced.count(DecodeComponent(name)) == 0) {
      if (!out.empty()) out.push_back('&');
      out.append(part);
    }
    start = end + 1;
  }
  static const std::string kCaller = "{caller}";
  for (const auto& [name, value] : forced) {
    std::string expanded = value;
    for (size_t at = expanded.find(kCaller); at != std::string::npos;
         at = expanded.find(kCaller, at + caller.size())) {
      expanded.replace(at, kCaller.size(), caller);
    }
    if (!out.empty()) out.push_back('&');
    AppendEncoded(name, &out);
    out.push_back('=');
    AppendEncoded(expanded, &out);
  }
  return out;
}

MemoryOwnershipStore::MemoryOwnershipStore(int ttl_days, Clock clock)
    : ttl_(std::chrono::seconds(int64_t{ttl_days} * kSecondsPerDay)), clock_(std::move(clock)) {
  if (!clock_) clock_ = [] { return std::chrono::steady_clock::now(); };
}

void MemoryOwnershipStore::Record(const std::string& upstream, const std::string& value,
                                  const std::string& caller, Recorded done) {
  const auto now = clock_();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (++records_since_sweep_ >= kSweepEvery) {
      records_since_sweep_ = 0;
      for (auto it = entries_.begin(); it != entries_.end();) {
        it = it->second.expires <= now ? entries_.erase(it) : std::next(it);
      }
    }
    entries_[upstream + ":" + value] = Entry{caller, now + ttl_};
  }
  done(true);
}

void MemoryOwnershipStore::Lookup(const std::string& upstream, const std::string& value,
                                  Found done) {
  std::optional<std::string> owner;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(upstream + ":" + value);
    if (it != entries_.end() && it->second.expires > clock_()) owner = it->second.caller;
  }
  done(true, std::move(owner));
}

RedisOwnershipStore::RedisOwnershipStore(const config::RedisConfig& redis, int ttl_days)
    : prefix_(redis.key_prefix), ttl_seconds_(int64_t{ttl_days} * kSecondsPerDay), client_(redis) {}

std::string RedisOwnershipStore::Key(const std::string& upstream, const std::string& value) const {
  return prefix_ + "owner:" + upstream + ":" + value;
}

void RedisOwnershipStore::Record(const std::string& upstream, const std::string& value,
                                 const std::string& caller, Recorded done) {
  const std::string key = Key(upstream, value);
  client_.Command(key, {"SET", key, caller, "EX", std::to_string(ttl_seconds_)},
                  [done = std::move(done)](const redisReply* reply) {
                    done(reply != nullptr && reply->type == REDIS_REPLY_STATUS);
                  });
}

void RedisOwnershipStore::Lookup(const std::string& upstream, const std::string& value,
                                 Found done) {
  const std::string key = Key(upstream, value);
  client_.Command(key, {"GET", key}, [done = std::move(done)](const redisReply* reply) {
    if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) {
      done(false, std::nullopt);
    } else if (reply->type == REDIS_REPLY_STRING) {
      done(true, std::string(reply->str, reply->len));
    } else {
      done(true, std::nullopt);  // nil: nobody owns it
    }
  });
}

std::unique_ptr<OwnershipStore> MakeOwnershipStore(const config::Config& config) {
  if (config.redis) {
    return std::make_unique<RedisOwnershipStore>(*config.redis, config.ownership_ttl_days);
  }
  return std::make_unique<MemoryOwnershipStore>(config.ownership_ttl_days);
}

}  // namespace tollgate::policies
