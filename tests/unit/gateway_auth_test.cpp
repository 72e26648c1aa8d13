// Caller authentication (Snapshot::Authenticate): the key's SHA-256 picks the caller, a disabled
// or expired caller is refused (but named, for the audit record), and no answer ever carries the
// key. Each test pins one decision a broken comparison would get wrong.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "gateway/snapshot.h"
#include "upstream/upstream_auth.h"

namespace tollgate::gateway {
namespace {

using Outcome = AuthResult::Outcome;
using std::chrono::system_clock;

// A fixed instant: expiry decisions must not depend on when the test runs.
const system_clock::time_point kNow = system_clock::from_time_t(1800000000);

class AuthenticateTest : public ::testing::Test {
 protected:
  void AddCaller(const std::string& name, std::vector<std::string> keys, bool disabled = false,
                 std::optional<system_clock::time_point> expires = std::nullopt) {
    config::Caller c;
    c.name = name;
    for (const std::string& key : keys) c.key_sha256.push_back(upstream::Sha256Hex(key));
    c.roles = {"reader"};
    c.disabled = disabled;
    c.expires = expires;
    config_->callers[name] = c;
  }
  std::shared_ptr<const Snapshot> Build() {
    config::Role role;
    role.name = "reader";
    config_->roles["reader"] = role;
    std::string error;
    auto snapshot = Snapshot::Build(config_, &error);
    EXPECT_NE(snapshot, nullptr) << error;
    return snapshot;
  }
  AuthResult Auth(const std::string& header, system_clock::time_point now = kNow) {
    if (!snapshot_) snapshot_ = Build();
    return snapshot_->Authenticate(&header, now);
  }

