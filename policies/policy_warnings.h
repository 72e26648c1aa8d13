// Checks over a loaded config for rules that do not do what they seem to. They are warnings, not
// errors: the config is valid and the Policy (policy.h) decides exactly as documented; what the
// warning names is a hole a reader of the config would not expect. Pure and stateless; used by
// `tollgate check-config` and meant for `serve`'s start and reload log.
//
// Today one check, a deny rule narrower than an allow rule. A deny rule with `where` only denies
// where the bound segment is one of the caller's attribute values; an allow rule for the same
// requests without that limit still allows every other value, so "deny DELETE on
// /organizations/{org_id}/** where org_id is caller.devin_orgs" next to "allow /**" (in any role
// a caller may hold with it) lets the caller DELETE in every organisation that is NOT theirs.
// Precisely, a pair (deny D with a non-empty `where`, allow A) is reported when:
//   - D and A name the same upstream (roles are not compared: any two roles may be given to one
//     caller, and a rule in D's own role counts too);
//   - their methods overlap (no `methods` = every method; GET also stands for HEAD, as in
//     Decide);
//   - their templates overlap: some path matches both (segment by segment, a `{param}` matches
//     any segment, a literal only itself, `**` the rest, zero or more segments). This covers
//     the same template text and an allow `**` prefix of the deny's path, and also an allow
//     narrower than the deny that still reaches outside the deny's `where`;
//   - some `where` binding of D is not implied by A: at the segment where D binds {p} to
//     caller.X, A does not have a `{q}` with `where` q -> caller.X as well.
// Not modelled (so a pair may be reported although another deny closes the hole): other deny
// rules covering the same requests.
#pragma once

#include <string>
#include <vector>

#include "config/model.h"

namespace tollgate::policies {

struct PolicyWarning {
  std::string pointer;        // JSON pointer of the rule the warning is about (the deny)
  std::string other_pointer;  // JSON pointer of the rule that makes it a hole (the allow)
  std::string message;        // a sentence naming both pointers, for a person to act on
};

// Every (deny, allow) pair as described above, in role then rule order of the deny.
std::vector<PolicyWarning> FindNarrowDenies(const config::Config& config);

}  // namespace tollgate::policies
