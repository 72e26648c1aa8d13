// RedisLoopClient against a real redis-server (commands, scripts, AUTH/SELECT, a restart) and
// against loopback servers that misbehave on cue (one that accepts and never answers, one that
// hangs up on every connection): every command gets exactly one answer, on the loop that sent
// it and never inline, and a failing Redis costs a bounded wait, then none (the back-off).

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "loop/loop.h"
#include "policies/redis_loop_client.h"
#include "tests/support/process.h"
#include "tests/unit/redis_peek.h"

namespace tollgate::policies {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

// What a `done` saw, copied out of the reply (valid only during the call).
struct Answer {
  bool answered = false;
  bool failed = false;  // done(nullptr)
  int type = 0;
  std::string text;
  long long integer = 0;
  std::vector<std::string> elements;
  std::thread::id thread;
  bool inline_call = false;  // ran before Command/Eval returned
};

Answer Copy(const redisReply* reply) {
  Answer answer;
  answer.answered = true;
  if (reply == nullptr) {
    answer.failed = true;
    return answer;
  }
  answer.type = reply->type;
  if (reply->str != nullptr) answer.text.assign(reply->str, reply->len);
  answer.integer = reply->integer;
  for (size_t i = 0; i < reply->elements; ++i) {
    const redisReply* e = reply->element[i];
    answer.elements.push_back(e->str != nullptr ? std::string(e->str, e->len)
                                                : std::to_string(e->integer));
  }
  return answer;
}

using Send = std::function<void(RedisLoopClient::Done)>;

// Runs `send` on the loop's thread and waits (generously: a hang fails, it does not block) for
// the answer.
Answer Ask(loop::LoopThread& thread, Send send, seconds limit = seconds(30)) {
  auto promise = std::make_shared<std::promise<Answer>>();
  std::future<Answer> future = promise->get_future();
  thread.loop().Post([send, promise] {
    auto returned = std::make_shared<bool>(false);
    send([promise, returned](const redisReply* reply) {
      Answer answer = Copy(reply);
      answer.thread = std::this_thread::get_id();
      answer.inline_call = !*returned;
      promise->set_value(std::move(answer));
    });
    *returned = true;
  });
  if (future.wait_for(limit) != std::future_status::ready) {
    ADD_FAILURE() << "no answer within " << limit.count() << " s";
    return {};
  }
  return future.get();
}

Send Command(RedisLoopClient& client, std::vector<std::string> argv) {
  return [&client, argv](RedisLoopClient::Done done) { client.Command("", argv, std::move(done)); };
}

std::thread::id ThreadOf(loop::LoopThread& thread) {
  std::thread::id id;
  thread.RunSync([&] { id = std::this_thread::get_id(); });
  return id;
}

config::RedisConfig ConfigFor(int port, int timeout_ms = 5000) {
  config::RedisConfig config;
  config.host = "127.0.0.1";
  config.port = port;
  config.timeout_ms = timeout_ms;
  return config;
}

// A loopback listener that accepts every connection and then either never says a word
// (kSilent: the client must time out) or closes it at once (kHangUp). Counts connections.
class MuteServer {
 public:
  enum class Mode { kSilent, kHangUp };

  explicit MuteServer(Mode mode) : mode_(mode) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(addr);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_, 16) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
      ADD_FAILURE() << "cannot listen on loopback";
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~MuteServer() {
    StopAccepting();
    for (int fd : held_) close(fd);
    close(listen_fd_);
  }

  int port() const { return port_; }
  int accepted() const { return accepted_.load(); }

  // Stops taking connections; afterwards, true when a client connected that was never taken.
  bool StopAcceptingAndSeeIfOneWaits() {
    StopAccepting();
    pollfd p{listen_fd_, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
  }

 private:
  void StopAccepting() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  void AcceptLoop() {
    while (!stop_.load()) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 20) != 1) continue;
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      accepted_.fetch_add(1);
      if (mode_ == Mode::kHangUp) {
        close(fd);
      } else {
        held_.push_back(fd);  // only this thread touches it until the join
      }
    }
  }

  const Mode mode_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::vector<int> held_;
  std::thread thread_;
};