  std::shared_ptr<config::Config> config_ = std::make_shared<config::Config>();
  std::shared_ptr<const Snapshot> snapshot_;
};

TEST_F(AuthenticateTest, TheKeyPicksItsCallerAndEveryListedKeyWorks) {
  AddCaller("data-team", {"tg_data_old_key", "tg_data_new_key"});  // rotation: both valid
  AddCaller("ops-team", {"tg_ops_key"});
  for (const char* key : {"tg_data_old_key", "tg_data_new_key"}) {
    AuthResult r = Auth(std::string("Bearer ") + key);
    ASSERT_EQ(r.outcome, Outcome::kOk) << key;
    EXPECT_EQ(r.caller->name, "data-team");
  }
  AuthResult r = Auth("Bearer tg_ops_key");
  ASSERT_EQ(r.outcome, Outcome::kOk);
  EXPECT_EQ(r.caller->name, "ops-team");
}

// Only the exact key: not a prefix of it, not an extension, not another case, not one character
// off at either end.
TEST_F(AuthenticateTest, ANearlyRightKeyIsUnknown) {
  AddCaller("data-team", {"tg_data_team_key_0123456789"});
  for (const char* key :
       {"tg_data_team_key_012345678", "tg_data_team_key_01234567890", "TG_DATA_TEAM_KEY_0123456789",
        "tg_data_team_key_0123456788", "ug_data_team_key_0123456789", "tg_data_team_key"}) {
    AuthResult r = Auth(std::string("Bearer ") + key);
    EXPECT_EQ(r.outcome, Outcome::kUnknown) << key;
    EXPECT_EQ(r.caller, nullptr) << key;
  }
}

// A key whose SHA-256 begins like a listed key's (found here by brute force: the first two bytes
// match after some 65 000 tries) is still unknown: the whole digest is compared.
TEST_F(AuthenticateTest, AKeyWhoseDigestSharesAPrefixIsUnknown) {
  const std::string key = "tg_data_team_key_0123456789";
  AddCaller("data-team", {key});
  const std::string target = upstream::Sha256Hex(key).substr(0, 4);
  std::string lookalike;
  for (int i = 0; i < 10000000 && lookalike.empty(); ++i) {
    const std::string candidate = "tg_lookalike_" + std::to_string(i);
    if (upstream::Sha256Hex(candidate).compare(0, 4, target) == 0) lookalike = candidate;
  }
  ASSERT_FALSE(lookalike.empty());
  AuthResult r = Auth("Bearer " + lookalike);
  EXPECT_EQ(r.outcome, Outcome::kUnknown) << lookalike;
  EXPECT_EQ(r.caller, nullptr);
  EXPECT_EQ(Auth("Bearer " + key).outcome, Outcome::kOk);
}

// A disabled caller is refused even with its right key, and named (the audit record says who).
TEST_F(AuthenticateTest, ADisabledCallerIsRefusedButNamed) {
  AddCaller("gone-team", {"tg_gone_key"}, /*disabled=*/true, kNow + std::chrono::hours(24));
  AuthResult r = Auth("Bearer tg_gone_key");
  EXPECT_EQ(r.outcome, Outcome::kDisabled);
  ASSERT_NE(r.caller, nullptr);
  EXPECT_EQ(r.caller->name, "gone-team");
  EXPECT_EQ(r.message, "caller is disabled");
}

// `expires` is the first instant the key no longer works.
TEST_F(AuthenticateTest, ExpiryIsExactToTheInstant) {
  const system_clock::time_point expires = kNow;
  AddCaller("temp-team", {"tg_temp_key"}, false, expires);
  EXPECT_EQ(Auth("Bearer tg_temp_key", expires - std::chrono::milliseconds(1)).outcome,
            Outcome::kOk);
  EXPECT_EQ(Auth("Bearer tg_temp_key", expires - std::chrono::hours(24 * 365)).outcome,
            Outcome::kOk);
  for (auto now :
       {expires, expires + std::chrono::milliseconds(1), expires + std::chrono::hours(24 * 365)}) {
    AuthResult r = Auth("Bearer tg_temp_key", now);
    EXPECT_EQ(r.outcome, Outcome::kExpired);
    ASSERT_NE(r.caller, nullptr);
    EXPECT_EQ(r.caller->name, "temp-team");
    EXPECT_EQ(r.message, "caller key has expired");
  }
}

TEST_F(AuthenticateTest, NoExpiryNeverExpires) {
  AddCaller("data-team", {"tg_data_key"});
  EXPECT_EQ(Auth("Bearer tg_data_key", system_clock::time_point::max()).outcome, Outcome::kOk);
}

// The header must be `Bearer <key>` (scheme in any case, spaces before the key ignored).
TEST_F(AuthenticateTest, OnlyTheBearerSchemeCarriesAKey) {
  AddCaller("data-team", {"tg_data_key"});
  EXPECT_EQ(Auth("bearer tg_data_key").outcome, Outcome::kOk);
  EXPECT_EQ(Auth("BEARER tg_data_key").outcome, Outcome::kOk);
  EXPECT_EQ(Auth("Bearer   tg_data_key").outcome, Outcome::kOk);
  for (const char* header : {"tg_data_key", "Bearertg_data_key", "Basic tg_data_key",
                             "Token  tg_data_key", "Bearer", "Bearer ", ""}) {
    AuthResult r = Auth(header);
    EXPECT_EQ(r.outcome, Outcome::kMissing) << header;
    EXPECT_EQ(r.caller, nullptr) << header;
  }
  EXPECT_EQ(snapshot_->Authenticate(nullptr, kNow).outcome, Outcome::kMissing);
}

// The 401 message (which the caller sees and the audit record keeps) never holds the key.
TEST_F(AuthenticateTest, NoMessageEchoesTheKey) {
  AddCaller("gone-team", {"tg_gone_key_secret"}, true);
  AddCaller("old-team", {"tg_old_key_secret"}, false, kNow - std::chrono::hours(1));
  for (const char* header : {"Bearer tg_gone_key_secret", "Bearer tg_old_key_secret",
                             "Bearer tg_unknown_key_secret", "Basic tg_basic_key_secret"}) {
    AuthResult r = Auth(header);
    EXPECT_NE(r.outcome, Outcome::kOk) << header;
    EXPECT_FALSE(r.message.empty());
    EXPECT_EQ(r.message.find("_key_secret"), std::string::npos) << r.message;
  }
}

TEST(SnapshotBuild, RejectsAKeyDigestThatIsNotSha256Hex) {
  for (const std::string& digest : {std::string(63, 'a'), "zz" + std::string(62, '0'),
                                    std::string(32, 'a'), std::string(66, 'a')}) {
    auto config = std::make_shared<config::Config>();
    config::Caller c;
    c.name = "data-team";
    c.key_sha256 = {digest};
    config->callers["data-team"] = c;
    std::string error;
    EXPECT_EQ(Snapshot::Build(config, &error), nullptr) << digest;
    EXPECT_EQ(error, "/callers/data-team/key_sha256: not a SHA-256 hex digest");
  }
}

}  // namespace
}  // namespace tollgate::gateway
