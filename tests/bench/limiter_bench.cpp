// Rate-limiter throughput: the memory backend per decision (1 and 3 buckets, several threads)
// and the Redis backend's decisions per second with many callers in flight, against a
// redis-server this benchmark starts on a free loopback port and kills at exit.

#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "policies/rate_limiter.h"

namespace {

using tollgate::policies::BucketSpec;
using tollgate::policies::LimitDecision;
using tollgate::policies::LimitRequest;
using tollgate::policies::RateLimiter;

BucketSpec Bucket(const std::string& key, uint64_t tokens) {
  BucketSpec spec;
  spec.key = key;
  spec.name = key;
  spec.rate = tollgate::config::Rate{tokens, 1};
  spec.burst = tokens;
  return spec;
}

// Upstream-wide, rule and caller buckets, as the gateway's limit stage names them; rates so high
// that every decision is allowed (the expensive path: it writes every bucket).
LimitRequest MakeRequest(int buckets, int caller) {
  LimitRequest request;
  const std::string who = std::to_string(caller);
  request.buckets.push_back(Bucket("bucket:caller:" + who, 1000000000));
  if (buckets > 1) request.buckets.push_back(Bucket("bucket:devin-all:_shared", 1000000000));
  if (buckets > 2) request.buckets.push_back(Bucket("bucket:sessions:" + who, 1000000000));
  request.cooldown_upstream = "devin";
  return request;
}

void BM_MemoryAcquire(benchmark::State& state) {
  static std::unique_ptr<RateLimiter> limiter = tollgate::policies::MakeMemoryLimiter();
  const LimitRequest request = MakeRequest(static_cast<int>(state.range(0)), state.thread_index());
  for (auto _ : state) {
    limiter->Acquire(request, [](LimitDecision decision) { benchmark::DoNotOptimize(decision); });
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MemoryAcquire)->ArgName("buckets")->Arg(1)->Arg(3)->Threads(1)->Threads(2)->Threads(4);

// redis-server for the benchmark's lifetime; absent binary -> not started.
class BenchRedis {
 public:
  BenchRedis() {
    if (access(kBinary, X_OK) != 0) return;
    port_ = FreePort();
    pid_ = fork();
    if (pid_ == 0) {
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, STDOUT_FILENO);
      dup2(null, STDERR_FILENO);
      const std::string port = std::to_string(port_);
      execl(kBinary, kBinary, "--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--loglevel", "warning", static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 500 && !Listening(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~BenchRedis() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  bool running() const { return pid_ > 0 && Listening(); }
  int port() const { return port_; }

  // CPU redis-server has used so far (utime + stime from /proc), in microseconds.
  double CpuMicros() const {
    std::ifstream stat("/proc/" + std::to_string(pid_) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    // Fields after the command name, which is in parentheses and may hold spaces.
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    }
    return ticks * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
  }

 private:
  static constexpr const char* kBinary = "/usr/bin/redis-server";

  static int FreePort() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    socklen_t length = sizeof(address);
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    close(fd);
    return ntohs(address.sin_port);
  }

  bool Listening() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(static_cast<uint16_t>(port_));
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
    close(fd);
    return ok;
  }

  int port_ = 0;
  pid_t pid_ = -1;
};

// Keeps `window` decisions in flight: each iteration waits for a free slot, then starts one.
void BM_RedisDecisions(benchmark::State& state) {
  static BenchRedis redis;
  if (!redis.running()) {
    state.SkipWithError("redis-server is not installed or did not start: skipped");
    return;
  }
  tollgate::config::RedisConfig config;
  config.port = redis.port();
  config.timeout_ms = 1000;
  auto limiter = tollgate::policies::MakeRedisLimiter(config, static_cast<int>(state.range(1)));
  const int window = static_cast<int>(state.range(0));
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  int64_t fallbacks = 0;
  std::vector<LimitRequest> requests;
  for (int i = 0; i < 64; ++i) {
    requests.push_back(MakeRequest(static_cast<int>(state.range(2)), i));
  }
  size_t next = 0;
  const double cpu_before = redis.CpuMicros();
  auto done = [&](LimitDecision decision) {
    std::lock_guard<std::mutex> lock(mu);
    if (decision.fallback) ++fallbacks;
    --in_flight;
    cv.notify_one();
  };
  for (auto _ : state) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < window; });
      ++in_flight;
    }
    limiter->Acquire(requests[next++ % requests.size()], done);
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return in_flight == 0; });
  state.SetItemsProcessed(state.iterations());
  // redis-server's CPU per decision (the figure: /proc utime+stime over the run).
  state.counters["redis_us_per_decision"] =
      (redis.CpuMicros() - cpu_before) /
      static_cast<double>(std::max<int64_t>(state.iterations(), 1));
  state.counters["fallbacks"] = static_cast<double>(fallbacks);
}
BENCHMARK(BM_RedisDecisions)
    ->ArgNames({"in_flight", "connections", "buckets"})
    ->Args({1, 1, 3})
    ->Args({64, 1, 1})
    ->Args({64, 1, 3})
    ->Args({64, 2, 3})
    ->Args({256, 1, 3})
    ->UseRealTime()
    ->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
