#include "client.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>

#include "command_grammar.h"
#include "expected.h"
#include "status.h"
#include "system_call.h"
#include "unique_fd.h"

namespace pgod::ctl {
namespace {

// Said after a connection the server closed or reset at once, as the gateway does to one it
// refuses (busy, or a source it penalises).
constexpr const char* kClosedByServer =
    " (the server closed the connection: it may be busy, or refusing this address for a while; try again later)";

// Connecting, key exchange, login and the exec request each give up after this long; the
// command's output itself may take as long as it likes (logs -f).
constexpr long kSetupTimeoutSeconds = 30;
// Read by libssh next to the user's file, as by OpenSSH; never written.
constexpr const char* kGlobalKnownHosts = "/etc/ssh/ssh_known_hosts";

// Owning libssh handles. A channel must be released before its session is freed or
// disconnected: ssh_free() and ssh_disconnect() free the session's channels themselves.
struct SshFree {
  void operator()(ssh_session session) const { ssh_free(session); }
  void operator()(ssh_channel channel) const { ssh_channel_free(channel); }
  void operator()(ssh_key key) const { ssh_key_free(key); }
  void operator()(char* text) const { ssh_string_free_char(text); }
};
using Session = std::unique_ptr<ssh_session_struct, SshFree>;
using Channel = std::unique_ptr<ssh_channel_struct, SshFree>;
using Key = std::unique_ptr<ssh_key_struct, SshFree>;
using SshText = std::unique_ptr<char, SshFree>;

// Ctrl-C (and SIGTERM, SIGHUP) must end pgoctl, and with it the remote command, promptly.
// The handler records the signal and
// - writes a byte to a pipe that our own polls watch, so a signal landing just before poll()
//   still wakes it;
// - during set-up, shuts the connection's socket down: libssh's blocking calls (key exchange,
//   login, exec) retry on EINTR, but fail at once on a dead socket.
// No SA_RESTART: a write blocked on a slow stdout returns EINTR. SA_RESETHAND: a second Ctrl-C
// kills pgoctl outright should anything still hang (a name lookup, the goodbye to the server).
volatile std::sig_atomic_t g_signal = 0;
volatile std::sig_atomic_t g_abort_fd = -1;  // the socket while setting up, else -1
int g_wake_fd = -1;                          // the pipe's write end; open until exit, as a signal may come at any time

void on_signal(int signo) {
  const int saved_errno = errno;
  g_signal = signo;
  if (g_abort_fd >= 0) shutdown(g_abort_fd, SHUT_RDWR);
  const char byte = 0;
  // A full pipe already holds a wake-up; nothing else to do on failure in a handler.
  if (write(g_wake_fd, &byte, 1) < 0) {
  }
  errno = saved_errno;
}

// Lets the signal handler cut the connection while it exists; see on_signal.
class AbortOnSignal {
 public:
  explicit AbortOnSignal(int fd) { g_abort_fd = fd; }
  ~AbortOnSignal() { disarm(); }
  AbortOnSignal(const AbortOnSignal&) = delete;
  AbortOnSignal& operator=(const AbortOnSignal&) = delete;
  void disarm() { g_abort_fd = -1; }
};

int interrupted_exit_code() { return g_signal == 0 ? 0 : 128 + g_signal; }

Expected<UniqueFd, std::string> watch_signals() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return Unexpected{os_error("pipe2", "", errno)};
  UniqueFd read_end(fds[0]);
  g_wake_fd = fds[1];
  for (int signo : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    if (sigaction(signo, nullptr, &old) != 0) return Unexpected{os_error("sigaction", "", errno)};
    // A signal the caller chose to ignore (nohup, a background job) stays ignored.
    if (old.sa_handler == SIG_IGN) continue;
    struct sigaction action {};
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESETHAND;
    if (sigemptyset(&action.sa_mask) != 0 || sigaction(signo, &action, nullptr) != 0)
      return Unexpected{os_error("sigaction", "", errno)};
  }
  return read_end;
}

// Prints a (possibly multi-line) message, each line prefixed, and gives pgoctl's failure code.
int fail(std::string_view message) {
  while (!message.empty()) {
    const auto end = message.find('\n');
    fmt::print(stderr, "pgoctl: {}\n", message.substr(0, end));
    message = end == std::string_view::npos ? std::string_view() : message.substr(end + 1);
  }
  return kLocalFailure;
}

// A blocking libssh call interrupted by our signal fails like any other: report the signal then.
int fail_unless_interrupted(std::string_view message) {
  const int code = interrupted_exit_code();
  return code != 0 ? code : fail(message);
}

// The name known_hosts files and ssh-keygen -R use: "[host]:port" unless the port is 22.
std::string host_label(const ClientOptions& options) {
  return options.port == 22 ? options.host : fmt::format("[{}]:{}", options.host, options.port);
}

int refuse_passphrase(const char*, char*, std::size_t, int, int, void* asked) {
  *static_cast<bool*>(asked) = true;
  return SSH_ERROR;  // pgoctl never prompts: CI must not hang on a question nobody answers
}

Expected<Key, std::string> import_key(const Identity& identity) {
  bool asked_for_passphrase = false;
  ssh_key raw = nullptr;
  const int rc =
      ssh_pki_import_privkey_base64(identity.key_text.c_str(), nullptr, refuse_passphrase, &asked_for_passphrase, &raw);
  Key key(raw);
  if (rc == SSH_OK && key) return key;
  if (asked_for_passphrase)
    return Unexpected{
        fmt::format("the key from {} is protected by a passphrase, and pgoctl never asks for one.\n"
                    "Use a key without a passphrase (ssh-keygen -p -N '' -f FILE removes it), or load it into "
                    "ssh-agent (ssh-add FILE) and leave -i and PGOCTL_ID unset.",
                    identity.origin)};
  return Unexpected{
      fmt::format("the key from {} is not a private key pgoctl can read (expected an OpenSSH or PEM private key; "
                  "a .pub file is only the public half)",
                  identity.origin)};
}

// Finds out before connecting whether the agent answers, to tell "no agent" from "wrong key".
Expected<bool, std::string> check_agent(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path)
    return Unexpected{fmt::format("SSH_AUTH_SOCK is too long for a socket path: {}", path)};
  std::memcpy(address.sun_path, path.data(), path.size());
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd || connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
    return Unexpected{
        fmt::format("cannot reach ssh-agent at {} (SSH_AUTH_SOCK): {}.\n"
                    "Start one (eval $(ssh-agent); ssh-add FILE), or give the key with -i FILE or PGOCTL_ID.",
                    path, errno_text(errno))};
  return true;
}

