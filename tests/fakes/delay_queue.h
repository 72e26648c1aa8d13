// A timer thread that runs callbacks after a delay, so the fake can hold an answer for seconds
// without blocking a Pistache reactor thread. Hundreds of pending callbacks cost one map entry
// each.
//
// Thread-safety: Schedule() and Stop() may be called from any thread; callbacks run on the
// queue's own thread, one at a time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace tollgate::fake {

class DelayQueue {
 public:
  DelayQueue();
  ~DelayQueue();  // Stop()
  DelayQueue(const DelayQueue&) = delete;
  DelayQueue& operator=(const DelayQueue&) = delete;

  void Schedule(std::chrono::milliseconds delay, std::function<void()> callback);
  // Ends the thread; callbacks not yet due are destroyed without running. Idempotent.
  void Stop();

 private:
  using Clock = std::chrono::steady_clock;
  void Run();

  std::mutex mu_;
  std::condition_variable wake_;
  std::multimap<Clock::time_point, std::function<void()>> pending_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tollgate::fake
