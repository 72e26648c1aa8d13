// The `admin` section (admin tokens for the admin listener) and the per-entry fingerprints a
// reload compares to say what it changed.
#include <openssl/sha.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "config/loader.h"
#include "config/model_builder.h"
#include "config/syntax.h"

namespace tollgate::config {
namespace {

using rapidjson::Value;
using syntax::JoinPointer;

std::string Digest(const Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(buffer.GetString()), buffer.GetSize(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

// Entry names are JSON pointers without the leading '/': "roles/ops".
std::string EntryName(const std::string& pointer) { return pointer.substr(1); }

}  // namespace

void ModelBuilder::BuildAdmin(const Value& admin, Config* config) {
  auto tokens = admin.FindMember("tokens");
  if (tokens == admin.MemberEnd()) return;
  std::map<std::string, std::string> name_pointer;
  std::map<std::string, std::string> hash_pointer;
  for (rapidjson::SizeType i = 0; i < tokens->value.Size(); ++i) {
    const Value& value = tokens->value[i];
    const std::string at = JoinPointer("/admin/tokens", i);
    AdminToken token;
    token.name = value["name"].GetString();
    bool ok = true;
    if (!syntax::IsValidName(token.name)) {
      Error(JoinPointer(at, "name"),
            "must hold only letters, digits, '.', '_' and '-', and start with a letter or digit "
            "(it names the admin in audit records)");
      ok = false;
    } else if (token.name == "SIGHUP") {
      Error(JoinPointer(at, "name"),
            "\"SIGHUP\" is reserved: audit records name signal reloads so");
      ok = false;
    } else if (auto [seen, inserted] = name_pointer.emplace(token.name, at); !inserted) {
      Error(JoinPointer(at, "name"), "admin token \"" + token.name + "\" is already defined at " +
                                         seen->second + " (the name is what audit records show)");
      ok = false;
    }
    std::string hash = value["sha256"].GetString();
    // Never echoed: someone may have pasted the token itself here by mistake.
    if (!syntax::IsSha256Hex(hash)) {
      Error(JoinPointer(at, "sha256"),
            "must be exactly 64 hex digits, the SHA-256 of the admin token (tollgate keygen "
            "--admin NAME prints one); tokens themselves never go in the config");
      ok = false;
    } else {
      std::transform(hash.begin(), hash.end(), hash.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (auto [seen, inserted] = hash_pointer.emplace(hash, at); !inserted) {
        Error(JoinPointer(at, "sha256"), "the same token hash is already listed at " +
                                             seen->second + " (one token must name one admin)");
        ok = false;
      }
    }
    token.sha256 = std::move(hash);
    for (const auto& scope : value["scopes"].GetArray()) {
      std::string s = scope.GetString();
      if (!token.Allows(s)) token.scopes.push_back(std::move(s));
    }
    if (ok) config->admin.tokens.push_back(std::move(token));
  }
}

std::map<std::string, std::string> DigestEntries(const Value& root) {
  std::map<std::string, std::string> out;
  if (!root.IsObject()) return out;
  static const std::set<std::string> kNamedSections = {"upstreams", "roles", "callers"};
  for (const auto& member : root.GetObject()) {
    const std::string name(member.name.GetString(), member.name.GetStringLength());
    const std::string pointer = JoinPointer("", name);
    if (kNamedSections.count(name) && member.value.IsObject()) {
      for (const auto& entry : member.value.GetObject()) {
        const std::string entry_name(entry.name.GetString(), entry.name.GetStringLength());
        out[EntryName(JoinPointer(pointer, entry_name))] = Digest(entry.value);
      }
    } else if (name == "admin" && member.value.IsObject()) {
      // Each token by its name, so an audit record says which admin was added or changed.
      for (const auto& part : member.value.GetObject()) {
        const std::string part_name(part.name.GetString(), part.name.GetStringLength());
        const std::string part_pointer = JoinPointer(pointer, part_name);
        if (part_name != "tokens" || !part.value.IsArray()) {
          out[EntryName(part_pointer)] = Digest(part.value);
          continue;
        }
        for (const auto& token : part.value.GetArray()) {
          if (!token.IsObject()) continue;
          auto token_name = token.FindMember("name");
          if (token_name == token.MemberEnd() || !token_name->value.IsString()) continue;
          out[EntryName(JoinPointer(part_pointer, token_name->value.GetString()))] = Digest(token);
        }
      }
    } else {
      out[EntryName(pointer)] = Digest(member.value);
    }
  }
  return out;
}

std::vector<std::string> ChangedEntries(const Config& before, const Config& after) {
  std::vector<std::string> out;
  auto a = before.entry_digests.begin();
  auto b = after.entry_digests.begin();
  // Both maps are sorted: one merge pass names every entry added, removed or changed.
  while (a != before.entry_digests.end() || b != after.entry_digests.end()) {
    if (b == after.entry_digests.end() ||
        (a != before.entry_digests.end() && a->first < b->first)) {
      out.push_back((a++)->first);
    } else if (a == before.entry_digests.end() || b->first < a->first) {
      out.push_back((b++)->first);
    } else {
      if (a->second != b->second) out.push_back(a->first);
      ++a;
      ++b;
    }
  }
  return out;
}

}  // namespace tollgate::config
