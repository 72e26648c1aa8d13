#include "gateway/admin_client.h"

#include <curl/curl.h>
#include <openssl/crypto.h>

#include <memory>
#include <vector>

namespace tollgate::gateway {
namespace {

struct Sink {
  std::string* body;
  bool too_large = false;
};

size_t Collect(char* data, size_t size, size_t count, void* user) {
  Sink* sink = static_cast<Sink*>(user);
  const size_t n = size * count;
  if (sink->body->size() + n > kMaxAdminReplyBytes) {
    sink->too_large = true;
    return 0;  // ends the transfer
  }
  sink->body->append(data, n);
  return n;
}

struct EasyDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct ListDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

}  // namespace

AdminReply AdminRequest(std::string_view base_url, std::string_view token, std::string_view method,
                        std::string_view target, std::string_view json_body,
                        std::chrono::milliseconds timeout) {
  AdminReply reply;
  std::unique_ptr<CURL, EasyDeleter> curl(curl_easy_init());
  if (!curl) {
    reply.error = "libcurl could not start";
    return reply;
  }
  CURL* c = curl.get();
  const std::string url = std::string(base_url) + std::string(target);
  const std::string verb(method);
  std::string authorization = "Authorization: Bearer " + std::string(token);
  std::vector<const char*> lines = {authorization.c_str(), "Accept: application/json",
                                    "Expect:"};  // no 100-continue round trip for a small body
  if (!json_body.empty()) lines.push_back("Content-Type: application/json");
  curl_slist* list = nullptr;
  for (const char* line : lines) {
    curl_slist* next = curl_slist_append(list, line);  // copies the line
    if (next == nullptr) {
      curl_slist_free_all(list);
      list = nullptr;
      break;
    }
    list = next;
  }
  OPENSSL_cleanse(authorization.data(), authorization.size());
  std::unique_ptr<curl_slist, ListDeleter> headers(list);
  if (!headers) {
    reply.error = "out of memory";
    return reply;
  }

  char error[CURL_ERROR_SIZE] = {0};
  Sink sink{&reply.body};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PROXY, "");  // never through a proxy from the environment
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, verb.c_str());
  if (!json_body.empty()) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(json_body.size()));
  } else if (verb == "POST") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);

  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    reply.error = sink.too_large ? "the answer was larger than 64 MiB"
                                 : (error[0] != '\0' ? error : curl_easy_strerror(rc));
    reply.body.clear();
    return reply;
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  reply.status = static_cast<int>(status);
  return reply;
}

}  // namespace tollgate::gateway
