#include "keys/key_format.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "upstream/upstream_auth.h"

namespace tollgate::keys {
namespace {

bool IsIdChar(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool IsBase64UrlChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

// 32 bytes -> 43 characters, RFC 4648 section 5, no padding.
std::string Base64Url(const unsigned char* data, size_t len) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((len * 4 + 2) / 3);
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    const uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8) | data[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (len - i == 1) {
    const uint32_t v = uint32_t{data[i]} << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
  } else if (len - i == 2) {
    const uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

// 12 characters of [a-z0-9], each uniform (bytes >= 252 = 36 * 7 are drawn again).
bool RandomId(std::string* id) {
  static const char* kAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char pool[64];
  size_t used = sizeof pool;
  while (id->size() < kIdLength) {
    if (used == sizeof pool) {
      if (RAND_bytes(pool, sizeof pool) != 1) return false;
      used = 0;
    }
    const unsigned char b = pool[used++];
    if (b < 252) id->push_back(kAlphabet[b % 36]);
  }
  return true;
}

}  // namespace

bool IsValidKeyId(std::string_view id) {
  if (id.size() != kIdLength) return false;
  for (char c : id) {
    if (!IsIdChar(c)) return false;
  }
  return true;
}

bool ParseRunTimeKey(std::string_view key, std::string_view* id) {
  if (key.size() != kKeyLength || key.substr(0, kKeyPrefix.size()) != kKeyPrefix) return false;
  const std::string_view candidate = key.substr(kKeyPrefix.size(), kIdLength);
  if (!IsValidKeyId(candidate) || key[kKeyPrefix.size() + kIdLength] != '_') return false;
  for (char c : key.substr(kKeyPrefix.size() + kIdLength + 1)) {
    if (!IsBase64UrlChar(c)) return false;
  }
  *id = candidate;
  return true;
}

NewKey GenerateKey() {
  NewKey out;
  unsigned char secret[32];
  std::string id;
  if (!RandomId(&id) || RAND_bytes(secret, sizeof secret) != 1) {
    OPENSSL_cleanse(secret, sizeof secret);
    return out;
  }
  out.key = std::string(kKeyPrefix) + id + "_" + Base64Url(secret, sizeof secret);
  OPENSSL_cleanse(secret, sizeof secret);
  out.sha256 = upstream::Sha256Hex(out.key);
  out.id = std::move(id);
  return out;
}

}  // namespace tollgate::keys
