// KeyCache on explicit time points (no sleeping): when an entry may be trusted without asking
// Redis (covered by a live subscription: cache_ttl; otherwise 1 s), what a subscription that
// flaps between a fetch and a use does to it, stale entries while Redis is down, negative
// entries, invalidation (also racing a lookup), the lookup budget, last-use batching and the
// entry bound.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "keys/key_cache.h"

namespace tollgate::keys {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Found = KeyCache::Found;

// A fixed origin: every time in these tests is explicit.
const SteadyTime kT0 = SteadyTime() + hours(1000);

KeyRecord Record(const std::string& id) {
  KeyRecord record;
  record.id = id;
  record.caller = "data-team";
  record.sha256 = std::string(64, 'a');
  record.created_at = TimePoint() + hours(500000);
  record.expires_at = TimePoint() + hours(600000);
  record.note = "ci pipeline of the data team";
  record.created_by = "ops";
  record.replaced_by = "newid0000000";
  return record;
}

KeyCacheOptions Options() {
  KeyCacheOptions options;
  options.cache_ttl = seconds(300);
  options.unverified_ttl = milliseconds(1000);
  options.negative_ttl = seconds(10);
  options.lookups_per_second = 10;
  options.lookup_burst = 5;
  options.last_used_interval = seconds(60);
  options.max_entries = 1000;
  return options;
}

Found FindAt(const KeyCache& cache, const std::string& id, SteadyTime now) {
  KeyRecord record;
  SteadyTime fetched;
  return cache.Find(id, now, &record, &fetched);
}

TEST(KeyCacheFreshness, CoveredByALiveSubscriptionIsTrustedForCacheTtl) {
  KeyCache cache(Options());
  cache.SetSubscribed(true, kT0);
  const SteadyTime fetched = kT0 + seconds(1);
  cache.Put(Record("aaaaaaaaaaaa"), fetched);

  KeyRecord record;
  SteadyTime when;
  EXPECT_EQ(cache.Find("aaaaaaaaaaaa", fetched + seconds(299), &record, &when), Found::kFresh);
  EXPECT_EQ(record.id, "aaaaaaaaaaaa");
  EXPECT_EQ(record.caller, "data-team");
  EXPECT_EQ(cache.Find("aaaaaaaaaaaa", fetched + seconds(300), &record, &when), Found::kStale);
  EXPECT_EQ(when, fetched);
  EXPECT_EQ(record.sha256, std::string(64, 'a'));
}

TEST(KeyCacheFreshness, WithoutASubscriptionAnEntryIsTrustedOneSecond) {
  KeyCache cache(Options());
  cache.Put(Record("aaaaaaaaaaaa"), kT0);
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", kT0 + milliseconds(999)), Found::kFresh);
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", kT0 + milliseconds(1000)), Found::kStale);
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", kT0 + seconds(200)), Found::kStale);
}

TEST(KeyCacheFreshness, AFetchFromBeforeTheSubscriptionCameUpIsNotCovered) {
  KeyCache cache(Options());
  cache.Put(Record("aaaaaaaaaaaa"), kT0);  // fetched while no subscription was live
  cache.SetSubscribed(true, kT0 + milliseconds(10));
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", kT0 + seconds(2)), Found::kStale);

  // The subscription came up after the lookup was made, though before its answer was put.
  cache.Put(Record("bbbbbbbbbbbb"), kT0 + milliseconds(5));
  EXPECT_EQ(FindAt(cache, "bbbbbbbbbbbb", kT0 + seconds(2)), Found::kStale);
  // In the same instant is not "before".
  cache.Put(Record("cccccccccccc"), kT0 + milliseconds(10));
  EXPECT_EQ(FindAt(cache, "cccccccccccc", kT0 + seconds(2)), Found::kStale);
  // After it: covered.
  cache.Put(Record("dddddddddddd"), kT0 + milliseconds(11));
  EXPECT_EQ(FindAt(cache, "dddddddddddd", kT0 + seconds(200)), Found::kFresh);
}

TEST(KeyCacheFreshness, ASubscriptionThatWentDownBetweenFetchAndUseLeavesOneSecond) {
  KeyCache cache(Options());
  cache.SetSubscribed(true, kT0);
  const SteadyTime fetched = kT0 + seconds(1);
  cache.Put(Record("aaaaaaaaaaaa"), fetched);
  cache.SetSubscribed(false, fetched + milliseconds(100));
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", fetched + milliseconds(999)), Found::kFresh);
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", fetched + milliseconds(1000)), Found::kStale);

  // Up again: events missed while it was down are not replayed, so the entry stays uncovered.
  cache.SetSubscribed(true, fetched + milliseconds(200));
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", fetched + seconds(2)), Found::kStale);
}

TEST(KeyCacheFreshness, AResubscriptionWithoutAGoingDownStillEndsTheCover) {
  KeyCache cache(Options());
  cache.SetSubscribed(true, kT0);
  cache.Put(Record("aaaaaaaaaaaa"), kT0 + seconds(1));
  cache.SetSubscribed(true, kT0 + seconds(2));
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", kT0 + seconds(3)), Found::kStale);
  // A fetch after the new subscription came up is covered by it.
  cache.Put(Record("bbbbbbbbbbbb"), kT0 + seconds(3));
  EXPECT_EQ(FindAt(cache, "bbbbbbbbbbbb", kT0 + seconds(100)), Found::kFresh);
}

TEST(KeyCacheFreshness, GoingDownTwiceIsOneChange) {
  KeyCache cache(Options());
  cache.SetSubscribed(false, kT0);
  cache.SetSubscribed(true, kT0 + seconds(1));
  cache.Put(Record("aaaaaaaaaaaa"), kT0 + seconds(2));
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", kT0 + seconds(100)), Found::kFresh);
  cache.SetSubscribed(false, kT0 + seconds(101));
  cache.SetSubscribed(false, kT0 + seconds(102));
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", kT0 + seconds(103)), Found::kStale);
}

TEST(KeyCacheFreshness, AStaleEntryIsUsableWithoutRedisUntilCacheTtl) {
  KeyCache cache(Options());
  EXPECT_TRUE(cache.UsableWithoutRedis(kT0, kT0 + seconds(299)));
  EXPECT_FALSE(cache.UsableWithoutRedis(kT0, kT0 + seconds(300)));
  EXPECT_FALSE(cache.UsableWithoutRedis(kT0, kT0 + hours(1)));
}

TEST(KeyCacheFreshness, TheCopyKeptLeavesOutNoteAndCreatedBy) {
  KeyCache cache(Options());
  cache.Put(Record("aaaaaaaaaaaa"), kT0);
  KeyRecord record;
  SteadyTime fetched;
  ASSERT_EQ(cache.Find("aaaaaaaaaaaa", kT0, &record, &fetched), Found::kFresh);
  EXPECT_EQ(record.note, "");
  EXPECT_EQ(record.created_by, "");
  EXPECT_EQ(record.sha256, std::string(64, 'a'));
  EXPECT_EQ(record.created_at, Record("x").created_at);
  EXPECT_EQ(record.expires_at, Record("x").expires_at);
  EXPECT_EQ(record.replaced_by, "newid0000000");
}

TEST(KeyCacheNegative, LivesNegativeTtl) {
  KeyCache cache(Options());
  cache.PutMissing("aaaaaaaaaaaa", kT0);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", kT0 + milliseconds(9999)), Found::kNegative);
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", kT0 + seconds(10)), Found::kMiss);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(FindAt(cache, "bbbbbbbbbbbb", kT0), Found::kMiss);
}

TEST(KeyCacheInvalidation, AnEventDropsItsIdAndStarDropsAll) {
  KeyCache cache(Options());
  cache.SetSubscribed(true, kT0);
  cache.Put(Record("aaaaaaaaaaaa"), kT0 + seconds(1));
  cache.Put(Record("bbbbbbbbbbbb"), kT0 + seconds(1));
  cache.PutMissing("cccccccccccc", kT0 + seconds(1));
  EXPECT_EQ(cache.size(), 3u);

  cache.Invalidate("aaaaaaaaaaaa");
  cache.Invalidate("cccccccccccc");  // a key created elsewhere works here at once
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", kT0 + seconds(2)), Found::kMiss);
  EXPECT_EQ(FindAt(cache, "cccccccccccc", kT0 + seconds(2)), Found::kMiss);
  EXPECT_EQ(FindAt(cache, "bbbbbbbbbbbb", kT0 + seconds(2)), Found::kFresh);
  EXPECT_EQ(cache.size(), 1u);
  cache.Invalidate("zzzzzzzzzzzz");  // nothing to drop: no harm
  EXPECT_EQ(cache.size(), 1u);

  cache.PutMissing("dddddddddddd", kT0 + seconds(3));
  cache.InvalidateAll();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(FindAt(cache, "bbbbbbbbbbbb", kT0 + seconds(4)), Found::kMiss);
  EXPECT_EQ(FindAt(cache, "dddddddddddd", kT0 + seconds(4)), Found::kMiss);
}

// A revocation whose event arrives while this replica's lookup of the same id is on its way
// finds no entry to drop; the answer, read before the change, must not then be trusted for
// cache_ttl.
TEST(KeyCacheInvalidation, AnAnswerRacingAnEventIsTrustedOnlyOneSecond) {
  KeyCache cache(Options());
  cache.SetSubscribed(true, kT0);
  const SteadyTime asked = kT0 + seconds(10);
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", asked), Found::kMiss);
  cache.Invalidate("aaaaaaaaaaaa");  // the event, before the answer
  cache.Put(Record("aaaaaaaaaaaa"), asked + milliseconds(30));
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", asked + milliseconds(900)), Found::kFresh);
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", asked + seconds(2)), Found::kStale);

  // Same for "no such id": a key created meanwhile must not be refused for negative_ttl.
  EXPECT_EQ(FindAt(cache, "bbbbbbbbbbbb", asked), Found::kMiss);
  cache.Invalidate("bbbbbbbbbbbb");
  cache.PutMissing("bbbbbbbbbbbb", asked + milliseconds(30));
  EXPECT_EQ(FindAt(cache, "bbbbbbbbbbbb", asked + milliseconds(40)), Found::kMiss);

  // And for "*".
  EXPECT_EQ(FindAt(cache, "cccccccccccc", asked + seconds(3)), Found::kMiss);
  cache.InvalidateAll();
  cache.Put(Record("cccccccccccc"), asked + seconds(3) + milliseconds(30));
  EXPECT_EQ(FindAt(cache, "cccccccccccc", asked + seconds(5)), Found::kStale);

  // Long after the events, answers are covered again.
  const SteadyTime later = asked + seconds(60);
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", later), Found::kMiss);  // "*" dropped it
  cache.Put(Record("aaaaaaaaaaaa"), later);
  cache.PutMissing("bbbbbbbbbbbb", later);
  EXPECT_EQ(FindAt(cache, "aaaaaaaaaaaa", later + seconds(200)), Found::kFresh);
  EXPECT_EQ(FindAt(cache, "bbbbbbbbbbbb", later + seconds(5)), Found::kNegative);
}

TEST(KeyCacheInvalidation, AfterUnverifyRecordsAreLookedUpAgainOutsideTheBudget) {
  // A resubscription (events may have been missed) during a flood of made-up keys that spent
  // the budget: a key this replica was serving is looked up again (kStale), not treated as an
  // unknown id that must wait for the budget (kMiss).
  KeyCacheOptions options;
  options.lookup_burst = 1;
  options.lookups_per_second = 1;
  KeyCache cache(options);
  const SteadyTime t0 = SteadyTime{} + hours(1);
  cache.SetSubscribed(true, t0);
  cache.Put(Record("aaaaaaaaaaaa"), t0 + seconds(1));
  cache.PutMissing("bbbbbbbbbbbb", t0 + seconds(1));
  ASSERT_TRUE(cache.TakeLookup(t0 + seconds(1)));
  ASSERT_FALSE(cache.TakeLookup(t0 + seconds(1)));
  KeyRecord record;
  SteadyTime fetched;
  EXPECT_EQ(cache.Find("aaaaaaaaaaaa", t0 + seconds(30), &record, &fetched), Found::kFresh);

  cache.SetSubscribed(false, t0 + seconds(30));
  cache.SetSubscribed(true, t0 + seconds(31));
  cache.Unverify();
  EXPECT_EQ(cache.Find("aaaaaaaaaaaa", t0 + seconds(32), &record, &fetched), Found::kStale);
  EXPECT_EQ(record.id, "aaaaaaaaaaaa");
  EXPECT_TRUE(cache.UsableWithoutRedis(fetched, t0 + seconds(32)));
  EXPECT_EQ(cache.Find("bbbbbbbbbbbb", t0 + seconds(32), &record, &fetched), Found::kMiss);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(KeyCacheBudget, AFloodAtOneInstantGetsTheBurst) {
  KeyCache cache(Options());  // 10/s, burst 5
  int allowed = 0;
  for (int i = 0; i < 1000; ++i) allowed += cache.TakeLookup(kT0) ? 1 : 0;
  EXPECT_EQ(allowed, 5);
}

TEST(KeyCacheBudget, NCallsOverTimeGetAtMostBurstPlusRateTimesT) {
  KeyCache cache(Options());  // 10/s, burst 5
  // 20,000 calls, one every 0.5 ms: 10 s.
  int allowed = 0;
  SteadyTime now = kT0;
  for (int i = 0; i < 20000; ++i) {
    allowed += cache.TakeLookup(now) ? 1 : 0;
    now += std::chrono::microseconds(500);
  }
  EXPECT_LE(allowed, 5 + 10 * 10);
  EXPECT_GE(allowed, 10 * 10);  // the rate is not starved either
}

TEST(KeyCacheBudget, IdlingRefillsNoMoreThanTheBurst) {
  KeyCache cache(Options());
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(cache.TakeLookup(kT0));
  EXPECT_FALSE(cache.TakeLookup(kT0));
  EXPECT_FALSE(cache.TakeLookup(kT0 + milliseconds(90)));
  EXPECT_TRUE(cache.TakeLookup(kT0 + milliseconds(150)));
  EXPECT_FALSE(cache.TakeLookup(kT0 + milliseconds(150)));
  int allowed = 0;
  for (int i = 0; i < 1000; ++i) allowed += cache.TakeLookup(kT0 + hours(1)) ? 1 : 0;
  EXPECT_EQ(allowed, 5);
}

TEST(KeyCacheLastUsed, EachIdIsHandedOutOncePerIntervalWithItsNewestTime) {
  KeyCache cache(Options());  // interval 60 s
  const TimePoint w = TimePoint() + hours(500000);
  cache.Touch("aaaaaaaaaaaa", w + seconds(1));
  cache.Touch("aaaaaaaaaaaa", w + seconds(3));
  cache.Touch("aaaaaaaaaaaa", w + seconds(2));  // older than the newest: ignored
  cache.Touch("bbbbbbbbbbbb", w);

  auto taken = cache.TakeLastUsed(kT0);
  std::sort(taken.begin(), taken.end());
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0], std::make_pair(std::string("aaaaaaaaaaaa"), w + seconds(3)));
  EXPECT_EQ(taken[1], std::make_pair(std::string("bbbbbbbbbbbb"), w));
  EXPECT_TRUE(cache.TakeLastUsed(kT0 + seconds(1)).empty());  // nothing new

