#include "loop/loop.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <stdexcept>

namespace tollgate::loop {
namespace {

thread_local Loop* current_loop = nullptr;

}  // namespace

Loop::Loop()
    : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
      timer_fd_(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (epoll_fd_ < 0 || timer_fd_ < 0 || wake_fd_ < 0) {
    throw std::runtime_error("cannot create an event loop (epoll/timerfd/eventfd)");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = timer_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &ev);
  ev.data.fd = wake_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
}

Loop::~Loop() {
  ClearLocals();
  if (current_loop == this) current_loop = nullptr;
  close(wake_fd_);
  close(timer_fd_);
  close(epoll_fd_);
}

void Loop::Release(const void* owner) {
  for (auto it = locals_.begin(); it != locals_.end(); ++it) {
    if (it->first == owner) {
      auto held = std::move(it->second);
      locals_.erase(it);
      return;  // `held` is destroyed here, after the list no longer names it
    }
  }
}

void Loop::ClearLocals() {
  while (!locals_.empty()) {
    auto held = std::move(locals_.back().second);
    locals_.pop_back();
  }
}

Loop* Loop::Current() { return current_loop; }

void Loop::Adopt() { current_loop = this; }

void Loop::Watch(int fd, uint32_t events, FdCallback callback) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  watchers_[fd] = std::make_shared<FdCallback>(std::move(callback));
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
  }
}

void Loop::Modify(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void Loop::Unwatch(int fd) {
  if (watchers_.erase(fd) > 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

Loop::TimerId Loop::After(std::chrono::milliseconds delay, std::function<void()> fn) {
  TimerId id = next_timer_++;
  Clock::time_point when = Clock::now() + delay;
  timers_.emplace(std::make_pair(when, id), std::move(fn));
  timer_index_.emplace(id, when);
  if (when < armed_for_) ArmTimerFd();
  return id;
}

void Loop::Cancel(TimerId id) {
  auto it = timer_index_.find(id);
  if (it == timer_index_.end()) return;
  timers_.erase(std::make_pair(it->second, id));
  timer_index_.erase(it);
  // The timerfd may fire for a deadline nothing waits on any more: RunDueTimers re-arms.
}

void Loop::ArmTimerFd() {
  itimerspec spec{};
  if (timers_.empty()) {
    armed_for_ = Clock::time_point::max();
  } else {
    armed_for_ = timers_.begin()->first.first;
    auto left = armed_for_ - Clock::now();
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    if (ns < 1) ns = 1;  // zero would disarm
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
  }
  timerfd_settime(timer_fd_, 0, &spec, nullptr);
}

void Loop::RunDueTimers() {
  uint64_t expirations;
  while (read(timer_fd_, &expirations, sizeof expirations) > 0) {
  }
  Clock::time_point now = Clock::now();
  // Timers added while running (due now or later) wait for the next pass: no starvation.
  std::vector<std::function<void()>> due;
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto it = timers_.begin();
    timer_index_.erase(it->first.second);
    due.push_back(std::move(it->second));
    timers_.erase(it);
  }
  armed_for_ = Clock::time_point::max();
  ArmTimerFd();
  for (auto& fn : due) fn();
}

bool Loop::Post(std::function<void()> fn) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    if (stopping_.load(std::memory_order_acquire)) return false;
    posted_.push_back(std::move(fn));
    wake = !wake_pending_;
    wake_pending_ = true;
  }
  if (wake) {
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd_, &one, sizeof one);
    (void)ignored;
  }
  return true;
}

void Loop::RunPosted() {
  uint64_t count;
  ssize_t ignored = read(wake_fd_, &count, sizeof count);
  (void)ignored;
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    running_posted_.swap(posted_);
    wake_pending_ = false;
  }
  for (auto& fn : running_posted_) fn();
  running_posted_.clear();
}

void Loop::AddIterationHook(std::function<void()> hook) { hooks_.push_back(std::move(hook)); }

void Loop::RunHooks() {
  for (auto& hook : hooks_) hook();
}

void Loop::RunOnce(int timeout_ms) {
  current_loop = this;
  epoll_event events[128];
  int n = epoll_wait(epoll_fd_, events, 128, timeout_ms);
  bool timers = false;
  bool posted = false;
  for (int i = 0; i < n; ++i) {
    int fd = events[i].data.fd;
    if (fd == timer_fd_) {
      timers = true;
    } else if (fd == wake_fd_) {
      posted = true;
    } else {
      auto it = watchers_.find(fd);
      if (it == watchers_.end()) continue;  // unwatched by an earlier callback
      // Held, so a callback may Unwatch (or re-Watch) its own fd.
      std::shared_ptr<FdCallback> callback = it->second;
      (*callback)(events[i].events);
    }
  }
  if (timers) RunDueTimers();
  if (posted) RunPosted();
  RunHooks();
}

void Loop::Run() {
  Adopt();
  while (!stopping()) RunOnce(-1);
  // Tasks posted before Stop still run: a caller waiting on one is answered.
  RunPosted();
}

void Loop::Stop() {
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    if (stopping_.exchange(true)) return;
  }
  uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof one);
  (void)ignored;
}

LoopThread::LoopThread(std::string name)
    : thread_([this, name = std::move(name)] {
        pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
        loop_.Run();
      }) {}

LoopThread::~LoopThread() {
  loop_.Stop();
  thread_.join();
}

void LoopThread::RunSync(const std::function<void()>& fn) {
  if (loop_.InLoopThread()) {
    fn();
    return;
  }
  std::promise<void> done;
  auto future = done.get_future();
  if (!loop_.Post([&] {
        fn();
        done.set_value();
      })) {
    fn();  // the loop is stopping: nothing else runs on it any more
    return;
  }
  future.wait();
}

}  // namespace tollgate::loop
