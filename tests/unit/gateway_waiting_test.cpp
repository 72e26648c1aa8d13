// WaitingCallers (issue 14): the per-caller, per-limit cap on requests waiting for tokens.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "gateway/waiting_callers.h"

namespace tollgate::gateway {
namespace {

TEST(WaitingCallers, AtMostMaxPlacesPerCallerAndLimitEachGivenBackOnce) {
  WaitingCallers waiting;
  std::vector<WaitingCallers::Places> held(3);
  for (auto& places : held) EXPECT_TRUE(waiting.TryEnter("batch", "data", 3, &places));
  WaitingCallers::Places refused;
  EXPECT_FALSE(waiting.TryEnter("batch", "data", 3, &refused));
  // Another caller, or another limit, has places of its own.
  WaitingCallers::Places other, other_limit;
  EXPECT_TRUE(waiting.TryEnter("batch", "ops", 3, &other));
  EXPECT_TRUE(waiting.TryEnter("nightly", "data", 3, &other_limit));
  EXPECT_EQ(waiting.count("batch", "data"), 3u);

  held[0].Release();
  held[0].Release();  // once only
  EXPECT_EQ(waiting.count("batch", "data"), 2u);
  WaitingCallers::Places again;
  EXPECT_TRUE(waiting.TryEnter("batch", "data", 3, &again));
  // Moved places are given back by their new owner, once.
  WaitingCallers::Places moved = std::move(again);
  again.Release();
  EXPECT_EQ(waiting.count("batch", "data"), 3u);
  moved = WaitingCallers::Places();
  EXPECT_EQ(waiting.count("batch", "data"), 2u);
  held.clear();
  EXPECT_EQ(waiting.count("batch", "data"), 0u);
}

TEST(WaitingCallers, ConcurrentRequestsNeverTakeMoreThanMax) {
  WaitingCallers waiting;
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        WaitingCallers::Places places;
        if (!waiting.TryEnter("batch", "data", 5, &places)) continue;
        const int now = inside.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        inside.fetch_sub(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(most.load(), 5);
  EXPECT_EQ(waiting.count("batch", "data"), 0u);
}

}  // namespace
}  // namespace tollgate::gateway
