#include "upstream/upstream_auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <memory>

#include "upstream/headers.h"

namespace tollgate::upstream {
namespace {

constexpr unsigned int kSha256Size = 32;

// OpenSSL 3 resolves EVP_sha256() in its provider store (a locked lookup) on every
// EVP_Digest call, and EVP_Digest makes and frees a context each time; the caller-key lookup
// hashes on every request. The digest is fetched once (kept for the process), the context is
// one per thread.
bool Sha256(std::string_view data, unsigned char out[kSha256Size]) {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                           &EVP_MD_CTX_free);
  unsigned int size = 0;
  return md != nullptr && ctx != nullptr && EVP_DigestInit_ex2(ctx.get(), md, nullptr) == 1 &&
         EVP_DigestUpdate(ctx.get(), data.data(), data.size()) == 1 &&
         EVP_DigestFinal_ex(ctx.get(), out, &size) == 1 && size == kSha256Size;
}

std::string Hex(const unsigned char* data, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0x0f];
  }
  return out;
}

// Defence in depth: even if a caller-supplied copy slipped past FilterRequestHeaders, the
// upstream must see exactly one credential, the gateway's.
void RemoveHeader(std::string_view name, HeaderList* headers) {
  headers->erase(std::remove_if(headers->begin(), headers->end(),
                                [name](const auto& h) { return HeaderNameEquals(h.first, name); }),
                 headers->end());
}

}  // namespace

std::string HmacSha256Hex(std::string_view key, std::string_view message) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_size = 0;
  // An empty key is valid HMAC input; OpenSSL wants a non-null pointer for it.
  static const unsigned char kEmpty = 0;
  const void* key_data = key.empty() ? &kEmpty : static_cast<const void*>(key.data());
  if (HMAC(EVP_sha256(), key_data, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac,
           &mac_size) == nullptr) {
    return std::string();
  }
  return Hex(mac, mac_size);
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[kSha256Size];
  if (!Sha256(data, digest)) return std::string();
  return Hex(digest, kSha256Size);
}

std::string Sha256Raw(std::string_view data) {
  unsigned char digest[kSha256Size];
  if (!Sha256(data, digest)) return std::string();
  return std::string(reinterpret_cast<const char*>(digest), kSha256Size);
}

void InjectUpstreamAuth(const config::UpstreamAuth& auth, std::string_view body, int64_t now_ms,
                        HeaderList* headers) {
  switch (auth.type) {
    case config::AuthType::kBearer:
      RemoveHeader("authorization", headers);
      headers->emplace_back("Authorization", "Bearer " + auth.secret);
      return;
    case config::AuthType::kHeader:
      RemoveHeader(auth.header, headers);
      headers->emplace_back(auth.header, auth.secret);
      return;
    case config::AuthType::kDevoHmac: {
      RemoveHeader("x-logtrust-apikey", headers);
      RemoveHeader("x-logtrust-timestamp", headers);
      RemoveHeader("x-logtrust-sign", headers);
      std::string timestamp = std::to_string(now_ms);
      std::string message;
      message.reserve(auth.key.size() + body.size() + timestamp.size());
      message.append(auth.key).append(body).append(timestamp);
      headers->emplace_back("x-logtrust-apikey", auth.key);
      headers->emplace_back("x-logtrust-timestamp", timestamp);
      headers->emplace_back("x-logtrust-sign", HmacSha256Hex(auth.secret, message));
      return;
    }
  }
}

}  // namespace tollgate::upstream
