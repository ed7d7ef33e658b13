#include "ssh_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <kj/async-unix.h>
#include <libssh/callbacks.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "audit.h"
#include "capnp_compat.h"
#include "command_grammar.h"
#include "logging.h"
#include "rpc_verbs.h"
#include "status.h"
#include "system_call.h"
#include "unique_fd.h"
#include "worker_link.h"
#include "worker_pipe.h"

namespace pgod::gateway {

struct Connection;
struct Channel;

namespace {

constexpr int kMaxPollRounds = 64;  // per wake-up, so one busy client cannot starve the rest
kj::Duration as_kj(std::chrono::nanoseconds duration) { return duration.count() * kj::NANOSECONDS; }

constexpr auto kHousekeeping = 1 * kj::SECONDS;
constexpr auto kRefusalLogInterval = std::chrono::seconds(10);
// Handed to libssh at once (see Channel::pump), and so bounds what it holds for a client that stops
// reading (its output buffer rounds up to 512 KiB, kept until the connection ends). As large as
// a read of a command's stdout pipe (ChannelSink::drain) and the worker's messages
// (kOutputChunk): each slice waits for a turn of the loop, and 64 KiB slices held the stream to
// 0.78x sshd.
constexpr std::size_t kWriteSlice = 256 * 1024;

// The reason word /metrics counts a refusal under.
const char* rejection_reason(std::uint32_t status) {
  switch (static_cast<Status>(status)) {
    case Status::kBadRequest:
      return "bad_request";
    case Status::kUnauthorized:
      return "unauthorized";
    case Status::kNotFound:
      return "not_found";
    case Status::kNotAcceptable:
      return "not_acceptable";
    default:
      return "other";
  }
}

bool is_pgod_status(std::uint32_t status) { return status >= 400; }

// libssh's words for a session the client ended (EOF, a reset, its SSH_MSG_DISCONNECT), as
// opposed to one libssh gave up on.
bool client_went_away(const std::string& error) {
  return error.empty() || error.starts_with("Socket error: disconnected") ||
         error.find("Connection reset by peer") != std::string::npos ||
         error.starts_with("Received SSH_MSG_DISCONNECT");
}

int signal_exit_status(std::string_view name) {
  if (name == "INT") return 128 + 2;
  if (name == "HUP") return 128 + 1;
  if (name == "KILL") return 128 + 9;
  if (name == "TERM") return 128 + 15;
  return 128 + 15;
}

// A client that vanishes without a FIN or a reset (its host gone, a firewall dropping) is noticed
// by the kernel's keepalive probes, even while its command prints nothing. No TCP_USER_TIMEOUT:
// it would also drop a live client that merely stops reading (a paused pager) once its window
// stays shut; a dead one with output in flight ends at the kernel's retransmission limit.
bool set_keepalive(int fd, const Limits& limits) {
  const int yes = 1;
  const auto interval = static_cast<int>(
      std::chrono::ceil<std::chrono::seconds>(std::max(limits.keepalive_interval, std::chrono::nanoseconds(1)))
          .count());
  const auto count = static_cast<int>(limits.keepalive_count);
  return setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &yes, sizeof yes) == 0 &&
         setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &interval, sizeof interval) == 0 &&
         setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval) == 0 &&
         setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count) == 0;
}

// A refused connection is closed with a reset: a flood of them would otherwise fill the host's
// TIME_WAIT table, and new handshakes (the legitimate ones too) start to fail.
void reset(int fd) {
  const linger abort{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
}

// The source a peer counts under: its address cut to the configured prefix (an IPv4-mapped IPv6
// address counts as IPv4), as a map key and as text for the log.
struct SourceId {
  std::string key;
  std::string label;
};

std::optional<SourceId> source_of(const sockaddr_storage& address, const Limits& limits) {
  std::array<unsigned char, 16> bytes{};
  std::size_t length = 4;
  int family = AF_INET;
  std::size_t prefix = limits.per_source_ipv4_prefix;
  if (address.ss_family == AF_INET) {
    std::memcpy(bytes.data(), &reinterpret_cast<const sockaddr_in*>(&address)->sin_addr, 4);
  } else if (address.ss_family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6*>(&address)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&v6)) {
      std::memcpy(bytes.data(), v6.s6_addr + 12, 4);
    } else {
      std::memcpy(bytes.data(), v6.s6_addr, 16);
      length = 16;
      family = AF_INET6;
      prefix = limits.per_source_ipv6_prefix;
    }
  } else {
    return std::nullopt;
  }
  for (std::size_t bit = prefix; bit < length * 8; ++bit)
    bytes[bit / 8] &= static_cast<unsigned char>(~(0x80u >> (bit % 8)));
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes.data(), text, sizeof text);
  SourceId id;
  id.key.assign(1, family == AF_INET ? '4' : '6');
  id.key.append(reinterpret_cast<const char*>(bytes.data()), length);
  id.label = fmt::format("{}/{}", text, prefix);
  return id;
}

// A table entry for each source with a login pending or a penalty running; beyond this many
// (an IPv6 attacker has many /64s) new sources are not tracked, so the table stays bounded.
constexpr std::size_t kMaxSources = 65536;

// A pending login that has offered no key this long after connecting can be evicted for a
// newcomer at the full limit.
constexpr auto kEvictableAfter = 1 * kj::SECONDS;

std::int64_t whole_seconds(kj::Duration duration) { return (duration + 999 * kj::MILLISECONDS) / kj::SECONDS; }

// The SSH user name as the worker's log and history show it: the client chose it, so printable
// ASCII only (no bidi or look-alike characters) and short enough that it cannot push who really
// asked out of a bounded field.
std::string shown_user(const std::string& user) {
  constexpr std::size_t kMaxShown = 64;
  std::string shown;
  for (const char c : user) {
    if (shown.size() == kMaxShown) return shown + "...";
    shown += c > 0x20 && c < 0x7f ? c : '?';
  }
  return shown;
}

void release_count(std::map<std::string, std::size_t, std::less<>>& counts, const std::string& name) {
  auto found = counts.find(name);
  if (found != counts.end() && --found->second == 0) counts.erase(found);
}

}  // namespace

std::vector<std::string> key_exchanges() {
  // Cheap for the server: one X25519 (plus a hybrid's encapsulation), never a finite-field DH.
  // libssh refuses a name it does not know, so each is probed on its own.
  static constexpr std::array kCandidates = {"mlkem768x25519-sha256", "sntrup761x25519-sha512",
                                             "sntrup761x25519-sha512@openssh.com", "curve25519-sha256",
                                             "curve25519-sha256@libssh.org"};
  std::vector<std::string> kept;
  for (const char* name : kCandidates) {
    ssh_bind probe = ssh_bind_new();
    if (probe == nullptr) continue;
    bool process_config = false;
    ssh_bind_options_set(probe, SSH_BIND_OPTIONS_PROCESS_CONFIG, &process_config);
    if (ssh_bind_options_set(probe, SSH_BIND_OPTIONS_KEY_EXCHANGE, name) == SSH_OK) kept.emplace_back(name);
    ssh_bind_free(probe);
  }
  return kept;
}

std::string socket_address(int fd, bool peer) {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  const int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length)
                      : getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  if (rc != 0) return "unknown";
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    return fmt::format("{}:{}", text, ntohs(v4->sin_port));
  }
  if (address.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    return fmt::format("[{}]:{}", text, ntohs(v6->sin6_port));
  }
  return "unknown";
}