TEST(RedisLoopClientTest, CommandsAreAnsweredOnTheAskingLoopNeverInline) {
  testing::RedisServer redis;
  RedisLoopClient client(ConfigFor(redis.port()));
  loop::LoopThread thread("client-test");
  const std::thread::id loop_thread = ThreadOf(thread);

  Answer set = Ask(thread, Command(client, {"SET", "greeting", "hello"}));
  ASSERT_FALSE(set.failed);
  EXPECT_EQ(set.type, REDIS_REPLY_STATUS);
  EXPECT_EQ(set.text, "OK");
  EXPECT_EQ(set.thread, loop_thread);
  EXPECT_FALSE(set.inline_call);

  Answer get = Ask(thread, Command(client, {"GET", "greeting"}));
  EXPECT_EQ(get.type, REDIS_REPLY_STRING);
  EXPECT_EQ(get.text, "hello");
  EXPECT_EQ(get.thread, loop_thread);
  EXPECT_FALSE(get.inline_call);
  EXPECT_EQ(client.failures(), 0u);
}

TEST(RedisLoopClientTest, ManyCommandsFromOneIterationAreAnsweredInOrder) {
  testing::RedisServer redis;
  RedisLoopClient client(ConfigFor(redis.port()));
  loop::LoopThread thread("client-test");
  auto seen = std::make_shared<std::vector<long long>>();
  Answer last = Ask(thread, [&client, seen](RedisLoopClient::Done done) {
    for (int i = 0; i < 200; ++i) {
      client.Command("counter", {"INCR", "counter"}, [seen](const redisReply* reply) {
        seen->push_back(reply ? reply->integer : -1);
      });
    }
    client.Command("counter", {"GET", "counter"}, std::move(done));
  });
  EXPECT_EQ(last.text, "200");
  ASSERT_EQ(seen->size(), 200u);
  for (size_t i = 0; i < seen->size(); ++i) EXPECT_EQ((*seen)[i], static_cast<long long>(i + 1));
}

TEST(RedisLoopClientTest, AnErrorReplyIsAReplyNotAFailure) {
  testing::RedisServer redis;
  RedisLoopClient client(ConfigFor(redis.port()));
  loop::LoopThread thread("client-test");
  Answer answer = Ask(thread, Command(client, {"NOSUCHCOMMAND", "x"}));
  ASSERT_FALSE(answer.failed);
  EXPECT_EQ(answer.type, REDIS_REPLY_ERROR);
  EXPECT_EQ(client.failures(), 0u);
  // The connection stays usable.
  EXPECT_EQ(Ask(thread, Command(client, {"PING"})).text, "PONG");
}

TEST(RedisLoopClientTest, EachLoopHasItsOwnConnection) {
  testing::RedisServer redis;
  RedisLoopClient client(ConfigFor(redis.port()));
  loop::LoopThread first("client-a");
  loop::LoopThread second("client-b");
  Answer a = Ask(first, Command(client, {"CLIENT", "ID"}));
  Answer b = Ask(second, Command(client, {"CLIENT", "ID"}));
  Answer a_again = Ask(first, Command(client, {"CLIENT", "ID"}));
  EXPECT_EQ(a.thread, ThreadOf(first));
  EXPECT_EQ(b.thread, ThreadOf(second));
  EXPECT_NE(a.integer, b.integer);
  EXPECT_EQ(a.integer, a_again.integer);  // kept, not one connection per command
}

