// `tollgate keys ...`: the duration parser and the table (pure), then the real binary against an
// admin API of the test's own (TestServer), which records exactly what the CLI sent.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <string>
#include <vector>

#include "gateway/cli.h"
#include "tests/support/process.h"
#include "tests/unit/upstream_test_server.h"

namespace tollgate::testing {
namespace {

using gateway::FormatKeyTable;
using gateway::ParseDuration;
using upstream::testing::HttpResponse;
using upstream::testing::ReceivedRequest;
using upstream::testing::Reply;
using upstream::testing::TestServer;

TEST(KeysCliDuration, SecondsOrOneUnit) {
  EXPECT_EQ(ParseDuration("90"), 90);
  EXPECT_EQ(ParseDuration("0"), 0);
  EXPECT_EQ(ParseDuration("45s"), 45);
  EXPECT_EQ(ParseDuration("15m"), 900);
  EXPECT_EQ(ParseDuration("1h"), 3600);
  EXPECT_EQ(ParseDuration("30d"), 2592000);
  EXPECT_EQ(ParseDuration("36500d"), int64_t{36500} * 86400);
  for (const char* bad : {"", "d", "1.5h", "-1", "+5", "1H", "1w", "1h30m", " 5", "5 ", "0x10",
                          "36501d", "999999999999999", "1e3"}) {
    EXPECT_FALSE(ParseDuration(bad)) << bad;
  }
}

TEST(KeysCliTable, FixedColumnsAlignedNullsAsDashesTimesToTheSecond) {
  const std::string json = R"({"items": [
    {"id": "abcdefghijkl", "caller": "data-team", "created_at": "2026-12-01T18:00:00.000Z",
     "expires_at": "2026-12-31T18:00:00.000Z", "revoked_at": null,
     "last_used_at": "2026-12-02T09:30:15.250Z", "note": "ci", "created_by": "ops",
     "state": "active", "replaced_by": null},
    {"id": "mnopqrstuvwx", "caller": "ops", "created_at": "2026-11-01T00:00:00.000Z",
     "expires_at": null, "revoked_at": "2026-11-02T00:00:00.000Z", "last_used_at": null,
     "note": null, "created_by": "ops", "state": "revoked", "replaced_by": null}]})";
  std::string error;
  const std::string table = FormatKeyTable(json, &error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(table,
            "ID            CALLER     STATE    CREATED               EXPIRES               LAST "
            "USED             NOTE\n"
            "abcdefghijkl  data-team  active   2026-12-01T18:00:00Z  2026-12-31T18:00:00Z  "
            "2026-12-02T09:30:15Z  ci\n"
            "mnopqrstuvwx  ops        revoked  2026-11-01T00:00:00Z  -                     -   "
            "                  -\n");
}

TEST(KeysCliTable, AnEmptyListIsTheHeaderAlone) {
  std::string error;
  EXPECT_EQ(FormatKeyTable(R"({"items": []})", &error),
            "ID  CALLER  STATE  CREATED  EXPIRES  LAST USED  NOTE\n");
  EXPECT_EQ(error, "");
}

// A note is shown in the admin's terminal: an escape sequence or a line break in one cannot
// repaint the screen or forge a row.
TEST(KeysCliTable, ControlCharactersAreShownAsQuestionMarks) {
  std::string error;
  const std::string table = FormatKeyTable(
      R"({"items": [{"id": "abcdefghijkl", "caller": "c", "state": "active",)"
      R"( "created_at": "2026-12-01T18:00:00.000Z", "note": "a\u001b[2Jb\nfake-row"}]})",
      &error);
  EXPECT_EQ(table.find('\x1b'), std::string::npos) << table;
  EXPECT_NE(table.find("a?[2Jb?fake-row"), std::string::npos) << table;
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 2) << table;
}

TEST(KeysCliTable, NotAListingIsAnError) {
  for (const char* bad : {"", "[]", R"({"items": 5})", R"({"error": {}})"}) {
    std::string error;
    EXPECT_EQ(FormatKeyTable(bad, &error), "") << bad;
    EXPECT_NE(error, "") << bad;
  }
}

// ---------------------------------------------------------------------------------------------
// The binary against a fake admin API.

const std::string kToken = "tga_cli_test_admin_token_value";
const std::string kKey = "tg_abcdefghijkl_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE";  // 43