struct SshServer::Impl final : kj::TaskSet::ErrorHandler {
  Impl(kj::AsyncIoContext& io_in, ssh_bind bind_in, int listen_fd_in, Backends& backends_in, const KeyIndex& keys_in,
       Metrics& metrics_in, Limits limits_in, std::string hostname_in)
      : io(io_in),
        bind(bind_in),
        listen_fd(listen_fd_in),
        backends(backends_in),
        keys(keys_in),
        metrics(metrics_in),
        limits(limits_in),
        hostname(std::move(hostname_in)) {}
  ~Impl() noexcept(false);

  void taskFailed(kj::Exception&& e) override { spdlog::error("gateway: {}", e.getDescription().cStr()); }

  // How a login that never completed ended, for its source's penalty.
  enum class Offence { kNoAuth, kAuthFail, kTimeout, kOverCap, kWhileRefused };
  struct Source {
    std::string label;  // "192.0.2.7/32"
    std::size_t pending = 0;
    kj::TimePoint penalty_until = kj::origin<kj::TimePoint>();  // the outstanding penalty runs to here
    kj::TimePoint refused_until = kj::origin<kj::TimePoint>();
  };

  kj::Promise<void> accept_loop(kj::UnixEventPort::FdObserver& observer);
  void accept_ready();
  Source* source_for(const sockaddr_storage& address);
  bool admit(Source* source, const std::string& peer);
  void penalise(Source& source, Offence offence);
  bool evict_for(const Source* newcomer);
  bool room_to_authenticate();
  void forget_quiet_sources();
  void schedule_reap();
  void reap();
  kj::Promise<void> housekeeping();
  kj::TimePoint now() { return io.provider->getTimer().now(); }
  // Refusals can come in floods: each kind is logged at most once per interval, with a count
  // of those left out.
  void log_refusal(const std::string& kind, const std::string& what);

  kj::AsyncIoContext& io;
  ssh_bind bind;
  int listen_fd;
  Backends& backends;
  const KeyIndex& keys;
  Metrics& metrics;
  Limits limits;
  std::string hostname;
  std::list<std::unique_ptr<Connection>> connections;
  std::size_t unauthenticated = 0;  // live connections not yet authenticated
  std::size_t authenticated = 0;    // live authenticated connections
  std::map<std::string, Source, std::less<>> sources;
  // Every source not tracked once the table is full counts as this one: capped and evictable
  // like the others, but never penalised (that would refuse every newcomer).
  Source overflow = [] {
    Source untracked;
    untracked.label = "untracked sources";
    return untracked;
  }();
  std::map<std::string, std::size_t, std::less<>> running_per_service;
  std::map<std::string, std::size_t, std::less<>> running_per_key;        // by canonical key
  std::map<std::string, std::size_t, std::less<>> authenticated_per_key;  // connections, by canonical key
  std::mt19937_64 random{[] {
    std::uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != static_cast<ssize_t>(sizeof seed)) seed = 0x9e3779b97f4a7c15u;
    return seed;
  }()};
  bool reap_scheduled = false;
  struct RefusalLog {
    std::chrono::steady_clock::time_point last{};
    std::size_t unlogged = 0;
  };
  std::map<std::string, RefusalLog, std::less<>> refusal_logs;
  kj::TaskSet tasks{*this};
};

// Where a worker's output goes: the channel while it exists. The sink capability can outlive
// the channel (the worker may still be sending), so it holds this instead of the channel.
struct SinkTarget {
  Channel* channel = nullptr;
  // Fulfilled when the channel goes: a stdout pipe's drain ends then, whatever the worker does.
  kj::Own<kj::PromiseFulfiller<void>> gone;
};

// One session channel: at most one command (exec), its output queue and its exit.
struct Channel {
  Channel(Connection& connection_in, ssh_channel channel_in);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Queues bytes that stay valid until the promise resolves (a call's parameters do).
  kj::Promise<void> send(bool to_stderr, kj::ArrayPtr<const kj::byte> data, kj::Array<kj::byte> owned = nullptr);
  kj::Promise<void> send_text(bool to_stderr, const std::string& text) {
    auto owned = kj::heapArray(kj::arrayPtr(reinterpret_cast<const kj::byte*>(text.data()), text.size()));
    auto view = owned.asPtr().asConst();
    return send(to_stderr, view, kj::mv(owned));
  }
  // Resolves once everything queued before it is in the channel.
  kj::Promise<void> drained();
  bool pump();
  void fail_queue(const char* why);
  void start_command();
  kj::Promise<void> dispatch(Command command);
  kj::Promise<void> restart_worker(const std::string& service);
  kj::Promise<void> run_on_worker(const Command& command, const std::string& caller);
  kj::Promise<void> finish(std::uint32_t status, std::string message);
  // `exit`: the exit status, or "abandoned" for a command whose client left before it ended.
  void audit_command(const std::string& exit, std::chrono::milliseconds elapsed);
  void cancel();
  void close_local();
  void count_running(const std::string& service);

  Connection& connection;
  ssh_channel channel;
  ssh_channel_callbacks_struct callbacks{};
  std::shared_ptr<SinkTarget> target = std::make_shared<SinkTarget>();
  std::optional<std::string> request;  // the exec line, recorded by the callback
  bool shell_request = false;
  std::optional<std::string> signal;  // a signal the client sent
  bool started = false;
  bool remote_closed = false;
  bool local_closed = false;
  std::string counted_service;    // counted in running_per_service and running_per_key while not empty
  kj::TimePoint opened_at;        // a session with no command by --exec-timeout is closed
  std::string log_service;        // the known service a command went to (metrics, log)
  std::string words;              // the verb as typed, for the log
  std::vector<std::string> args;  // the command's arguments, for the audit (values redacted there)
  std::string commit;             // the checkout's commit after the command, as the worker said
  bool audited = false;           // its audit entry is written
  std::chrono::steady_clock::time_point started_at{};
  kj::Promise<void> task = nullptr;

  struct Pending {
    bool to_stderr;
    kj::ArrayPtr<const kj::byte> data;  // the worker's bytes stay in its RPC message until `done`
    kj::Array<kj::byte> owned;          // or our own text
    std::size_t offset = 0;
    kj::Own<kj::PromiseFulfiller<void>> done;
  };
  std::deque<Pending> queue;
};

struct Connection {
  Connection(SshServer::Impl& server_in, ssh_session session_in, UniqueFd watch_in, std::string peer_in);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start();
  void drive();
  void after_poll();
  void pump_channels();
  // Ends the connection; an unauthenticated one's offence goes to its source's penalty.
  void kill(const std::string& why, bool failure = false,
            std::optional<SshServer::Impl::Offence> offence = std::nullopt);
  void release_pending();
  void release_authenticated();
  bool running_a_command() const;
  void authenticate(const std::string& user_name, const std::string& canonical_key);
  kj::Promise<void> watch_readable();
  kj::Promise<void> watch_writable();