int milliseconds_left(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<std::int64_t>(left.count(), 0));
}

// The TCP connection, made here rather than by libssh so that the socket is known to the signal
// handler from the start, and the connect itself can be interrupted.
Expected<UniqueFd, std::string> dial(const ClientOptions& options, int wake_fd) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const auto port = std::to_string(options.port);
  if (const int rc = getaddrinfo(options.host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return Unexpected{fmt::format("cannot find the address of {}: {}", options.host, gai_strerror(rc))};
  const std::unique_ptr<addrinfo, void (*)(addrinfo*)> addresses(found, freeaddrinfo);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kSetupTimeoutSeconds);
  std::string error = "no address";
  for (const addrinfo* address = found; address != nullptr && g_signal == 0; address = address->ai_next) {
    UniqueFd fd(socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, address->ai_protocol));
    if (!fd) {
      error = errno_text(errno);
      continue;
    }
    // The handshake is a string of small messages each waiting on the last: without
    // TCP_NODELAY, Nagle and delayed ACKs add ~40 ms stalls to every round trip.
    const int yes = 1;
    if (setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes) != 0) {
      error = errno_text(errno);
      continue;
    }
    if (connect(fd.get(), address->ai_addr, address->ai_addrlen) == 0) return fd;
    if (errno != EINPROGRESS) {
      error = errno_text(errno);
      continue;
    }
    pollfd watched[2] = {{fd.get(), POLLOUT, 0}, {wake_fd, POLLIN, 0}};
    const int ready = poll(watched, 2, milliseconds_left(deadline));
    if (ready < 0 && errno != EINTR) return Unexpected{os_error("poll", "", errno)};
    if (ready == 0) {
      error = fmt::format("no answer within {} s", kSetupTimeoutSeconds);
      break;
    }
    if (watched[0].revents == 0) continue;  // woken by our signal (EINTR or the wake pipe): the loop ends
    int status = 0;
    socklen_t length = sizeof status;
    if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &status, &length) != 0) status = errno;
    if (status == 0) return fd;
    error = errno_text(status);
    // A gateway that refuses a connection resets it at once, maybe before this check.
    if (status == ECONNRESET) error += kClosedByServer;
  }
  return Unexpected{fmt::format("cannot connect to {} port {}: {}", options.host, options.port, error)};
}

