#include "gateway/cli.h"

#include <limits.h>
#include <openssl/rand.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "config/loader.h"
#include "config/syntax.h"
#include "gateway/admin_client.h"
#include "gateway/admin_keys.h"
#include "gateway/server.h"
#include "gateway/snapshot.h"
#include "keys/key_format.h"
#include "policies/body_rules.h"
#include "policies/normalise.h"
#include "policies/policy_warnings.h"
#include "upstream/upstream_auth.h"
#include "usage/usage_report.h"

namespace tollgate::gateway {
namespace {

constexpr const char* kUsage = R"(tollgate - an API gateway for the Devin and Devo APIs

usage:
  tollgate serve --config FILE          run the gateway (the default verb)
  tollgate serve --demo                 run with config/demo.json and the bundled fake upstream
  tollgate check-config --config FILE   validate a config, print a summary; exit 0, or 2 on errors
  tollgate keygen [--caller NAME]       make a new caller key and its key_sha256 config line
  tollgate keygen --admin NAME [--scopes reload,read]
                                        make a new admin token (admin listener) and its config
                                        line; scopes: reload, keys, usage, read
  tollgate explain --config FILE --caller NAME [--body FILE] METHOD PATH
                                        show how a request would be decided (PATH as sent to
                                        the gateway, e.g. /devin/v3beta1/enterprise/self); with
                                        --body, what the rule's body rules do to that body
  tollgate keys create --caller NAME [--ttl DURATION] [--note TEXT]
  tollgate keys list [--caller NAME]
  tollgate keys revoke ID
  tollgate keys rotate ID [--grace DURATION] [--ttl DURATION]
                                        run-time caller keys, through the admin listener: each
                                        takes --admin-url URL (else TOLLGATE_ADMIN_URL) and
                                        --json (the API's answer as is); the admin token (scope
                                        "keys") comes from TOLLGATE_ADMIN_TOKEN, never a flag.
                                        DURATION: seconds, or with a unit: 45s, 15m, 12h, 30d
  tollgate usage [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--caller NAME] [--upstream NAME]
                [--group-by day,caller,upstream] [--json | --csv]
                                        usage counters per UTC day (default: the last 30 days,
                                        by day) from GET /usage; --admin-url and the token
                                        (scope "usage") as for keys
  tollgate --version | --help

Signals (serve): SIGHUP reloads the config and reopens the audit file; SIGTERM/SIGINT drain
in-flight requests and exit 0. POST /reload on the admin listener needs an admin token with the
"reload" scope (Authorization: Bearer <token>).

Exit codes: 0 ok; 1 failed (for keys: the admin API refused, its message on stderr); 2 usage or
config error.
)";

struct Args {
  std::string verb;
  std::string config;
  std::string caller;
  std::string body_file;  // explain --body
  std::optional<std::string> admin;
  std::optional<std::string> scopes;
  bool demo = false;
  std::vector<std::string> positional;
  std::string error;
};

Args Parse(int argc, char** argv) {
  Args a;
  int i = 1;
  if (i < argc && argv[i][0] != '-') a.verb = argv[i++];
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](std::string* out) {
      size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        *out = arg.substr(eq + 1);
      } else if (i + 1 < argc) {
        *out = argv[++i];
      } else {
        a.error = arg + " needs a value";
      }
    };
    if (arg == "--config" || arg.rfind("--config=", 0) == 0) {
      value(&a.config);
    } else if (arg == "--caller" || arg.rfind("--caller=", 0) == 0) {
      value(&a.caller);
    } else if (arg == "--body" || arg.rfind("--body=", 0) == 0) {
      value(&a.body_file);
    } else if (arg == "--admin" || arg.rfind("--admin=", 0) == 0) {
      value(&a.admin.emplace());
    } else if (arg == "--scopes" || arg.rfind("--scopes=", 0) == 0) {
      value(&a.scopes.emplace());
    } else if (arg == "--demo") {
      a.demo = true;
    } else if (arg == "--help" || arg == "-h") {
      a.verb = "help";
    } else if (arg == "--version") {
      a.verb = "version";
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      a.error = "unknown option " + arg;
    } else {
      a.positional.push_back(arg);
    }
  }
  if (a.verb.empty()) a.verb = "serve";
  return a;
}

int Usage(const std::string& error) {
  std::cerr << "tollgate: " << error << "\n\n" << kUsage;
  return 2;
}