  SshServer::Impl& server;
  ssh_session session;
  ssh_event event = nullptr;
  UniqueFd watch_fd;  // a dup of libssh's fd: libssh closes its own on disconnect
  std::string peer;
  ssh_server_callbacks_struct callbacks{};
  kj::Own<kj::UnixEventPort::FdObserver> observer;
  kj::Promise<void> reading = nullptr;
  kj::Promise<void> writing = nullptr;
  kj::TaskSet flushes{server};  // drive() on a later turn: libssh sends only from its poll
  bool flush_scheduled = false;
  bool kex_done = false;
  bool authenticated = false;
  bool dead = false;
  bool driving = false;
  std::size_t auth_failures = 0;
  std::size_t keys_offered = 0;
  SshServer::Impl::Source* source = nullptr;  // while pending; null when not tracked
  bool holds_pending = false;                 // counted in unauthenticated (and source->pending)
  bool holds_authenticated = false;           // counted in authenticated and authenticated_per_key
  kj::TimePoint accepted_at = kj::origin<kj::TimePoint>();
  kj::TimePoint kex_deadline = kj::origin<kj::TimePoint>();
  kj::TimePoint login_deadline = kj::origin<kj::TimePoint>();
  kj::TimePoint last_active = kj::origin<kj::TimePoint>();  // authenticated, or a command started or ended
  std::string user;  // as the client gave it (attacker-chosen: printable() before showing)
  std::string key;   // canonical form of the key it authenticated with
  kj::TimePoint deadline = kj::origin<kj::TimePoint>();  // idle: authenticated, no command running
  std::list<std::unique_ptr<Channel>> channels;
};

// --- the output sink the worker streams into ---

class ChannelSink final : public rpc::OutputSink::Server {
 public:
  ChannelSink(std::shared_ptr<SinkTarget> target, kj::UnixEventPort& events, std::shared_ptr<WorkerLink> link)
      : target_(std::move(target)), events_(events), link_(std::move(link)) {}

 protected:
  kj::Promise<void> stdout(StdoutContext context) override { return write(false, context); }
  kj::Promise<void> stderr(StderrContext context) override { return write(true, context); }
  kj::Promise<void> done(DoneContext context) override {
    context.releaseParams();
    if (target_->channel == nullptr) return KJ_EXCEPTION(DISCONNECTED, "the client went away");
    return target_->channel->drained();
  }
  // The command's stdout pipe itself, read here straight into the channel: the worker's copy of
  // each byte, and its message, saved (see OutputSink.stdoutPipe).
  kj::Promise<void> stdoutPipe(StdoutPipeContext context) override {
    allow_cancellation(context);
    // The descriptor came with this call, and the link's relay took it off (worker_link.h),
    // kept by the inode number the call names.
    auto pipe = link_ ? link_->take(context.getParams().getInode()) : nullptr;
    context.releaseParams();
    if (target_->channel == nullptr) return KJ_EXCEPTION(DISCONNECTED, "the client went away");
    if (pipe_asked_) return KJ_EXCEPTION(FAILED, "a second stdout pipe for one command");
    pipe_asked_ = true;
    // Nothing read yet in either case: the worker pumps the pipe itself.
    if (pipe == nullptr)
      return KJ_EXCEPTION(UNIMPLEMENTED, "no descriptor came with the pipe, or this worker has enough being read");
    // Read on the reader's thread, which hands it back to the relay to close.
    auto adopted = WorkerPipe::adopt(events_, std::move(pipe), kWriteSlice);
    KJ_IF_MAYBE (input, adopted) {
      auto gone = kj::newPromiseAndFulfiller<void>();
      target_->gone = kj::mv(gone.fulfiller);
      auto& stream = **input;
      auto draining = drain(stream).attach(kj::mv(*input));
      // A worker that neither closes the pipe nor cancels the call does not keep it open here.
      return draining.exclusiveJoin(
          gone.promise.then([]() -> kj::Promise<void> { return KJ_EXCEPTION(DISCONNECTED, "the client went away"); }));
    }
    return KJ_EXCEPTION(UNIMPLEMENTED, "no reader thread for the pipe");
  }

 private:
  // The pipe's next bytes go to the channel, and the next read waits until libssh has them.
  kj::Promise<void> drain(WorkerPipe& pipe) {
    return pipe.read().then([this, &pipe](kj::ArrayPtr<const kj::byte> bytes) -> kj::Promise<void> {
      if (bytes.size() == 0) return kj::READY_NOW;
      if (target_->channel == nullptr) return KJ_EXCEPTION(DISCONNECTED, "the client went away");
      return target_->channel->send(false, bytes).then([this, &pipe]() { return drain(pipe); });
    });
  }

  // Resolves once the bytes are in the SSH channel: until then the worker's stream window
  // stays full and it stops reading the command's pipe. The bytes are copied and the message
  // let go at once, not held while the client is slow to read.
  template <class Context>
  kj::Promise<void> write(bool to_stderr, Context& context) {
    if (target_->channel == nullptr) return KJ_EXCEPTION(DISCONNECTED, "the client went away");
    auto owned = kj::heapArray(context.getParams().getData());
    context.releaseParams();
    auto view = owned.asPtr().asConst();
    return target_->channel->send(to_stderr, view, kj::mv(owned));
  }
  std::shared_ptr<SinkTarget> target_;
  kj::UnixEventPort& events_;
  std::shared_ptr<WorkerLink> link_;
  bool pipe_asked_ = false;
};

// --- libssh callbacks: they only record what happened; the work happens after the poll. ---

namespace {

int on_auth_pubkey(ssh_session, const char* user, ssh_key pubkey, char state, void* userdata) {
  auto& connection = *static_cast<Connection*>(userdata);
  auto& server = connection.server;
  ++connection.keys_offered;
  if (state == SSH_PUBLICKEY_STATE_NONE || state == SSH_PUBLICKEY_STATE_VALID) {
    auto canonical = KeyIndex::canonical(pubkey);
    if (canonical && server.keys.listed_anywhere(*canonical)) {
      // NONE is the client asking whether this key would do; VALID is the signed proof.
      if (state == SSH_PUBLICKEY_STATE_VALID && !connection.authenticated) {
        auto open = server.authenticated_per_key.find(*canonical);
        if (open != server.authenticated_per_key.end() && open->second >= server.limits.max_connections_per_key) {
          server.metrics.count_rejected("limit");
          server.log_refusal("key", fmt::format("{}: login refused: {} connections open with this key (see "
                                                "--max-connections-per-key)",
                                                connection.peer, open->second));
          ++connection.auth_failures;
          return SSH_AUTH_DENIED;
        }
        if (!server.room_to_authenticate()) {
          server.metrics.count_rejected("limit");
          server.log_refusal("authenticated", fmt::format("{}: login refused: {} authenticated connections, each "
                                                          "running a command or active in the last second (see "
                                                          "--max-connections)",
                                                          connection.peer, server.authenticated));
          ++connection.auth_failures;
          return SSH_AUTH_DENIED;
        }
        connection.authenticate(user ? user : "", *canonical);
      }
      return SSH_AUTH_SUCCESS;
    }
  }
  ++connection.auth_failures;
  return SSH_AUTH_DENIED;
}

// Everything the callbacks do not handle (other auth methods, port forwarding, global
// requests) gets libssh's default refusal here, instead of piling up in libssh's queue.
int on_other_message(ssh_session, ssh_message message, void* userdata) {
  auto& connection = *static_cast<Connection*>(userdata);
  if (ssh_message_type(message) == SSH_REQUEST_AUTH && ssh_message_subtype(message) != SSH_AUTH_METHOD_NONE)
    ++connection.auth_failures;
  return 1;  // 1: reply with the default (failure) and free it
}

int on_channel_data(ssh_session, ssh_channel, void*, uint32_t length, int, void*) {
  return static_cast<int>(length);  // commands read no input: consume and drop it
}

void on_channel_close(ssh_session, ssh_channel, void* userdata) {
  static_cast<Channel*>(userdata)->remote_closed = true;
}

void on_channel_signal(ssh_session, ssh_channel, const char* signal, void* userdata) {
  static_cast<Channel*>(userdata)->signal = signal ? signal : "TERM";
}

int on_exec_request(ssh_session, ssh_channel, const char* command, void* userdata) {
  auto& channel = *static_cast<Channel*>(userdata);
  if (channel.request || channel.shell_request) return -1;  // one command per channel
  channel.request = command ? command : "";
  return 0;
}

int on_shell_request(ssh_session, ssh_channel, void* userdata) {
  auto& channel = *static_cast<Channel*>(userdata);
  if (channel.request || channel.shell_request) return -1;
  channel.shell_request = true;  // answered with a usage message, not a shell
  return 0;
}

// `ssh -t` asks for a terminal; commands do not use one, but refusing makes ssh exit 255.
int on_pty_request(ssh_session, ssh_channel, const char*, int, int, int, int, void*) { return 0; }
int on_refused_request(ssh_session, ssh_channel, const char*, void*) { return -1; }
int on_refused_env(ssh_session, ssh_channel, const char*, const char*, void*) { return -1; }

ssh_channel on_channel_open(ssh_session session, void* userdata) {
  auto& connection = *static_cast<Connection*>(userdata);
  if (!connection.authenticated) return nullptr;
  if (connection.channels.size() >= connection.server.limits.max_sessions_per_connection) {
    connection.server.metrics.count_rejected("limit");
    connection.server.log_refusal(
        "sessions", fmt::format("{}: session refused: {} open on this connection (see --max-sessions)", connection.peer,
                                connection.channels.size()));
    return nullptr;
  }
  ssh_channel channel = ssh_channel_new(session);
  if (channel == nullptr) return nullptr;
  connection.channels.push_back(std::make_unique<Channel>(connection, channel));
  return channel;
}

}  // namespace

// --- Channel ---

Channel::Channel(Connection& connection_in, ssh_channel channel_in)
    : connection(connection_in), channel(channel_in), opened_at(connection_in.server.now()) {
  target->channel = this;
  callbacks.userdata = this;
  callbacks.channel_data_function = on_channel_data;
  callbacks.channel_close_function = on_channel_close;
  callbacks.channel_signal_function = on_channel_signal;
  callbacks.channel_exec_request_function = on_exec_request;
  callbacks.channel_shell_request_function = on_shell_request;
  callbacks.channel_pty_request_function = on_pty_request;
  callbacks.channel_subsystem_request_function = on_refused_request;
  callbacks.channel_env_request_function = on_refused_env;
  ssh_callbacks_init(&callbacks);
  ssh_set_channel_callbacks(channel, &callbacks);
}

Channel::~Channel() {
  // A command its client left before it ended is recorded too (a destructor must not throw).
  if (!log_service.empty() && !audited) try {
      audit_command("abandoned", std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - started_at));
    } catch (...) {
    }
  target->channel = nullptr;
  if (target->gone) target->gone->fulfill();
  task = nullptr;  // cancels the worker call: the worker kills the command
  fail_queue("the channel is gone");
  count_running("");
  ssh_remove_channel_callbacks(channel, &callbacks);
  // libssh finishes the close itself if the peer has not answered yet.
  ssh_channel_free(channel);
}

