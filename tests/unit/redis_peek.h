// A plain blocking hiredis connection for tests that look at Redis from outside the code under
// test: run a command and read its reply as text, or subscribe as another replica would.
// Every read gives up after 10 s. One thread uses it.
#pragma once

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <string>
#include <vector>

namespace tollgate::testing {

class RedisPeek {
 public:
  explicit RedisPeek(int port, const std::string& password = "")
      : context_(redisConnect("127.0.0.1", port)) {
    timeval ten_seconds{10, 0};
    redisSetTimeout(context_, ten_seconds);
    if (!password.empty()) Run({"AUTH", password});
  }
  ~RedisPeek() { redisFree(context_); }
  RedisPeek(const RedisPeek&) = delete;
  RedisPeek& operator=(const RedisPeek&) = delete;

  // The reply as text: a string, an integer, or an array's elements joined by ','.
  std::string Run(const std::vector<std::string>& argv) {
    std::vector<const char*> pointers;
    std::vector<size_t> lengths;
    for (const std::string& arg : argv) {
      pointers.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    return Text(static_cast<redisReply*>(redisCommandArgv(context_, static_cast<int>(argv.size()),
                                                          pointers.data(), lengths.data())));
  }

  void Subscribe(const std::string& channel) {
    ASSERT_EQ(Run({"SUBSCRIBE", channel}), "subscribe," + channel + ",1");
  }
  // The next message's payload ("<timeout>" after 10 s).
  std::string NextMessage() {
    void* reply = nullptr;
    if (redisGetReply(context_, &reply) != REDIS_OK) return "<timeout>";
    auto* message = static_cast<redisReply*>(reply);
    std::string payload = message->type == REDIS_REPLY_ARRAY && message->elements == 3
                              ? std::string(message->element[2]->str, message->element[2]->len)
                              : "<not a message>";
    freeReplyObject(message);
    return payload;
  }

 private:
  static std::string Text(redisReply* reply) {
    if (reply == nullptr) return "<no reply>";
    std::string out;
    if (reply->type == REDIS_REPLY_ARRAY) {
      for (size_t i = 0; i < reply->elements; ++i) {
        const redisReply* e = reply->element[i];
        if (i > 0) out += ",";
        out += e->str != nullptr ? std::string(e->str, e->len) : std::to_string(e->integer);
      }
    } else if (reply->type == REDIS_REPLY_NIL) {
      out = "<nil>";
    } else {
      out = reply->str != nullptr ? std::string(reply->str, reply->len)
                                  : std::to_string(reply->integer);
    }
    freeReplyObject(reply);
    return out;
  }

  redisContext* context_;
};

}  // namespace tollgate::testing
