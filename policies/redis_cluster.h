// The cluster-mode RedisTopology (issue 14): a slot map (16384 slots -> the master serving each)
// read with CLUSTER SLOTS from the seed addresses of `redis.cluster` (later from any node it
// named), with the data nodes' credentials.
//
// Built, it has read the map once (or counted a failure: then every slot routes to an invalid
// node until a read succeeds). A background thread re-reads it every few seconds, soon after a
// Moved() or Suspect() (at most one read per ~100 ms however many arrive), and after a failure
// every ~500 ms. Moved(slot, node) takes effect at once for that slot. epoch() moves when an
// answer of Route changed.
//
// Thread-safety: as RedisTopology. Route copies one entry under a mutex no I/O holds.
#pragma once

#include <chrono>
#include <memory>

#include "config/model.h"
#include "policies/redis_topology.h"

namespace tollgate::policies {

struct ClusterTimings {
  // How often CLUSTER SLOTS is read again although no redirect asked for it.
  std::chrono::milliseconds reread{5000};
};

// Blocks for the first read (redis.timeout_ms, at least 100 ms, per address tried).
// config.cluster must be set. Use RedisTopology::For(), which shares one per section (tests
// build their own, with other timings).
std::shared_ptr<RedisTopology> MakeClusterTopology(const config::RedisConfig& config,
                                                   ClusterTimings timings = {});

}  // namespace tollgate::policies