void Channel::count_running(const std::string& service) {
  auto& server = connection.server;
  if (!counted_service.empty()) {
    release_count(server.running_per_service, counted_service);
    release_count(server.running_per_key, connection.key);
  }
  counted_service = service;
  if (!service.empty()) {
    ++server.running_per_service[service];
    ++server.running_per_key[connection.key];
  }
}

kj::Promise<void> Channel::send(bool to_stderr, kj::ArrayPtr<const kj::byte> data, kj::Array<kj::byte> owned) {
  if (local_closed || remote_closed) return KJ_EXCEPTION(DISCONNECTED, "the client closed the session");
  if (data.size() == 0) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  queue.push_back(Pending{to_stderr, data, kj::mv(owned), 0, kj::mv(paf.fulfiller)});
  connection.pump_channels();
  return kj::mv(paf.promise);
}

kj::Promise<void> Channel::drained() {
  if (queue.empty()) return kj::READY_NOW;
  // An empty entry at the tail: fulfilled when everything before it has been written.
  auto paf = kj::newPromiseAndFulfiller<void>();
  queue.push_back(Pending{false, nullptr, nullptr, 0, kj::mv(paf.fulfiller)});
  return kj::mv(paf.promise);
}

// Writes at most one slice of this channel's output; true if it wrote. Never more than the
// client's window: libssh would otherwise wait for a window adjust inside the write, and a
// client that stops reading would stall every session. And only while libssh's own output
// buffer is empty: libssh keeps what the socket does not take without bound, so a client that
// announces a huge window and stops reading its socket would otherwise make the gateway hold
// everything the worker can produce.
bool Channel::pump() {
  while (!queue.empty()) {
    auto& front = queue.front();
    if (front.offset == front.data.size()) {
      front.done->fulfill();
      queue.pop_front();
      continue;
    }
    if (!front.done->isWaiting() && front.owned.size() == 0) {
      // The call that lent these bytes was cancelled: its message may be gone already.
      queue.pop_front();
      continue;
    }
    if (local_closed || remote_closed) {
      fail_queue("the client closed the session");
      return false;
    }
    // Resumed by drive() when the socket drains (watch_writable) or a window adjust arrives.
    if ((ssh_get_poll_flags(connection.session) & SSH_WRITE_PENDING) != 0) return false;
    const std::uint32_t window = ssh_channel_window_size(channel);
    if (window == 0) return false;
    // libssh cuts this into packets of the client's maximum size itself.
    const std::size_t length = std::min({front.data.size() - front.offset, std::size_t{window}, kWriteSlice});
    const auto* bytes = front.data.begin() + front.offset;
    const int written = front.to_stderr ? ssh_channel_write_stderr(channel, bytes, static_cast<uint32_t>(length))
                                        : ssh_channel_write(channel, bytes, static_cast<uint32_t>(length));
    if (written == SSH_ERROR) {
      fail_queue("writing to the client failed");
      return false;
    }
    if (written == 0) return false;
    front.offset += static_cast<std::size_t>(written);
    if (front.offset == front.data.size()) {
      front.done->fulfill();
      queue.pop_front();
    }
    return true;
  }
  return false;
}

void Channel::fail_queue(const char* why) {
  for (auto& pending : queue) pending.done->reject(KJ_EXCEPTION(DISCONNECTED, why));
  queue.clear();
}

void Channel::start_command() {
  started = true;
  started_at = std::chrono::steady_clock::now();
  connection.last_active = connection.server.now();
  auto& server = connection.server;
  if (shell_request) {
    task =
        finish(static_cast<std::uint32_t>(Status::kBadRequest),
               "no shell here; run a command: ssh -p PORT HOST 'service//command [args...]' (commands: " + verb_list() +
                   ")")
            .eagerlyEvaluate(nullptr);
    return;
  }
  const std::string line = *request;
  if (line.size() > server.limits.max_command_length) {
    server.log_refusal("length", fmt::format("{}: command line of {} bytes refused (see --max-command-length)",
                                             connection.peer, line.size()));
    task = finish(static_cast<std::uint32_t>(Status::kBadRequest),
                  fmt::format("command line too long: {} bytes, the limit is {}", line.size(),
                              server.limits.max_command_length))
               .eagerlyEvaluate(nullptr);
    return;
  }
  auto parsed = parse_command_line(line);
  if (!parsed) {
    task = finish(static_cast<std::uint32_t>(parsed.error().status), parsed.error().message).eagerlyEvaluate(nullptr);
    return;
  }
  // A service added a moment ago may not be in the list yet: ask the supervisor once more.
  kj::Promise<void> known =
      server.backends.has_service(parsed->service) ? kj::Promise<void>(kj::READY_NOW) : server.backends.refresh_soon();
  task = known.then([this, command = std::move(*parsed)]() mutable { return dispatch(std::move(command)); })
             .catch_([this](kj::Exception&& e) {
               // Only reached when the client went away mid-answer, or a bug: never leave the
               // channel hanging.
               spdlog::debug("{}: command ended: {}", connection.peer, e.getDescription().cStr());
               close_local();
             })
             .eagerlyEvaluate(nullptr);
}

