#include "tests/support/redis_sets.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <functional>
#include <sstream>
#include <thread>

namespace tollgate::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

bool WaitUntil(const std::function<bool()>& done, milliseconds timeout,
               milliseconds interval = milliseconds(50)) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(interval);
  }
}

RedisValue Convert(const redisReply& r) {
  RedisValue v;
  switch (r.type) {
    case REDIS_REPLY_STRING:
      v.type = RedisValue::Type::kString;
      v.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      v.type = RedisValue::Type::kStatus;
      v.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      v.type = RedisValue::Type::kError;
      v.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      v.type = RedisValue::Type::kInteger;
      v.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      v.type = RedisValue::Type::kArray;
      for (size_t i = 0; i < r.elements; ++i) v.elements.push_back(Convert(*r.element[i]));
      break;
    default:
      v.type = RedisValue::Type::kNil;
  }
  return v;
}

// The end of a log, without Redis's memory overcommit warning (every start logs it).
std::string Tail(const std::string& log, size_t bytes = 3000) {
  std::string text;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.find("overcommit") == std::string::npos) text += line + "\n";
  }
  return text.size() <= bytes ? text : "..." + text.substr(text.size() - bytes);
}

// "127.0.0.1:P" for a port.
std::string Address(int port) { return "127.0.0.1:" + std::to_string(port); }

std::string JsonMembers(const std::vector<std::string>& addresses) {
  std::string out;
  for (const auto& a : addresses) out += (out.empty() ? "\"" : ", \"") + a + "\"";
  return out;
}

// A flat [name, value, name, value...] reply (SENTINEL REPLICAS entries) as a map.
std::map<std::string, std::string> Fields(const RedisValue& entry) {
  std::map<std::string, std::string> out;
  for (size_t i = 0; i + 1 < entry.elements.size(); i += 2) {
    out[entry.elements[i].str] = entry.elements[i + 1].Text();
  }
  return out;
}

}  // namespace

std::string RedisValue::Text() const {
  switch (type) {
    case Type::kInteger:
      return std::to_string(integer);
    case Type::kNil:
      return "";
    case Type::kArray: {
      std::string out;
      for (size_t i = 0; i < elements.size(); ++i) out += (i ? "\n" : "") + elements[i].Text();
      return out;
    }
    default:
      return str;
  }
}

std::optional<RedisValue> RedisQuery(int port, const std::vector<std::string>& argv,
                                     milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (c == nullptr || c->err) {
    if (c) redisFree(c);
    return std::nullopt;
  }
  redisSetTimeout(c, tv);
  std::vector<const char*> args;
  std::vector<size_t> lengths;
  for (const auto& a : argv) {
    args.push_back(a.data());
    lengths.push_back(a.size());
  }
  auto* reply = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), args.data(), lengths.data()));
  std::optional<RedisValue> out;
  if (reply != nullptr) {
    out = Convert(*reply);
    freeReplyObject(reply);
  }
  redisFree(c);
  return out;
}

std::string InfoField(const std::string& info, const std::string& field) {
  std::istringstream in(info);
  std::string line;
  const std::string prefix = field + ":";
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
  }
  return "";
}

// ------------------------------------------------------------------------------------ sentinel

RedisSentinelSet::RedisSentinelSet() {
  RedisServerOptions primary;
  primary.log_path = dir_.path() + "/primary.log";
  primary_ = std::make_unique<RedisServer>(primary);
  RedisServerOptions replica;
  replica.log_path = dir_.path() + "/replica.log";
  replica.extra_args = {"--replicaof", "127.0.0.1", std::to_string(primary_->port())};
  replica_ = std::make_unique<RedisServer>(replica);
  if (!primary_->running() || !replica_->running()) return;

  // The replica in sync before the sentinels start: their first INFO of the primary lists it.
  if (!WaitUntil(
          [&] {
            auto info = RedisQuery(replica_->port(), {"INFO", "replication"});
            return info && InfoField(info->str, "master_link_status") == "up";
          },
          milliseconds(20000))) {
    ADD_FAILURE() << "the replica did not sync with the primary:\n"
                  << Tail(ReadFile(replica.log_path));
    return;
  }

  for (int i = 0; i < 3; ++i) {
    const int port = FreePort();
    // The sentinel rewrites this file (it records what it learns): it lives in the temp dir.
    const std::string conf =
        dir_.Write("sentinel-" + std::to_string(i) + ".conf",
                   "port " + std::to_string(port) +
                       "\n"
                       "bind 127.0.0.1\n"
                       "daemonize no\n"
                       "dir " +
                       dir_.path() +
                       "\n"
                       "sentinel monitor " +
                       kMasterName + " 127.0.0.1 " + std::to_string(primary_->port()) +
                       " 2\n"
                       "sentinel down-after-milliseconds " +
                       kMasterName +
                       " 1000\n"
                       "sentinel failover-timeout " +
                       kMasterName +
                       " 5000\n"
                       "sentinel parallel-syncs " +
                       kMasterName + " 1\n");
    sentinel_ports_.push_back(port);
    sentinels_.emplace_back(std::vector<std::string>{"/usr/bin/redis-sentinel", conf},
                            std::map<std::string, std::string>{},
                            dir_.path() + "/sentinel-" + std::to_string(i) + ".log");
  }
  for (size_t i = 0; i < sentinels_.size(); ++i) {
    if (!WaitForPort(sentinel_ports_[i], milliseconds(10000)) || !sentinels_[i].running()) {
      ADD_FAILURE() << "redis-sentinel " << i << " did not start on port " << sentinel_ports_[i]
                    << ":\n"
                    << Describe();
      return;
    }
  }
  ready_ = WaitUntilReady(milliseconds(30000));
  if (!ready_)
    ADD_FAILURE() << "the sentinels did not find each other and the replica:\n" << Describe();
}