struct CliRun {
  int rc = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

class KeysCliTest : public ::testing::Test {
 protected:
  KeysCliTest()
      : server_([this](const ReceivedRequest& r) {
          (void)r;
          return Reply(answer_);
        }) {}

  // `tollgate keys <args>` with the token and --admin-url pointing at the server (unless
  // `env` says otherwise).
  CliRun Run(std::vector<std::string> args, std::map<std::string, std::string> env = {},
             bool with_url = true) {
    std::vector<std::string> argv = {
        "/bin/sh",       "-c",  "exec \"$@\" 2>\"" + dir_.path() + "/err\"", "sh",
        TOLLGATE_BINARY, "keys"};
    argv.insert(argv.end(), args.begin(), args.end());
    if (with_url) {
      argv.push_back("--admin-url");
      argv.push_back(server_.Url("/"));
    }
    env.emplace("TOLLGATE_ADMIN_TOKEN", kToken);
    env.emplace("TOLLGATE_ADMIN_URL", "");
    CliRun run;
    run.rc = RunCommand(argv, &run.out, env);
    run.err = ReadFile(dir_.path() + "/err");
    // The token never shows, whatever happened.
    EXPECT_EQ(run.out.find(kToken), std::string::npos) << run.out;
    EXPECT_EQ(run.err.find(kToken), std::string::npos) << run.err;
    return run;
  }

  ReceivedRequest OnlyRequest() {
    std::vector<ReceivedRequest> got = server_.received();
    EXPECT_EQ(got.size(), 1u);
    if (got.empty()) return ReceivedRequest();
    const ReceivedRequest& r = got.front();
    EXPECT_EQ(r.Values("authorization"), std::vector<std::string>{"Bearer " + kToken});
    return r;
  }

  static void ExpectJsonBody(const ReceivedRequest& r, const std::string& want) {
    rapidjson::Document got, expected;
    got.Parse(r.body.c_str());
    expected.Parse(want.c_str());
    EXPECT_TRUE(!got.HasParseError() && got == expected) << r.body << " != " << want;
    EXPECT_EQ(r.Values("content-type"), std::vector<std::string>{"application/json"});
  }

  static std::string LastLine(const std::string& text) {
    std::string t = text;
    if (!t.empty() && t.back() == '\n') t.pop_back();
    return t.substr(t.rfind('\n') + 1);
  }

  TempDir dir_;
  std::string answer_;
  TestServer server_;
};

TEST_F(KeysCliTest, CreateSendsCallerTtlAndNoteAndPrintsTheKeyAloneOnTheLastLine) {
  answer_ = HttpResponse(201,
                         R"({"id":"abcdefghijkl","key":")" + kKey +
                             R"(","caller":"data-team","created_at":"2026-12-01T18:00:00.000Z",)"
                             R"("expires_at":"2026-12-31T18:00:00.000Z"})",
                         "Content-Type: application/json\r\n");
  CliRun run = Run({"create", "--caller", "data-team", "--ttl", "30d", "--note=ci build"});
  EXPECT_EQ(run.rc, 0) << run.out << run.err;
  const ReceivedRequest r = OnlyRequest();
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/keys");
  ExpectJsonBody(r, R"({"caller": "data-team", "ttl_seconds": 2592000, "note": "ci build"})");
  EXPECT_EQ(LastLine(run.out), kKey) << run.out;
  EXPECT_NE(run.out.find("created key abcdefghijkl for caller data-team (expires "
                         "2026-12-31T18:00:00Z)"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("shown this once"), std::string::npos) << run.out;
  EXPECT_EQ(run.err, "");
}

TEST_F(KeysCliTest, CreateWithoutTtlOrNoteSendsOnlyTheCaller) {
  answer_ = HttpResponse(201, R"({"id":"abcdefghijkl","key":")" + kKey +
                                  R"(","caller":"c","created_at":"2026-12-01T18:00:00.000Z",)"
                                  R"("expires_at":null})");
  CliRun run = Run({"create", "--caller", "c"});
  EXPECT_EQ(run.rc, 0) << run.out << run.err;
  ExpectJsonBody(OnlyRequest(), R"({"caller": "c"})");
  EXPECT_NE(run.out.find("(never expires)"), std::string::npos) << run.out;
}