// Admits the command (a known service, a key listed for it, under the per-service limit, its
// worker up), then hands it to what answers it: the gateway, the supervisor or the worker.
kj::Promise<void> Channel::dispatch(Command command) {
  auto& server = connection.server;
  const auto& info = verb_info(command.verb);
  words = std::string(info.words);
  args = command.args;
  if (!server.backends.has_service(command.service))
    return finish(static_cast<std::uint32_t>(Status::kNotFound), not_found_message(command.service));
  auto listed = server.keys.listed_by(command.service, connection.key);
  if (!listed) {
    return finish(static_cast<std::uint32_t>(Status::kUnauthorized),
                  unauthorized_message(printable(connection.user), command.service));
  }
  log_service = command.service;
  auto running = server.running_per_service.find(command.service);
  if (running != server.running_per_service.end() && running->second >= server.limits.max_commands_per_service) {
    server.log_refusal("busy", fmt::format("[{}] command refused: {} running (see --max-commands-per-service)",
                                           command.service, running->second));
    return finish(static_cast<std::uint32_t>(Status::kInternalServerError),
                  fmt::format("too many commands running for {} (the limit is {}); try again later", command.service,
                              server.limits.max_commands_per_service));
  }
  auto by_key = server.running_per_key.find(connection.key);
  if (by_key != server.running_per_key.end() && by_key->second >= server.limits.max_commands_per_key) {
    server.log_refusal("busy", fmt::format("[{}] command refused: {} running with the key of {} (see "
                                           "--max-commands-per-key)",
                                           command.service, by_key->second, printable(connection.user)));
    return finish(static_cast<std::uint32_t>(Status::kInternalServerError),
                  fmt::format("too many commands running with this key (the limit is {}); try again later",
                              server.limits.max_commands_per_key));
  }
  if (info.handler == Handler::kWorker) {
    // Answer now rather than leave the client waiting in the socket's backlog for a worker
    // that is backing off.
    const auto state = server.backends.worker_state(command.service);
    if (state != rpc::ServiceInfo::WorkerState::RUNNING)
      return finish(static_cast<std::uint32_t>(Status::kInternalServerError),
                    fmt::format("the worker of {} is not running ({}); try again later", command.service,
                                state ? worker_state_name(*state) : "unknown"));
  }
  count_running(command.service);
  switch (info.handler) {
    case Handler::kGateway:  // ping: answered here, without touching the worker or docker
      return send_text(false, fmt::format("pong! - {}\n", server.hostname)).then([this]() { return finish(0, ""); });
    case Handler::kSupervisor:
      return restart_worker(command.service);
    case Handler::kWorker:
      break;
  }
  return run_on_worker(command, fmt::format("{}@{} ({})", shown_user(connection.user), connection.peer, *listed));
}

// worker restart: asked of the supervisor, which owns the workers.
kj::Promise<void> Channel::restart_worker(const std::string& service) {
  auto request = connection.server.backends.supervisor().restartWorkerRequest();
  request.setName(service);
  return request.send().then(
      [this, service](auto) {
        return send_text(false, fmt::format("the worker of {} is restarting\n", service)).then([this]() {
          return finish(0, "");
        });
      },
      [this, service](kj::Exception&& e) {
        // The details are for the log: the client learns what failed, not pgod's internals.
        spdlog::warn("[{}] restart-worker failed: {}", service, printable(e.getDescription().cStr()));
        return finish(static_cast<std::uint32_t>(Status::kInternalServerError),
                      fmt::format("cannot restart the worker of {} (pgod did not answer); try again", service));
      });
}

// Every other verb runs in the service's worker, its output streamed into this channel.
kj::Promise<void> Channel::run_on_worker(const Command& command, const std::string& caller) {
  auto verb = to_rpc_verb(command.verb);
  KJ_ASSERT(verb != std::nullopt, "a worker verb without an RPC verb");
  auto& backends = connection.server.backends;
  auto request = backends.worker(command.service).runRequest();
  request.setVerb(*verb);
  auto args = request.initArgs(static_cast<unsigned>(command.args.size()));
  for (unsigned i = 0; i < command.args.size(); ++i) args.set(i, command.args[i]);
  request.setOutput(
      kj::heap<ChannelSink>(target, connection.server.io.unixEventPort, backends.worker_relay(command.service)));
  request.setCaller(caller);
  request.setKeyFingerprint(key_fingerprint(connection.key));
  return request.send().then(
      [this](capnp::Response<rpc::Worker::RunResults> response) {
        commit = response.getCommit().cStr();
        return finish(response.getExitStatus(), response.getMessage());
      },
      [this, service = command.service](kj::Exception&& e) {
        if (local_closed || remote_closed) return kj::Promise<void>(kj::READY_NOW);
        spdlog::warn("[{}] the worker did not answer: {}", service, printable(e.getDescription().cStr()));
        return finish(static_cast<std::uint32_t>(Status::kInternalServerError),
                      fmt::format("the worker of {} did not answer (it may be restarting); try again", service));
      });
}

// The answer's tail: the message on stderr (pgod statuses in the original's words), then
// exit-status, EOF and close, in that order, after all output.
kj::Promise<void> Channel::finish(std::uint32_t status, std::string message) {
  auto& server = connection.server;
  const auto elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_at);
  if (!log_service.empty()) {
    const auto space = words.find(' ');
    server.metrics.count_command(log_service, words.substr(0, space),
                                 space == std::string::npos ? "" : words.substr(space + 1), status != 0);
    service_logger(log_service)
        ->info("{} from {}: {}: exit {} in {} ms", printable(connection.user), connection.peer, words, status,
               elapsed.count());
    audit_command(std::to_string(status), elapsed);
  } else {
    server.metrics.count_rejected(rejection_reason(status));
    spdlog::info("{} ({}): refused with {}: {}", connection.peer, printable(connection.user), status,
                 printable(message));
  }
  // The exit status goes after the last byte of output: the worker's final writes may still
  // wait for the client's window when its answer arrives.
  kj::Promise<void> told = drained();
  if (!message.empty()) {
    auto line = is_pgod_status(status) ? status_line(static_cast<Status>(status), message) : message;
    told = send_text(true, line + "\n");
  }
  return told.then([this, status]() {
    ssh_channel_request_send_exit_status(channel, static_cast<int>(status));
    ssh_channel_send_eof(channel);
    close_local();
  });
}

