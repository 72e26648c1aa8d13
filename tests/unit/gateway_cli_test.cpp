// The `tollgate` command line, run as a real process.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "tests/support/process.h"
#include "upstream/upstream_auth.h"

namespace tollgate::testing {
namespace {

const std::map<std::string, std::string> kExampleEnv = {
    {"DEVIN_SERVICE_USER_TOKEN", "cli-test-devin-secret"},
    {"DEVO_TOKEN", "cli-test-devo-secret"},
    {"DEVO_API_KEY", "cli-test-devo-key"},
    {"DEVO_API_SECRET", "cli-test-devo-hmac-secret"}};

std::string Example() { return std::string(TOLLGATE_SOURCE_DIR) + "/config/tollgate.example.json"; }

TEST(Cli, VersionAndHelp) {
  std::string out;
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "--version"}, &out), 0);
  EXPECT_EQ(out.rfind("tollgate ", 0), 0u) << out;
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "--help"}, &out), 0);
  for (const char* verb : {"serve", "check-config", "keygen", "explain", "keys create", "keys list",
                           "keys revoke", "keys rotate", "TOLLGATE_ADMIN_TOKEN"}) {
    EXPECT_NE(out.find(verb), std::string::npos) << verb;
  }
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "frobnicate"}, &out), 2);
  EXPECT_NE(out.find("unknown command"), std::string::npos);
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "check-config", "--bogus"}, &out), 2);
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "serve"}, &out), 2);  // needs --config
}

TEST(Cli, CheckConfigAcceptsTheExampleAndPrintsASummaryWithoutSecrets) {
  std::string out;
  ASSERT_EQ(RunCommand({TOLLGATE_BINARY, "check-config", "--config", Example()}, &out, kExampleEnv),
            0)
      << out;
  for (const char* want : {"devin", "devo", "devin-operator", "data-team", "devin-all"}) {
    EXPECT_NE(out.find(want), std::string::npos) << want << " missing from:\n" << out;
  }
  for (const auto& [name, secret] : kExampleEnv) {
    EXPECT_EQ(out.find(secret), std::string::npos) << name << " leaked";
  }
  EXPECT_EQ(out.find("warning"), std::string::npos) << out;
}

TEST(Cli, CheckConfigNamesTheVariableOfAMissingSecret) {
  std::string out;
  auto env = kExampleEnv;
  env["DEVO_TOKEN"] = "";  // empty counts as missing
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "check-config", "--config", Example()}, &out, env), 2);
  EXPECT_NE(out.find("DEVO_TOKEN"), std::string::npos) << out;
}

struct BadConfig {
  const char* name;
  const char* json;
  const char* pointer;
};

class CliBadConfig : public ::testing::TestWithParam<BadConfig> {};

constexpr const char* kHash = "0000000000000000000000000000000000000000000000000000000000000001";

TEST_P(CliBadConfig, ExitsTwoNamingThePointer) {
  TempDir dir;
  std::string json = GetParam().json;
  std::string path = dir.Write("bad.json", json);
  std::string out;
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "check-config", "--config", path}, &out,
                       {{"T", "secret-value-xyz"}}),
            2)
      << out;
  EXPECT_NE(out.find(GetParam().pointer), std::string::npos)
      << "expected pointer " << GetParam().pointer << " in:\n"
      << out;
  EXPECT_EQ(out.find("secret-value-xyz"), std::string::npos);
  // serve refuses the same config with the same exit code.
  EXPECT_EQ(
      RunCommand({TOLLGATE_BINARY, "serve", "--config", path}, &out, {{"T", "test-secret-value"}}),
      2);
}

#define UP \
  R"("upstreams": {"devin": {"base_url": "http://127.0.0.1:1", "auth": {"type": "bearer", "secret_env": "T"}}})"