TEST_F(KeysCliTest, ListAsksForTheCallersKeysAndPrintsTheTable) {
  const std::string body =
      R"({"items":[{"id":"abcdefghijkl","caller":"data-team","created_at":"2026-12-01T18:00:00.000Z",)"
      R"("expires_at":null,"revoked_at":null,"last_used_at":null,"note":"ci","created_by":"ops",)"
      R"("state":"active","replaced_by":null}]})";
  answer_ = HttpResponse(200, body);
  CliRun run = Run({"list", "--caller", "data-team"});
  EXPECT_EQ(run.rc, 0) << run.out << run.err;
  const ReceivedRequest r = OnlyRequest();
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/keys?caller=data-team");
  EXPECT_EQ(r.body, "");
  std::string error;
  EXPECT_EQ(run.out, FormatKeyTable(body, &error));
  EXPECT_EQ(run.out.rfind("ID  ", 0), 0u) << run.out;
}

TEST_F(KeysCliTest, JsonPrintsTheAnswerAsIs) {
  const std::string body = R"({"items":[]})";
  answer_ = HttpResponse(200, body);
  CliRun run = Run({"list", "--json"});
  EXPECT_EQ(run.rc, 0) << run.err;
  EXPECT_EQ(OnlyRequest().target, "/keys");
  EXPECT_EQ(run.out, body + "\n");
}

TEST_F(KeysCliTest, RevokeSendsDeleteWithNoBody) {
  answer_ = "HTTP/1.1 204 No Content\r\n\r\n";
  CliRun run = Run({"revoke", "abcdefghijkl"});
  EXPECT_EQ(run.rc, 0) << run.out << run.err;
  const ReceivedRequest r = OnlyRequest();
  EXPECT_EQ(r.method, "DELETE");
  EXPECT_EQ(r.target, "/keys/abcdefghijkl");
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(run.out, "revoked key abcdefghijkl\n");
}

TEST_F(KeysCliTest, RotateSendsGraceAndTtlAndPrintsTheNewKey) {
  answer_ =
      HttpResponse(201, R"({"id":"mnopqrstuvwx","key":")" + kKey +
                            R"(","caller":"data-team","created_at":"2026-12-01T18:00:00.000Z",)"
                            R"("expires_at":null,"replaces":"abcdefghijkl",)"
                            R"("replaced_expires_at":"2026-12-01T19:00:00.000Z"})");
  CliRun run = Run({"rotate", "abcdefghijkl", "--grace", "1h", "--ttl=90"});
  EXPECT_EQ(run.rc, 0) << run.out << run.err;
  const ReceivedRequest r = OnlyRequest();
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/keys/abcdefghijkl/rotate");
  ExpectJsonBody(r, R"({"grace_seconds": 3600, "ttl_seconds": 90})");
  EXPECT_EQ(LastLine(run.out), kKey) << run.out;
  EXPECT_NE(run.out.find("rotated key abcdefghijkl: new key mnopqrstuvwx for caller data-team "
                         "(never expires); abcdefghijkl stops working at 2026-12-01T19:00:00Z"),
            std::string::npos)
      << run.out;
}

TEST_F(KeysCliTest, ARefusalExitsOneWithItsMessageOnStderr) {
  answer_ = HttpResponse(
      404,
      R"({"error":{"code":404,"reason":"not_found","message":"no such key","request_id":"r"}})");
  CliRun run = Run({"revoke", "abcdefghijkl"});
  EXPECT_EQ(run.rc, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "tollgate: not_found (404): no such key\n");
}

TEST_F(KeysCliTest, NoAnswerExitsOne) {
  answer_ = HttpResponse(200, "{}");
  CliRun run =
      Run({"list", "--admin-url", "http://127.0.0.1:" + std::to_string(FreePort())}, {}, false);
  EXPECT_EQ(run.rc, 1) << run.out << run.err;
  EXPECT_NE(run.err.find("no answer from the admin API"), std::string::npos) << run.err;
}

TEST_F(KeysCliTest, TheUrlMayComeFromTheEnvironment) {
  answer_ = HttpResponse(200, R"({"items":[]})");
  CliRun run = Run({"list"}, {{"TOLLGATE_ADMIN_URL", server_.Url("")}}, false);
  EXPECT_EQ(run.rc, 0) << run.err;
  EXPECT_EQ(OnlyRequest().target, "/keys");
}

