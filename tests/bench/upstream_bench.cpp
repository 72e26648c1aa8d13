// Micro-benchmarks of the forward path's upstream pieces: header filtering, secret injection,
// and UpstreamClient round trips (N in flight) against an in-process loopback HTTP server.
#include <benchmark/benchmark.h>

#include <condition_variable>
#include <mutex>

#include "tests/unit/upstream_test_server.h"
#include "upstream/headers.h"
#include "upstream/upstream_auth.h"
#include "upstream/upstream_client.h"

namespace tollgate::upstream {
namespace {

HeaderList CallerHeaders() {
  return {{"Host", "gw"},
          {"User-Agent", "python-requests/2.31"},
          {"Accept", "application/json"},
          {"Accept-Encoding", "gzip, deflate"},
          {"Connection", "keep-alive"},
          {"Authorization", "Bearer caller-key-0123456789abcdef"},
          {"Content-Type", "application/json"},
          {"Content-Length", "42"},
          {"X-Forwarded-For", "10.0.0.1"},
          {"X-Trace", "abc"}};
}

void BM_FilterRequestHeaders(benchmark::State& state) {
  HeaderList in = CallerHeaders();
  for (auto _ : state) benchmark::DoNotOptimize(FilterRequestHeaders(in));
}
BENCHMARK(BM_FilterRequestHeaders);

void BM_InjectDevoHmac(benchmark::State& state) {
  config::UpstreamAuth auth;
  auth.type = config::AuthType::kDevoHmac;
  auth.key = "apikey";
  auth.secret = "secret";
  const std::string body(512, 'q');
  for (auto _ : state) {
    HeaderList headers = FilterRequestHeaders(CallerHeaders());
    InjectUpstreamAuth(auth, body, 1700000000000, &headers);
    benchmark::DoNotOptimize(headers);
  }
}
BENCHMARK(BM_InjectDevoHmac);

// Items per second = upstream round trips per second with range(0) transfers kept in flight.
void BM_ClientRoundTrip(benchmark::State& state) {
  testing::TestServer server([](const testing::ReceivedRequest&) {
    return testing::Reply{testing::HttpResponse(200, "ok")};
  });
  UpstreamClientOptions options;
  options.threads = static_cast<int>(state.range(1));
  UpstreamClient client(options);
  const std::string url = server.Url("/v3/self?a=1");
  const int in_flight = static_cast<int>(state.range(0));
  std::mutex mu;
  std::condition_variable cv;
  int outstanding = 0;
  for (auto _ : state) {
    {
      std::lock_guard<std::mutex> lock(mu);
      outstanding = in_flight;
    }
    for (int i = 0; i < in_flight; ++i) {
      UpstreamRequest request;
      request.method = "GET";
      request.url = url;
      request.headers = {{"Accept", "application/json"}, {"X-Request-Id", "r"}};
      client.Send(std::move(request), [&](UpstreamResponse) {
        std::lock_guard<std::mutex> lock(mu);
        if (--outstanding == 0) cv.notify_one();
      });
    }
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return outstanding == 0; });
  }
  state.SetItemsProcessed(state.iterations() * in_flight);
}
BENCHMARK(BM_ClientRoundTrip)->Args({1, 1})->Args({32, 1})->Args({32, 2})->UseRealTime();

}  // namespace
}  // namespace tollgate::upstream

BENCHMARK_MAIN();