RedisSentinelSet::~RedisSentinelSet() { StopAll(); }

bool RedisSentinelSet::WaitUntilReady(milliseconds timeout) {
  return WaitUntil(
      [&] {
        for (int port : sentinel_ports_) {
          auto sentinels = RedisQuery(port, {"SENTINEL", "SENTINELS", kMasterName});
          if (!sentinels || sentinels->elements.size() != 2) return false;
          auto replicas = RedisQuery(port, {"SENTINEL", "REPLICAS", kMasterName});
          if (!replicas) return false;
          bool replica_ok = false;
          for (const auto& entry : replicas->elements) {
            auto fields = Fields(entry);
            replica_ok |= fields["port"] == std::to_string(replica_->port()) &&
                          fields["flags"] == "slave" && fields["master-link-status"] == "ok";
          }
          if (!replica_ok) return false;
          auto quorum = RedisQuery(port, {"SENTINEL", "CKQUORUM", kMasterName});
          if (!quorum || quorum->is_error() || quorum->str.rfind("OK", 0) != 0) return false;
        }
        return true;
      },
      timeout, milliseconds(100));
}

std::vector<std::string> RedisSentinelSet::sentinel_addresses() const {
  std::vector<std::string> out;
  for (int port : sentinel_ports_) out.push_back(Address(port));
  return out;
}

std::string RedisSentinelSet::SentinelAddressesJson() const {
  return JsonMembers(sentinel_addresses());
}

int RedisSentinelSet::first_primary_port() const { return primary_ ? primary_->port() : 0; }
int RedisSentinelSet::first_replica_port() const { return replica_ ? replica_->port() : 0; }

int RedisSentinelSet::PrimaryPortBySentinel(size_t i) const {
  if (i >= sentinel_ports_.size()) return 0;
  auto reply = RedisQuery(sentinel_ports_[i], {"SENTINEL", "get-master-addr-by-name", kMasterName},
                          milliseconds(1000));
  if (!reply || reply->elements.size() != 2) return 0;
  try {
    return std::stoi(reply->elements[1].str);
  } catch (...) {
    return 0;
  }
}

int RedisSentinelSet::CurrentPrimaryPort() const {
  for (size_t i = 0; i < sentinel_ports_.size(); ++i) {
    if (int port = PrimaryPortBySentinel(i)) return port;
  }
  return 0;
}

int RedisSentinelSet::KillPrimary() {
  const int port = CurrentPrimaryPort();
  for (RedisServer* server : {primary_.get(), replica_.get()}) {
    if (server != nullptr && server->port() == port && server->running()) {
      server->Stop();  // SIGKILL, reaped
      return port;
    }
  }
  ADD_FAILURE() << "no running server on the primary's port " << port;
  return 0;
}

int RedisSentinelSet::WaitForNewPrimary(int old_port, milliseconds timeout,
                                        int64_t* first_named_ms) {
  int port = 0;
  bool named_once = false;
  const bool switched = WaitUntil(
      [&] {
        port = 0;
        bool agree = true;
        for (size_t i = 0; i < sentinel_ports_.size(); ++i) {
          int named = PrimaryPortBySentinel(i);
          if (named != 0 && named != old_port && !named_once) {
            named_once = true;
            if (first_named_ms != nullptr) {
              *first_named_ms =
                  std::chrono::duration_cast<milliseconds>(Clock::now().time_since_epoch()).count();
            }
          }
          if (named == 0 || named == old_port || (port != 0 && named != port)) agree = false;
          port = named;
        }
        if (!agree) return false;
        auto info = RedisQuery(port, {"INFO", "replication"});
        return info && InfoField(info->str, "role") == "master";
      },
      timeout, milliseconds(20));
  return switched ? port : 0;
}