// The command's audit entry: who (the key's fingerprint, the address), what (verb, arguments
// with values after '=' hidden), the outcome and the commit the service was at.
void Channel::audit_command(const std::string& exit, std::chrono::milliseconds elapsed) {
  audited = true;
  const std::string fingerprint = key_fingerprint(connection.key);
  const std::string redacted = pgod::redact_arguments(args);
  pgod::AuditEntry entry;
  entry.kind = "command";
  entry.message = fmt::format("[{}] {} ({}) from {}: {}{}{}: {}", log_service, printable(connection.user), fingerprint,
                              connection.peer, words, redacted.empty() ? "" : " ", redacted,
                              exit == "abandoned" ? "abandoned (the client went away first)" : "exit " + exit);
  entry.fields = {{"SERVICE", log_service},
                  {"KEY_FINGERPRINT", fingerprint},
                  {"VERB", words},
                  {"ARGS", redacted},
                  {"EXIT", exit},
                  {"COMMIT", commit},
                  {"TRIGGER", "command"},
                  {"SOURCE", connection.peer},
                  {"DURATION_MS", std::to_string(elapsed.count())}};
  pgod::send_audit(entry);
}

void Channel::cancel() {
  task = nullptr;
  fail_queue("the client ended the command");
  if (signal && !remote_closed && !local_closed) {
    ssh_channel_request_send_exit_status(channel, signal_exit_status(*signal));
    ssh_channel_send_eof(channel);
  }
  close_local();
}

void Channel::close_local() {
  if (!local_closed) {
    local_closed = true;
    count_running("");
    ssh_channel_close(channel);
    // Only a session that ran a command counts as activity: opening empty ones (closed at
    // --exec-timeout) must not keep a connection from its idle deadline.
    if (started) {
      connection.last_active = connection.server.now();
      connection.deadline = connection.last_active + as_kj(connection.server.limits.idle_timeout);
    }
  }
  connection.server.schedule_reap();
}

// --- Connection ---

Connection::Connection(SshServer::Impl& server_in, ssh_session session_in, UniqueFd watch_in, std::string peer_in)
    : server(server_in), session(session_in), watch_fd(std::move(watch_in)), peer(std::move(peer_in)) {}

Connection::~Connection() {
  channels.clear();
  reading = nullptr;
  writing = nullptr;
  observer = nullptr;
  watch_fd.reset();
  if (event != nullptr) {
    ssh_event_remove_session(event, session);
    ssh_event_free(event);
  }
  if (ssh_is_connected(session)) ssh_disconnect(session);
  ssh_free(session);
  release_pending();
  release_authenticated();
}

void Connection::release_authenticated() {
  if (!holds_authenticated) return;
  holds_authenticated = false;
  --server.authenticated;
  release_count(server.authenticated_per_key, key);
}

bool Connection::running_a_command() const {
  return std::any_of(channels.begin(), channels.end(),
                     [](const auto& channel) { return channel->started && !channel->local_closed; });
}

void Connection::release_pending() {
  if (!holds_pending) return;
  holds_pending = false;
  --server.unauthenticated;
  if (source != nullptr) --source->pending;
  source = nullptr;
}

void Connection::authenticate(const std::string& user_name, const std::string& canonical_key) {
  authenticated = true;
  user = user_name;
  key = canonical_key;
  holds_authenticated = true;
  ++server.authenticated;
  ++server.authenticated_per_key[key];
  release_pending();
  last_active = server.now();
  deadline = last_active + as_kj(server.limits.idle_timeout);
}

void Connection::start() {
  ssh_set_blocking(session, 0);
  ssh_set_auth_methods(session, SSH_AUTH_METHOD_PUBLICKEY);
  callbacks.userdata = this;
  callbacks.auth_pubkey_function = on_auth_pubkey;
  callbacks.channel_open_request_session_function = on_channel_open;
  ssh_callbacks_init(&callbacks);
  ssh_set_server_callbacks(session, &callbacks);
  ssh_set_message_callback(session, on_other_message, this);
  accepted_at = server.now();
  kex_deadline = accepted_at + as_kj(server.limits.kex_timeout);
  login_deadline = accepted_at + as_kj(server.limits.login_timeout);
  observer = kj::heap<kj::UnixEventPort::FdObserver>(
      server.io.unixEventPort, watch_fd.get(),
      kj::UnixEventPort::FdObserver::OBSERVE_READ | kj::UnixEventPort::FdObserver::OBSERVE_WRITE);
  reading = watch_readable().eagerlyEvaluate(nullptr);
  writing = watch_writable().eagerlyEvaluate(nullptr);
  drive();
}

kj::Promise<void> Connection::watch_readable() {
  return observer->whenBecomesReadable().then([this]() {
    drive();
    return watch_readable();
  });
}

kj::Promise<void> Connection::watch_writable() {
  return observer->whenBecomesWritable().then([this]() {
    drive();
    return watch_writable();
  });
}

