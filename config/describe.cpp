// DescribeConfig: the summary `tollgate check-config` prints. It names where each secret comes
// from (env:NAME / file:PATH) and never reads UpstreamAuth::secret/key or RedisConfig::password.
#include <cmath>
#include <sstream>

#include "config/loader.h"
#include "config/slot_tags.h"
#include "config/syntax.h"

namespace tollgate::config {
namespace {

const char* AuthTypeName(AuthType type) {
  switch (type) {
    case AuthType::kBearer:
      return "bearer";
    case AuthType::kHeader:
      return "header";
    case AuthType::kDevoHmac:
      return "devo_hmac";
  }
  return "?";
}

std::string DescribeLimit(const Limit& limit) {
  if (limit.quota) {
    static const char* const kPeriods[] = {"day", "week", "month"};
    std::string text = limit.name + " quota " + std::to_string(limit.quota->amount) + "/" +
                       kPeriods[static_cast<int>(limit.quota->period)] + " from " +
                       std::to_string(limit.quota->reset_hour_utc) + ":00 UTC" +
                       (limit.scope == LimitScope::kCaller ? " per caller" : " shared");
    if (limit.quota->warn_at) {
      text += " warn at " + std::to_string(std::lround(*limit.quota->warn_at * 100)) + "%";
    }
    if (limit.shadow) text += " (shadow)";
    return text;
  }
  std::string text = limit.name + " " + syntax::FormatRate(limit.rate) + " burst " +
                     std::to_string(limit.burst) +
                     (limit.scope == LimitScope::kCaller ? " per caller" : " shared");
  if (limit.wait_ms > 0) {
    text += " waits up to " + std::to_string(limit.wait_ms) + " ms (max " +
            std::to_string(limit.max_waiting) + " waiting per caller)";
  }
  if (limit.shadow) text += " (shadow)";
  return text;
}

void DescribeLimits(const std::vector<Limit>& limits, const char* indent, std::ostream& out) {
  for (const Limit& limit : limits) out << indent << "limit " << DescribeLimit(limit) << "\n";
}

std::string Join(const std::vector<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : ", ") + item;
  return text;
}

std::string FormatNumber(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

// One body rule as written, e.g. "/max_acu_limit max 50 default 10 (clamp)".
std::string DescribeBodyRule(const BodyRule& rule) {
  std::string text = rule.pointer;
  if (rule.require) text += " required";
  if (rule.forbid) text += " forbidden";
  if (rule.set) text += " set " + *rule.set;
  if (rule.default_json) text += " default " + *rule.default_json;
  if (!rule.enum_json.empty()) text += " one of [" + Join(rule.enum_json) + "]";
  if (rule.min) text += " min " + FormatNumber(*rule.min);
  if (rule.max) text += " max " + FormatNumber(*rule.max);
  if (rule.min || rule.max) text += rule.clamp ? " (clamp)" : " (reject)";
  if (!rule.append.empty()) text += " append [" + Join(rule.append) + "]";
  return text;
}

// Issue 12's parts of a rule (body rules, cost from the body, ownership, forced query): one line
// each, under the rule's method and path. Nothing when the rule has none.
void DescribeGovernance(const Rule& rule, std::ostream& out) {
  bool owner_check = false;
  for (const auto& [param, attribute] : rule.where) owner_check |= attribute == "owner";
  if (rule.body.empty() && rule.cost_pointer.empty() && rule.record_owner.empty() && !owner_check &&
      rule.query.empty()) {
    return;
  }
  out << "    rule " << rule.index << ": " << (rule.methods.empty() ? "*" : Join(rule.methods))
      << " " << rule.path << "\n";
  for (const BodyRule& body : rule.body) out << "      body " << DescribeBodyRule(body) << "\n";
  if (!rule.cost_pointer.empty()) {
    out << "      cost from the body at " << rule.cost_pointer
        << " (quotas only; buckets take 1)\n";
  }
  if (!rule.record_owner.empty()) {
    out << "      record_owner " << rule.record_owner
        << " (a 2xx answer's value is the caller's)\n";
  }
  for (const auto& [param, attribute] : rule.where) {
    if (attribute != "owner") continue;
    out << "      owner check {" << param << "}: recorded as the caller's"
        << (rule.owner_group.empty()
                ? ""
                : " or a caller's with the same " + rule.owner_group + " (owner_group)")
        << "\n";
  }
  for (const auto& [name, value] : rule.query) {
    out << "      query " << name << "=" << value << " forced\n";
  }
}

}  // namespace

std::string DescribeConfig(const Config& config) {
  std::ostringstream out;
  out << "config: " << (config.source_path.empty() ? "(string)" : config.source_path) << "\n";
  out << "listen: " << config.listen
      << ", admin: " << (config.admin_listen.empty() ? "none" : config.admin_listen) << ", "
      << config.threads << " threads (each with its own upstream and Redis clients), max body "
      << config.max_body_bytes << " bytes, max " << config.max_connections << " connections\n";

  if (config.redis) {
    const RedisConfig& redis = *config.redis;
    out << "limiter: redis ";
    if (redis.sentinel) {  // issue 14: where the primary is found, not a fixed server
      out << "sentinel master \"" << redis.sentinel->master << "\" via sentinels";
      for (const RedisEndpoint& address : redis.sentinel->addresses) {
        out << " " << address.host << ":" << address.port;
      }
      if (redis.db != 0) out << ", db " << redis.db;
      out << (redis.sentinel->username.empty() ? "" : " as " + redis.sentinel->username)
          << (redis.sentinel->password.empty() ? "" : " with sentinel password");
    } else if (redis.cluster) {
      out << "cluster, seeds";
      for (const RedisEndpoint& address : redis.cluster->addresses) {
        out << " " << address.host << ":" << address.port;
      }
    } else {
      out << redis.url;
    }
    if ((redis.sentinel || redis.cluster) && (!redis.username.empty() || !redis.password.empty())) {
      out << "; data nodes";
    }
    out << (redis.username.empty() ? "" : " as " + redis.username)
        << (redis.password.empty() ? "" : " with password")
        << ", on error: " << (redis.on_error == RedisOnError::kDeny ? "deny" : "local")
        << ", key prefix \"" << redis.key_prefix << "\"\n";
    if (redis.cluster) {
      // Each group's limiting is one hash slot, so one shard (config/slot_tags.h).
      const SlotTags tags = ComputeSlotTags(config);
      out << "cluster slot groups: " << tags.groups.size()
          << " (all of one group's limiting is on one shard)\n";
      for (const auto& [tag, group] : tags.groups) {
        out << "  {" << tag << "}:";
        for (const std::string& upstream : group.upstreams) out << " " << upstream;
        if (!group.joined_by.empty()) {
          out << " (joined by";
          for (const std::string& limit : group.joined_by) out << " " << limit;
          out << ")";
        }
        out << "\n";
      }
    }
  } else {
    out << "limiter: in-process limiter (no redis section; single instance only)\n";
  }

  const KeysConfig& keys = config.keys;
  if (config.redis) {
    out << "run-time keys: in redis, trusted " << keys.cache_ttl_seconds
        << " s once verified, unknown ids remembered " << keys.negative_ttl_seconds
        << " s, lookups " << keys.lookups_per_second << "/s burst " << keys.lookup_burst
        << ", max ttl "
        << (keys.max_ttl_seconds > 0 ? std::to_string(keys.max_ttl_seconds) + " s" : "none")
        << "\n";
  } else {
    out << "run-time keys: off (no redis section; only the callers' key_sha256 keys)\n";
  }

  out << "audit: ";
  if (config.audit.file == "-") {
    out << "stdout";
  } else if (config.audit.file.empty()) {
    out << "no file";
  } else {
    out << "file " << config.audit.file;
  }
  if (!config.audit.redis_stream.empty()) {
    out << ", redis stream " << config.audit.redis_stream << " (maxlen "
        << config.audit.stream_maxlen << ")";
  }
  out << "\n";

  out << "upstreams (" << config.upstreams.size() << "):\n";
  for (const auto& [name, upstream] : config.upstreams) {
    out << "  " << name << " -> " << upstream.base_url << ", auth "
        << AuthTypeName(upstream.auth.type)
        << (upstream.auth.header.empty() ? "" : " " + upstream.auth.header) << " from "
        << upstream.auth.secret_source << ", timeout " << upstream.timeout_ms << " ms\n";
    if (!upstream.forward_headers.empty()) {
      out << "    also forwards:";
      for (const std::string& header : upstream.forward_headers) out << " " << header;
      out << "\n";
    }
    if (upstream.send_x_forwarded_for || upstream.send_forwarded) {
      out << "    sends the client address in:"
          << (upstream.send_x_forwarded_for ? " x-forwarded-for" : "")
          << (upstream.send_forwarded ? " forwarded" : "") << "\n";
    }
    DescribeLimits(upstream.limits, "    ", out);
  }

  out << "roles (" << config.roles.size() << "):\n";
  for (const auto& [name, role] : config.roles) {
    size_t deny = 0;
    for (const Rule& rule : role.rules) deny += rule.effect == Effect::kDeny ? 1 : 0;
    out << "  " << name << ": " << role.rules.size() << " rule(s)";
    if (deny > 0) out << ", " << deny << " deny";
    out << "\n";
    for (const Rule& rule : role.rules) {
      DescribeGovernance(rule, out);
      DescribeLimits(rule.limits, "    ", out);
    }
  }

  out << "callers (" << config.callers.size() << "):\n";
  for (const auto& [name, caller] : config.callers) {
    out << "  " << name << ": roles [" << Join(caller.roles) << "], " << caller.key_sha256.size()
        << " key(s)";
    if (caller.expires) out << ", expires " << syntax::FormatRfc3339(*caller.expires);
    if (caller.disabled) out << ", DISABLED";
    out << "\n";
    DescribeLimits(caller.limits, "    ", out);
  }

  if (config.metrics.per_caller) {
    out << "metrics: per-caller series for the first " << config.metrics.max_callers
        << " callers (later ones as caller=\"other\")\n";
  } else {
    out << "metrics: no per-caller series\n";
  }

  out << "usage: counted per caller, upstream and UTC day "
      << (config.redis ? "in Redis" : "in memory (no redis section: lost at exit)")
      << ", flushed every " << config.usage.flush_interval_seconds << " s, kept "
      << config.usage.retention_days << " days\n";

  // Names and scopes only: a hash is not secret, but it is of no use to a reader either.
  out << "admin tokens (" << config.admin.tokens.size() << "):";
  if (config.admin.tokens.empty()) {
    out << " none (the admin endpoints but /healthz, /readyz and /metrics answer 403; SIGHUP "
           "reloads)";
  }
  out << "\n";
  for (const AdminToken& token : config.admin.tokens) {
    out << "  " << token.name << ": scopes [" << Join(token.scopes) << "]\n";
  }
  return out.str();
}

}  // namespace tollgate::config
