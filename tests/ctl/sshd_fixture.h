// OpenSSH's sshd on loopback, as the reference SSH server for tests and benchmarks: its own
// config, host key and authorized_keys in a directory the caller owns, an optional forced
// command, a free port. Needs root (sshd's privilege separation) and openssh-server.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "git_fixture.h"  // free_loopback_port()

namespace pgod::test {

// Makes a key pair with ssh-keygen at path and path + ".pub" ("ed25519", "rsa", "ecdsa"; an
// empty passphrase makes an unprotected key). Returns the public key line. Throws on failure.
std::string make_ssh_key(const std::string& path, const std::string& type = "ed25519",
                         const std::string& passphrase = "");

struct SshdOptions {
  std::string authorized_keys;            // absolute path of the AuthorizedKeysFile (may not exist yet)
  std::string host_key;                   // private host key; empty: an ed25519 key is made in the directory
  std::string force_command;              // ForceCommand; empty: none (the client's command runs as given)
  int port = 0;                           // 0: a free one
  std::vector<std::string> extra_config;  // more sshd_config lines
};

// A running `sshd -D -e` listening on 127.0.0.1. Logins: any user whose key is in
// authorized_keys, root included. Stopped when the object goes away.
class Sshd {
 public:
  // Writes the config into directory, starts sshd and returns once it listens. Throws
  // std::runtime_error with sshd's log if it does not come up within 10 s.
  Sshd(std::string directory, SshdOptions options);
  ~Sshd();
  Sshd(const Sshd&) = delete;
  Sshd& operator=(const Sshd&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::string& host_key() const { return options_.host_key; }
  // The host key's public half as "type base64" (no comment), as known_hosts stores it.
  std::string host_public_key() const;
  // sshd's log so far (-e: everything it would send to syslog).
  std::string log() const;
  // The processes serving connections now (sshd forks one or two per connection, each in a
  // session of its own) and the commands they run: the listener's descendants, parents first.
  std::vector<pid_t> session_pids() const;
  // SIGTERM to sshd and every process in session_pids(), SIGKILL to those left after 5 s; reaps
  // sshd. Connections in progress end. Idempotent.
  void stop();

 private:
  void start_once();

  std::string directory_;
  SshdOptions options_;
  std::string config_path_;
  std::string log_path_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace pgod::test