TEST(RedisScriptTest, NamesTheScriptByItsSha1) {
  // SHA-1 of "return 1", as `redis-cli SCRIPT LOAD "return 1"` prints it.
  EXPECT_EQ(RedisScript("return 1").sha1, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
  EXPECT_EQ(RedisScript("return 1").source, "return 1");
}

Send Eval(RedisLoopClient& client, const RedisScript& script, std::vector<std::string> keys,
          std::vector<std::string> args) {
  return [&client, &script, keys, args](RedisLoopClient::Done done) {
    client.Eval(script, keys, args, std::move(done));
  };
}

TEST(RedisLoopClientTest, EvalLoadsTheScriptOnNoScriptAndAfterAFlush) {
  testing::RedisServer redis;
  RedisLoopClient client(ConfigFor(redis.port()));
  loop::LoopThread thread("client-test");
  testing::RedisPeek inspector(redis.port());
  const RedisScript script("return KEYS[1] .. '=' .. ARGV[1]");

  // A fresh Redis does not know it: NOSCRIPT, SCRIPT LOAD, EVALSHA again.
  Answer first = Ask(thread, Eval(client, script, {"k"}, {"v"}));
  ASSERT_FALSE(first.failed);
  EXPECT_EQ(first.type, REDIS_REPLY_STRING);
  EXPECT_EQ(first.text, "k=v");
  Answer exists = Ask(thread, Command(client, {"SCRIPT", "EXISTS", script.sha1}));
  ASSERT_EQ(exists.elements.size(), 1u);
  EXPECT_EQ(exists.elements[0], "1");

  EXPECT_EQ(inspector.Run({"SCRIPT", "FLUSH"}), "OK");
  // Several at once after the flush: every one is answered, in order.
  auto seen = std::make_shared<std::vector<std::string>>();
  Answer last = Ask(thread, [&client, &script, seen](RedisLoopClient::Done done) {
    for (int i = 0; i < 5; ++i) {
      client.Eval(script, {"k"}, {std::to_string(i)}, [seen](const redisReply* reply) {
        seen->push_back(reply != nullptr && reply->str != nullptr ? reply->str : "<failed>");
      });
    }
    client.Eval(script, {"k"}, {"last"}, std::move(done));
  });
  EXPECT_EQ(last.text, "k=last");
  EXPECT_EQ(*seen, (std::vector<std::string>{"k=0", "k=1", "k=2", "k=3", "k=4"}));
  EXPECT_EQ(client.failures(), 0u);
}

TEST(RedisLoopClientTest, ARefusedScriptLoadIsRetriedOnceAndAnswersTheError) {
  testing::RedisServer redis;
  testing::RedisPeek inspector(redis.port());
  // A user that may run scripts by SHA but not load them.
  ASSERT_EQ(
      inspector.Run({"ACL", "SETUSER", "runner", "on", ">runner-pw", "~*", "+@all", "-script"}),
      "OK");
  config::RedisConfig config = ConfigFor(redis.port());
  config.username = "runner";
  config.password = "runner-pw";
  RedisLoopClient client(config);
  loop::LoopThread thread("client-test");
  const RedisScript script("return 'never loaded'");
  Answer answer = Ask(thread, Eval(client, script, {}, {}));
  ASSERT_FALSE(answer.failed);
  EXPECT_EQ(answer.type, REDIS_REPLY_ERROR);
  EXPECT_EQ(answer.text.rfind("NOSCRIPT", 0), 0u) << answer.text;
  // Commands the user may run still work on the same connection (AUTH as `runner` worked).
  EXPECT_EQ(Ask(thread, Command(client, {"ACL", "WHOAMI"})).text, "runner");
}

TEST(RedisLoopClientTest, AuthenticatesAndSelectsTheDatabase) {
  testing::RedisServer redis(testing::RedisServerOptions{"s3cret-pw", {}, "/dev/null"});
  config::RedisConfig config = ConfigFor(redis.port());
  config.password = "s3cret-pw";
  config.db = 3;
  RedisLoopClient client(config);
  loop::LoopThread thread("client-test");
  Answer set = Ask(thread, Command(client, {"SET", "where", "db3"}));
  ASSERT_FALSE(set.failed);
  EXPECT_EQ(set.text, "OK");
  testing::RedisPeek inspector(redis.port(), "s3cret-pw");
  EXPECT_EQ(inspector.Run({"SELECT", "3"}), "OK");
  EXPECT_EQ(inspector.Run({"GET", "where"}), "db3");
}

TEST(RedisLoopClientTest, ARefusedHandshakeFailsTheCommandsBehindIt) {
  testing::RedisServer redis(testing::RedisServerOptions{"s3cret-pw", {}, "/dev/null"});
  config::RedisConfig config = ConfigFor(redis.port());
  config.password = "wrong-pw";
  RedisLoopClient client(config);
  RedisLoopClient anonymous(ConfigFor(redis.port()));
  loop::LoopThread thread("client-test");
  Answer answer = Ask(thread, Command(client, {"SET", "where", "nowhere"}));
  EXPECT_TRUE(answer.failed);
  EXPECT_FALSE(answer.inline_call);
  EXPECT_EQ(client.failures(), 1u);
  testing::RedisPeek inspector(redis.port(), "s3cret-pw");
  EXPECT_EQ(inspector.Run({"EXISTS", "where"}), "0");

  // Without a password the command itself is refused: an error reply, not a failure.
  Answer refused = Ask(thread, Command(anonymous, {"GET", "where"}));
  ASSERT_FALSE(refused.failed);
  EXPECT_EQ(refused.type, REDIS_REPLY_ERROR);
}

TEST(RedisLoopClientFailureTest, ARedisThatNeverAnswersTimesOutEveryPendingCommand) {
  MuteServer silent(MuteServer::Mode::kSilent);
  RedisLoopClient client(ConfigFor(silent.port(), 300));
  loop::LoopThread thread("client-test");
  const std::thread::id loop_thread = ThreadOf(thread);
  auto failed = std::make_shared<std::atomic<int>>(0);
  const auto start = steady_clock::now();
  Answer last = Ask(thread, [&client, failed](RedisLoopClient::Done done) {
    for (int i = 0; i < 3; ++i) {
      client.Command("a", {"GET", "a"}, [failed](const redisReply* reply) {
        if (reply == nullptr) failed->fetch_add(1);
      });
    }
    client.Command("b", {"GET", "b"}, std::move(done));
  });
  // Not before the deadline (timers never fire early); "not much after" is the 30 s in Ask.
  EXPECT_GE(steady_clock::now() - start, milliseconds(300));
  EXPECT_TRUE(last.failed);
  EXPECT_EQ(last.thread, loop_thread);
  EXPECT_FALSE(last.inline_call);
  EXPECT_EQ(failed->load(), 3);
  EXPECT_EQ(client.failures(), 4u);
}

TEST(RedisLoopClientFailureTest, AStoppedRedisFailsAndAfterARestartCommandsWorkAgain) {
  testing::RedisServer redis;
  RedisLoopClient client(ConfigFor(redis.port()));
  loop::LoopThread thread("client-test");
  ASSERT_EQ(Ask(thread, Command(client, {"PING"})).text, "PONG");

  redis.Stop();
  for (int i = 0; i < 5; ++i) {  // lost, then refused, then the back-off: always nullptr
    Answer answer = Ask(thread, Command(client, {"PING"}));
    EXPECT_TRUE(answer.failed);
    EXPECT_FALSE(answer.inline_call);
  }
  EXPECT_GE(client.failures(), 5u);

  redis.Start();
  // Within the back-off's cap (5 s) a command connects again; 30 s is the bound.
  const auto deadline = steady_clock::now() + seconds(30);
  bool recovered = false;
  while (!recovered && steady_clock::now() < deadline) {
    recovered = Ask(thread, Command(client, {"PING"})).text == "PONG";
    if (!recovered) std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(recovered);
}

TEST(RedisLoopClientFailureTest, AfterThreeFailuresCommandsFailAtOnceWithoutConnecting) {
  MuteServer hangs_up(MuteServer::Mode::kHangUp);
  // A long timeout: a command that tried the server would be failed by the hang-up, never by
  // the deadline.
  RedisLoopClient client(ConfigFor(hangs_up.port(), 60000));
  loop::LoopThread thread("client-test");
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(Ask(thread, Command(client, {"PING"})).failed);
  EXPECT_EQ(hangs_up.accepted(), 2);

  // The third failure starts the back-off; a command sent from its answer (the same moment)
  // is failed by the back-off: answered later, on the loop, and no connection is made.
  auto in_backoff = std::make_shared<std::promise<Answer>>();
  Answer third = Ask(thread, [&client, in_backoff](RedisLoopClient::Done done) {
    client.Command("", {"PING"}, [&client, in_backoff, done](const redisReply* reply) {
      auto returned = std::make_shared<bool>(false);
      client.Command("", {"PING"}, [in_backoff, returned](const redisReply* again) {
        Answer answer = Copy(again);
        answer.inline_call = !*returned;
        in_backoff->set_value(answer);
      });
      *returned = true;
      done(reply);
    });
  });
  EXPECT_TRUE(third.failed);
  std::future<Answer> future = in_backoff->get_future();
  ASSERT_EQ(future.wait_for(seconds(30)), std::future_status::ready);
  Answer fourth = future.get();
  EXPECT_TRUE(fourth.failed);
  EXPECT_FALSE(fourth.inline_call);
  EXPECT_FALSE(hangs_up.StopAcceptingAndSeeIfOneWaits());
  EXPECT_EQ(hangs_up.accepted(), 3);
  EXPECT_EQ(client.failures(), 4u);
}

TEST(RedisLoopClientFailureTest, ALoopStoppedWithCommandsPendingAnswersThem) {
  MuteServer silent(MuteServer::Mode::kSilent);
  RedisLoopClient client(ConfigFor(silent.port(), 60000));
  auto answers = std::make_shared<std::atomic<int>>(0);
  auto failed = std::make_shared<std::atomic<int>>(0);
  {
    loop::LoopThread thread("client-test");
    thread.RunSync([&client, answers, failed] {
      for (int i = 0; i < 3; ++i) {
        client.Command("a", {"GET", "a"}, [answers, failed](const redisReply* reply) {
          answers->fetch_add(1);
          if (reply == nullptr) failed->fetch_add(1);
        });
      }
    });
  }
  EXPECT_EQ(answers->load(), 3);
  EXPECT_EQ(failed->load(), 3);
}

TEST(RedisLoopClientFailureTest, ACommandFromAThreadWithoutALoopFails) {
  testing::RedisServer redis;
  RedisLoopClient client(ConfigFor(redis.port()));
  bool failed = false;
  client.Command("", {"PING"}, [&failed](const redisReply* reply) { failed = reply == nullptr; });
  EXPECT_TRUE(failed);
}

}  // namespace
}  // namespace tollgate::policies
