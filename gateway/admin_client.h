// The command line's client for the admin listener (`tollgate keys ...`): one blocking HTTP
// request with the admin token, through libcurl's easy interface. For the CLI only (it blocks);
// the gateway itself never calls it.
//
// The token goes only into the Authorization header of a request to the URL given: no proxy
// from the environment is used (it would see the token), redirects are not followed, and only
// http and https are spoken. Errors never hold the token.
//
// Thread-safety: one call at a time per process (libcurl's global init is not thread-safe).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace tollgate::gateway {

struct AdminReply {
  int status = 0;     // 0: no answer (`error` says why)
  std::string body;   // at most kMaxAdminReplyBytes
  std::string error;  // why there was no answer
};

inline constexpr size_t kMaxAdminReplyBytes = 64 << 20;

// `method` `base_url` + `target` (e.g. "/keys?caller=x"), with `Authorization: Bearer <token>`
// and, when `json_body` is not empty, that body as application/json.
AdminReply AdminRequest(std::string_view base_url, std::string_view token, std::string_view method,
                        std::string_view target, std::string_view json_body,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(15000));

}  // namespace tollgate::gateway