  // Used again within the interval: held back until it has passed, then the newest time.
  cache.Touch("aaaaaaaaaaaa", w + seconds(10));
  cache.Touch("aaaaaaaaaaaa", w + seconds(20));
  cache.Touch("cccccccccccc", w + seconds(20));  // never handed out: goes at once
  taken = cache.TakeLastUsed(kT0 + seconds(30));
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].first, "cccccccccccc");
  EXPECT_TRUE(cache.TakeLastUsed(kT0 + milliseconds(59999)).empty());
  taken = cache.TakeLastUsed(kT0 + seconds(60));
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0], std::make_pair(std::string("aaaaaaaaaaaa"), w + seconds(20)));
}

TEST(KeyCacheBound, PastMaxEntriesTheOldestHalfIsDropped) {
  KeyCacheOptions options = Options();
  options.max_entries = 100;
  KeyCache cache(options);
  for (int i = 0; i < 1000; ++i) {
    char id[13];
    std::snprintf(id, sizeof(id), "%012d", i);
    const SteadyTime now = kT0 + milliseconds(i);
    if (i % 3 == 0) {
      cache.PutMissing(id, now);
    } else {
      cache.Put(Record(id), now);
    }
    ASSERT_LE(cache.size(), 100u) << "after " << i;
    EXPECT_NE(FindAt(cache, id, now), Found::kMiss) << "the newest entry was dropped: " << i;
  }
  EXPECT_GE(cache.size(), 50u);
  EXPECT_EQ(FindAt(cache, "000000000001", kT0 + seconds(5)), Found::kMiss);
  EXPECT_EQ(FindAt(cache, "000000000998", kT0 + seconds(5)), Found::kStale);
}

TEST(KeyCacheThreads, ConcurrentUseKeepsTheCountRight) {
  KeyCacheOptions options = Options();
  options.max_entries = 500;
  KeyCache cache(options);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::string id =
            std::to_string(t) + std::string(11 - std::to_string(i).size(), 'x') + std::to_string(i);
        const SteadyTime now = kT0 + milliseconds(i);
        cache.Put(Record(id), now);
        cache.PutMissing(id + "n", now);
        FindAt(cache, id, now);
        if (i % 7 == 0) cache.Invalidate(id);
        if (i % 500 == 0) cache.InvalidateAll();
        cache.Touch(id, TimePoint() + seconds(i));
        cache.TakeLookup(now);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  // A put while another thread drops entries may leave the count past the bound until the
  // next put.
  cache.Put(Record("main00000000"), kT0 + seconds(10));
  EXPECT_LE(cache.size(), 500u);
  cache.InvalidateAll();
  EXPECT_EQ(cache.size(), 0u);
}

}  // namespace
}  // namespace tollgate::keys