// The SSH session over that connection, its key exchange done.
Expected<Session, std::string> connect(const ClientOptions& options, UniqueFd socket) {
  Session session(ssh_new());
  if (!session) return Unexpected{std::string("cannot create an SSH session (out of memory)")};
  ssh_session s = session.get();
  const socket_t fd = socket.get();
  if (ssh_options_set(s, SSH_OPTIONS_FD, &fd) != SSH_OK)
    return Unexpected{fmt::format("cannot set up the SSH session: {}", ssh_get_error(s))};
  // The session holds it now. libssh may close it on an error; after ssh_disconnect (libssh
  // 0.10 on) it stays open, and pgoctl's exit closes it.
  socket.release();
  // ~/.ssh/config is not read: the command line alone says where pgoctl goes and with which
  // key, the same on a laptop as in CI.
  const bool process_config = false;
  const unsigned port = options.port;
  const long timeout = kSetupTimeoutSeconds;
  if (ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &process_config) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_HOST, options.host.c_str()) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_PORT, &port) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_USER, options.user.c_str()) != SSH_OK ||
      // Empty when the check is skipped: libssh refuses an empty path.
      (!options.known_hosts.empty() &&
       ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, options.known_hosts.c_str()) != SSH_OK) ||
      ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, kGlobalKnownHosts) != SSH_OK ||
      ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &timeout) != SSH_OK)
    return Unexpected{fmt::format("cannot set up the SSH session: {}", ssh_get_error(s))};
  if (ssh_connect(s) != SSH_OK) {
    const std::string error = ssh_get_error(s);
    // A gateway that refuses a connection closes it at once, before its banner.
    const bool closed =
        error.find("disconnected") != std::string::npos || error.find("Connection reset by peer") != std::string::npos;
    return Unexpected{fmt::format("SSH handshake with {} port {} failed: {}{}", options.host, options.port, error,
                                  closed ? kClosedByServer : "")};
  }
  return session;
}

// "ssh-ed25519 SHA256:…", as OpenSSH shows a key.
std::string describe_key(ssh_key key) {
  const char* type = ssh_key_type_to_char(ssh_key_type(key));
  std::string text = type != nullptr ? type : "unknown-type";
  unsigned char* hash = nullptr;
  std::size_t length = 0;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &length) == SSH_OK) {
    SshText fingerprint(ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, length));
    ssh_clean_pubkey_hash(&hash);
    if (fingerprint) text += " " + std::string(fingerprint.get());
  }
  return text;
}

