#include "tests/fakes/delay_queue.h"

#include <utility>

namespace tollgate::fake {

DelayQueue::DelayQueue() : thread_([this] { Run(); }) {}

DelayQueue::~DelayQueue() { Stop(); }

void DelayQueue::Schedule(std::chrono::milliseconds delay, std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return;
  pending_.emplace(Clock::now() + delay, std::move(callback));
  wake_.notify_one();
}

void DelayQueue::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    wake_.notify_one();
  }
  if (thread_.joinable()) thread_.join();
  // Destroyed here, on the caller's thread, before the server they answer to goes away.
  std::multimap<Clock::time_point, std::function<void()>> dropped;
  std::lock_guard<std::mutex> lock(mu_);
  dropped.swap(pending_);
}

void DelayQueue::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (pending_.empty()) {
      wake_.wait(lock);
      continue;
    }
    auto first = pending_.begin();
    if (first->first > Clock::now()) {
      wake_.wait_until(lock, first->first);
      continue;
    }
    std::function<void()> callback = std::move(first->second);
    pending_.erase(first);
    lock.unlock();
    callback();
    lock.lock();
  }
}

}  // namespace tollgate::fake
