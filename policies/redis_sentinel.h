// The sentinel-mode RedisTopology (issue 14): the primary the sentinels of `redis.sentinel` name.
//
// Built, it has asked the sentinels in order (SENTINEL get-master-addr-by-name, AUTH with the
// sentinels' password when set) and checked with ROLE that the named server is a master (AUTH
// with the data nodes' credentials); only then is it Route()'s answer. A background thread then
// follows the primary: subscribed to +switch-master on one sentinel (the next one when that one
// is lost), re-resolving every few seconds in case a message was missed, and at once on
// Suspect(the current primary). Nothing known yet: Route() answers an invalid node.
//
// Thread-safety: as RedisTopology. Route/epoch copy the primary under a mutex no I/O holds.
// The destructor stops the thread (bounded by the timeouts of the I/O under way).
#pragma once

#include <chrono>
#include <memory>

#include "config/model.h"
#include "policies/redis_topology.h"

namespace tollgate::policies {

struct SentinelTimings {
  // How often the sentinels are asked again although no message came (one may have been missed).
  std::chrono::milliseconds recheck{5000};
};

// Blocks for the first resolve (redis.timeout_ms, at least 100 ms, per address tried).
// config.sentinel must be set. Use RedisTopology::For(), which shares one per section (tests
// build their own, with other timings).
std::shared_ptr<RedisTopology> MakeSentinelTopology(const config::RedisConfig& config,
                                                    SentinelTimings timings = {});

}  // namespace tollgate::policies
