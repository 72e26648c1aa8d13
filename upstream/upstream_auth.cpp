#include "upstream/upstream_auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "upstream/headers.h"

namespace tollgate::upstream {
namespace {

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
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &digest_size, EVP_sha256(), nullptr) != 1) {
    return std::string();
  }
  return Hex(digest, digest_size);
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