INSTANTIATE_TEST_SUITE_P(
    All, CliBadConfig,
    ::testing::Values(
        BadConfig{"not_json", "{\"listen\": ", ""},
        BadConfig{"type", "{\"threads\": \"two\", " UP "}", "/threads"},
        BadConfig{"unknown_key", "{\"listn\": \"127.0.0.1:1\", " UP "}", "listn"},
        BadConfig{
            "unknown_upstream",
            "{" UP
            ", \"roles\": {\"r\": {\"rules\": [{\"upstream\": \"nope\", \"path\": \"/x\"}]}}}",
            "/roles/r/rules/0/upstream"},
        BadConfig{"undefined_role",
                  "{" UP ", \"callers\": {\"c\": {\"key_sha256\": [\""
                  "0000000000000000000000000000000000000000000000000000000000000001\"], "
                  "\"roles\": [\"ghost\"]}}}",
                  "/callers/c/roles/0"},
        BadConfig{"bad_rate",
                  "{\"upstreams\": {\"devin\": {\"base_url\": \"http://127.0.0.1:1\", \"auth\": "
                  "{\"type\": \"bearer\", \"secret_env\": \"T\"}, \"limits\": [{\"name\": \"l\", "
                  "\"rate\": \"10/week\", \"scope\": \"shared\"}]}}}",
                  "/upstreams/devin/limits/0/rate"},
        BadConfig{"short_hash",
                  "{" UP ", \"callers\": {\"c\": {\"key_sha256\": [\"abc\"], \"roles\": []}}}",
                  "/callers/c/key_sha256/0"},
        BadConfig{"where_not_caller",
                  "{" UP ", \"roles\": {\"r\": {\"rules\": [{\"upstream\": \"devin\", \"path\": "
                  "\"/o/{org}\", \"where\": {\"org\": \"devin_orgs\"}}]}}}",
                  "/roles/r/rules/0/where/org"},
        BadConfig{"rest_not_last",
                  "{" UP ", \"roles\": {\"r\": {\"rules\": [{\"upstream\": \"devin\", \"path\": "
                  "\"/a/**/b\"}]}}}",
                  "/roles/r/rules/0/path"},
        BadConfig{"missing_secret",
                  "{\"upstreams\": {\"devin\": {\"base_url\": \"http://127.0.0.1:1\", \"auth\": "
                  "{\"type\": \"bearer\", \"secret_env\": \"NOT_SET_ANYWHERE\"}}}}",
                  "NOT_SET_ANYWHERE"}),
    [](const ::testing::TestParamInfo<BadConfig>& info) { return std::string(info.param.name); });

// The listener's TLS was dropped in 0.2.0 (see ConfigErrors.ListenerTlsIsRefused...): serve
// refuses such a config at start, exit 2, naming /tls and where to terminate TLS instead, rather
// than serving plain HTTP where the operator asked for HTTPS. check-config says the same.
TEST(Cli, ServeRefusesListenerTlsNamingThePointer) {
  TempDir dir;
  std::string path = dir.Write(
      "tls.json", "{\"listen\": \"127.0.0.1:" + std::to_string(FreePort()) +
                      "\", \"tls\": {\"cert_file\": \"/etc/tollgate/cert.pem\", \"key_file\": "
                      "\"/etc/tollgate/key.pem\"}, " UP "}");
  std::string out;
  // A serve that wrongly started would listen until the 10 s timeout kills it (not exit 2).
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "serve", "--config", path}, &out,
                       {{"T", "test-secret-value"}}, std::chrono::milliseconds(10000)),
            2)
      << out;
  EXPECT_NE(out.find("/tls: TLS on the listener is not supported"), std::string::npos) << out;
  EXPECT_NE(out.find("terminate TLS in front of tollgate"), std::string::npos) << out;
  EXPECT_EQ(out.find("listening"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "check-config", "--config", path}, &out,
                       {{"T", "test-secret-value"}}),
            2);
  EXPECT_NE(out.find("/tls: TLS on the listener is not supported"), std::string::npos) << out;
}

TEST(Cli, CheckConfigRejectsTheSameKeyOnTwoCallers) {
  TempDir dir;
  std::string h = std::string(kHash);
  std::string path =
      dir.Write("dup.json", "{" UP ", \"callers\": {\"a\": {\"key_sha256\": [\"" + h +
                                "\"], \"roles\": []}, \"b\": {\"key_sha256\": [\"" + h +
                                "\"], \"roles\": []}}}");
  std::string out;
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "check-config", "--config", path}, &out,
                       {{"T", "test-secret-value"}}),
            2);
  EXPECT_NE(out.find("/callers/b/key_sha256/0"), std::string::npos) << out;
}

// Issue 10 point 9: the shipped example's operator role denied DELETE only inside the caller's
// own organizations, so a caller also holding an all-organizations role could DELETE elsewhere.
// check-config names such a deny rule and the allow rule that gets round it; a warning, exit 0.
TEST(Cli, Point9_CheckConfigWarnsOfADenyNarrowerThanAnAllow) {
  TempDir dir;
  std::string path =
      dir.Write("narrow.json",
                "{" UP
                ", \"roles\": {"
                "\"operator\": {\"rules\": [{\"upstream\": \"devin\", \"methods\": [\"DELETE\"], "
                "\"path\": \"/v3beta1/organizations/{org_id}/**\", \"effect\": \"deny\", "
                "\"where\": {\"org_id\": \"caller.devin_orgs\"}}]}, "
                "\"admin\": {\"rules\": [{\"upstream\": \"devin\", \"path\": \"/v3beta1/**\"}]}}}");
  std::string out;
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "check-config", "--config", path}, &out,
                       {{"T", "test-secret-value"}}),
            0)
      << out;
  EXPECT_NE(out.find(": OK"), std::string::npos) << out;
  EXPECT_NE(out.find("warning: /roles/operator/rules/0: deny rule is narrower than allow rule "
                     "/roles/admin/rules/0"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("{org_id} is in caller.devin_orgs"), std::string::npos) << out;
}