// accept-new: a host seen for the first time is recorded (CI never hangs on a yes/no prompt), a
// known host must present the recorded key.
Expected<bool, std::string> check_host_key(ssh_session session, const ClientOptions& options) {
  const auto label = host_label(options);
  ssh_key raw = nullptr;
  if (ssh_get_server_publickey(session, &raw) != SSH_OK)
    return Unexpected{fmt::format("{} sent no usable host key: {}", label, ssh_get_error(session))};
  const Key key(raw);
  const auto described = describe_key(key.get());
  switch (ssh_session_is_known_server(session)) {
    case SSH_KNOWN_HOSTS_OK:
      return true;
    case SSH_KNOWN_HOSTS_CHANGED:
    case SSH_KNOWN_HOSTS_OTHER:
      return Unexpected{fmt::format(
          "@@@@@ WARNING: THE HOST KEY OF {0} HAS CHANGED @@@@@\n"
          "{0} now presents {1}, which is not the key recorded for it in {2}{3}.\n"
          "Someone may be intercepting this connection (man in the middle), or the host's key was replaced.\n"
          "If you know it was replaced, remove the old entry and run pgoctl again:\n"
          "    ssh-keygen -f '{2}' -R '{0}'\n"
          "Refusing to connect (exit status 255).",
          label, described, options.known_hosts,
          access(kGlobalKnownHosts, R_OK) == 0 ? fmt::format(" (or in {})", kGlobalKnownHosts) : "")};
    case SSH_KNOWN_HOSTS_NOT_FOUND:
    case SSH_KNOWN_HOSTS_UNKNOWN:
      if (ssh_session_update_known_hosts(session) != SSH_OK) {
        // Like OpenSSH: the connection may go on, the key is just not remembered.
        fmt::print(stderr, "pgoctl: Warning: could not add '{}' ({}) to {}: {}\n", label, described,
                   options.known_hosts, ssh_get_error(session));
        return true;
      }
      fmt::print(stderr, "pgoctl: Warning: Permanently added '{}' ({}) to the list of known hosts in {}.\n", label,
                 described, options.known_hosts);
      return true;
    case SSH_KNOWN_HOSTS_ERROR:
      break;
  }
  return Unexpected{fmt::format("cannot check the host key of {} against {}: {}", label, options.known_hosts,
                                ssh_get_error(session))};
}

Expected<bool, std::string> authenticate(ssh_session session, const ClientOptions& options, ssh_key key) {
  const auto label = host_label(options);
  // "none" first: its answer carries the signature algorithms the server takes, without which
  // libssh signs with an RSA key as "ssh-rsa" (SHA-1), which servers refuse.
  int rc = ssh_userauth_none(session, nullptr);
  if (rc == SSH_AUTH_SUCCESS) return true;
  if (rc != SSH_AUTH_ERROR)
    rc = key ? ssh_userauth_publickey(session, nullptr, key) : ssh_userauth_agent(session, nullptr);
  if (rc == SSH_AUTH_SUCCESS) return true;
  if (rc == SSH_AUTH_ERROR) return Unexpected{fmt::format("login to {} failed: {}", label, ssh_get_error(session))};
  const auto origin = key ? options.identity.origin : "ssh-agent (ssh-add -l lists its keys)";
  return Unexpected{
      fmt::format("{} refused the key from {}: no key of yours is accepted by any service on that host.\n"
                  "A service takes the keys listed in its repository's ssh/*.pub; give the matching private key "
                  "with -i FILE, the PGOCTL_ID variable or ssh-agent.",
                  label, origin)};
}

// What the channel callbacks learn.
struct Stream {
  bool closed = false;
  std::optional<std::uint32_t> exit_status;
  std::string exit_signal;
  int write_error = 0;  // errno of a failed write to our stdout or stderr
  int failed_fd = -1;
};

// Writes everything, blocking: while we wait for a slow reader, libssh reads no more and the SSH
// window stops the server. Returns the bytes written; fewer after a signal or a failure. Not
// retry_eintr: EINTR is how our own signal (see on_signal) stops a write to a reader that never
// drains, and the loop then ends on g_signal.
std::size_t write_all(int fd, const char* data, std::size_t size, Stream& stream) {
  std::size_t done = 0;
  while (done < size && g_signal == 0) {
    const ssize_t n = write(fd, data + done, size - done);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    int error = errno;
    if (error == EAGAIN) {
      // Our stdout is shared with whoever started us, who may have made it non-blocking.
      pollfd ready{fd, POLLOUT, 0};
      error = poll(&ready, 1, -1) < 0 ? errno : 0;
    }
    if (error != 0 && error != EINTR) {
      stream.write_error = error;
      stream.failed_fd = fd;
      break;
    }
  }
  return done;
}

