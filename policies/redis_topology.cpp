#include "policies/redis_topology.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>

#include "policies/redis_cluster.h"
#include "policies/redis_loop_shared.h"
#include "policies/redis_sentinel.h"

namespace tollgate::policies {
namespace {

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as in Redis's crc16.c.
uint16_t Crc16(std::string_view bytes) {
  uint16_t crc = 0;
  for (unsigned char byte : bytes) {
    crc ^= static_cast<uint16_t>(byte) << 8;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000) != 0 ? static_cast<uint16_t>((crc << 1) ^ 0x1021)
                                : static_cast<uint16_t>(crc << 1);
    }
  }
  return crc;
}

// The one server of a `url` section.
class DirectTopology : public RedisTopology {
 public:
  explicit DirectTopology(const config::RedisConfig& config)
      : node_{ResolveOnce(config.host), config.port},
        describe_("redis " + config.host + ":" + std::to_string(config.port) + "/" +
                  std::to_string(config.db)) {}

  Mode mode() const override { return Mode::kDirect; }
  RedisNode Route(std::string_view) const override { return node_; }
  RedisNode RouteSlot(int) const override { return node_; }
  uint64_t epoch() const override { return 0; }
  void Suspect(const RedisNode&) override {}
  void Moved(int, const RedisNode&) override {}
  std::string Describe() const override { return describe_; }
  RedisTopologyStats& stats() override { return stats_; }

 private:
  const RedisNode node_;
  const std::string describe_;
  RedisTopologyStats stats_;
};

// What makes two sections the same topology: where they point and as whom (not the password's
// value, which is the same for one section: the key stays in memory, never printed).
std::string RegistryKey(const config::RedisConfig& config) {
  std::string key = config.url + "|" + std::to_string(config.db) + "|" + config.username;
  if (config.sentinel) key += "|sentinel-user:" + config.sentinel->username;
  return key;
}

}  // namespace

int RedisHashSlot(std::string_view key) {
  const size_t open = key.find('{');
  if (open != std::string_view::npos) {
    const size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  return Crc16(key) & 16383;
}

std::optional<RedisRedirect> ParseRedisRedirect(const redisReply& reply) {
  if (reply.type != REDIS_REPLY_ERROR || reply.str == nullptr) return std::nullopt;
  const std::string_view text(reply.str, reply.len);
  RedisRedirect redirect;
  std::string_view rest;
  if (text.substr(0, 6) == "MOVED ") {
    redirect.kind = RedisRedirect::Kind::kMoved;
    rest = text.substr(6);
  } else if (text.substr(0, 4) == "ASK ") {
    redirect.kind = RedisRedirect::Kind::kAsk;
    rest = text.substr(4);
  } else {
    return std::nullopt;
  }
  const size_t space = rest.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::string_view slot = rest.substr(0, space);
  const std::string_view address = rest.substr(space + 1);
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  const std::string_view port = address.substr(colon + 1);
  auto slot_end = std::from_chars(slot.data(), slot.data() + slot.size(), redirect.slot);
  auto port_end = std::from_chars(port.data(), port.data() + port.size(), redirect.node.port);
  if (slot_end.ec != std::errc() || slot_end.ptr != slot.data() + slot.size() ||
      port_end.ec != std::errc() || port_end.ptr != port.data() + port.size() ||
      redirect.slot < 0 || redirect.slot > 16383 || redirect.node.port <= 0 ||
      redirect.node.port > 65535) {
    return std::nullopt;
  }
  redirect.node.host = std::string(address.substr(0, colon));
  return redirect;
}

bool IsRedisTryAgain(const redisReply& reply) {
  return reply.type == REDIS_REPLY_ERROR && reply.str != nullptr &&
         std::string_view(reply.str, reply.len).substr(0, 9) == "TRYAGAIN ";
}

bool IsRedisReadOnly(const redisReply& reply) {
  if (reply.type != REDIS_REPLY_ERROR || reply.str == nullptr) return false;
  const std::string_view text(reply.str, reply.len);
  // Redis 7 answers a plain write and a script's write on a replica "READONLY You can't ...";
  // Redis 6 wraps a script's in "ERR Error running script ...: @user_script: 1: -READONLY ...".
  return text.substr(0, 9) == "READONLY " || text.find("-READONLY ") != std::string_view::npos ||
         text.find(": READONLY ") != std::string_view::npos;
}

bool IsIpLiteral(const std::string& host) {
  in6_addr v6;
  in_addr v4;
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

bool RedisTopology::Serves(const RedisNode& node) const {
  if (mode() != Mode::kCluster) return Route("") == node;
  for (int slot = 0; slot < 16384; ++slot) {
    if (RouteSlot(slot) == node) return true;
  }
  return false;
}

std::shared_ptr<RedisTopology> RedisTopology::For(const config::RedisConfig& config) {
  static std::mutex mutex;
  static std::map<std::string, std::weak_ptr<RedisTopology>> registry;
  const std::string key = RegistryKey(config);
  std::lock_guard<std::mutex> lock(mutex);
  if (auto existing = registry[key].lock()) return existing;
  std::shared_ptr<RedisTopology> made;
  if (config.sentinel) {
    made = MakeSentinelTopology(config);
  } else if (config.cluster) {
    made = MakeClusterTopology(config);
  } else {
    made = std::make_shared<DirectTopology>(config);
  }
  registry[key] = made;
  return made;
}

}  // namespace tollgate::policies