// A proxy named by the environment would see the admin token: the CLI talks to the admin URL
// itself.
TEST_F(KeysCliTest, TheTokenNeverGoesThroughAProxyFromTheEnvironment) {
  answer_ = HttpResponse(200, R"({"items":[]})");
  TestServer proxy(
      [](const ReceivedRequest&) { return Reply(HttpResponse(200, R"({"items":[]})")); });
  const std::string proxy_url = "http://127.0.0.1:" + std::to_string(proxy.port());
  CliRun run = Run({"list"}, {{"http_proxy", proxy_url},
                              {"HTTP_PROXY", proxy_url},
                              {"https_proxy", proxy_url},
                              {"ALL_PROXY", proxy_url},
                              {"all_proxy", proxy_url},
                              {"no_proxy", ""},
                              {"NO_PROXY", ""}});
  EXPECT_EQ(run.rc, 0) << run.err;
  EXPECT_EQ(proxy.accepted(), 0);
  EXPECT_EQ(proxy.raw_all().find(kToken), std::string::npos);
  EXPECT_EQ(OnlyRequest().target, "/keys");
}

// Usage errors exit 2 before anything is sent.
TEST_F(KeysCliTest, UsageErrorsExitTwoAndSendNothing) {
  answer_ = HttpResponse(500, "{}");
  struct Case {
    std::vector<std::string> args;
    std::map<std::string, std::string> env;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{}, {}, "name a command"},
      {{"frobnicate"}, {}, "unknown command"},
      {{"create"}, {}, "create needs --caller NAME"},
      {{"create", "--caller", "c", "--ttl", "1w"}, {}, "--ttl: not a duration"},
      {{"create", "--caller", "c", "--grace", "1h"}, {}, "keys create does not take --grace"},
      {{"list", "--ttl", "1h"}, {}, "keys list does not take --ttl"},
      {{"list", "--bogus"}, {}, "unknown option --bogus"},
      {{"list", "extra"}, {}, "list takes no arguments"},
      {{"list", "--caller", "a&b"}, {}, "--caller: not a caller name"},
      {{"revoke"}, {}, "revoke takes one key ID"},
      {{"revoke", "NOT-AN-ID"}, {}, "not a key id"},
      {{"rotate", "abcdefghijkl", "--grace", "soon"}, {}, "--grace: not a duration"},
      {{"list"}, {{"TOLLGATE_ADMIN_TOKEN", ""}}, "set TOLLGATE_ADMIN_TOKEN"},
      {{"list"}, {{"TOLLGATE_ADMIN_TOKEN", "tga_x\r\nX-Evil: 1"}}, "control characters"},
  };
  for (const Case& c : cases) {
    CliRun run = Run(c.args, c.env);
    EXPECT_EQ(run.rc, 2) << c.message << ": " << run.out << run.err;
    EXPECT_NE(run.err.find(c.message), std::string::npos) << c.message << " not in: " << run.err;
  }
  CliRun no_url = Run({"list"}, {}, false);
  EXPECT_EQ(no_url.rc, 2);
  EXPECT_NE(no_url.err.find("needs --admin-url URL"), std::string::npos) << no_url.err;
  CliRun ftp = Run({"list", "--admin-url", "ftp://127.0.0.1:1"}, {}, false);
  EXPECT_EQ(ftp.rc, 2);
  EXPECT_NE(ftp.err.find("must start with http:// or https://"), std::string::npos) << ftp.err;
  EXPECT_EQ(server_.received().size(), 0u);
}

// A whole key given where its id belongs is refused without being printed or sent.
TEST_F(KeysCliTest, AWholeKeyInsteadOfAnIdIsRefusedAndNeverEchoed) {
  answer_ = HttpResponse(204, "");
  CliRun run = Run({"revoke", kKey});
  EXPECT_EQ(run.rc, 2);
  EXPECT_NE(run.err.find("that is a whole key, not its id"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("(abcdefghijkl)"), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find(kKey), std::string::npos) << run.err;
  EXPECT_EQ(run.err.find(kKey.substr(16)), std::string::npos) << run.err;
  EXPECT_EQ(server_.received().size(), 0u);
}

}  // namespace
}  // namespace tollgate::testing