int CheckConfig(const Args& a) {
  if (a.config.empty()) return Usage("check-config needs --config FILE");
  config::LoadResult r = config::LoadConfigFile(a.config);
  if (!r.ok()) {
    std::cerr << a.config << ": " << r.errors.size() << " error(s)\n";
    for (const auto& e : r.errors) std::cerr << "  " << config::FormatError(e) << "\n";
    return 2;
  }
  std::string error;
  if (!Snapshot::Build(r.config, &error)) {
    std::cerr << a.config << ": " << error << "\n";
    return 2;
  }
  std::cout << a.config << ": OK\n" << config::DescribeConfig(*r.config);
  // Warnings leave the exit status 0: the config is valid, it just may not mean what it says.
  for (const auto& w : policies::FindNarrowDenies(*r.config)) {
    std::cerr << a.config << ": warning: " << w.message << "\n";
  }
  return 0;
}

// `prefix` and 43 characters of a 62-letter alphabet (256 bits); "" when the system random
// generator fails. Rejection sampling keeps each character uniform (bytes >= 248 = 62 * 4 are
// drawn again).
std::string RandomSecret(const std::string& prefix) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string key = prefix;
  unsigned char pool[128];
  size_t used = sizeof pool;
  while (key.size() < prefix.size() + 43) {
    if (used == sizeof pool) {
      if (RAND_bytes(pool, sizeof pool) != 1) {
        OPENSSL_cleanse(pool, sizeof pool);
        return "";
      }
      used = 0;
    }
    unsigned char b = pool[used++];
    if (b < 248) key.push_back(kAlphabet[b % 62]);
  }
  OPENSSL_cleanse(pool, sizeof pool);
  return key;
}

// Admin tokens start "tga_", caller keys "tg_": one is never mistaken for the other.
int KeygenAdmin(const Args& a) {
  static const std::vector<std::string> kScopes = {"reload", "keys", "usage", "read"};
  const std::string& name = *a.admin;
  if (!config::syntax::IsValidName(name) || name == "SIGHUP") {
    return Usage(
        "keygen --admin NAME: NAME must hold only letters, digits, '.', '_' and '-', "
        "start with a letter or digit, and not be SIGHUP");
  }
  std::vector<std::string> scopes;
  std::string list = a.scopes.value_or("reload,read");
  for (size_t start = 0; start <= list.size();) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string scope = list.substr(start, end - start);
    start = end + 1;
    if (scope.empty()) continue;
    if (std::find(kScopes.begin(), kScopes.end(), scope) == kScopes.end()) {
      return Usage("keygen --scopes: unknown scope '" + scope +
                   "' (scopes: reload, keys, usage, read)");
    }
    if (std::find(scopes.begin(), scopes.end(), scope) == scopes.end()) scopes.push_back(scope);
  }
  if (scopes.empty()) return Usage("keygen --scopes: name at least one scope");
  std::string token = RandomSecret("tga_");
  if (token.empty()) {
    std::cerr << "tollgate: the system random generator failed\n";
    return 1;
  }
  std::string digest = upstream::Sha256Hex(token);
  std::string scope_list;
  for (const auto& s : scopes) scope_list += (scope_list.empty() ? "\"" : ", \"") + s + "\"";
  std::cout << "token:  " << token << "\n"
            << "sha256: " << digest << "\n\n"
            << "Give the token to the admin once (it is not stored anywhere; they send it as "
               "Authorization: Bearer <token> to the admin listener); add this to "
               "\"admin\": {\"tokens\": [...]} in the config:\n"
            << "  {\"name\": \"" << name << "\", \"sha256\": \"" << digest << "\", \"scopes\": ["
            << scope_list << "]}\n";
  return 0;
}

int Keygen(const Args& a) {
  if (a.admin) {
    if (!a.caller.empty()) return Usage("keygen takes --caller or --admin, not both");
    return KeygenAdmin(a);
  }
  if (a.scopes) return Usage("keygen --scopes goes with --admin NAME");
  std::string key = RandomSecret("tg_");
  if (key.empty()) {
    std::cerr << "tollgate: the system random generator failed\n";
    return 1;
  }
  std::string digest = upstream::Sha256Hex(key);
  std::string caller = a.caller.empty() ? "NAME" : a.caller;
  std::cout << "key:        " << key << "\n"
            << "key_sha256: " << digest << "\n\n"
            << "Give the key to the caller once (it is not stored anywhere); put the hash in the "
               "config:\n"
            << "  \"callers\": {\"" << caller << "\": {\"key_sha256\": [\"" << digest
            << "\"], \"roles\": [...]}}\n";
  return 0;
}

