// Micro-benchmarks of the policy stages that run on every request: target normalisation,
// the authorisation decision, response redaction, and the rate-limit response fields.
#include <benchmark/benchmark.h>

#include <string>

#include "config/model.h"
#include "gateway/rate_limit_headers.h"
#include "policies/normalise.h"
#include "policies/policy.h"
#include "policies/redact.h"

namespace tollgate::policies {
namespace {

void BM_NormaliseTarget(benchmark::State& state) {
  const std::string target =
      "/devin/v3beta1/organizations/org-8f3a2c1d/sessions/"
      "devin-5e1f0c9b2a7d4e6f?limit=50&after=abc";
  for (auto _ : state) {
    NormalisedTarget result = NormaliseTarget(target);
    benchmark::DoNotOptimize(result);
  }
}
BENCHMARK(BM_NormaliseTarget);

void BM_NormaliseTargetWithEscapes(benchmark::State& state) {
  const std::string target = "/devo/v2/accounts/caf%c3%a9%2Dteam/tokens/%7euser?q=a%20b";
  for (auto _ : state) {
    NormalisedTarget result = NormaliseTarget(target);
    benchmark::DoNotOptimize(result);
  }
}
BENCHMARK(BM_NormaliseTargetWithEscapes);

// 10 roles x 5 rules over two upstreams, with params, `where`, `**` and a deny rule.
config::Config MakeConfig() {
  config::Config config;
  for (int r = 0; r < 10; ++r) {
    std::string role_name = "role-" + std::to_string(r);
    config::Role& role = config.roles[role_name];
    role.name = role_name;
    for (int i = 0; i < 5; ++i) {
      config::Rule rule;
      rule.role = role_name;
      rule.index = i;
      rule.upstream = (r % 2 == 0) ? "devin" : "devo";
      switch (i) {
        case 0:
          rule.methods = {"GET"};
          rule.path = "/v3beta1/enterprise/r" + std::to_string(r);
          break;
        case 1:
          rule.methods = {"GET", "POST"};
          rule.path = "/v3beta1/organizations/{org_id}/sessions";
          rule.where = {{"org_id", "devin_orgs"}};
          break;
        case 2:
          rule.methods = {"GET"};
          rule.path = "/v3beta1/organizations/{org_id}/sessions/{session_id}";
          rule.where = {{"org_id", "devin_orgs"}};
          break;
        case 3:
          rule.methods = {"GET"};
          rule.path = "/v2/accounts/{account}/tokens/**";
          rule.where = {{"account", "devo_accounts"}};
          break;
        default:
          rule.methods = {"DELETE"};
          rule.path = "/v3beta1/organizations/{org_id}/**";
          rule.effect = config::Effect::kDeny;
          break;
      }
      role.rules.push_back(rule);
    }
  }
  return config;
}

void BM_PolicyDecide(benchmark::State& state) {
  static const config::Config config = MakeConfig();
  std::string error;
  auto policy = Policy::Compile(config, &error);
  if (!policy) {
    state.SkipWithError(error.c_str());
    return;
  }
  config::Caller caller;
  caller.name = "data-team";
  for (int r = 0; r < 10; ++r) caller.roles.push_back("role-" + std::to_string(r));
  caller.attributes["devin_orgs"] = {"org-1", "org-2", "org-8f3a2c1d"};
  caller.attributes["devo_accounts"] = {"acme"};
  const std::string path = "/v3beta1/organizations/org-8f3a2c1d/sessions/devin-5e1f0c9b";
  for (auto _ : state) {
    PolicyDecision decision = policy->Decide(caller, "GET", "devin", path);
    benchmark::DoNotOptimize(decision);
  }
}
BENCHMARK(BM_PolicyDecide);

void BM_PolicyDecideNoMatch(benchmark::State& state) {
  static const config::Config config = MakeConfig();
  std::string error;
  auto policy = Policy::Compile(config, &error);
  config::Caller caller;
  for (int r = 0; r < 10; ++r) caller.roles.push_back("role-" + std::to_string(r));
  for (auto _ : state) {
    PolicyDecision decision = policy->Decide(caller, "GET", "devin", "/v3beta1/other/thing");
    benchmark::DoNotOptimize(decision);
  }
}
BENCHMARK(BM_PolicyDecideNoMatch);

// About 2 KB: a list of token records, each with a secret to remove.
std::string MakeBody() {
  std::string body = "{\"total\":16,\"tokens\":[";
  for (int i = 0; i < 16; ++i) {
    if (i > 0) body += ",";
    body += "{\"id\":" + std::to_string(1000 + i) + ",\"name\":\"token-" + std::to_string(i) +
            "\",\"token\":\"c2VjcmV0LXZhbHVl\",\"created\":\"2026-01-01T00:00:00Z\"}";
  }
  body += "]}";
  return body;
}

void BM_RedactorApply(benchmark::State& state) {
  std::string error;
  auto redactor = Redactor::Compile({"/tokens/*/token", "/secret"}, &error);
  const std::string body = MakeBody();
  for (auto _ : state) {
    std::string copy = body;
    Redactor::Outcome outcome = redactor->Apply(&copy);
    benchmark::DoNotOptimize(outcome);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_RedactorApply);

void BM_RedactorApplyUnchanged(benchmark::State& state) {
  std::string error;
  auto redactor = Redactor::Compile({"/secret"}, &error);
  const std::string body = MakeBody();
  for (auto _ : state) {
    std::string copy = body;
    Redactor::Outcome outcome = redactor->Apply(&copy);
    benchmark::DoNotOptimize(outcome);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_RedactorApplyUnchanged);

// Two enforcing buckets and a shadow one; the fields are added to a typical filtered upstream
// answer (the copy of that list is part of the time: BM_CopyUpstreamHeaders measures it alone).
std::vector<BucketSpec> RateLimitSpecs() {
  std::vector<BucketSpec> specs(3);
  specs[0].name = "devin-all";
  specs[0].rate = {20, 1};
  specs[0].burst = 40;
  specs[1].name = "sessions";
  specs[1].rate = {50, 86400};
  specs[1].burst = 50;
  specs[2].name = "shadow";
  specs[2].rate = {1, 1};
  specs[2].burst = 1;
  specs[2].shadow = true;
  return specs;
}

std::vector<BucketLevel> RateLimitLevels() {
  std::vector<BucketLevel> levels(3);
  levels[0].remaining = 37.25;
  levels[0].reset_seconds = 0.14;
  levels[1].remaining = 12;
  levels[1].reset_seconds = 66355.2;
  levels[2].remaining = 0;
  levels[2].reset_seconds = 1;
  return levels;
}

gateway::HeaderList UpstreamHeaders() {
  return {{"Content-Type", "application/json"},
          {"Date", "Fri, 09 Jan 2026 10:00:00 GMT"},
          {"Cache-Control", "no-store"},
          {"Vary", "Accept-Encoding"},
          {"x-devo-cid", "c0ffee00-1234-5678-9abc-def012345678"},
          {"Content-Encoding", "gzip"},
          {"X-Request-Id", "6f1c2a9e3b7d4e0a9c412d8f5b6a7e90"}};
}

void BM_CopyUpstreamHeaders(benchmark::State& state) {
  const gateway::HeaderList upstream = UpstreamHeaders();
  for (auto _ : state) {
    gateway::HeaderList headers = upstream;
    benchmark::DoNotOptimize(headers);
  }
}
BENCHMARK(BM_CopyUpstreamHeaders);

void BM_AddRateLimitHeaders(benchmark::State& state) {
  const std::vector<BucketSpec> specs = RateLimitSpecs();
  const std::vector<BucketLevel> levels = RateLimitLevels();
  const gateway::HeaderList upstream = UpstreamHeaders();
  for (auto _ : state) {
    gateway::HeaderList headers = upstream;
    gateway::AddRateLimitHeaders(specs, levels, &headers);
    benchmark::DoNotOptimize(headers);
  }
}
BENCHMARK(BM_AddRateLimitHeaders);

// A local reply (429, 401...): the fields go into a short list of our own.
void BM_AddRateLimitHeadersToLocalReply(benchmark::State& state) {
  const std::vector<BucketSpec> specs = RateLimitSpecs();
  const std::vector<BucketLevel> levels = RateLimitLevels();
  for (auto _ : state) {
    gateway::HeaderList headers;
    headers.emplace_back("Content-Type", "application/json");
    gateway::AddRateLimitHeaders(specs, levels, &headers);
    benchmark::DoNotOptimize(headers);
  }
}
BENCHMARK(BM_AddRateLimitHeadersToLocalReply);

}  // namespace
}  // namespace tollgate::policies

BENCHMARK_MAIN();