TEST(Cli, KeygenPrintsAKeyAndItsSha256) {
  std::string out;
  ASSERT_EQ(RunCommand({TOLLGATE_BINARY, "keygen", "--caller", "data-team"}, &out), 0);
  std::smatch key, hash;
  ASSERT_TRUE(std::regex_search(out, key, std::regex("key: +(tg_[A-Za-z0-9]{43})\n"))) << out;
  ASSERT_TRUE(std::regex_search(out, hash, std::regex("key_sha256: +([0-9a-f]{64})\n"))) << out;
  EXPECT_EQ(hash[1].str(), upstream::Sha256Hex(key[1].str()));
  EXPECT_NE(out.find("\"data-team\""), std::string::npos);
  std::string again;
  ASSERT_EQ(RunCommand({TOLLGATE_BINARY, "keygen"}, &again), 0);
  EXPECT_EQ(again.find(key[1].str()), std::string::npos);  // a new key every time
}

// Issue 10 point 7: an admin token, prefixed apart from caller keys, and its config line.
TEST(Cli, KeygenAdminPrintsATokenAndItsConfigLine) {
  std::string out;
  ASSERT_EQ(RunCommand({TOLLGATE_BINARY, "keygen", "--admin", "ops"}, &out), 0) << out;
  std::smatch token, hash;
  ASSERT_TRUE(std::regex_search(out, token, std::regex("token: +(tga_[A-Za-z0-9]{43})\n"))) << out;
  ASSERT_TRUE(std::regex_search(out, hash, std::regex("sha256: +([0-9a-f]{64})\n"))) << out;
  EXPECT_EQ(hash[1].str(), upstream::Sha256Hex(token[1].str()));
  // The default scopes: reload and read.
  EXPECT_NE(out.find("{\"name\": \"ops\", \"sha256\": \"" + hash[1].str() +
                     "\", \"scopes\": [\"reload\", \"read\"]}"),
            std::string::npos)
      << out;
  std::string again;
  ASSERT_EQ(RunCommand({TOLLGATE_BINARY, "keygen", "--admin", "ops"}, &again), 0);
  EXPECT_EQ(again.find(token[1].str()), std::string::npos);  // a new token every time
}

TEST(Cli, KeygenAdminTakesScopesAndRefusesUnknownOnes) {
  std::string out;
  ASSERT_EQ(
      RunCommand({TOLLGATE_BINARY, "keygen", "--admin=billing", "--scopes", "usage,keys,usage"},
                 &out),
      0)
      << out;
  EXPECT_NE(out.find("\"scopes\": [\"usage\", \"keys\"]}"), std::string::npos) << out;
  EXPECT_EQ(
      RunCommand({TOLLGATE_BINARY, "keygen", "--admin", "ops", "--scopes", "reload,root"}, &out),
      2);
  EXPECT_NE(out.find("unknown scope 'root'"), std::string::npos) << out;
  EXPECT_EQ(out.find("tga_"), std::string::npos) << out;
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "keygen", "--admin", "ops", "--scopes", ","}, &out), 2);
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "keygen", "--admin", "bad name"}, &out), 2);
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "keygen", "--admin", "SIGHUP"}, &out), 2);
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "keygen", "--scopes", "reload"}, &out), 2);
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "keygen", "--admin", "a", "--caller", "b"}, &out), 2);
}

// The printed line, pasted into a config, is accepted and check-config names the token.
TEST(Cli, KeygenAdminLineIsAValidConfigEntry) {
  std::string out;
  ASSERT_EQ(RunCommand({TOLLGATE_BINARY, "keygen", "--admin", "ops"}, &out), 0);
  std::smatch line;
  ASSERT_TRUE(std::regex_search(out, line, std::regex("\n  (\\{\"name\".*\\})\n"))) << out;
  TempDir dir;
  std::string path = dir.Write("c.json", R"({"upstreams": {"u": {"base_url": "http://a",
      "auth": {"type": "bearer", "secret_env": "T"}}}, "admin": {"tokens": [)" +
                                             line[1].str() + "]}}");
  std::string summary;
  EXPECT_EQ(RunCommand({TOLLGATE_BINARY, "check-config", "--config", path}, &summary,
                       {{"T", "test-secret-value"}}),
            0)
      << summary;
  EXPECT_NE(summary.find("ops: scopes [reload, read]"), std::string::npos) << summary;
}

