// The event loop: fds, timers in deadline order, cancellation, posting from other threads,
// iteration hooks and per-loop locals.
#include "loop/loop.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <string>
#include <vector>

namespace tollgate::loop {
namespace {

using std::chrono::milliseconds;

TEST(Loop, TimersFireInDeadlineOrderAndCancelledOnesNever) {
  Loop loop;
  std::vector<int> fired;
  loop.After(milliseconds(30), [&] { fired.push_back(3); });
  loop.After(milliseconds(10), [&] { fired.push_back(1); });
  auto cancelled = loop.After(milliseconds(20), [&] { fired.push_back(2); });
  loop.After(milliseconds(25), [&] { fired.push_back(25); });
  loop.Cancel(cancelled);
  loop.Cancel(cancelled);  // twice: nothing
  while (fired.size() < 3) loop.RunOnce(1000);
  EXPECT_EQ(fired, (std::vector<int>{1, 25, 3}));
}

TEST(Loop, WatchedFdCallsBackUntilUnwatched) {
  Loop loop;
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  std::string got;
  loop.Watch(sv[0], EPOLLIN, [&](uint32_t events) {
    ASSERT_TRUE(events & EPOLLIN);
    char buf[16];
    ssize_t n = read(sv[0], buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    loop.Unwatch(sv[0]);  // a callback may unwatch its own fd
  });
  EXPECT_EQ(loop.watched(), 1u);
  ASSERT_EQ(write(sv[1], "ab", 2), 2);
  loop.RunOnce(1000);
  EXPECT_EQ(got, "ab");
  EXPECT_EQ(loop.watched(), 0u);
  ASSERT_EQ(write(sv[1], "cd", 2), 2);
  loop.RunOnce(50);  // unwatched: nothing runs
  EXPECT_EQ(got, "ab");
  close(sv[0]);
  close(sv[1]);
}

TEST(LoopThread, PostRunsOnTheLoopThreadAndHooksAfterEachIteration) {
  LoopThread thread("loop-test");
  std::promise<bool> on_loop;
  std::atomic<int> hooks{0};
  thread.RunSync([&] { thread.loop().AddIterationHook([&] { hooks.fetch_add(1); }); });
  ASSERT_TRUE(thread.loop().Post([&] { on_loop.set_value(thread.loop().InLoopThread()); }));
  EXPECT_TRUE(on_loop.get_future().get());
  EXPECT_FALSE(thread.loop().InLoopThread());
  thread.RunSync([] {});
  EXPECT_GE(hooks.load(), 1);
}

TEST(LoopThread, PostAfterStopIsRefusedAndEarlierPostsStillRun) {
  auto thread = std::make_unique<LoopThread>("loop-test");
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(thread->loop().Post([&] { ran.fetch_add(1); }));
  Loop* loop = &thread->loop();
  loop->Stop();
  EXPECT_FALSE(loop->Post([&] { ran.fetch_add(1000); }));
  thread.reset();
  EXPECT_EQ(ran.load(), 100);
}

struct Counted {
  explicit Counted(std::vector<std::string>* log, std::string name)
      : log(log), name(std::move(name)) {}
  ~Counted() { log->push_back(name); }
  std::vector<std::string>* log;
  std::string name;
};

TEST(Loop, LocalsAreMadeOncePerOwnerAndDestroyedNewestFirst) {
  std::vector<std::string> log;
  int a = 0, b = 0;
  {
    Loop loop;
    int made = 0;
    auto make_a = [&] {
      ++made;
      return std::make_shared<Counted>(&log, "a");
    };
    Counted* first = loop.Local<Counted>(&a, make_a);
    EXPECT_EQ(loop.Local<Counted>(&a, make_a), first);
    EXPECT_EQ(made, 1);
    loop.Local<Counted>(&b, [&] { return std::make_shared<Counted>(&log, "b"); });
  }
  EXPECT_EQ(log, (std::vector<std::string>{"b", "a"}));
}

}  // namespace
}  // namespace tollgate::loop
