// The public keys a service accepts, from ssh/*.pub in its checkout. The repository is
// attacker-controlled, so reading is defensive: no symlink is followed (neither ssh/ nor a
// file), only regular files, each at most kMaxKeyFileBytes, at most kMaxKeyFiles files and
// kMaxKeys keys; malformed lines are skipped and reported, never fatal.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgod::worker {

inline constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;
inline constexpr std::size_t kMaxKeyFiles = 256;
inline constexpr std::size_t kMaxKeys = 1024;

struct AuthorizedKey {
  std::string type;     // ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, …
  std::string base64;   // the key blob
  std::string comment;  // printable, at most 256 bytes
  std::string file;     // ssh/<name>.pub
  bool operator==(const AuthorizedKey&) const = default;
};

struct KeyScan {
  std::vector<AuthorizedKey> keys;    // sorted by file, then line
  std::vector<std::string> problems;  // "ssh/x.pub:3: unknown key type \"foo\"": for the log
};

// Parses one .pub file's text (`type base64 [comment]` per line; # comments and blank lines
// are skipped). `file` names it in problems.
KeyScan parse_public_keys(std::string_view text, const std::string& file);

// The keys of ssh/*.pub files given as (name, content), as read from a commit by the git tracker.
KeyScan keys_from_files(const std::vector<std::pair<std::string, std::string>>& files);

// Reads <checkout>/ssh/*.pub. A missing ssh/ directory is no keys and no problem.
KeyScan read_authorized_keys(const std::string& checkout_dir);

}  // namespace pgod::worker
