// Where a Redis command goes (issue 14). Every Redis client in the process (the limiter's loop
// connections, RedisLoopClient, RedisConnection, the audit stream writer, the key events
// subscriber) asks the one RedisTopology built from its `redis` section instead of connecting
// to a fixed host:port:
//
// - url: the one server, its name resolved once. Route() never changes.
// - sentinel: the primary the sentinels name (SENTINEL get-master-addr-by-name), checked with
//   ROLE, followed on +switch-master (a background thread subscribed to a sentinel) and
//   re-resolved at once when a client reports a READONLY answer or a replica (Suspect).
// - cluster: the node serving the slot of the command's first key, from a slot map read with
//   CLUSTER SLOTS from the seed addresses; a MOVED redirect is kept at once (Moved) and the map
//   is re-read soon after; ASK is the client's business (ASKING, then the command, once).
//
// Clients keep one connection per node they talk to (per loop, for the loop clients). When
// Route() answers another node than the one a connection is on, the command goes to (a
// connection to) that node; a connection to a node that is no longer routed to is closed when the
// client notices epoch() moved. Route() answers an invalid node (port 0) while nothing is known
// (no sentinel answered yet): the command then fails like a lost connection (on_error applies).
//
// Thread-safety: everything here may be called from any thread; Route/epoch never block and take
// no lock a background thread holds while doing I/O. For() may block (the first resolve, bounded
// by redis.timeout_ms per address tried): call it off the loops, where clients are built.
#pragma once

#include <hiredis/hiredis.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/model.h"

namespace tollgate::policies {

// A Redis server's address, resolved (an IP literal, as sentinels and CLUSTER SLOTS give them).
struct RedisNode {
  std::string host;
  int port = 0;
  bool valid() const { return port > 0 && !host.empty(); }
  std::string ToString() const { return host + ":" + std::to_string(port); }
  bool operator==(const RedisNode& other) const { return port == other.port && host == other.host; }
  bool operator!=(const RedisNode& other) const { return !(*this == other); }
};

// The cluster hash slot of `key` (CRC16-CCITT/XMODEM mod 16384 over the key, or over its first
// non-empty {tag}), as Redis computes it.
int RedisHashSlot(std::string_view key);

// A cluster redirect in an error reply: "MOVED 3999 127.0.0.1:6381" / "ASK 3999 127.0.0.1:6381".
struct RedisRedirect {
  enum class Kind { kMoved, kAsk };
  Kind kind = Kind::kMoved;
  int slot = 0;
  RedisNode node;
};
std::optional<RedisRedirect> ParseRedisRedirect(const redisReply& reply);

// Whether `host` is an IPv4 or IPv6 literal: a loop may connect to it without DNS.
bool IsIpLiteral(const std::string& host);

// An error reply saying the server is a replica now: "READONLY You can't write against a read
// only replica." (Redis 7 answers a script's write so too, with " script: ..." appended), or a
// script error wrapping it (Redis 6: "ERR Error running script ...: -READONLY You can't ...").
// Not a reply merely naming READONLY (a key or caller called "READONLY-bot" in a script error).
bool IsRedisReadOnly(const redisReply& reply);

// A cluster's "TRYAGAIN ...": a multi-key command during a slot's migration whose keys are not
// all on the node yet; the same command may succeed a moment later.
bool IsRedisTryAgain(const redisReply& reply);

struct RedisTopologyStats {
  std::atomic<uint64_t> primary_switches{0};    // sentinel: the primary changed
  std::atomic<uint64_t> resolve_failures{0};    // sentinel: no sentinel/primary answered a resolve;
                                                // cluster: no node answered CLUSTER SLOTS
  std::atomic<uint64_t> slot_map_refreshes{0};  // cluster: CLUSTER SLOTS read (and changed)
  std::atomic<uint64_t> moved{0};               // cluster: MOVED redirects reported
  std::atomic<uint64_t> asked{0};               // cluster: ASK redirects followed (clients count)
};

class RedisTopology {
 public:
  enum class Mode { kDirect, kSentinel, kCluster };

  // The topology of this `redis` section: one per distinct section in the process, shared by
  // every client built from it (its watcher thread runs while any client holds it).
  static std::shared_ptr<RedisTopology> For(const config::RedisConfig& config);

  virtual ~RedisTopology() = default;

  virtual Mode mode() const = 0;
  // Where a command whose first key is `key` goes ("" for a command with no key: the primary,
  // or any master in a cluster). Invalid (port 0) when unknown for now.
  virtual RedisNode Route(std::string_view key) const = 0;
  // Where a command for `slot` goes (cluster); the primary otherwise.
  virtual RedisNode RouteSlot(int slot) const = 0;
  // Whether Route may answer `node` for some key (a cluster: it serves some slot). Asked by every
  // connection of every loop when epoch() moved: one look under one lock. The default asks
  // Route("") (not a cluster) or RouteSlot for every slot (a cluster: 16384 look-ups).
  virtual bool Serves(const RedisNode& node) const;
  // Moves whenever Route's answers may have changed (a new primary, a new slot map).
  virtual uint64_t epoch() const = 0;
  // `node` answered READONLY or its ROLE is not master: re-resolve now (sentinel) or re-read the
  // slot map (cluster). Reports about a node that is no longer routed to are ignored.
  virtual void Suspect(const RedisNode& node) = 0;
  // A MOVED redirect: `slot` is served by `node` from now on (kept at once, the map re-read soon).
  virtual void Moved(int slot, const RedisNode& node) = 0;
  // "redis 127.0.0.1:6379/0", "sentinel tollgate -> 127.0.0.1:6380", "cluster of 3 masters".
  virtual std::string Describe() const = 0;
  virtual RedisTopologyStats& stats() = 0;
};

}  // namespace tollgate::policies