int Explain(const Args& a) {
  if (a.config.empty() || a.caller.empty() || a.positional.size() != 2) {
    return Usage("explain needs --config FILE --caller NAME METHOD PATH");
  }
  // explain decides without calling anything: it needs no secret, so none is read.
  config::SecretSource no_secrets{
      [](const std::string&) { return std::optional<std::string>("unused-by-explain"); },
      [](const std::string&) { return std::optional<std::string>("unused-by-explain"); }};
  config::LoadResult r = config::LoadConfigFile(a.config, no_secrets);
  if (!r.ok()) {
    for (const auto& e : r.errors) std::cerr << config::FormatError(e) << "\n";
    return 2;
  }
  std::string error;
  auto snap = Snapshot::Build(r.config, &error);
  if (!snap) {
    std::cerr << error << "\n";
    return 2;
  }
  std::string method = a.positional[0];
  for (auto& c : method) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
  const config::Caller* caller = snap->FindCaller(a.caller);
  if (!caller) {
    std::cerr << "tollgate: no caller named '" << a.caller << "'\n";
    return 2;
  }
  std::cout << "caller:     " << caller->name << "\n";
  std::cout << "request:    " << method << " " << a.positional[1] << "\n";
  policies::NormalisedTarget t = policies::NormaliseTarget(a.positional[1]);
  if (!t.ok) {
    std::cout << "decision:   bad_request (400): " << t.error << "\n";
    return 1;
  }
  std::cout << "normalised: " << t.path << (t.query.empty() ? "" : "?" + t.query) << "\n";
  size_t slash = t.path.find('/', 1);
  std::string name = t.path.substr(1, slash == std::string::npos ? std::string::npos : slash - 1);
  std::string rest = slash == std::string::npos ? "/" : t.path.substr(slash);
  const config::Upstream* up = snap->FindUpstream(name);
  if (!up) {
    std::cout << "decision:   not_found (404): no upstream named '" << name << "'\n";
    return 1;
  }
  std::cout << "upstream:   " << up->name << " (" << up->base_url << ")\n";
  std::cout << "path:       " << rest << "\n";
  if (caller->disabled) std::cout << "note:       the caller is disabled: serve answers 401\n";
  policies::PolicyDecision d = snap->policy().Decide(*caller, method, up->name, rest);
  using O = policies::PolicyDecision::Outcome;
  if (d.outcome == O::kAllow) {
    std::cout << "decision:   allow\n";
  } else if (d.outcome == O::kDeny) {
    std::cout << "decision:   deny (403): a deny rule matched\n";
  } else {
    std::cout << "decision:   deny (403): no rule matched\n";
  }
  if (d.rule) {
    std::cout << "rule:       " << d.rule->pointer << " (role " << d.rule->role
              << "): " << d.rule->path << "\n";
    for (const auto& [k, v] : d.params) std::cout << "param:      " << k << " = " << v << "\n";
    // Issue 12: explain cannot see the ownership records (Redis or the serving process): it says
    // what serve checks. An owner-bound value nobody recorded as the caller's is a 403.
    for (const auto& [param, attribute] : d.rule->where) {
      if (attribute != "owner" || !d.allowed()) continue;
      std::cout << "owner:      " << param << " must be recorded as owned by " << caller->name;
      if (!d.rule->owner_group.empty()) {
        std::cout << " or by a caller with the same " << d.rule->owner_group << " (owner_group)";
      }
      std::cout << " (a record_owner rule's 2xx answer records it); serve answers 403 when it is "
                   "not (explain cannot see the records)\n";
    }
    for (const auto& [k, v] : d.rule->query) {
      if (!d.allowed()) break;
      std::string value = v;
      for (size_t at = value.find("{caller}"); at != std::string::npos;
           at = value.find("{caller}", at + caller->name.size())) {
        value.replace(at, 8, caller->name);
      }
      std::cout << "query:      " << k << "=" << value
                << " forced (replaces what the caller sent)\n";
    }
    if (!d.rule->redact.empty()) {
      std::cout << "redact:    ";
      for (const auto& p : d.rule->redact) std::cout << " " << p;
      std::cout << "\n";
    }
  } else {
    std::cout << "rule:       no rule matched\n";
  }
  if (d.allowed()) {
    uint64_t cost = d.rule ? d.rule->cost : 1;
    if (d.rule && policies::NeedsBody(*d.rule)) {
      if (a.body_file.empty()) {
        std::cout << "body:       the rule has body rules; give a body with --body FILE\n";
      } else {
        std::ifstream in(a.body_file, std::ios::binary);
        if (!in) {
          std::cerr << "tollgate: cannot read " << a.body_file << "\n";
          return 2;
        }
        std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        // The same code serve runs (gateway/pipeline.cpp ApplyBody).
        policies::BodyRulesOutcome out = policies::ApplyBodyRules(*d.rule, body, *caller);
        for (const auto& step : out.steps) std::cout << "body rule:  " << step << "\n";
        if (out.status != 0) {
          std::cout << "decision:   body_rule (" << out.status << "): " << out.message << "\n";
          return 1;
        }
        std::cout << "body:       " << (out.rewritten ? out.body : "forwarded as sent") << "\n";
        if (out.has_cost) {
          cost = out.cost;
          std::cout << "cost:       " << cost << " (from " << d.rule->cost_pointer << ")\n";
        }
      }
    }
    auto buckets = snap->BucketsFor(*up, d.rule, *caller, cost);
    if (buckets.empty()) std::cout << "buckets:    none\n";
    for (const auto& b : buckets) {
      if (b.quota) {
        static const char* const kPeriods[] = {"day", "week", "month"};
        char hour[8];
        snprintf(hour, sizeof hour, "%02d:00", b.quota->reset_hour_utc);
        std::cout << "quota:      " << b.name << " " << b.quota->amount << "/"
                  << kPeriods[static_cast<int>(b.quota->period)] << " reset " << hour << " UTC";
        if (b.quota->warn_at) {
          std::cout << " warn at " << std::lround(*b.quota->warn_at * 100) << "%";
        }
        std::cout << " key=" << b.key << " cost=" << b.cost << (b.shadow ? " (shadow)" : "")
                  << "\n";
        continue;
      }
      std::cout << "bucket:     " << b.name << " key=" << b.key << " cost=" << b.cost
                << " burst=" << b.burst << " rate=" << b.rate.tokens << "/" << b.rate.period_seconds
                << "s" << (b.shadow ? " (shadow)" : "")
                << (b.wait_ms > 0 ? " wait_ms=" + std::to_string(b.wait_ms) +
                                        " max_waiting=" + std::to_string(b.max_waiting)
                                  : "")
                << "\n";
    }
  }
  return d.allowed() ? 0 : 1;
}

