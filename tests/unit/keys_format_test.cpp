#include <gtest/gtest.h>

#include <set>

#include "keys/key_format.h"
#include "upstream/upstream_auth.h"

namespace tollgate::keys {
namespace {

TEST(KeyFormat, AGeneratedKeyParsesToItsIdAndHashesToItsDigest) {
  const NewKey k = GenerateKey();
  ASSERT_TRUE(IsValidKeyId(k.id)) << k.id;
  EXPECT_EQ(k.key.size(), kKeyLength);
  EXPECT_EQ(k.key.substr(0, 3), "tg_");
  std::string_view id;
  ASSERT_TRUE(ParseRunTimeKey(k.key, &id)) << k.key;
  EXPECT_EQ(id, k.id);
  EXPECT_EQ(k.sha256, upstream::Sha256Hex(k.key));
}

TEST(KeyFormat, GeneratedIdsAndSecretsDoNotRepeat) {
  std::set<std::string> ids, keys;
  for (int i = 0; i < 2000; ++i) {
    const NewKey k = GenerateKey();
    ids.insert(k.id);
    keys.insert(k.key.substr(kKeyPrefix.size() + kIdLength + 1));
  }
  EXPECT_EQ(ids.size(), 2000u);
  EXPECT_EQ(keys.size(), 2000u);
}

TEST(KeyFormat, RefusesEveryOtherShape) {
  const std::string good = "tg_abcdefghij12_" + std::string(43, 'A');
  std::string_view id;
  ASSERT_TRUE(ParseRunTimeKey(good, &id));
  EXPECT_EQ(id, "abcdefghij12");
  for (const std::string& bad : {
           std::string("tg_abcdefghij12_") + std::string(42, 'A'),        // short secret
           std::string("tg_abcdefghij12_") + std::string(44, 'A'),        // long secret
           std::string("tg_abcdefghiJ12_") + std::string(43, 'A'),        // upper case in id
           std::string("tg_abcdefghij1-_") + std::string(43, 'A'),        // '-' in id
           std::string("tg_abcdefghij12-") + std::string(43, 'A'),        // no '_' after the id
           std::string("tk_abcdefghij12_") + std::string(43, 'A'),        // prefix
           std::string("tg_abcdefghij12_") + std::string(42, 'A') + "=",  // padding
           std::string("tg_abcdefghij12_") + std::string(42, 'A') + " ",
           std::string("tg_") + std::string(43, 'a'),  // a config key (tollgate keygen)
           std::string(),
       }) {
    EXPECT_FALSE(ParseRunTimeKey(bad, &id)) << bad;
  }
  EXPECT_FALSE(IsValidKeyId("abcdefghij1"));
  EXPECT_FALSE(IsValidKeyId("abcdefghij123"));
  EXPECT_TRUE(IsValidKeyId("0123456789az"));
}

}  // namespace
}  // namespace tollgate::keys
