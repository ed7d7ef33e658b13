// The gateway's SSH host key. pgod makes it on first start when it is missing (as sshd-keygen
// does for sshd) and keeps it root-only on disk; the unprivileged gateway gets the key's text on
// an inherited sealed memfd at each start, never a path it could read.
#pragma once

#include <string>

#include "expected.h"

namespace pgod::supervisor {

struct HostKeyReady {
  bool created = false;
  std::string fingerprint;  // SHA256:… as ssh-keygen -l shows it
};

// Creates an ed25519 key at `path` (mode 0600, its directory 0755 when missing) unless a file is
// there, then checks it as read_host_key() does.
Expected<HostKeyReady, std::string> ensure_host_key(const std::string& path);

// The key's text. Refused: not a regular file, a symlink, readable or writable by group or
// others, not owned by this process's user, larger than a key can be, or not a key.
Expected<std::string, std::string> read_host_key(const std::string& path);

}  // namespace pgod::supervisor