std::string SelfDir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  buf[n] = '\0';
  return std::filesystem::path(buf).parent_path().string();
}

std::string RandomToken() {
  unsigned char raw[16];
  RAND_bytes(raw, sizeof raw);
  static const char* hex = "0123456789abcdef";
  std::string out = "demo_";
  for (unsigned char c : raw) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

// --demo: the bundled fake upstream stands in for Devin and Devo, so a newcomer without
// credentials sees real calls go through the gateway.
int ServeDemo(Args a) {
  if (a.config.empty()) {
    for (std::string candidate :
         {std::string("config/demo.json"), SelfDir() + "/../config/demo.json"}) {
      if (std::filesystem::exists(candidate)) {
        a.config = candidate;
        break;
      }
    }
  }
  if (a.config.empty()) return Usage("--demo: config/demo.json not found (run from the checkout)");
  std::string fake = SelfDir() + "/fake_upstream";
  if (access(fake.c_str(), X_OK) != 0) {
    return Usage("--demo: " + fake + " not found (build the tests: it is the fake upstream)");
  }
  std::string devin = RandomToken(), devo = RandomToken();
  setenv("TOLLGATE_DEMO_DEVIN_TOKEN", devin.c_str(), 0);
  setenv("TOLLGATE_DEMO_DEVO_TOKEN", devo.c_str(), 0);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    execl(fake.c_str(), fake.c_str(), "--listen", "127.0.0.1:18081", "--devin-token",
          getenv("TOLLGATE_DEMO_DEVIN_TOKEN"), "--devo-token", getenv("TOLLGATE_DEMO_DEVO_TOKEN"),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  std::cout
      << "demo: fake Devin/Devo upstream on 127.0.0.1:18081 (pid " << child << ")\n"
      << "demo: try these while the gateway runs (the demo key is tg_demo_key_not_secret):\n"
      << "  export TG='Authorization: Bearer tg_demo_key_not_secret'\n"
      << "  curl -s -H \"$TG\" http://127.0.0.1:8080/devin/v3beta1/enterprise/self\n"
      << "  curl -s -H \"$TG\" "
         "'http://127.0.0.1:8080/devin/v3beta1/enterprise/organizations?first=2'\n"
      << "  curl -s -H \"$TG\" -H 'Content-Type: application/json' -d '{\"prompt\":\"hello\"}' "
         "http://127.0.0.1:8080/devin/v3beta1/organizations/org-demo/sessions\n"
      << "  curl -s -H \"$TG\" -H 'Content-Type: application/json' "
         "-d '{\"prompt\":\"big\",\"max_acu_limit\":500}' "
         "http://127.0.0.1:8080/devin/v3/organizations/org-demo/sessions"
         "   # clamped to 50 ACUs, tagged team:demo, run as user-demo; note its session_id\n"
      << "  curl -s -H \"$TG\" "
         "http://127.0.0.1:8080/devin/v3/organizations/org-demo/sessions/SESSION_ID"
         "   # 200: demo created it (SESSION_ID from the create)\n"
      << "  curl -s -H 'Authorization: Bearer tg_demo_other_key_not_secret' "
         "http://127.0.0.1:8080/devin/v3/organizations/org-demo/sessions/SESSION_ID"
         "   # 403: demo-other, same organization, did not create it\n"
      << "  curl -s -H \"$TG\" -H 'Content-Type: application/json' "
         "-d '{\"prompt\":\"x\",\"devin_mode\":\"fast\"}' "
         "http://127.0.0.1:8080/devin/v3/organizations/org-demo/sessions"
         "   # 403: fast mode is not allowed\n"
      << "  curl -s -H \"$TG\" "
         "'http://127.0.0.1:8080/devin/v3/organizations/org-demo/sessions?tags=anything'"
         "   # tags forced to team:demo\n"
      << "  curl -s -H \"$TG\" -F file=@README.md "
         "http://127.0.0.1:8080/devin/v3/organizations/org-demo/attachments\n"
      << "  curl -si -H \"$TG\" "
         "http://127.0.0.1:8080/devin/v3/organizations/org-demo/attachments/ID/README.md"
         "   # ID from the upload: a 307 to the presigned URL, passed on as is\n"
      << "  curl -s -H \"$TG\" http://127.0.0.1:8080/devo/v2/accounts/demoAccount/tokens"
         "      # token values redacted\n"
      << "  curl -s -H \"$TG\" http://127.0.0.1:8080/devin/v3beta1/organizations/org-123/sessions"
         "   # 403: not the caller's org\n"
      << "  curl -s -H \"$TG\" http://127.0.0.1:8080/_tollgate/whoami"
         "   # the monthly ACU quota: used / remaining\n"
      << "  curl -si -H 'Authorization: Bearer wrong' "
         "http://127.0.0.1:8080/devin/v3beta1/enterprise/self\n"
      << "  curl -s http://127.0.0.1:9090/metrics | grep tollgate_requests_total\n"
      << std::flush;
  ServeOptions options;
  options.config_path = a.config;
  int rc = RunServe(options);
  kill(child, SIGTERM);
  waitpid(child, nullptr, 0);
  return rc;
}

// ---------------------------------------------------------------------------------------------
// tollgate keys: the run-time key endpoints of the admin listener (gateway/admin_api.h).

struct KeysArgs {
  std::string command;  // create, list, revoke, rotate
  std::optional<std::string> caller, ttl, note, grace, admin_url;
  bool json = false;
  bool help = false;
  std::vector<std::string> positional;
  std::string error;
};

// argv[1] is "keys". Each command takes only its own options.
KeysArgs ParseKeysArgs(int argc, char** argv) {
  KeysArgs k;
  int i = 2;
  if (i < argc && argv[i][0] != '-') k.command = argv[i++];
  struct Option {
    const char* name;
    std::optional<std::string> KeysArgs::*field;
    const char* commands;  // where it is accepted
  };
  static const Option kOptions[] = {
      {"--caller", &KeysArgs::caller, "create list"},
      {"--ttl", &KeysArgs::ttl, "create rotate"},
      {"--note", &KeysArgs::note, "create"},
      {"--grace", &KeysArgs::grace, "rotate"},
      {"--admin-url", &KeysArgs::admin_url, "create list revoke rotate"},
  };
  for (; i < argc && k.error.empty(); ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      k.help = true;
      continue;
    }
    if (arg == "--json") {
      k.json = true;
      continue;
    }
    if (arg.empty() || arg[0] != '-') {
      k.positional.push_back(arg);
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    const Option* option = nullptr;
    for (const Option& o : kOptions) {
      if (name == o.name) option = &o;
    }
    if (option == nullptr) {
      k.error = "unknown option " + name;
    } else if ((std::string(" ") + option->commands + " ").find(" " + k.command + " ") ==
               std::string::npos) {
      k.error = "keys " + k.command + " does not take " + name;
    } else if (eq != std::string::npos) {
      (k.*(option->field)) = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      (k.*(option->field)) = argv[++i];
    } else {
      k.error = name + " needs a value";
    }
  }
  return k;
}

std::string JsonText(const rapidjson::Value& v) {
  if (v.IsString()) return std::string(v.GetString(), v.GetStringLength());
  return "";
}

std::string Member(const rapidjson::Value& object, const char* name) {
  if (!object.IsObject()) return "";
  auto it = object.FindMember(name);
  return it == object.MemberEnd() ? "" : JsonText(it->value);
}

// A value for a terminal: control characters (escape sequences, line breaks) shown as '?'.
std::string Printable(std::string text) {
  for (char& c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return text;
}

// "2026-12-01T18:00:00.000Z" -> "2026-12-01T18:00:00Z"; null -> "-".
std::string TableTime(const rapidjson::Value& object, const char* name) {
  std::string t = Printable(Member(object, name));
  if (t.empty()) return "-";
  if (t.size() == 24 && t[19] == '.' && t.back() == 'Z') t = t.substr(0, 19) + "Z";
  return t;
}

std::string TableText(const rapidjson::Value& object, const char* name) {
  std::string t = Printable(Member(object, name));
  return t.empty() ? "-" : t;
}

// Characters on screen (UTF-8 continuation bytes take no column).
size_t Columns(const std::string& text) {
  size_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80 ? 1 : 0;
  return n;
}

// The reason and message of an error envelope, or the status alone.
std::string RefusalLine(const AdminReply& reply) {
  rapidjson::Document doc;
  doc.Parse(reply.body.data(), reply.body.size());
  const std::string status = std::to_string(reply.status);
  if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("error")) {
    const rapidjson::Value& e = doc["error"];
    const std::string reason = Printable(Member(e, "reason"));
    const std::string message = Printable(Member(e, "message"));
    if (!reason.empty()) return reason + " (" + status + "): " + message;
  }
  return "the admin API answered " + status;
}

int KeysUsage(const std::string& error) { return Usage("keys: " + error); }

// The id argument of revoke and rotate ("" when it is fine), never echoing a key.
std::string CheckIdArgument(const std::string& id) {
  std::string_view key_id;
  if (keys::ParseRunTimeKey(id, &key_id)) {
    return "that is a whole key, not its id: the id is the 12 characters after \"tg_\" (" +
           std::string(key_id) + "); treat the key as exposed";
  }
  if (!keys::IsValidKeyId(id)) {
    return "not a key id: " + EchoName(id) + " (a key id is 12 characters of a-z and 0-9)";
  }
  return "";
}

// What a created or rotated key's 201 says, then the key alone on the last line.
void PrintNewKey(const rapidjson::Value& doc, bool rotated) {
  const std::string id = Printable(Member(doc, "id"));
  const std::string expires = TableTime(doc, "expires_at");
  const std::string lifetime = expires == "-" ? "never expires" : "expires " + expires;
  if (rotated) {
    const std::string old = Printable(Member(doc, "replaces"));
    const std::string old_end = TableTime(doc, "replaced_expires_at");
    std::cout << "rotated key " << old << ": new key " << id << " for caller "
              << Printable(Member(doc, "caller")) << " (" << lifetime << "); " << old
              << (old_end == "-" ? " keeps working" : " stops working at " + old_end) << "\n";
  } else {
    std::cout << "created key " << id << " for caller " << Printable(Member(doc, "caller")) << " ("
              << lifetime << ")\n";
  }
  std::cout << "the key is shown this once (tollgate keeps only its hash); hand it over now:\n"
            << Member(doc, "key") << "\n";
}

int KeysCommand(int argc, char** argv) {
  KeysArgs k = ParseKeysArgs(argc, argv);
  if (k.help) {
    std::cout << kUsage;
    return 0;
  }
  const std::string& cmd = k.command;
  if (cmd != "create" && cmd != "list" && cmd != "revoke" && cmd != "rotate") {
    return KeysUsage(cmd.empty() ? "name a command: create, list, revoke or rotate"
                                 : "unknown command " + EchoName(cmd) +
                                       " (create, list, revoke or rotate)");
  }
  if (!k.error.empty()) return KeysUsage(k.error);
  const size_t want_positional = cmd == "revoke" || cmd == "rotate" ? 1 : 0;
  if (k.positional.size() != want_positional) {
    return KeysUsage(want_positional ? cmd + " takes one key ID" : cmd + " takes no arguments");
  }

  // The request, checked before anything is sent.
  std::string method = "POST", target = "/keys", body;
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  auto duration = [&](const std::optional<std::string>& text, const char* flag, const char* member,
                      std::string* error) {
    if (!text) return;
    std::optional<int64_t> seconds = ParseDuration(*text);
    if (!seconds) {
      *error = std::string(flag) + ": not a duration (seconds, or 45s, 15m, 12h, 30d)";
      return;
    }
    w.Key(member);
    w.Int64(*seconds);
  };
  std::string error;
  if (cmd == "create") {
    if (!k.caller || k.caller->empty()) return KeysUsage("create needs --caller NAME");
    w.StartObject();
    w.Key("caller");
    w.String(k.caller->c_str(), static_cast<rapidjson::SizeType>(k.caller->size()));
    duration(k.ttl, "--ttl", "ttl_seconds", &error);
    if (k.note) {
      w.Key("note");
      w.String(k.note->c_str(), static_cast<rapidjson::SizeType>(k.note->size()));
    }
    w.EndObject();
    body = buf.GetString();
  } else if (cmd == "list") {
    method = "GET";
    if (k.caller) {
      // Caller names need no escaping in a URL; anything else cannot be one.
      if (!config::syntax::IsValidName(*k.caller)) {
        return KeysUsage("--caller: not a caller name (letters, digits, '.', '_', '-')");
      }
      target += "?caller=" + *k.caller;
    }
  } else {
    const std::string& id = k.positional[0];
    error = CheckIdArgument(id);
    if (!error.empty()) return KeysUsage(error);
    if (cmd == "revoke") {
      method = "DELETE";
      target += "/" + id;
    } else {
      target += "/" + id + "/rotate";
      w.StartObject();
      duration(k.grace, "--grace", "grace_seconds", &error);
      duration(k.ttl, "--ttl", "ttl_seconds", &error);
      w.EndObject();
      body = buf.GetString();
    }
  }
  if (!error.empty()) return KeysUsage(error);

  std::string url = k.admin_url ? *k.admin_url : "";
  if (!k.admin_url) {
    if (const char* env = getenv("TOLLGATE_ADMIN_URL")) url = env;
  }
  if (url.empty()) return KeysUsage(cmd + " needs --admin-url URL (or TOLLGATE_ADMIN_URL)");
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    return KeysUsage("--admin-url must start with http:// or https://, e.g. http://127.0.0.1:9090");
  }
  while (!url.empty() && url.back() == '/') url.pop_back();
  const char* token = getenv("TOLLGATE_ADMIN_TOKEN");
  if (token == nullptr || *token == '\0') {
    return KeysUsage(
        "set TOLLGATE_ADMIN_TOKEN to an admin token with the \"keys\" scope (never a flag: "
        "command lines are visible to every user in ps)");
  }
  for (const char* c = token; *c != '\0'; ++c) {
    if (static_cast<unsigned char>(*c) <= 0x20 || *c == 0x7f) {
      return KeysUsage("TOLLGATE_ADMIN_TOKEN holds spaces or control characters");
    }
  }

  AdminReply reply = AdminRequest(url, token, method, target, body);
  if (reply.status == 0) {
    std::cerr << "tollgate: no answer from the admin API (--admin-url): " << reply.error << "\n";
    return 1;
  }
  if (k.json && !reply.body.empty()) {
    std::cout << reply.body << (reply.body.back() == '\n' ? "" : "\n");
  }
  if (reply.status < 200 || reply.status > 299) {
    std::cerr << "tollgate: " << RefusalLine(reply) << "\n";
    return 1;
  }
  if (k.json) return 0;
  if (cmd == "revoke") {
    std::cout << "revoked key " << k.positional[0] << "\n";
    return 0;
  }
  if (cmd == "list") {
    std::string table = FormatKeyTable(reply.body, &error);
    if (!error.empty()) {
      std::cerr << "tollgate: unexpected answer from the admin API: " << error << "\n";
      return 1;
    }
    std::cout << table;
    return 0;
  }
  rapidjson::Document doc;
  doc.Parse(reply.body.data(), reply.body.size());
  if (doc.HasParseError() || !doc.IsObject() || Member(doc, "key").empty()) {
    // Whatever it is, it may hold the only copy of a new key: show it as it came.
    std::cerr << "tollgate: unexpected answer from the admin API; as received:\n";
    std::cout << reply.body << "\n";
    return 1;
  }
  PrintNewKey(doc, cmd == "rotate");
  return 0;
}

// tollgate usage: GET /usage on the admin listener, as a table, its JSON or its CSV.
int UsageCommand(int argc, char** argv) {
  auto usage_error = [](const std::string& e) { return Usage("usage: " + e); };
  std::map<std::string, std::string> params;  // query parameter -> value
  std::string url, format = "table";
  if (const char* env = getenv("TOLLGATE_ADMIN_URL")) url = env;
  static const std::map<std::string, std::string> kOptions = {
      {"--from", "from"},         {"--to", "to"},
      {"--caller", "caller"},     {"--upstream", "upstream"},
      {"--group-by", "group_by"}, {"--admin-url", ""}};
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--json" || arg == "--csv") {
      if (format != "table") return usage_error("give one of --json and --csv");
      format = arg.substr(2);
      continue;
    }
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    auto option = kOptions.find(name);
    if (option == kOptions.end()) return usage_error("unknown argument " + EchoName(name));
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return usage_error(name + " needs a value");
    }
    if (option->second.empty()) {
      url = value;
      continue;
    }
    const bool day = name == "--from" || name == "--to";
    if (day && !usage::ParseDay(value)) return usage_error(name + ": not a date (YYYY-MM-DD)");
    const bool named = name == "--caller" || name == "--upstream";
    // Names need no escaping in a URL ("-" is the unauthenticated requests' caller).
    if (named && value != "-" && !config::syntax::IsValidName(value)) {
      return usage_error(name + ": not a name (letters, digits, '.', '_', '-')");
    }
    if (name == "--group-by") {
      for (char c : value) {
        if (!(c >= 'a' && c <= 'z') && c != ',') {
          return usage_error("--group-by: a comma list of day, caller and upstream");
        }
      }
    }
    params[option->second] = value;
  }
  if (format == "csv") params["format"] = "csv";
  std::string target = "/usage";
  for (const auto& [k, v] : params) target += (target == "/usage" ? "?" : "&") + k + "=" + v;

  if (url.empty()) return usage_error("needs --admin-url URL (or TOLLGATE_ADMIN_URL)");
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    return usage_error("--admin-url must start with http:// or https://");
  }
  while (!url.empty() && url.back() == '/') url.pop_back();
  const char* token = getenv("TOLLGATE_ADMIN_TOKEN");
  if (token == nullptr || *token == '\0') {
    return usage_error(
        "set TOLLGATE_ADMIN_TOKEN to an admin token with the \"usage\" scope (never a flag: "
        "command lines are visible to every user in ps)");
  }
  for (const char* c = token; *c != '\0'; ++c) {
    if (static_cast<unsigned char>(*c) <= 0x20 || *c == 0x7f) {
      return usage_error("TOLLGATE_ADMIN_TOKEN holds spaces or control characters");
    }
  }
  AdminReply reply = AdminRequest(url, token, "GET", target, "");
  if (reply.status == 0) {
    std::cerr << "tollgate: no answer from the admin API (--admin-url): " << reply.error << "\n";
    return 1;
  }
  if (reply.status < 200 || reply.status > 299) {
    std::cerr << "tollgate: " << RefusalLine(reply) << "\n";
    return 1;
  }
  if (format != "table") {
    std::cout << reply.body;
    if (!reply.body.empty() && reply.body.back() != '\n') std::cout << "\n";
    return 0;
  }
  std::string error;
  std::string table = usage::FormatUsageTable(reply.body, &error);
  if (!error.empty()) {
    std::cerr << "tollgate: unexpected answer from the admin API: " << error << "\n";
    return 1;
  }
  std::cout << table;
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "keys") return KeysCommand(argc, argv);
  if (argc >= 2 && std::string_view(argv[1]) == "usage") return UsageCommand(argc, argv);
  Args a = Parse(argc, argv);
  if (!a.error.empty()) return Usage(a.error);
  if (a.verb == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (a.verb == "version") {
    std::cout << "tollgate " << TOLLGATE_VERSION << "\n";
    return 0;
  }
  if (a.verb == "serve") {
    if (a.demo) return ServeDemo(a);
    if (a.config.empty()) return Usage("serve needs --config FILE (or --demo)");
    ServeOptions options;
    options.config_path = a.config;
    return RunServe(options);
  }
  if (a.verb == "check-config") return CheckConfig(a);
  if (a.verb == "keygen") return Keygen(a);
  if (a.verb == "explain") return Explain(a);
  return Usage("unknown command '" + a.verb + "'");
}

}  // namespace tollgate::gateway