void RedisSentinelSet::StopAll() {
  for (auto& s : sentinels_) s.Stop(milliseconds(2000));
  if (replica_) replica_->Stop();
  if (primary_) primary_->Stop();
}

std::string RedisSentinelSet::Describe() const {
  std::string out;
  for (size_t i = 0; i < sentinel_ports_.size(); ++i) {
    out += "--- sentinel " + std::to_string(i) + " (port " + std::to_string(sentinel_ports_[i]) +
           ", names primary " + std::to_string(PrimaryPortBySentinel(i)) + ")\n" +
           Tail(ReadFile(dir_.path() + "/sentinel-" + std::to_string(i) + ".log")) + "\n";
  }
  out += "--- primary " + std::to_string(first_primary_port()) + ", replica " +
         std::to_string(first_replica_port()) + "\n" +
         Tail(ReadFile(dir_.path() + "/replica.log"), 1500);
  return out;
}

// ------------------------------------------------------------------------------------- cluster

RedisClusterSet::RedisClusterSet() {
  for (int i = 0; i < 3; ++i) {
    RedisServerOptions options;
    options.log_path = dir_.path() + "/node-" + std::to_string(i) + ".log";
    // The bus port is chosen too (not port + 10000, which may be taken or out of range).
    options.extra_args = {"--cluster-enabled",
                          "yes",
                          "--cluster-config-file",
                          dir_.path() + "/nodes-" + std::to_string(i) + ".conf",
                          "--cluster-node-timeout",
                          "2000",
                          "--cluster-port",
                          std::to_string(FreePort()),
                          "--dir",
                          dir_.path()};
    nodes_.push_back(std::make_unique<RedisServer>(options));
    if (!nodes_.back()->running()) return;
    ports_.push_back(nodes_.back()->port());
  }
  std::vector<std::string> argv = {"/usr/bin/redis-cli", "--cluster", "create"};
  for (int port : ports_) argv.push_back(Address(port));
  argv.insert(argv.end(), {"--cluster-replicas", "0", "--cluster-yes"});
  std::string output;
  const int rc = RunCommand(argv, &output, {}, milliseconds(60000));
  if (rc != 0) {
    ADD_FAILURE() << "redis-cli --cluster create failed (" << rc << "):\n" << output;
    return;
  }
  ready_ = WaitUntilReady(milliseconds(30000));
  if (!ready_) ADD_FAILURE() << "the cluster did not become ready:\n" << Describe();
}

RedisClusterSet::~RedisClusterSet() {
  for (auto& node : nodes_) node->Stop();
}

bool RedisClusterSet::WaitUntilReady(milliseconds timeout) {
  return WaitUntil(
      [&] {
        for (int port : ports_) {
          auto info = RedisQuery(port, {"CLUSTER", "INFO"});
          if (!info || InfoField(info->str, "cluster_state") != "ok" ||
              InfoField(info->str, "cluster_known_nodes") != "3" ||
              InfoField(info->str, "cluster_slots_ok") != "16384") {
            return false;
          }
        }
        return true;
      },
      timeout, milliseconds(100));
}

std::vector<std::string> RedisClusterSet::addresses() const {
  std::vector<std::string> out;
  for (int port : ports_) out.push_back(Address(port));
  return out;
}

std::string RedisClusterSet::AddressesJson() const { return JsonMembers(addresses()); }

std::string RedisClusterSet::NodeId(int port) const {
  auto id = RedisQuery(port, {"CLUSTER", "MYID"});
  return id && !id->is_error() ? id->str : "";
}

int RedisClusterSet::KeySlot(const std::string& key) const {
  for (int port : ports_) {
    auto slot = RedisQuery(port, {"CLUSTER", "KEYSLOT", key});
    if (slot && slot->type == RedisValue::Type::kInteger) return static_cast<int>(slot->integer);
  }
  return -1;
}

int RedisClusterSet::SlotOwner(int slot, int asked_port) const {
  auto slots = RedisQuery(asked_port != 0 ? asked_port : ports_.at(0), {"CLUSTER", "SLOTS"});
  if (!slots) return 0;
  // [[start, end, [ip, port, id], replicas...], ...]
  for (const auto& range : slots->elements) {
    if (range.elements.size() < 3) continue;
    if (range.elements[0].integer <= slot && slot <= range.elements[1].integer &&
        range.elements[2].elements.size() >= 2) {
      return static_cast<int>(range.elements[2].elements[1].integer);
    }
  }
  return 0;
}

std::map<std::string, int> RedisClusterSet::Keys(const std::string& pattern) const {
  std::map<std::string, int> out;
  for (int port : ports_) {
    auto keys = RedisQuery(port, {"KEYS", pattern});
    if (!keys) continue;
    for (const auto& k : keys->elements) out[k.str] = port;
  }
  return out;
}

