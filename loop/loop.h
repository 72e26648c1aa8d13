// An event loop: one epoll set, timers and a cross-thread mailbox, driven by exactly one thread.
//
// Everything a request needs on its way through the gateway (the caller's connection, the
// upstream transfer's sockets, the Redis connection, every timeout) is registered with the loop
// of the thread that owns the caller's connection, so a request runs from parse to respond on
// that thread and nothing on its path locks or waits (README, "Threads").
//
// A loop runs either embedded in a Pistache reactor thread (the reactor polls fd() and calls
// RunOnce(0) when it is readable, then RunHooks() once per reactor iteration), or on a thread of
// its own (LoopThread: tests, the admin listener, standalone clients).
//
// Thread-safety: Post() and Stop() may be called from any thread. Everything else must be called
// on the loop's thread (Current() == this), or before the loop starts running.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tollgate::loop {

class Loop {
 public:
  using Clock = std::chrono::steady_clock;
  // `events` is the epoll mask that fired (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP).
  using FdCallback = std::function<void(uint32_t events)>;
  using TimerId = uint64_t;

  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // The loop whose thread is calling (set while a loop runs on it), or null.
  static Loop* Current();
  bool InLoopThread() const { return Current() == this; }
  // Marks the calling thread as this loop's (an embedding reactor calls it on its thread).
  void Adopt();

  // The epoll fd: readable when a watched fd, a timer or a posted task is ready.
  int fd() const { return epoll_fd_; }

  // Watches `fd` for `events` (EPOLLIN / EPOLLOUT, level-triggered). One watcher per fd; Unwatch
  // before closing the fd.
  void Watch(int fd, uint32_t events, FdCallback callback);
  void Modify(int fd, uint32_t events);
  void Unwatch(int fd);

  // Runs `fn` once, `delay` from now. Cancel(id) of a fired or cancelled timer does nothing.
  TimerId After(std::chrono::milliseconds delay, std::function<void()> fn);
  void Cancel(TimerId id);

  // Runs `fn` on the loop's thread, soon. Any thread. False when the loop is stopping (then `fn`
  // is dropped unrun: callers that must be answered handle that).
  bool Post(std::function<void()> fn);

  // Called once at the end of every iteration, after all events of that iteration ran (the
  // Redis client flushes its pipelined writes here). Hooks live as long as the loop.
  void AddIterationHook(std::function<void()> hook);

  // Waits up to `timeout_ms` (-1: until something is ready; 0: not at all), runs whatever is
  // ready (fds, due timers, posted tasks), then the iteration hooks.
  void RunOnce(int timeout_ms);
  void RunHooks();

  // For LoopThread: runs until Stop().
  void Run();
  void Stop();
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  // Per-loop state of a component (a Redis connection, a curl multi handle): made by `make` on
  // first use on this loop's thread, then found by `owner`, and destroyed with the loop (before
  // its epoll fd closes), newest first. Components must outlive the loops they attach to, or
  // call Release(owner) on each loop's thread first.
  template <typename T, typename Make>
  T* Local(const void* owner, Make make) {
    for (auto& [key, value] : locals_) {
      if (key == owner) return static_cast<T*>(value.get());
    }
    std::shared_ptr<T> made = make();
    T* raw = made.get();
    locals_.emplace_back(owner, std::move(made));
    return raw;
  }
  void Release(const void* owner);
  // Destroys every local (newest first): at shutdown, once the loop no longer runs.
  void ClearLocals();

  // Number of fds watched (tests, metrics).
  size_t watched() const { return watchers_.size(); }

 private:
  void ArmTimerFd();
  void RunDueTimers();
  void RunPosted();

  int epoll_fd_;
  int timer_fd_;
  int wake_fd_;
  std::unordered_map<int, std::shared_ptr<FdCallback>> watchers_;
  std::map<std::pair<Clock::time_point, TimerId>, std::function<void()>> timers_;
  std::unordered_map<TimerId, Clock::time_point> timer_index_;
  TimerId next_timer_ = 1;
  Clock::time_point armed_for_ = Clock::time_point::max();
  std::vector<std::function<void()>> hooks_;
  std::vector<std::pair<const void*, std::shared_ptr<void>>> locals_;

  std::mutex post_mu_;
  std::vector<std::function<void()>> posted_;  // guarded by post_mu_
  bool wake_pending_ = false;                  // guarded by post_mu_
  std::atomic<bool> stopping_{false};
  std::vector<std::function<void()>> running_posted_;
};

// A Loop on a thread of its own, started at construction and stopped and joined at destruction.
class LoopThread {
 public:
  explicit LoopThread(std::string name);
  ~LoopThread();
  Loop& loop() { return loop_; }
  // Runs `fn` on the loop's thread and waits for it (for set-up and tear-down from outside).
  void RunSync(const std::function<void()>& fn);

 private:
  Loop loop_;
  std::thread thread_;
};

}  // namespace tollgate::loop
