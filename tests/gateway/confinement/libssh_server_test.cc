// The allowlist is enough for libssh server work: a child loads an ed25519 host key into an
// ssh_bind, installs the real filter, then accepts a real OpenSSH client on 127.0.0.1 and goes
// through key exchange, public-key authentication, exec and exit-status with libssh's
// non-blocking callback API, as the gateway does. Were a syscall libssh needs missing, the child
// would die of SIGSYS and the client would see the connection drop.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "confined_child.h"
#include "process.h"
#include "unique_fd.h"

namespace pgod::gateway::test {
namespace {

using Clock = std::chrono::steady_clock;

// The one session's progress, shared with libssh's callbacks.
struct Session {
  ssh_key authorized = nullptr;  // the client's public key
  bool authenticated = false;
  ssh_channel channel = nullptr;
  std::string command;  // from the exec request; acted on after libssh answered it
  bool answered = false;
  bool peer_closed = false;
  ssh_channel_callbacks_struct channel_callbacks{};
};

int on_auth_pubkey(ssh_session, const char*, ssh_key_struct* key, char signature_state, void* userdata) {
  auto& session = *static_cast<Session*>(userdata);
  if (ssh_key_cmp(key, session.authorized, SSH_KEY_CMP_PUBLIC) != 0) return SSH_AUTH_DENIED;
  if (signature_state == SSH_PUBLICKEY_STATE_NONE) return SSH_AUTH_SUCCESS;  // "would this key do?"
  if (signature_state != SSH_PUBLICKEY_STATE_VALID) return SSH_AUTH_DENIED;
  session.authenticated = true;
  return SSH_AUTH_SUCCESS;
}

int on_exec(ssh_session, ssh_channel, const char* command, void* userdata) {
  static_cast<Session*>(userdata)->command = command;
  return SSH_OK;
}

void on_close(ssh_session, ssh_channel, void* userdata) { static_cast<Session*>(userdata)->peer_closed = true; }

ssh_channel on_open_session(ssh_session ssh, void* userdata) {
  auto& session = *static_cast<Session*>(userdata);
  if (session.channel != nullptr || !session.authenticated) return nullptr;
  session.channel = ssh_channel_new(ssh);
  if (session.channel == nullptr) return nullptr;
  session.channel_callbacks.userdata = &session;
  session.channel_callbacks.channel_exec_request_function = on_exec;
  session.channel_callbacks.channel_close_function = on_close;
  ssh_callbacks_init(&session.channel_callbacks);
  if (ssh_set_channel_callbacks(session.channel, &session.channel_callbacks) != SSH_OK) return nullptr;
  return session.channel;
}

// The child: prepares as the gateway does before confinement, installs the filter, serves one
// session: "pong" and exit status 7 for the command "ping".
std::string serve_one_session(int listener, const std::string& host_key_file, const std::string& client_key_file) {
  if (ssh_init() != SSH_OK) return "ssh_init failed";
  ssh_key host_key = nullptr;
  if (ssh_pki_import_privkey_file(host_key_file.c_str(), nullptr, nullptr, nullptr, &host_key) != SSH_OK)
    return "importing the host key failed";
  Session state;
  if (ssh_pki_import_pubkey_file(client_key_file.c_str(), &state.authorized) != SSH_OK)
    return "importing the client key failed";
  ssh_bind bind = ssh_bind_new();
  if (bind == nullptr) return "ssh_bind_new failed";
  const bool process_config = false;  // no /etc/ssh/libssh_server_config
  if (ssh_bind_options_set(bind, SSH_BIND_OPTIONS_PROCESS_CONFIG, &process_config) != SSH_OK ||
      ssh_bind_options_set(bind, SSH_BIND_OPTIONS_IMPORT_KEY, host_key) != SSH_OK)  // the bind owns it now
    return std::string("ssh_bind_options_set: ") + ssh_get_error(bind);
  ssh_bind_set_fd(bind, listener);

  if (std::string failure = install_filter(); !failure.empty()) return "install_gateway_filter: " + failure;

  const auto deadline = Clock::now() + std::chrono::seconds(20);
  ssh_session ssh = ssh_new();
  if (ssh == nullptr) return "ssh_new failed";
  if (ssh_bind_accept(bind, ssh) != SSH_OK) return std::string("ssh_bind_accept: ") + ssh_get_error(bind);
  ssh_server_callbacks_struct server_callbacks{};
  server_callbacks.userdata = &state;
  server_callbacks.auth_pubkey_function = on_auth_pubkey;
  server_callbacks.channel_open_request_session_function = on_open_session;
  ssh_callbacks_init(&server_callbacks);
  if (ssh_set_server_callbacks(ssh, &server_callbacks) != SSH_OK) return "ssh_set_server_callbacks failed";
  ssh_set_auth_methods(ssh, SSH_AUTH_METHOD_PUBLICKEY);
  ssh_set_blocking(ssh, 0);

  int rc = SSH_AGAIN;
  while ((rc = ssh_handle_key_exchange(ssh)) == SSH_AGAIN) {
    if (Clock::now() > deadline) return "key exchange timed out";
    pollfd readable{ssh_get_fd(ssh), POLLIN, 0};
    if (poll(&readable, 1, 100) < 0 && errno != EINTR) return "poll: " + outcome(-1);
  }
  if (rc != SSH_OK) return std::string("key exchange: ") + ssh_get_error(ssh);

  ssh_event event = ssh_event_new();
  if (event == nullptr || ssh_event_add_session(event, ssh) != SSH_OK) return "ssh_event failed";
  while (!state.peer_closed) {
    if (Clock::now() > deadline) return "timed out; command \"" + state.command + "\"";
    if (ssh_event_dopoll(event, 100) == SSH_ERROR) {
      if (state.answered) break;  // the client went away after the answer
      return std::string("ssh_event_dopoll: ") + ssh_get_error(ssh);
    }
    if (state.command.empty() || state.answered) continue;
    state.answered = true;
    if (state.command != "ping") return "unexpected command \"" + state.command + "\"";
    if (ssh_channel_write(state.channel, "pong\n", 5) != 5 ||
        ssh_channel_request_send_exit_status(state.channel, 7) != SSH_OK ||
        ssh_channel_send_eof(state.channel) != SSH_OK || ssh_channel_close(state.channel) != SSH_OK)
      return std::string("answering: ") + ssh_get_error(ssh);
  }
  ssh_event_remove_session(event, ssh);
  ssh_event_free(event);
  ssh_disconnect(ssh);
  ssh_free(ssh);
  ssh_bind_free(bind);
  ssh_key_free(state.authorized);
  return "served \"" + state.command + "\"" + (state.authenticated ? " authenticated" : " unauthenticated");
}

TEST(LibsshUnderTheFilterTest, AnOpenSshClientCompletesKexAuthExecAndExitStatus) {
  if (access("/usr/bin/ssh", X_OK) != 0 || access("/usr/bin/ssh-keygen", X_OK) != 0)
    GTEST_SKIP() << "OpenSSH's ssh and ssh-keygen are needed";
  pgod::test::TempDir dir;
  const std::string host_key = dir.path() + "/host_key", client_key = dir.path() + "/client_key";
  for (const auto& key : {host_key, client_key}) {
    const auto made =
        pgod::test::run_process({"/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", key});
    ASSERT_EQ(made.exit_code, 0) << made.err;
  }

  UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(listener) << outcome(-1);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof address;
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0) << outcome(-1);
  ASSERT_EQ(listen(listener.get(), 4), 0) << outcome(-1);
  ASSERT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &size), 0) << outcome(-1);
  const std::string port = std::to_string(ntohs(address.sin_port));

  StartedChild server = start_child([&] { return serve_one_session(listener.get(), host_key, client_key + ".pub"); });
  // Only the child listens now: were it to die, the client is refused instead of left waiting.
  listener.reset();
  const auto client =
      pgod::test::run_process({"/usr/bin/timeout", "60", "/usr/bin/ssh", "-o", "StrictHostKeyChecking=no", "-o",
                               "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o",
                               "LogLevel=ERROR", "-p", port, "-i", client_key, "root@127.0.0.1", "ping"});
  EXPECT_EQ(wait_child(server), "served \"ping\" authenticated");
  EXPECT_EQ(client.out, "pong\n");
  EXPECT_EQ(client.exit_code, 7) << client.err;
}

}  // namespace
}  // namespace pgod::gateway::test
