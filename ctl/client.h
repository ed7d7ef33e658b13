// pgoctl's SSH side: connect, check the host key, log in, run one command and stream its
// output; what `ssh -T -o StrictHostKeyChecking=accept-new host command </dev/null` does, and
// no more (no ~/.ssh/config, no terminal, no forwarding, stdin not sent).
#pragma once

#include <cstdint>
#include <string>

namespace pgod::ctl {

// pgoctl's own failures (usage, connection, login, host key) exit 255, as OpenSSH's ssh does.
constexpr int kLocalFailure = 255;

// The key to log in with: a private key's text (from -i FILE or $PGOCTL_ID), or none to ask
// ssh-agent. `origin` names where it came from, for messages ("-i /path", "$PGOCTL_ID").
struct Identity {
  std::string key_text;
  std::string origin;
  std::string agent_socket;  // $SSH_AUTH_SOCK when key_text is empty
};

struct ClientOptions {
  std::string host;
  unsigned port = 2222;
  std::string user;  // the SSH login name (the local user's): the server only quotes it
  Identity identity;
  std::string known_hosts;     // checked, and appended to on first use
  bool check_host_key = true;  // false: --insecure-no-host-key-check
  std::string command_line;    // sent as the one exec request
};

// Runs the command on the host; returns pgoctl's exit code: the remote status mapped by
// remote_exit(), 128+signal when interrupted (SIGINT, SIGTERM, SIGHUP), else kLocalFailure.
// Remote output goes to fds 1 and 2 as it arrives; pgoctl's own messages to stderr.
int run(const ClientOptions& options);

// pgoctl's exit code for a remote exit status, and the line to print when it is one of pgod's
// codes (> 255, which no exit code can carry): "remote exit status 401 (Unauthorized)".
struct RemoteExit {
  int code;
  std::string note;  // empty for a command's own 0..255
};
RemoteExit remote_exit(std::uint32_t status);

}  // namespace pgod::ctl
