// Injects an upstream's real secret into a forwarded request (auth.type bearer | header |
// devo_hmac). The only code that reads UpstreamAuth's secret values. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "config/model.h"
#include "upstream/upstream_client.h"

namespace tollgate::upstream {

// bearer:    Authorization: Bearer <secret>
// header:    <auth.header>: <secret>
// devo_hmac: x-logtrust-apikey: <key>, x-logtrust-timestamp: <now_ms>,
//            x-logtrust-sign: hex(HMAC-SHA256(secret, key + body + timestamp))
// Appends to *headers (which must already be free of any caller-supplied auth header).
void InjectUpstreamAuth(const config::UpstreamAuth& auth, std::string_view body, int64_t now_ms,
                        HeaderList* headers);

// Lower-case hex of HMAC-SHA256(key, message).
std::string HmacSha256Hex(std::string_view key, std::string_view message);
// Lower-case hex of SHA-256(data).
std::string Sha256Hex(std::string_view data);
// The 32 raw bytes of SHA-256(data) (empty if OpenSSL fails). Cheap enough for every request:
// the digest is fetched from OpenSSL's provider store once, and each thread reuses one context.
std::string Sha256Raw(std::string_view data);

}  // namespace tollgate::upstream