int on_data(ssh_session, ssh_channel, void* data, std::uint32_t length, int is_stderr, void* userdata) {
  auto& stream = *static_cast<Stream*>(userdata);
  if (stream.write_error != 0) return 0;
  const int fd = is_stderr != 0 ? STDERR_FILENO : STDOUT_FILENO;
  // libssh never hands over more than its window (a few MiB), so the count fits an int.
  return static_cast<int>(write_all(fd, static_cast<const char*>(data), length, stream));
}

void on_exit_status(ssh_session, ssh_channel, int status, void* userdata) {
  // libssh passes the protocol's uint32 as an int; the cast gives the original back.
  static_cast<Stream*>(userdata)->exit_status = static_cast<std::uint32_t>(status);
}

void on_exit_signal(ssh_session, ssh_channel, const char* signal, int, const char*, const char*, void* userdata) {
  static_cast<Stream*>(userdata)->exit_signal = signal != nullptr ? signal : "?";
}

void on_close(ssh_session, ssh_channel, void* userdata) { static_cast<Stream*>(userdata)->closed = true; }

// Empties the (non-blocking) wake pipe, so that the next poll sleeps again.
int drain_wake_pipe(socket_t fd, int, void*) {
  char buffer[64];
  while (read(fd, buffer, sizeof buffer) > 0) {
  }
  return 0;
}

// One ssh_event polling the session and the wake pipe; takes both out again before freeing, as
// ssh_event_free() expects.
class EventLoop {
 public:
  EventLoop(ssh_session session, int wake_fd) : event_(ssh_event_new()), session_(session), wake_fd_(wake_fd) {
    session_added_ = event_ != nullptr && ssh_event_add_session(event_, session_) == SSH_OK;
    fd_added_ = session_added_ && ssh_event_add_fd(event_, wake_fd_, POLLIN, drain_wake_pipe, nullptr) == SSH_OK;
  }
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  ~EventLoop() {
    // Removal only fails for handles that are not there; nothing to do about it in a destructor.
    if (fd_added_) static_cast<void>(ssh_event_remove_fd(event_, wake_fd_));
    if (session_added_) static_cast<void>(ssh_event_remove_session(event_, session_));
    if (event_ != nullptr) ssh_event_free(event_);
  }
  bool ready() const { return fd_added_; }
  int poll() { return ssh_event_dopoll(event_, -1); }

 private:
  ssh_event event_;
  ssh_session session_;
  int wake_fd_;
  bool session_added_ = false;
  bool fd_added_ = false;
};

