// Signed commits: with pgo.toml `signers` set, a commit is deployed only when its SSH signature
// verifies against them. libgit2 takes the signature out of the commit; OpenSSH's ssh-keygen
// -Y find-principals and -Y verify (namespace "git", as git itself signs) check it, so no
// signature format is parsed here.
#pragma once

#include <kj/async-io.h>

#include <optional>
#include <string>
#include <vector>

namespace pgod::worker {

// What verify_commit_signature needs beyond the commit: the allowed-signers lines and where to
// write its files (a directory of the worker's own, outside the checkout).
struct SignatureCheck {
  std::vector<std::string> signers;
  std::string work_dir;  // <state>/signatures: allowed_signers and the signature under check
  std::string home;      // HOME for ssh-keygen
};

struct SignatureVerdict {
  std::optional<std::string> refusal;  // why not, in words for the operator; nullopt: verified
  std::string signer;                  // the principal whose key signed, when verified
};

// Whether `signature` (ASCII armour, as in the commit's gpgsig header) over `signed_data`
// verifies against one of the signers. `short_commit` names the commit in the refusal.
kj::Promise<SignatureVerdict> verify_commit_signature(kj::AsyncIoContext& io, const SignatureCheck& check,
                                                      std::string short_commit, std::string signature,
                                                      std::string signed_data);

}  // namespace pgod::worker
