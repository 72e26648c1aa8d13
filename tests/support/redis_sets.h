// Redis deployments for the issue 14 tests, on free loopback ports, stopped by their destructors:
//
// - RedisSentinelSet: a primary, a replica of it and three `redis-sentinel` processes watching it
//   under the name "tollgate" (quorum 2, down-after 1000 ms), ready once the replica is in sync and
//   every sentinel knows the replica and the two other sentinels. KillPrimary() is a crash
//   (SIGKILL); the sentinels then promote the replica.
// - RedisClusterSet: three `redis-server --cluster-enabled yes` masters (no replicas) joined with
//   `redis-cli --cluster create`, ready once every node says cluster_state:ok. A slot can be moved
//   from its owner to another node in the reshard steps redis-cli takes (IMPORTING, MIGRATING,
//   MIGRATE the keys, SETSLOT NODE), one step at a time, so a test can send requests between them.
//
// Plus RedisQuery(): one command on a fresh connection, the reply as a tree.
//
// Every wait here polls with a deadline; failures are ADD_FAILURE()s naming what was awaited, with
// the processes' log tails. Not thread-safe: a set belongs to one thread (RedisQuery may run on
// any).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace tollgate::testing {

// A Redis reply, whole: strings, status and error text in `str`, integers in `integer`.
struct RedisValue {
  enum class Type { kString, kStatus, kError, kInteger, kNil, kArray };
  Type type = Type::kNil;
  std::string str;
  long long integer = 0;
  std::vector<RedisValue> elements;

  bool is_error() const { return type == Type::kError; }
  // The reply as text: str for strings/status/errors, the integer in decimal, "" for nil,
  // elements joined by '\n' for an array (one level).
  std::string Text() const;
};

// One command on a fresh connection to 127.0.0.1:port; nullopt when the server cannot be reached
// or does not answer within `timeout`.
std::optional<RedisValue> RedisQuery(
    int port, const std::vector<std::string>& argv,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

// The value of `field` in an INFO / CLUSTER INFO text ("role" -> "master"); "" when absent.
std::string InfoField(const std::string& info, const std::string& field);

class RedisSentinelSet {
 public:
  static constexpr const char* kMasterName = "tollgate";

  RedisSentinelSet();  // starts and waits for everything (ADD_FAILURE()s if it cannot)
  ~RedisSentinelSet();
  RedisSentinelSet(const RedisSentinelSet&) = delete;
  RedisSentinelSet& operator=(const RedisSentinelSet&) = delete;

  bool ready() const { return ready_; }
  // The sentinels as the gateway's config lists them: "127.0.0.1:P1", ... (three).
  std::vector<std::string> sentinel_addresses() const;
  // The same as a JSON array's members: "\"127.0.0.1:P1\", \"127.0.0.1:P2\", ...".
  std::string SentinelAddressesJson() const;
  const std::vector<int>& sentinel_ports() const { return sentinel_ports_; }
  int first_primary_port() const;  // the server started as the primary
  int first_replica_port() const;  // the server started as its replica

  // The primary's port as sentinel `i` names it (SENTINEL get-master-addr-by-name); 0 when it
  // does not answer.
  int PrimaryPortBySentinel(size_t i) const;
  // The port the sentinels name: the first sentinel that answers; 0 when none does.
  int CurrentPrimaryPort() const;
  // Crashes the current primary (SIGKILL, reaped); returns its port (0 if none was running).
  int KillPrimary();
  // Waits until every sentinel names a primary other than `old_port`, and that server says
  // role:master; its port, or 0 on timeout. `*first_named_ms` (when given) gets the time
  // (steady clock, ms since its epoch, as MonotonicMs()) when one sentinel first named it.
  int WaitForNewPrimary(int old_port,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(30000),
                        int64_t* first_named_ms = nullptr);
  void StopAll();
  // The tail of every sentinel's log and what each says about the master, for failure messages.
  std::string Describe() const;

 private:
  bool WaitUntilReady(std::chrono::milliseconds timeout);

  TempDir dir_;
  std::unique_ptr<RedisServer> primary_;
  std::unique_ptr<RedisServer> replica_;
  std::vector<int> sentinel_ports_;
  std::vector<ChildProcess> sentinels_;
  bool ready_ = false;
};

class RedisClusterSet {
 public:
  RedisClusterSet();  // three masters, slots spread by redis-cli (ADD_FAILURE()s if it cannot)
  ~RedisClusterSet();
  RedisClusterSet(const RedisClusterSet&) = delete;
  RedisClusterSet& operator=(const RedisClusterSet&) = delete;

  bool ready() const { return ready_; }
  const std::vector<int>& ports() const { return ports_; }
  std::vector<std::string> addresses() const;  // "127.0.0.1:P1", ...
  std::string AddressesJson() const;           // "\"127.0.0.1:P1\", ..." for a JSON array
  std::string NodeId(int port) const;          // CLUSTER MYID

  int KeySlot(const std::string& key) const;  // CLUSTER KEYSLOT; -1 when no node answers
  // The port of the node serving `slot` as node `asked_port` sees it (CLUSTER SLOTS); 0 if none.
  int SlotOwner(int slot, int asked_port = 0) const;
  // Every key on every node matching `pattern` (KEYS), with the port holding it.
  std::map<std::string, int> Keys(const std::string& pattern = "*") const;

  // The reshard of one slot, step by step. Begin: IMPORTING on `target_port`, MIGRATING on the
  // owner. MigrateKeys: MIGRATE every key of the slot (CLUSTER GETKEYSINSLOT) to the target.
  // Finish: SETSLOT NODE <target> on the target, the source, then the other node, and waits until
  // every node names the target as the slot's owner. Each returns false (and ADD_FAILURE()s)
  // when a step fails.
  bool BeginSlotMigration(int slot, int target_port);
  bool MigrateSlotKeys(int slot);
  bool FinishSlotMigration(int slot);
  bool MoveSlot(int slot, int target_port);  // the three steps

  std::string Describe() const;  // CLUSTER NODES of every node, for failure messages

 private:
  bool WaitUntilReady(std::chrono::milliseconds timeout);

  struct Migration {
    int source = 0;
    int target = 0;
  };

  TempDir dir_;
  std::vector<std::unique_ptr<RedisServer>> nodes_;
  std::vector<int> ports_;
  std::map<int, Migration> migrations_;  // by slot
  bool ready_ = false;
};

}  // namespace tollgate::testing