// Sends the command, streams its output until the server closes the channel, a signal comes or
// our output fails; returns pgoctl's exit code.
int run_command(ssh_session session, const ClientOptions& options, int wake_fd, AbortOnSignal& abort_on_signal) {
  const auto label = host_label(options);
  Stream stream;
  ssh_channel_callbacks_struct callbacks{};
  callbacks.userdata = &stream;
  callbacks.channel_data_function = on_data;
  callbacks.channel_exit_status_function = on_exit_status;
  callbacks.channel_exit_signal_function = on_exit_signal;
  callbacks.channel_close_function = on_close;
  ssh_callbacks_init(&callbacks);

  Channel channel(ssh_channel_new(session));
  if (!channel) return fail(fmt::format("cannot create a channel: {}", ssh_get_error(session)));
  ssh_channel ch = channel.get();
  // Set before the exec request: output may arrive while libssh still waits for its reply.
  if (ssh_set_channel_callbacks(ch, &callbacks) != SSH_OK)
    return fail(fmt::format("cannot set channel callbacks: {}", ssh_get_error(session)));
  if (ssh_channel_open_session(ch) != SSH_OK)
    return fail_unless_interrupted(fmt::format("{} refused a session: {}", label, ssh_get_error(session)));
  if (ssh_channel_request_exec(ch, options.command_line.c_str()) != SSH_OK)
    return fail_unless_interrupted(
        fmt::format("{} refused to run \"{}\": {}", label, printable(options.command_line), ssh_get_error(session)));
  // stdin is not forwarded: the remote command sees end-of-file at once. A command that already
  // finished has closed the channel, and then the EOF has nowhere to go.
  if (ssh_channel_send_eof(ch) != SSH_OK && !stream.closed)
    return fail_unless_interrupted(fmt::format("cannot send end-of-file to {}: {}", label, ssh_get_error(session)));

  // From here the wake pipe ends the loop, and the connection stays up for a proper goodbye.
  abort_on_signal.disarm();
  std::string lost;
  EventLoop loop(session, wake_fd);
  if (!loop.ready()) return fail(fmt::format("cannot set up the event loop: {}", ssh_get_error(session)));
  while (!stream.closed && stream.write_error == 0 && g_signal == 0) {
    const int rc = loop.poll();
    if (stream.closed || g_signal != 0) break;
    if (rc == SSH_ERROR || ssh_is_connected(session) == 0) {
      lost = ssh_get_error(session);
      break;
    }
  }
  // Closing the channel and the connection is what makes the server cancel a command still
  // running (pgod's gateway and sshd both act on it). The channel goes first:
  // ssh_disconnect() frees the session's channels.
  if (ssh_is_connected(session) != 0) {
    // Not actionable when it fails: the peer may be gone already, and the disconnect follows.
    static_cast<void>(ssh_channel_close(ch));
  }
  channel.reset();
  ssh_disconnect(session);

  if (const int code = interrupted_exit_code(); code != 0) return code;
  if (stream.write_error != 0)
    return fail(fmt::format("cannot write to {}: {}",
                            stream.failed_fd == STDOUT_FILENO ? "standard output" : "standard error",
                            errno_text(stream.write_error)));
  if (stream.exit_status) {
    const auto result = remote_exit(*stream.exit_status);
    if (!result.note.empty()) fmt::print(stderr, "pgoctl: {}\n", result.note);
    return result.code;
  }
  if (!stream.exit_signal.empty())
    return fail(fmt::format("the remote command was killed by SIG{}", stream.exit_signal));
  return fail(fmt::format("{} ended the session without an exit status{}{}", label, lost.empty() ? "" : ": ", lost));
}

}  // namespace

RemoteExit remote_exit(std::uint32_t status) {
  RemoteExit result{client_exit_code(status), ""};
  // Status has a fixed underlying type, so any uint32 is a valid value; unknown ones read
  // "Unknown Status".
  if (status > 255)
    result.note = fmt::format("remote exit status {} ({})", status, status_text(static_cast<Status>(status)));
  return result;
}

int run(const ClientOptions& options) {
  auto wake = watch_signals();
  if (!wake) return fail(wake.error());

  Key key;
  if (!options.identity.key_text.empty()) {
    auto imported = import_key(options.identity);
    if (!imported) return fail(imported.error());
    key = std::move(*imported);
  } else if (auto agent = check_agent(options.identity.agent_socket); !agent) {
    return fail(agent.error());
  }

  auto socket = dial(options, wake->get());
  if (!socket) return fail_unless_interrupted(socket.error());
  // Outlives the session, which closes the socket; harmless, as nothing opens a file in between
  // that could take its number.
  AbortOnSignal abort_on_signal(socket->get());
  auto connected = connect(options, std::move(*socket));
  if (!connected) return fail_unless_interrupted(connected.error());
  const Session session = std::move(*connected);

  if (options.check_host_key) {
    auto checked = check_host_key(session.get(), options);
    if (!checked) return fail_unless_interrupted(checked.error());
  }
  auto authenticated = authenticate(session.get(), options, key.get());
  if (!authenticated) return fail_unless_interrupted(authenticated.error());
  if (const int code = interrupted_exit_code(); code != 0) return code;

  return run_command(session.get(), options, wake->get(), abort_on_signal);
}

}  // namespace pgod::ctl
