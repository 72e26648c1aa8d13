// Micro-benchmarks of the forward path's upstream pieces: header filtering, secret injection,
// and UpstreamClient round trips (N in flight) against an in-process loopback HTTP server.
#include <benchmark/benchmark.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>

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

config::Upstream BenchUpstream() {
  config::Upstream up;
  up.name = "devin";
  up.base_url = "https://api.devin.ai";
  up.forward_headers = {"x-trace"};
  up.send_x_forwarded_for = true;
  return up;
}

HeaderList Filter(const HeaderList& in) {
  static const config::Upstream up = BenchUpstream();
  RequestHeaderDrops drops;
  return FilterRequestHeaders(in, up, "10.1.2.3", false, &drops);
}

// A typical 10-header request.
void BM_FilterRequestHeaders(benchmark::State& state) {
  HeaderList in = CallerHeaders();
  for (auto _ : state) benchmark::DoNotOptimize(Filter(in));
}
BENCHMARK(BM_FilterRequestHeaders);

// A head of `fields` fields "X-Field-NNNN: v" and one Connection header listing `tokens` tokens.
// The tokens name the upper half of the fields and as many absent fields, all of one length and
// prefix, so comparing a name with a token reads the whole name: the worst case for a filter that
// compares every field with every token. Without the prefix ("NNNN: v", still valid field names)
// more of both fit in the same bytes.
HeaderList HeadFullOfConnectionTokens(int fields, int tokens, bool prefixed) {
  auto field_name = [prefixed](int i) {
    char name[32];
    std::snprintf(name, sizeof(name), "%s%04d", prefixed ? "X-Field-" : "", i);
    return std::string(name);
  };
  HeaderList head;
  std::string connection;
  for (int i = 0; i < tokens; ++i) {
    if (i > 0) connection += ", ";
    connection += field_name(fields / 2 + i);
  }
  head.emplace_back("Connection", connection);
  for (int i = 0; i < fields; ++i) head.emplace_back(field_name(i), "v");
  return head;
}

size_t HeadBytes(const HeaderList& head) {
  size_t bytes = 0;
  for (const auto& [name, value] : head) bytes += name.size() + 2 + value.size() + 2;
  return bytes;
}

HeaderList HeadFromArgs(const benchmark::State& state) {
  return HeadFullOfConnectionTokens(static_cast<int>(state.range(0)),
                                    static_cast<int>(state.range(1)), state.range(2) != 0);
}

// fields/tokens/prefixed: 500/500/1 and 900/1350/0 each fill about the default 16 KiB
// max_header_bytes (head_bytes reports the size); 250/250/1 shows how the cost grows.
void BM_FilterRequestHeadersConnectionTokens(benchmark::State& state) {
  HeaderList in = HeadFromArgs(state);
  for (auto _ : state) benchmark::DoNotOptimize(Filter(in));
  state.counters["head_bytes"] = static_cast<double>(HeadBytes(in));
}
BENCHMARK(BM_FilterRequestHeadersConnectionTokens)
    ->ArgNames({"fields", "tokens", "prefixed"})
    ->Args({250, 250, 1})
    ->Args({500, 500, 1})
    ->Args({900, 1350, 0})
    ->Unit(benchmark::kMicrosecond);

// The same head from an upstream: the response filter has the same shape.
void BM_FilterResponseHeadersConnectionTokens(benchmark::State& state) {
  HeaderList in = HeadFromArgs(state);
  const config::Upstream up = BenchUpstream();
  for (auto _ : state) benchmark::DoNotOptimize(FilterResponseHeaders(in, up));
  state.counters["head_bytes"] = static_cast<double>(HeadBytes(in));
}
BENCHMARK(BM_FilterResponseHeadersConnectionTokens)
    ->ArgNames({"fields", "tokens", "prefixed"})
    ->Args({500, 500, 1})
    ->Unit(benchmark::kMicrosecond);

void BM_InjectDevoHmac(benchmark::State& state) {
  config::UpstreamAuth auth;
  auth.type = config::AuthType::kDevoHmac;
  auth.key = "apikey";
  auth.secret = "secret";
  const std::string body(512, 'q');
  for (auto _ : state) {
    HeaderList headers = Filter(CallerHeaders());
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