namespace tollgate::gateway {

std::optional<int64_t> ParseDuration(std::string_view text) {
  constexpr int64_t kMaxSeconds = int64_t{100} * 365 * 86400;
  if (text.empty()) return std::nullopt;
  int64_t unit = 1;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    default:
      unit = 0;  // no unit: seconds
  }
  if (unit != 0) {
    text.remove_suffix(1);
  } else {
    unit = 1;
  }
  if (text.empty() || text.size() > 12) return std::nullopt;
  int64_t count = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    count = count * 10 + (c - '0');
  }
  if (count > kMaxSeconds / unit) return std::nullopt;
  return count * unit;
}

std::string FormatKeyTable(std::string_view json, std::string* error) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("items") ||
      !doc["items"].IsArray()) {
    *error = "not a key listing ({\"items\": [...]})";
    return "";
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "CALLER", "STATE", "CREATED", "EXPIRES", "LAST USED", "NOTE"}};
  for (const auto& item : doc["items"].GetArray()) {
    rows.push_back({TableText(item, "id"), TableText(item, "caller"), TableText(item, "state"),
                    TableTime(item, "created_at"), TableTime(item, "expires_at"),
                    TableTime(item, "last_used_at"), TableText(item, "note")});
  }
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], Columns(row[i]));
  }
  std::string out;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) out.append(widths[i] - Columns(row[i]) + 2, ' ');
    }
    out += "\n";
  }
  return out;
}

}  // namespace tollgate::gateway