// Lets libssh read and write what the socket allows (edge-triggered: until it has nothing more
// to do), then acts on what its callbacks recorded.
void Connection::drive() {
  if (dead || driving) return;
  driving = true;
  if (!kex_done) {
    const int rc = ssh_handle_key_exchange(session);
    if (rc == SSH_OK) {
      kex_done = true;
    } else if (rc == SSH_ERROR) {
      driving = false;
      return kill(fmt::format("key exchange failed: {}", ssh_get_error(session)), false,
                  SshServer::Impl::Offence::kNoAuth);
    }
    // libssh makes the session's poll context in its first key-exchange step; only then can
    // the session join an event of its own.
    if (event == nullptr) {
      event = ssh_event_new();
      if (event == nullptr || ssh_event_add_session(event, session) != SSH_OK) {
        driving = false;
        return kill("cannot create a poll event");
      }
    }
  }
  if (kex_done) {
    for (int round = 0; round < kMaxPollRounds; ++round) {
      const int rc = ssh_event_dopoll(event, 0);
      if (rc == SSH_ERROR) break;
      if (rc == SSH_AGAIN) break;
    }
  }
  driving = false;
  if (!authenticated) {
    // Delayed ACKs stall each step of the login by ~40 ms; the kernel clears QUICKACK after
    // a while, so it is set again after every read while the login is in progress.
    const int yes = 1;
    setsockopt(watch_fd.get(), IPPROTO_TCP, TCP_QUICKACK, &yes, sizeof yes);
  }
  if (!ssh_is_connected(session) || (ssh_get_status(session) & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0) {
    // The client left, or libssh gave up on the session: a packet over its size limit (an exec
    // request too long for --max-command-length to see), a protocol error. The latter is a
    // limit applied or an attack, worth a line in the log even after authentication.
    const std::string error = (ssh_get_status(session) & SSH_CLOSED_ERROR) != 0 ? ssh_get_error(session) : "";
    const bool client_left = client_went_away(error);
    // One offence per connection, however many keys it tried: a client trying its agent's keys
    // one by one does so on one connection.
    return kill(client_left ? "disconnected" : error, !client_left, SshServer::Impl::Offence::kNoAuth);
  }
  if (auth_failures >= server.limits.max_auth_tries) {
    server.metrics.count_rejected("auth");
    return kill(fmt::format("too many refused authentication attempts ({}; see --max-auth-tries)", auth_failures),
                false, SshServer::Impl::Offence::kAuthFail);
  }
  after_poll();
}

void Connection::after_poll() {
  // A snapshot: starting a command writes, and writing reorders `channels` (pump_channels).
  std::vector<Channel*> snapshot;
  for (auto& channel : channels) snapshot.push_back(channel.get());
  for (Channel* channel : snapshot) {
    if (channel->local_closed) continue;
    if (channel->remote_closed || channel->signal) {
      channel->cancel();
      continue;
    }
    if (!channel->started && (channel->request || channel->shell_request)) channel->start_command();
  }
  pump_channels();
}

// The sessions of a connection share libssh's output buffer: they take turns, a slice each,
// and one that wrote goes to the back of the line, so none is starved by a busier one.
void Connection::pump_channels() {
  bool held_back = false;
  for (bool wrote = true; wrote;) {
    wrote = false;
    for (auto it = channels.begin(); it != channels.end(); ++it) {
      if ((*it)->local_closed) continue;
      if (!(*it)->pump()) {
        held_back = held_back || !(*it)->queue.empty();
        continue;
      }
      channels.splice(channels.end(), channels, it);
      wrote = true;
      break;
    }
  }
  // After a write libssh reports a write pending until its poll has seen the socket writable,
  // and only then sends more. If the socket has room, that poll is run on the next turn of the
  // loop; if it has none, the socket's writable edge runs it (watch_writable).
  if (!held_back || dead || flush_scheduled || (ssh_get_poll_flags(session) & SSH_WRITE_PENDING) == 0) return;
  pollfd room{watch_fd.get(), POLLOUT, 0};
  if (poll(&room, 1, 0) != 1 || (room.revents & POLLOUT) == 0) return;
  flush_scheduled = true;
  flushes.add(kj::evalLater([this]() {
    flush_scheduled = false;
    drive();
  }));
}

void Connection::kill(const std::string& why, bool failure, std::optional<SshServer::Impl::Offence> offence) {
  if (dead) return;
  dead = true;
  if (!authenticated && source != nullptr && offence) server.penalise(*source, *offence);
  release_pending();
  release_authenticated();
  if (authenticated && failure)
    server.log_refusal("dropped",
                       fmt::format("{} ({}): connection dropped: {}", peer, printable(user), printable(why)));
  else if (authenticated)
    spdlog::debug("{} ({}): connection ended: {}", peer, printable(user), printable(why));
  else
    server.log_refusal("unauthenticated",
                       fmt::format("{}: connection ended before authentication: {}", peer, printable(why)));
  server.schedule_reap();
}

// --- the server ---

SshServer::Impl::~Impl() noexcept(false) { connections.clear(); }

void SshServer::Impl::log_refusal(const std::string& kind, const std::string& what) {
  auto& log = refusal_logs[kind];
  const auto now = std::chrono::steady_clock::now();
  if (log.last != std::chrono::steady_clock::time_point{} && now - log.last < kRefusalLogInterval) {
    ++log.unlogged;
    return;
  }
  if (log.unlogged > 0)
    spdlog::warn("{} (and {} more like it since the last one logged)", what, log.unlogged);
  else
    spdlog::warn("{}", what);
  log.unlogged = 0;
  log.last = now;
}

kj::Promise<void> SshServer::Impl::accept_loop(kj::UnixEventPort::FdObserver& observer) {
  return observer.whenBecomesReadable().then([this, &observer]() {
    accept_ready();
    return accept_loop(observer);
  });
}

void SshServer::Impl::accept_ready() {
  for (;;) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    UniqueFd fd(retry_eintr([&] {
      return accept4(listen_fd, reinterpret_cast<sockaddr*>(&address), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    }));
    if (!fd) {
      if (errno == ECONNABORTED) continue;  // that client is gone, others may wait
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        log_refusal("accept", os_error("accept on the ssh socket", "", errno));
      return;
    }
    const std::string peer = socket_address(fd.get(), true);
    if (connections.size() >= limits.max_connections) {
      metrics.count_rejected("limit");
      log_refusal("limit",
                  fmt::format("{}: connection refused: {} open (see --max-connections)", peer, connections.size()));
      reset(fd.get());
      continue;  // closed here, before any SSH work is spent on it
    }
    Source* source = source_for(address);
    if (!admit(source, peer)) {
      reset(fd.get());
      continue;
    }
    // The handshake is a string of small messages, each waiting on the last: without these,
    // Nagle's algorithm and delayed ACKs add ~40 ms stalls to every login.
    const int yes = 1;
    if (setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes) != 0 ||
        setsockopt(fd.get(), IPPROTO_TCP, TCP_QUICKACK, &yes, sizeof yes) != 0 || !set_keepalive(fd.get(), limits))
      log_refusal("accept", fmt::format("{}: TCP options: {}", peer, errno_text(errno)));
    UniqueFd watch(fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
    if (!watch) {
      log_refusal("accept", fmt::format("{}: connection dropped: dup: {}", peer, errno_text(errno)));
      continue;
    }
    ssh_session session = ssh_new();
    if (session == nullptr) {
      log_refusal("accept", fmt::format("{}: connection dropped: out of memory", peer));
      continue;
    }
    const int raw = fd.release();
    if (ssh_bind_accept_fd(bind, session, raw) != SSH_OK) {
      log_refusal("accept", fmt::format("{}: connection dropped: {}", peer, ssh_get_error(bind)));
      if (ssh_get_fd(session) != raw) ::close(raw);  // else ssh_free closes it
      ssh_free(session);
      continue;
    }
    connections.push_back(std::make_unique<Connection>(*this, session, std::move(watch), peer));
    auto& connection = *connections.back();
    connection.holds_pending = true;
    connection.source = source;
    ++unauthenticated;
    if (source != nullptr) ++source->pending;
    connection.start();
  }
}

SshServer::Impl::Source* SshServer::Impl::source_for(const sockaddr_storage& address) {
  auto id = source_of(address, limits);
  if (!id) return nullptr;
  if (auto found = sources.find(id->key); found != sources.end()) return &found->second;
  if (sources.size() >= kMaxSources) forget_quiet_sources();
  if (sources.size() >= kMaxSources) {
    log_refusal("sources",
                fmt::format("{} sources tracked: {} counts with the other untracked ones", sources.size(), id->label));
    return &overflow;
  }
  auto& source = sources[id->key];
  source.label = std::move(id->label);
  return &source;
}

// Whether a new connection from `source` (null: not tracked) may start a login. The per-source
// rules come first, so a few busy sources cannot crowd out the rest; then random early drop,
// which spares a source's first pending login; at the full limit a newcomer takes the slot of
// the oldest pending login of the source holding most, if that holds at least two more.
bool SshServer::Impl::admit(Source* source, const std::string& peer) {
  const auto time = now();
  if (source != nullptr && source->refused_until > time) {
    penalise(*source, Offence::kWhileRefused);
    metrics.count_rejected("penalty");
    log_refusal("penalty", fmt::format("{}: connection refused: {} is penalised for another {} s (see --penalty-*)",
                                       peer, source->label, whole_seconds(source->refused_until - time)));
    return false;
  }
  if (source != nullptr && source->pending >= limits.per_source_max_unauthenticated) {
    metrics.count_rejected("source");
    log_refusal("source", fmt::format("{}: connection refused: {} logins pending from {} (see "
                                      "--per-source-max-unauthenticated)",
                                      peer, source->pending, source->label));
    penalise(*source, Offence::kOverCap);
    return false;
  }
  const std::size_t full = limits.max_unauthenticated;
  const std::size_t start = std::min(limits.early_drop_start, full);
  const auto refuse_full = [&]() {
    metrics.count_rejected("limit");
    log_refusal("limit", fmt::format("{}: connection refused: {} logins pending (see --max-unauthenticated)", peer,
                                     unauthenticated));
    return false;
  };
  const bool holds_some = source == nullptr || source->pending > 0;
  if (holds_some && unauthenticated >= full) return refuse_full();
  if (holds_some && unauthenticated >= start) {
    const std::size_t rate =
        limits.early_drop_rate + (100 - limits.early_drop_rate) * (unauthenticated - start) / (full - start);
    if (std::uniform_int_distribution<std::size_t>(0, 99)(random) < rate) {
      metrics.count_rejected("early_drop");
      log_refusal("early_drop", fmt::format("{}: connection dropped at random: {} logins pending (see "
                                            "--early-drop-start, --early-drop-rate)",
                                            peer, unauthenticated));
      return false;
    }
  }
  if (unauthenticated >= full && !evict_for(source)) return refuse_full();
  return true;
}

// Adds the offence's penalty to the source's; once that reaches --penalty-min the source is
// refused until it runs out, and its pending logins that have offered no key are ended.
void SshServer::Impl::penalise(Source& source, Offence offence) {
  if (&source == &overflow) return;
  std::chrono::nanoseconds amount{};
  switch (offence) {
    case Offence::kNoAuth:
    case Offence::kWhileRefused:
      amount = limits.penalty_no_auth;
      break;
    case Offence::kAuthFail:
      amount = limits.penalty_auth_fail;
      break;
    case Offence::kTimeout:
      amount = limits.penalty_timeout;
      break;
    case Offence::kOverCap:
      amount = limits.penalty_over_cap;
      break;
  }
  const auto time = now();
  source.penalty_until =
      std::min(std::max(source.penalty_until, time) + as_kj(amount), time + as_kj(limits.penalty_max));
  const bool refused = source.refused_until > time;
  if (!refused && source.penalty_until - time < as_kj(limits.penalty_min)) return;
  source.refused_until = source.penalty_until;
  if (refused) return;
  log_refusal("penalised", fmt::format("{}: refused for {} s: its connections keep ending before authentication "
                                       "(see --penalty-*)",
                                       source.label, whole_seconds(source.refused_until - time)));
  // Its pending logins go too, but not one that is offering a key: that may be a user behind the
  // same address as the offender.
  for (auto& connection : connections)
    if (!connection->dead && connection->source == &source && connection->keys_offered == 0)
      connection->kill("its source is refused");
}

// Room for a newcomer at the full limit: the oldest pending login that has offered no key for a
// second (a real client offers one within milliseconds of connecting), else the oldest of the
// source holding most, if that holds at least two more than the newcomer's.
bool SshServer::Impl::evict_for(const Source* newcomer) {
  const auto stale_before = now() - kEvictableAfter;
  Connection* victim = nullptr;
  for (auto& connection : connections) {
    if (connection->dead || !connection->holds_pending || connection->keys_offered > 0 ||
        connection->accepted_at > stale_before)
      continue;
    victim = connection.get();
    break;
  }
  std::size_t most = 0;
  if (victim == nullptr) {
    const std::size_t holds = newcomer != nullptr ? newcomer->pending : 0;
    for (auto& connection : connections) {
      if (connection->dead || connection->source == nullptr || connection->source->pending <= most) continue;
      most = connection->source->pending;
      victim = connection.get();
    }
    if (victim == nullptr || most < holds + 2) return false;
  }
  metrics.count_rejected("evicted");
  victim->kill(fmt::format("evicted: {} logins pending (see --max-unauthenticated)", unauthenticated));
  return true;
}

// Authenticated connections leave room for pending logins. At that limit a new login takes the
// place of the connection inactive longest (no command running, none started or ended for a
// second), else it is refused: holders of many keys cannot keep everyone else out.
bool SshServer::Impl::room_to_authenticate() {
  const std::size_t reserved = std::min(limits.max_unauthenticated, limits.max_connections / 2);
  if (authenticated < limits.max_connections - reserved) return true;
  const auto inactive_before = now() - kEvictableAfter;
  Connection* victim = nullptr;
  for (auto& connection : connections) {
    if (connection->dead || !connection->holds_authenticated || connection->last_active > inactive_before ||
        connection->running_a_command())
      continue;
    if (victim == nullptr || connection->last_active < victim->last_active) victim = connection.get();
  }
  if (victim == nullptr) return false;
  metrics.count_rejected("evicted");
  victim->kill(
      fmt::format("evicted: {} authenticated connections, this one the longest inactive (see "
                  "--max-connections)",
                  authenticated));
  return true;
}

void SshServer::Impl::forget_quiet_sources() {
  const auto time = now();
  std::erase_if(sources, [time](const auto& entry) {
    const Source& source = entry.second;
    return source.pending == 0 && source.penalty_until <= time && source.refused_until <= time;
  });
}

void SshServer::Impl::schedule_reap() {
  if (reap_scheduled) return;
  reap_scheduled = true;
  // Never from inside a callback or a promise that the removal would destroy: a later turn.
  tasks.add(kj::evalLater([this]() { reap(); }));
}

void SshServer::Impl::reap() {
  reap_scheduled = false;
  for (auto it = connections.begin(); it != connections.end();) {
    auto& connection = **it;
    if (connection.dead) {
      it = connections.erase(it);
      continue;
    }
    connection.channels.remove_if([](const std::unique_ptr<Channel>& channel) { return channel->local_closed; });
    // Closing a channel queued packets: let libssh send them.
    connection.drive();
    ++it;
  }
  metrics.set_connections(static_cast<std::int64_t>(connections.size()));
}

kj::Promise<void> SshServer::Impl::housekeeping() {
  return io.provider->getTimer().afterDelay(kHousekeeping).then([this]() {
    const auto time = now();
    for (auto& connection : connections) {
      if (connection->dead) continue;
      if (!connection->kex_done && time > connection->kex_deadline) {
        metrics.count_rejected("timeout");
        connection->kill("key exchange time-out (see --kex-timeout)", false, Offence::kTimeout);
      } else if (!connection->authenticated && time > connection->login_deadline) {
        metrics.count_rejected("timeout");
        connection->kill("login time-out (see --login-timeout)", false, Offence::kTimeout);
      } else if (connection->authenticated && !connection->running_a_command() && time > connection->deadline) {
        connection->kill("idle (see --idle-timeout)");
      } else {
        for (auto& channel : connection->channels) {
          if (channel->started || channel->local_closed || time - channel->opened_at <= as_kj(limits.exec_timeout))
            continue;
          spdlog::debug("{} ({}): session closed: no command (see --exec-timeout)", connection->peer,
                        printable(connection->user));
          channel->close_local();
        }
        connection->drive();  // a safety net for an edge missed
      }
    }
    forget_quiet_sources();
    metrics.set_connections(static_cast<std::int64_t>(connections.size()));
    const auto refused = std::count_if(sources.begin(), sources.end(),
                                       [time](const auto& entry) { return entry.second.refused_until > time; });
    metrics.set_pending(static_cast<std::int64_t>(unauthenticated), static_cast<std::int64_t>(refused));
    return housekeeping();
  });
}

SshServer::SshServer(kj::AsyncIoContext& io, ssh_bind bind, int listen_fd, Backends& backends, const KeyIndex& keys,
                     Metrics& metrics, Limits limits, std::string hostname)
    : impl_(std::make_unique<Impl>(io, bind, listen_fd, backends, keys, metrics, limits, std::move(hostname))) {}

SshServer::~SshServer() = default;

kj::Promise<void> SshServer::run() {
  auto observer = kj::heap<kj::UnixEventPort::FdObserver>(impl_->io.unixEventPort, impl_->listen_fd,
                                                          kj::UnixEventPort::FdObserver::OBSERVE_READ);
  auto& ref = *observer;
  impl_->accept_ready();  // connections that arrived before the loop started
  return impl_->accept_loop(ref).attach(kj::mv(observer)).exclusiveJoin(impl_->housekeeping());
}

}  // namespace pgod::gateway