TEST(Cli, ExplainShowsTheDecisionRuleParametersAndBuckets) {
  std::string out;
  int rc = RunCommand({TOLLGATE_BINARY, "explain", "--config", Example(), "--caller", "data-team",
                       "POST", "/devin/v3beta1/organizations/org-123/sessions"},
                      &out, kExampleEnv);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("decision:   allow"), std::string::npos) << out;
  EXPECT_NE(out.find("/v3beta1/organizations/{org_id}/sessions"), std::string::npos) << out;
  EXPECT_NE(out.find("org_id = org-123"), std::string::npos) << out;
  EXPECT_NE(out.find("bucket:     sessions key=bucket:sessions:data-team"), std::string::npos)
      << out;
  EXPECT_NE(out.find("bucket:     devin-all key=bucket:devin-all:_shared"), std::string::npos)
      << out;

  rc = RunCommand({TOLLGATE_BINARY, "explain", "--config", Example(), "--caller", "data-team",
                   "POST", "/devin/v3beta1/organizations/org-999/sessions"},
                  &out, kExampleEnv);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("no rule matched"), std::string::npos) << out;

  rc = RunCommand({TOLLGATE_BINARY, "explain", "--config", Example(), "--caller", "data-team",
                   "GET", "/devin/v3beta1/%2e%2e/x"},
                  &out, kExampleEnv);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("bad_request"), std::string::npos) << out;
}

// Issue 12 in explain: an owner check is named (explain cannot see the records), a quota is
// printed as a quota, a forced query parameter with the caller filled in.
TEST(Cli, ExplainNamesOwnerChecksQuotasAndForcedQueryParameters) {
  std::string out;
  int rc = RunCommand({TOLLGATE_BINARY, "explain", "--config", Example(), "--caller", "data-team",
                       "GET", "/devin/v3/organizations/org-123/sessions/devin-1"},
                      &out, kExampleEnv);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("owner:      devin_id must be recorded as owned by data-team"),
            std::string::npos)
      << out;

  rc = RunCommand({TOLLGATE_BINARY, "explain", "--config", Example(), "--caller", "data-team",
                   "GET", "/devin/v3/organizations/org-123/sessions?tags=x"},
                  &out, kExampleEnv);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("query:      tags=team:data-team forced"), std::string::npos) << out;
  EXPECT_EQ(out.find("owner:"), std::string::npos) << out;

  const std::string body = ::testing::TempDir() + "/explain_body.json";
  {
    std::ofstream f(body);
    f << R"({"prompt": "x", "max_acu_limit": 500})";
  }
  rc = RunCommand({TOLLGATE_BINARY, "explain", "--config", Example(), "--caller", "data-team",
                   "--body", body, "POST", "/devin/v3/organizations/org-123/sessions"},
                  &out, kExampleEnv);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("quota:      acu-month 2000/month reset 08:00 UTC warn at 80% "
                     "key=quota:acu-month:data-team cost=50"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("rate=0"), std::string::npos) << out;
  // The session bucket counts the request once (a pointer cost is charged to quotas only).
  EXPECT_NE(out.find("bucket:     sessions key=bucket:sessions:data-team cost=1 "),
            std::string::npos)
      << out;
}

// check-config lists issue 12's parts of each rule: body rules, the cost pointer, record_owner,
// owner checks, forced query parameters, quotas.
TEST(Cli, CheckConfigListsBodyRulesCostOwnershipAndQuotas) {
  std::string out;
  ASSERT_EQ(RunCommand({TOLLGATE_BINARY, "check-config", "--config", Example()}, &out, kExampleEnv),
            0)
      << out;
  for (const char* want :
       {"    rule 3: POST /v3/organizations/{org_id}/sessions\n"
        "      body /max_acu_limit default 10 max 50 (clamp)\n"
        "      body /devin_mode one of [\"normal\"]\n"
        "      body /advanced_mode forbidden\n",
        "      body /tags append [team:{caller}]\n",
        "      body /create_as_user_id set caller.devin_user_id\n",
        "      cost from the body at /max_acu_limit (quotas only; buckets take 1)\n"
        "      record_owner /session_id",
        "      owner check {devin_id}: recorded as the caller's\n",
        "      query tags=team:{caller} forced\n",
        "limit acu-month quota 2000/month from 8:00 UTC per caller warn at 80%"}) {
    EXPECT_NE(out.find(want), std::string::npos) << want << " missing from:\n" << out;
  }
}

}  // namespace
}  // namespace tollgate::testing