bool RedisClusterSet::BeginSlotMigration(int slot, int target_port) {
  const int source = SlotOwner(slot);
  const std::string source_id = NodeId(source);
  const std::string target_id = NodeId(target_port);
  if (source == 0 || source == target_port || source_id.empty() || target_id.empty()) {
    ADD_FAILURE() << "cannot move slot " << slot << " from " << source << " to " << target_port;
    return false;
  }
  const std::string s = std::to_string(slot);
  auto importing = RedisQuery(target_port, {"CLUSTER", "SETSLOT", s, "IMPORTING", source_id});
  auto migrating = RedisQuery(source, {"CLUSTER", "SETSLOT", s, "MIGRATING", target_id});
  if (!importing || importing->str != "OK" || !migrating || migrating->str != "OK") {
    ADD_FAILURE() << "SETSLOT IMPORTING/MIGRATING failed: "
                  << (importing ? importing->Text() : "no answer") << " / "
                  << (migrating ? migrating->Text() : "no answer");
    return false;
  }
  migrations_[slot] = Migration{source, target_port};
  return true;
}

bool RedisClusterSet::MigrateSlotKeys(int slot) {
  auto it = migrations_.find(slot);
  if (it == migrations_.end()) {
    ADD_FAILURE() << "slot " << slot << " is not being migrated";
    return false;
  }
  const Migration m = it->second;
  for (int round = 0; round < 1000; ++round) {
    auto keys = RedisQuery(m.source, {"CLUSTER", "GETKEYSINSLOT", std::to_string(slot), "100"});
    if (!keys || keys->type != RedisValue::Type::kArray) {
      ADD_FAILURE() << "CLUSTER GETKEYSINSLOT failed: " << (keys ? keys->Text() : "no answer");
      return false;
    }
    if (keys->elements.empty()) return true;
    std::vector<std::string> argv = {"MIGRATE", "127.0.0.1", std::to_string(m.target), "", "0",
                                     "5000",    "KEYS"};
    for (const auto& k : keys->elements) argv.push_back(k.str);
    auto migrated = RedisQuery(m.source, argv, milliseconds(10000));
    // NOKEY: the keys expired or were deleted meanwhile; the next round sees what is left.
    if (!migrated || (migrated->is_error() && migrated->str.rfind("NOKEY", 0) != 0)) {
      ADD_FAILURE() << "MIGRATE failed: " << (migrated ? migrated->Text() : "no answer");
      return false;
    }
  }
  ADD_FAILURE() << "slot " << slot << " never emptied";
  return false;
}

bool RedisClusterSet::FinishSlotMigration(int slot) {
  auto it = migrations_.find(slot);
  if (it == migrations_.end()) {
    ADD_FAILURE() << "slot " << slot << " is not being migrated";
    return false;
  }
  const Migration m = it->second;
  const std::string target_id = NodeId(m.target);
  // The target first (it bumps its config epoch, so the change wins in gossip), then the source,
  // then the others.
  std::vector<int> order = {m.target, m.source};
  for (int port : ports_) {
    if (port != m.target && port != m.source) order.push_back(port);
  }
  for (int port : order) {
    auto r = RedisQuery(port, {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", target_id});
    if (!r || r->str != "OK") {
      ADD_FAILURE() << "SETSLOT NODE on " << port << " failed: " << (r ? r->Text() : "no answer");
      return false;
    }
  }
  migrations_.erase(it);
  const bool agreed = WaitUntil(
      [&] {
        for (int port : ports_) {
          if (SlotOwner(slot, port) != m.target) return false;
        }
        return true;
      },
      milliseconds(20000));
  if (!agreed) ADD_FAILURE() << "the nodes do not agree slot " << slot << " moved:\n" << Describe();
  return agreed;
}

bool RedisClusterSet::MoveSlot(int slot, int target_port) {
  return BeginSlotMigration(slot, target_port) && MigrateSlotKeys(slot) &&
         FinishSlotMigration(slot);
}

std::string RedisClusterSet::Describe() const {
  std::string out;
  for (int port : ports_) {
    auto nodes = RedisQuery(port, {"CLUSTER", "NODES"});
    out +=
        "--- node " + std::to_string(port) + ":\n" + (nodes ? nodes->Text() : "no answer") + "\n";
  }
  for (size_t i = 0; i < nodes_.size(); ++i) {
    out += "--- node-" + std::to_string(i) + ".log\n" +
           Tail(ReadFile(dir_.path() + "/node-" + std::to_string(i) + ".log"), 1500);
  }
  return out;
}

}  // namespace tollgate::testing
