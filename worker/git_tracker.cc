#include "git_tracker.h"

#include <git2.h>
#include <git2/sys/stream.h>
// libgit2 1.8 moved git_error_set_str and friends (for callbacks that report their own error)
// out of git2.h into this header, which 1.5 (Debian 12) does not have.
#if __has_include(<git2/sys/errors.h>)
#include <git2/sys/errors.h>
#endif
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "secret.h"
#include "system_call.h"
#include "unique_fd.h"

namespace pgod::worker {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Ownership of libgit2 objects: each one freed exactly once by its own free function.

template <auto Free>
struct GitFree {
  template <class T>
  void operator()(T* object) const {
    Free(object);
  }
};
template <class T, auto Free>
using GitPtr = std::unique_ptr<T, GitFree<Free>>;

using RepositoryPtr = GitPtr<git_repository, git_repository_free>;
using RemotePtr = GitPtr<git_remote, git_remote_free>;
using CommitPtr = GitPtr<git_commit, git_commit_free>;
using TreePtr = GitPtr<git_tree, git_tree_free>;
using TreeEntryPtr = GitPtr<git_tree_entry, git_tree_entry_free>;
using DiffPtr = GitPtr<git_diff, git_diff_free>;
using ReferencePtr = GitPtr<git_reference, git_reference_free>;
using ObjectPtr = GitPtr<git_object, git_object_free>;
using ConfigPtr = GitPtr<git_config, git_config_free>;
using StatusListPtr = GitPtr<git_status_list, git_status_list_free>;
using IndexPtr = GitPtr<git_index, git_index_free>;
using OdbPtr = GitPtr<git_odb, git_odb_free>;
using BlobPtr = GitPtr<git_blob, git_blob_free>;

// One libgit2 initialisation per process, never shut down: the worker uses it until it exits.
int library_status() {
  static const int status = [] {
    int rc = git_libgit2_init();
    if (rc < 0) return rc;
    // The checkout is ours (created by the supervisor for this user); a local upstream used by
    // tests or mirrors may belong to someone else, and libgit2 1.5 cannot whitelist it.
    if ((rc = git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0)) < 0) return rc;
    // Read no system, XDG or global git config: behaviour must not depend on the host's
    // ~/.gitconfig (url.insteadOf, proxies, autocrlf...), only on the checkout's own config.
    for (const auto level :
         {GIT_CONFIG_LEVEL_SYSTEM, GIT_CONFIG_LEVEL_XDG, GIT_CONFIG_LEVEL_GLOBAL, GIT_CONFIG_LEVEL_PROGRAMDATA}) {
      if ((rc = git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, level, "")) < 0) return rc;
    }
    return 0;
  }();
  return status;
}

std::string hex(const git_oid& oid) {
  char text[GIT_OID_HEXSZ + 1];
  git_oid_tostr(text, sizeof text, &oid);
  return text;
}

// ---------------------------------------------------------------------------------------------
// The repository URL: credentials are taken out of it, handed to libgit2 only through the
// credentials callback, and never stored in the checkout's .git/config.

std::string percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(static_cast<unsigned char>(text[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// host[:port] of a URL, lower-cased; empty when it has none.
std::string authority_of(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return "";
  auto authority = url.substr(scheme_end + 3);
  authority = authority.substr(0, authority.find_first_of("/?#"));
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  std::string out(authority);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

struct RepositoryUrl {
  std::string fetch_url;  // given to libgit2 and stored as origin: no credentials in it
  std::string display;    // for messages
  bool has_credentials = false;
  std::string user, password;  // percent-decoded userinfo of an http(s) URL
  bool uses_sockets = false;   // http, https, git://: libgit2 opens sockets (see TimedSocket)
  std::string local_path;      // an upstream on this machine (absolute path or file://)
  std::vector<Secret> secrets;
};

RepositoryUrl parse_repository_url(const std::string& url) {
  RepositoryUrl out;
  out.fetch_url = url;
  out.display = redact_url(url);
  const auto scheme_end = url.find("://");
  if (url.starts_with("/")) out.local_path = url;
  if (url.starts_with("file://")) out.local_path = url.substr(7);
  if (scheme_end == std::string::npos) return out;  // a path, or scp-like ssh (user@host:path)
  std::string scheme = url.substr(0, scheme_end);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
  out.uses_sockets = scheme == "http" || scheme == "https" || scheme == "git";

  const auto authority_begin = scheme_end + 3;
  const auto authority_end = std::min(url.find_first_of("/?#", authority_begin), url.size());
  const auto at = url.rfind('@', authority_end - 1);
  if (at == std::string::npos || at < authority_begin) return out;
  const auto userinfo = std::string_view(url).substr(authority_begin, at - authority_begin);
  const auto colon = userinfo.find(':');
  const auto raw_user = userinfo.substr(0, colon);
  const auto raw_password = colon == std::string_view::npos ? std::string_view() : userinfo.substr(colon + 1);
  const bool http = scheme == "http" || scheme == "https";
  // A bare token is often sent as the user name (https://TOKEN@host/...): then it is the secret.
  const auto secret = !raw_password.empty() ? raw_password : http ? raw_user : std::string_view();
  if (!secret.empty()) {
    out.secrets.emplace_back(std::string(secret));
    if (auto decoded = percent_decode(secret); decoded != secret) out.secrets.emplace_back(std::move(decoded));
  }
  if (!http) return out;  // ssh: libgit2 needs the user name in the URL
  out.has_credentials = true;
  out.user = percent_decode(raw_user);
  out.password = percent_decode(raw_password);
  out.fetch_url = url.substr(0, authority_begin) + url.substr(at + 1);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Timeouts. libgit2 1.5 has no server timeout option and its socket stream blocks in recv()
// forever on a silent server, so plain sockets (which TLS also runs over) are replaced, for the
// duration of one operation, by this stream: non-blocking, every wait bounded by poll(). The
// transfer-progress callback also checks the overall deadline, for transports without sockets.

struct NetworkLimits {
  std::chrono::milliseconds io_timeout{};
  Clock::time_point deadline;
};

// Set by NetworkScope; libgit2 creates streams synchronously on the calling thread.
thread_local const NetworkLimits* active_limits = nullptr;
// The last socket error of the current operation: libgit2's TLS stream replaces it with a
// generic "SSL error" text, so the reason (e.g. a timeout) is kept here as well.
thread_local std::string last_socket_error;

std::string seconds_text(Clock::duration duration) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(duration).count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

class TimedSocket {
 public:
  TimedSocket(std::string host, std::string port, NetworkLimits limits)
      : host_(std::move(host)), port_(std::move(port)), limits_(limits) {}

  int connect() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    // getaddrinfo() has no timeout of its own: the resolver's (resolv.conf) bounds it.
    if (const int rc = getaddrinfo(host_.c_str(), port_.c_str(), &hints, &found); rc != 0) {
      return fail("could not resolve " + host_ + ": " + gai_strerror(rc));
    }
    const std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, freeaddrinfo);
    std::string last_error = "no address";
    for (const addrinfo* address = found; address != nullptr; address = address->ai_next) {
      UniqueFd fd(
          socket(address->ai_family, address->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, address->ai_protocol));
      if (!fd) {
        last_error = errno_text(errno);
        continue;
      }
      if (::connect(fd.get(), address->ai_addr, address->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
          last_error = errno_text(errno);
          continue;
        }
        if (const int rc = wait(fd.get(), POLLOUT, "connecting to"); rc != 0) return rc;
        int error = 0;
        socklen_t size = sizeof error;
        if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &size) < 0) error = errno;
        if (error != 0) {
          last_error = errno_text(error);
          continue;
        }
      }
      fd_ = std::move(fd);
      return 0;
    }
    return fail("could not connect to " + where() + ": " + last_error);
  }

  ssize_t read(void* data, std::size_t size) {
    for (;;) {
      if (Clock::now() >= limits_.deadline) return timed_out("reading from");
      const ssize_t n = retry_eintr([&] { return ::recv(fd_.get(), data, size, 0); });
      if (n >= 0) return n;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        return fail("could not read from " + where() + ": " + errno_text(errno));
      if (const int rc = wait(fd_.get(), POLLIN, "reading from"); rc != 0) return rc;
    }
  }

  // Writes everything or fails: callers need not handle partial writes.
  ssize_t write(const char* data, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
      // MSG_NOSIGNAL: a peer that closed must give an error, not SIGPIPE for the whole worker.
      const ssize_t n = retry_eintr([&] { return ::send(fd_.get(), data + done, size - done, MSG_NOSIGNAL); });
      if (n >= 0) {
        done += static_cast<std::size_t>(n);
        continue;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        return fail("could not write to " + where() + ": " + errno_text(errno));
      if (const int rc = wait(fd_.get(), POLLOUT, "writing to"); rc != 0) return rc;
    }
    return static_cast<ssize_t>(size);
  }

  void close() { fd_.reset(); }

 private:
  std::string where() const { return host_ + ":" + port_; }

  static int fail(const std::string& message) {
    last_socket_error = message;
    git_error_set_str(GIT_ERROR_NET, message.c_str());
    return -1;
  }

  int timed_out(const char* doing) const {
    const bool overall = Clock::now() >= limits_.deadline;
    return fail(
        std::string("timed out ") + doing + " " + where() + ": " +
        (overall ? "the operation ran past its time limit" : "no progress for " + seconds_text(limits_.io_timeout)));
  }

  // 0 once fd is ready (or has an error the next call reports), else -1 with the error set.
  int wait(int fd, short events, const char* doing) const {
    for (;;) {
      const auto remaining = std::min<Clock::duration>(limits_.io_timeout, limits_.deadline - Clock::now());
      if (remaining <= Clock::duration::zero()) return timed_out(doing);
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(remaining).count();
      pollfd entry{fd, events, 0};
      const int n = ::poll(&entry, 1, static_cast<int>(std::min<long long>(ms, std::numeric_limits<int>::max())));
      if (n > 0) return 0;
      if (n == 0) return timed_out(doing);
      // Not retry_eintr: after a signal the time left is measured again.
      if (errno != EINTR) return fail(std::string("could not wait for ") + where() + ": " + errno_text(errno));
    }
  }

  std::string host_, port_;
  NetworkLimits limits_;
  UniqueFd fd_;
};

// libgit2 sees the git_stream at the start and hands it back to each function.
struct TimedStream {
  git_stream parent;
  TimedSocket* socket;
};
static_assert(std::is_standard_layout_v<TimedStream>, "libgit2 casts git_stream* to the whole struct");

TimedSocket& socket_of(git_stream* stream) { return *reinterpret_cast<TimedStream*>(stream)->socket; }

int timed_stream_new(git_stream** out, const char* host, const char* port) {
  try {
    auto stream = std::make_unique<TimedStream>();
    stream->parent.version = GIT_STREAM_VERSION;
    stream->parent.connect = [](git_stream* s) { return socket_of(s).connect(); };
    stream->parent.read = [](git_stream* s, void* data, std::size_t size) { return socket_of(s).read(data, size); };
    stream->parent.write = [](git_stream* s, const char* data, std::size_t size, int) {
      return socket_of(s).write(data, size);
    };
    stream->parent.close = [](git_stream* s) {
      socket_of(s).close();
      return 0;
    };
    stream->parent.free = [](git_stream* s) {
      auto* timed = reinterpret_cast<TimedStream*>(s);
      delete timed->socket;
      delete timed;
    };
    const NetworkLimits fallback{std::chrono::seconds(60), Clock::now() + std::chrono::minutes(10)};
    stream->socket = new TimedSocket(host, port != nullptr ? port : "", active_limits ? *active_limits : fallback);
    *out = &stream.release()->parent;
    return 0;
  } catch (const std::bad_alloc&) {
    git_error_set_oom();
    return -1;
  }
}

// Installs TimedSocket for one operation and sets its limits. Only for http(s)/git:// URLs:
// libgit2 1.5's ssh transport reads the file descriptor out of its own socket stream's private
// struct, so it must keep libgit2's stream (ssh remotes have no timeout yet). Registration is
// process-wide: one tracker at a time per process, as in a worker.
class NetworkScope {
 public:
  NetworkScope(bool uses_sockets, const GitTrackerOptions& options)
      : limits_{options.io_timeout, Clock::now() + options.operation_timeout} {
    active_limits = &limits_;
    last_socket_error.clear();
    if (!uses_sockets) return;
    git_stream_registration registration{};
    registration.version = GIT_STREAM_VERSION;
    registration.init = timed_stream_new;
    status_ = git_stream_register(GIT_STREAM_STANDARD, &registration);
    registered_ = status_ == 0;
  }
  ~NetworkScope() {
    active_limits = nullptr;
    last_socket_error.clear();
    // Back to libgit2's own stream; deregistering only clears a table entry and cannot fail.
    if (registered_) (void)git_stream_register(GIT_STREAM_STANDARD, nullptr);
  }
  NetworkScope(const NetworkScope&) = delete;
  NetworkScope& operator=(const NetworkScope&) = delete;

  int status() const { return status_; }
  const NetworkLimits& limits() const { return limits_; }

 private:
  NetworkLimits limits_;
  int status_ = 0;
  bool registered_ = false;
};

// ---------------------------------------------------------------------------------------------
// Remote callbacks.

struct CallbackState {
  const RepositoryUrl* url = nullptr;
  const NetworkLimits* limits = nullptr;
  int credential_offers = 0;
};

int acquire_credentials(git_credential** out, const char* url, const char* username_from_url, unsigned int allowed,
                        void* payload) {
  auto& state = *static_cast<CallbackState*>(payload);
  // The token is for the configured host only, not for wherever a redirect leads.
  if (url != nullptr && authority_of(url) != authority_of(state.url->fetch_url)) {
    git_error_set_str(GIT_ERROR_NET, ("refusing to send the repository's credentials to " + authority_of(url) +
                                      " (redirected from " + authority_of(state.url->fetch_url) + ")")
                                         .c_str());
    return GIT_EAUTH;
  }
  if (allowed & GIT_CREDENTIAL_USERNAME) {
    // ssh asks for the user name first; that is not an authentication attempt.
    return git_credential_username_new(out, username_from_url != nullptr ? username_from_url : "git");
  }
  // libgit2 asks again after every refusal, forever: offer the credentials once per operation.
  if (state.credential_offers++ > 0) {
    git_error_set_str(GIT_ERROR_NET, "authentication failed: the server refused the credentials of the repository URL");
    return GIT_EAUTH;
  }
  if (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) {
    if (!state.url->has_credentials) {
      git_error_set_str(GIT_ERROR_NET, "authentication required: the repository URL has no credentials");
      return GIT_EAUTH;
    }
    return git_credential_userpass_plaintext_new(out, state.url->user.c_str(), state.url->password.c_str());
  }
  if ((allowed & GIT_CREDENTIAL_SSH_KEY) && std::getenv("SSH_AUTH_SOCK") != nullptr) {
    return git_credential_ssh_key_from_agent(out, username_from_url != nullptr ? username_from_url : "git");
  }
  git_error_set_str(GIT_ERROR_NET, "authentication required and no usable credentials (ssh needs an ssh-agent)");
  return GIT_EAUTH;
}

int check_deadline(void* payload) {
  const auto& state = *static_cast<CallbackState*>(payload);
  if (Clock::now() < state.limits->deadline) return 0;
  git_error_set_str(GIT_ERROR_NET, "timed out: the transfer ran past its time limit");
  return -1;
}

// ---------------------------------------------------------------------------------------------

// What went wrong inside, before it becomes a GitError. local_damage: the repository on disk
// looks broken (missing objects, bad refs or index), which a rebuild repairs.
struct Failure {
  std::string message;
  bool local_damage = false;
};

bool damage_class(int klass) {
  switch (klass) {
    case GIT_ERROR_ODB:
    case GIT_ERROR_OBJECT:
    case GIT_ERROR_ZLIB:
    case GIT_ERROR_INDEX:
    case GIT_ERROR_REFERENCE:
    case GIT_ERROR_REPOSITORY:
    case GIT_ERROR_TREE:
      return true;
    default:
      return false;
  }
}

// A normalised path relative to the checkout: "" stands for the whole checkout; nullopt for a
// path outside it (never changed by a commit).
std::optional<std::string> repository_relative(const std::string& path) {
  const auto normal = fs::path(path).lexically_normal().generic_string();
  if (normal.empty() || fs::path(normal).is_absolute()) return std::nullopt;
  if (normal == ".." || normal.starts_with("../")) return std::nullopt;
  if (normal == "." || normal == "./") return std::string();
  std::string out = normal;
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out;
}

bool path_covers(const std::string& wanted, std::string_view changed) {
  return wanted.empty() || changed == wanted ||
         (changed.size() > wanted.size() && changed.starts_with(wanted) && changed[wanted.size()] == '/');
}

// ---------------------------------------------------------------------------------------------
// Removing what a container may have planted in the checkout, and emptying the staging
// directory: every directory is opened with O_NOFOLLOW below its parent's fd, so a symlink
// anywhere is removed as a link, never followed; nothing on another filesystem is touched.

constexpr int kMaxRemoveDepth = 256;
constexpr int kRemovePasses = 3;  // an entry swapped or refilled meanwhile is looked at again

std::optional<std::string> remove_entry_at(int dir, const std::string& name, const std::string& shown, dev_t device,
                                           int depth);

struct DirectoryCloser {
  void operator()(DIR* listing) const { closedir(listing); }
};

// Removes everything inside the directory `dir`.
std::optional<std::string> empty_directory_at(int dir, const std::string& shown, dev_t device, int depth) {
  // fdopendir owns the fd it is given: a second one, so that `dir` stays usable.
  UniqueFd listing_fd(openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listing_fd) return "cannot open " + shown + ": " + errno_text(errno);
  const std::unique_ptr<DIR, DirectoryCloser> listing(fdopendir(listing_fd.get()));
  if (!listing) return "cannot list " + shown + ": " + errno_text(errno);
  listing_fd.release();
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = readdir(listing.get())) {
    const std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  if (errno != 0) return "cannot list " + shown + ": " + errno_text(errno);
  for (const auto& name : names) {
    if (auto error = remove_entry_at(dir, name, shown + "/" + name, device, depth)) return error;
  }
  return std::nullopt;
}

// Removes dir/name (shown as `shown`), a directory with everything below it.
std::optional<std::string> remove_entry_at(int dir, const std::string& name, const std::string& shown, dev_t device,
                                           int depth) {
  for (int pass = 0; pass < kRemovePasses; ++pass) {
    struct stat info {};
    if (fstatat(dir, name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return std::nullopt;
      return "cannot inspect " + shown + ": " + errno_text(errno);
    }
    if (!S_ISDIR(info.st_mode)) {
      if (unlinkat(dir, name.c_str(), 0) == 0 || errno == ENOENT) return std::nullopt;
      if (errno == EISDIR) continue;
      return "cannot remove " + shown + ": " + errno_text(errno);
    }
    if (depth >= kMaxRemoveDepth) return shown + " is nested too deeply: not removed";
    UniqueFd sub(openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) {
      if (errno == ENOENT) return std::nullopt;
      if (errno == ENOTDIR || errno == ELOOP) continue;  // swapped for a file or a link
      return "cannot open " + shown + ": " + errno_text(errno);
    }
    struct stat opened {};
    if (fstat(sub.get(), &opened) != 0) return "cannot inspect " + shown + ": " + errno_text(errno);
    if (opened.st_dev != device) return shown + " is a mount point: not removed, nor anything below it";
    if (auto error = empty_directory_at(sub.get(), shown, device, depth + 1)) return error;
    sub.reset();
    if (unlinkat(dir, name.c_str(), AT_REMOVEDIR) == 0 || errno == ENOENT) return std::nullopt;
    // Not empty (POSIX allows EEXIST for it) or no longer a directory: entries came meanwhile.
    if (errno != ENOTEMPTY && errno != EEXIST && errno != ENOTDIR) {
      return "cannot remove " + shown + ": " + errno_text(errno);
    }
  }
  return "cannot remove " + shown + ": it keeps changing";
}

// Removes parent/name whatever it is (a symlink as a link). `parent` itself is trusted.
// Returns whether there was something to remove.
Expected<bool, std::string> remove_below(const fs::path& parent, const std::string& name) {
  const std::string shown = (parent / name).string();
  const UniqueFd dir(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return Unexpected("cannot open " + parent.string() + ": " + errno_text(errno));
  struct stat info {};
  if (fstatat(dir.get(), name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return false;
    return Unexpected("cannot inspect " + shown + ": " + errno_text(errno));
  }
  struct stat home {};
  if (fstat(dir.get(), &home) != 0) {
    return Unexpected("cannot inspect " + parent.string() + ": " + errno_text(errno));
  }
  if (auto error = remove_entry_at(dir.get(), name, shown, home.st_dev, 0)) return Unexpected(*error);
  return true;
}

// Makes `path` an empty real directory: a symlink or file there is removed (never followed),
// a directory emptied, a missing one created 0700. Its parent is trusted and must exist.
std::optional<std::string> make_empty_directory(const fs::path& path) {
  fs::path normal = path.lexically_normal();
  if (!normal.has_filename()) normal = normal.parent_path();
  const std::string name = normal.filename().string();
  if (name.empty() || name == "." || name == "..") return "'" + path.string() + "' does not name a directory";
  const fs::path parent = normal.has_parent_path() ? normal.parent_path() : fs::path(".");
  const UniqueFd parent_fd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) return "cannot open " + parent.string() + ": " + errno_text(errno);
  for (int pass = 0; pass < kRemovePasses; ++pass) {
    const UniqueFd dir(openat(parent_fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (dir) {
      struct stat info {};
      if (fstat(dir.get(), &info) != 0) return "cannot inspect " + normal.string() + ": " + errno_text(errno);
      return empty_directory_at(dir.get(), normal.string(), info.st_dev, 0);
    }
    if (errno == ENOENT) {
      if (mkdirat(parent_fd.get(), name.c_str(), 0700) != 0 && errno != EEXIST) {
        return "cannot create " + normal.string() + ": " + errno_text(errno);
      }
    } else if (errno == ENOTDIR || errno == ELOOP) {
      struct stat home {};
      if (fstat(parent_fd.get(), &home) != 0) return "cannot inspect " + parent.string() + ": " + errno_text(errno);
      if (auto error = remove_entry_at(parent_fd.get(), name, normal.string(), home.st_dev, 0)) return error;
    } else {
      return "cannot open " + normal.string() + ": " + errno_text(errno);
    }
  }
  return "cannot prepare " + normal.string() + ": it keeps changing";
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct GitTracker::Impl {
  explicit Impl(GitTrackerOptions opts)
      : options(std::move(opts)),
        url(parse_repository_url(options.repository)),
        dir(options.checkout_dir),
        outside(!options.git_dir.empty()),
        repo_dir(outside ? without_trailing_slash(options.git_dir) : dir / ".git"),
        branch_ref("refs/heads/" + options.branch),
        refspec("+refs/heads/" + options.branch + ":refs/remotes/origin/" + options.branch) {}

  static fs::path without_trailing_slash(const std::string& path) {
    fs::path out = fs::path(path).lexically_normal();
    return out.has_filename() || !out.has_parent_path() ? out : out.parent_path();
  }

  GitTrackerOptions options;
  RepositoryUrl url;
  fs::path dir;       // the checkout: the work tree
  bool outside;       // the repository lives in git_dir, outside the checkout
  fs::path repo_dir;  // the git directory: git_dir, or <checkout>/.git in the old layout
  std::string branch_ref;
  std::string refspec;
  // A damaged repository was rebuilt since the last move (reported by the next move).
  bool rebuilt = false;
  // Why a move found the repository damaged: the next fetch rebuilds it (a move has no network).
  std::string damage_seen;

  // ----- messages

  std::string redacted(std::string_view text) const { return redact(text, url.secrets); }

  std::string where() const { return "'" + options.branch + "' of " + url.display; }

  // what + libgit2's last error, credentials redacted.
  Failure failure(const std::string& what, int rc, bool may_be_damage) const {
    const git_error* error = git_error_last();
    std::string reason =
        error != nullptr && error->message != nullptr ? error->message : "libgit2 error " + std::to_string(rc);
    if (error != nullptr && error->klass == GIT_ERROR_SSL && !last_socket_error.empty()) {
      reason = last_socket_error;  // the socket's reason under TLS's generic one
    }
    const bool damage = may_be_damage && error != nullptr && damage_class(error->klass);
    return Failure{redacted(what + ": " + reason), damage};
  }

  std::optional<GitError> preflight() const {
    if (const int rc = library_status(); rc < 0) {
      return GitError{failure("initialising libgit2 failed", rc, false).message};
    }
    git_error_clear();
    if (options.repository.empty()) return GitError{"no repository URL configured"};
    int valid = 0;
    if (git_reference_name_is_valid(&valid, branch_ref.c_str()) < 0 || !valid) {
      return GitError{redacted("'" + options.branch + "' is not a valid branch name")};
    }
    if (dir.empty()) return GitError{"no checkout directory configured"};
    if (outside) {
      // Lexically, on absolute paths: the supervisor chooses both, this catches a mistake.
      std::error_code ec;
      const auto checkout = fs::absolute(dir, ec).lexically_normal();
      const auto git = fs::absolute(repo_dir, ec).lexically_normal();
      if (!ec && path_covers(without_trailing_slash(checkout.string()).string(), git.string())) {
        return GitError{"the git directory " + repo_dir.string() + " is inside the checkout " + dir.string()};
      }
    }
    return std::nullopt;
  }

  // ----- repository access

  bool has_repository() const {
    std::error_code ignored;
    return fs::exists(fs::symlink_status(repo_dir, ignored));
  }

  // The repository, opened by its path only: no search upwards, no <path>/.git, no gitlink
  // file, and (BARE) neither core.bare nor core.worktree read from its config. with_work_tree:
  // the work tree is then set to the checkout, always by us, and no gitlink is written there.
  Expected<RepositoryPtr, Failure> open(bool with_work_tree) const {
    std::error_code ignored;
    if (!fs::is_directory(fs::symlink_status(repo_dir, ignored))) {
      return Unexpected(Failure{repo_dir.string() + " is not a directory", true});
    }
    git_repository* raw = nullptr;
    int rc = git_repository_open_ext(
        &raw, repo_dir.c_str(),
        GIT_REPOSITORY_OPEN_NO_SEARCH | GIT_REPOSITORY_OPEN_NO_DOTGIT | GIT_REPOSITORY_OPEN_BARE, nullptr);
    RepositoryPtr repo(raw);
    if (rc < 0) {
      auto failed = failure("opening the repository in " + repo_dir.string() + " failed", rc, false);
      failed.local_damage = true;
      return Unexpected(failed);
    }
    if (with_work_tree && (rc = git_repository_set_workdir(repo.get(), dir.c_str(), 0)) < 0) {
      return Unexpected(failure("using " + dir.string() + " as the work tree failed", rc, false));
    }
    return repo;
  }

  // HEAD's commit; nullopt while HEAD names a branch with no commit yet (a clone not moved yet).
  Expected<std::optional<git_oid>, Failure> head_commit(git_repository* repo) const {
    git_reference* raw = nullptr;
    int rc = git_repository_head(&raw, repo);
    ReferencePtr head(raw);
    if (rc == GIT_EUNBORNBRANCH) return std::optional<git_oid>();
    if (rc < 0) {
      auto failed = failure("reading HEAD in " + repo_dir.string() + " failed", rc, true);
      failed.local_damage = true;  // HEAD names the branch, with or without a commit
      return Unexpected(failed);
    }
    git_object* peeled = nullptr;
    rc = git_reference_peel(&peeled, head.get(), GIT_OBJECT_COMMIT);
    ObjectPtr commit(peeled);
    if (rc < 0) {
      auto failed = failure("reading HEAD's commit in " + repo_dir.string() + " failed", rc, true);
      failed.local_damage = true;
      return Unexpected(failed);
    }
    return std::optional<git_oid>(*git_object_id(commit.get()));
  }

  // What a fetch does not read but a move needs: HEAD and the index.
  std::optional<Failure> check_local_state(git_repository* repo) const {
    auto head = head_commit(repo);
    if (!head) return head.error();
    git_index* raw = nullptr;
    const int rc = git_repository_index(&raw, repo);
    IndexPtr index(raw);
    if (rc < 0) {
      auto failed = failure("reading the index in " + repo_dir.string() + " failed", rc, true);
      failed.local_damage = true;
      return failed;
    }
    return std::nullopt;
  }

  Expected<git_oid, Failure> resolve(git_repository* repo, const std::string& hash) const {
    const bool hex_only = std::all_of(hash.begin(), hash.end(), [](unsigned char c) { return std::isxdigit(c); });
    if (hash.size() < 4 || hash.size() > GIT_OID_HEXSZ || !hex_only) {
      return Unexpected(Failure{redacted("'" + hash + "' is not a commit hash (4 to 40 hex digits)")});
    }
    git_oid prefix;
    if (const int rc = git_oid_fromstrn(&prefix, hash.data(), hash.size()); rc < 0) {
      return Unexpected(failure("'" + hash + "' is not a commit hash", rc, false));
    }
    git_object* raw = nullptr;
    const int rc = git_object_lookup_prefix(&raw, repo, &prefix, hash.size(), GIT_OBJECT_COMMIT);
    ObjectPtr object(raw);
    if (rc == GIT_ENOTFOUND) return Unexpected(Failure{"no commit " + hash + " in " + dir.string()});
    if (rc == GIT_EAMBIGUOUS) return Unexpected(Failure{"commit hash " + hash + " is ambiguous in " + dir.string()});
    if (rc < 0) return Unexpected(failure("looking up commit " + hash + " in " + dir.string() + " failed", rc, false));
    return *git_object_id(object.get());
  }

  Expected<TreePtr, Failure> tree_of(git_repository* repo, const git_oid& id) const {
    git_commit* raw_commit = nullptr;
    int rc = git_commit_lookup(&raw_commit, repo, &id);
    CommitPtr commit(raw_commit);
    if (rc < 0) return Unexpected(failure("reading commit " + hex(id) + " failed", rc, true));
    git_tree* raw_tree = nullptr;
    rc = git_commit_tree(&raw_tree, commit.get());
    TreePtr tree(raw_tree);
    if (rc < 0) return Unexpected(failure("reading the tree of commit " + hex(id) + " failed", rc, true));
    return tree;
  }

  // The remote to fetch from, with the configured URL (without credentials). remote.origin.*
  // in the checkout's config follows the configured URL (replacing a changed one, or one with
  // a token left by another tool), for people running git in the checkout. The remote itself
  // is in-memory and skips url.*.insteadOf: libgit2 1.5.1's git_remote_lookup/create and
  // git_branch_set_upstream leak PCRE2 match data on every call (~20 KiB each, fixed upstream
  // after 1.5), which a worker syncing every few minutes cannot afford.
  Expected<RemotePtr, Failure> origin(git_repository* repo) const {
    git_config* raw_config = nullptr;
    int rc = git_repository_config(&raw_config, repo);
    ConfigPtr config(raw_config);
    if (rc < 0) return Unexpected(failure("reading the config of " + repo_dir.string() + " failed", rc, true));
    git_buf stored = GIT_BUF_INIT;
    rc = git_config_get_string_buf(&stored, config.get(), "remote.origin.url");
    const bool same = rc == 0 && url.fetch_url == stored.ptr;
    git_buf_dispose(&stored);
    if (rc < 0 && rc != GIT_ENOTFOUND) {
      return Unexpected(failure("reading remote.origin.url in " + repo_dir.string() + " failed", rc, true));
    }
    if (rc == GIT_ENOTFOUND) {
      rc = git_config_set_string(config.get(), "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*");
      if (rc < 0) return Unexpected(failure("configuring origin in " + repo_dir.string() + " failed", rc, true));
    }
    if (!same && (rc = git_config_set_string(config.get(), "remote.origin.url", url.fetch_url.c_str())) < 0) {
      return Unexpected(failure("setting origin to " + url.display + " failed", rc, true));
    }

    git_remote_create_options create_options;
    if ((rc = git_remote_create_options_init(&create_options, GIT_REMOTE_CREATE_OPTIONS_VERSION)) < 0) {
      return Unexpected(failure("preparing the remote failed", rc, false));
    }
    create_options.repository = repo;
    create_options.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    git_remote* raw = nullptr;
    rc = git_remote_create_with_opts(&raw, url.fetch_url.c_str(), &create_options);
    RemotePtr remote(raw);
    if (rc < 0) return Unexpected(failure("setting up the remote " + url.display + " failed", rc, false));
    return remote;
  }

  // Fetches the branch into refs/remotes/origin/<branch>; returns upstream's tip.
  Expected<git_oid, Failure> fetch_branch(git_repository* repo, const NetworkScope& scope) const {
    auto remote = origin(repo);
    if (!remote) return Unexpected(remote.error());

    CallbackState state{&url, &scope.limits(), 0};
    git_fetch_options fetch_options;
    if (const int rc = git_fetch_options_init(&fetch_options, GIT_FETCH_OPTIONS_VERSION); rc < 0) {
      return Unexpected(failure("preparing the fetch failed", rc, false));
    }
    fetch_options.callbacks.credentials = acquire_credentials;
    fetch_options.callbacks.transfer_progress = [](const git_indexer_progress*, void* payload) {
      return check_deadline(payload);
    };
    fetch_options.callbacks.sideband_progress = [](const char*, int, void* payload) { return check_deadline(payload); };
    fetch_options.callbacks.payload = &state;
    fetch_options.prune = GIT_FETCH_NO_PRUNE;
    fetch_options.update_fetchhead = 0;
    fetch_options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;  // only the branch is tracked

    std::string spec = refspec;
    char* specs[] = {spec.data()};
    const git_strarray refspecs{specs, 1};
    const std::string what = "fetching branch " + where() + " failed";
    if (const int rc = git_remote_fetch(remote->get(), &refspecs, &fetch_options, "pgod: fetch"); rc < 0) {
      // libgit2 says "unsupported URL protocol" for a path that does not exist.
      std::error_code ignored;
      if (!url.local_path.empty() && !fs::exists(url.local_path, ignored)) {
        return Unexpected(Failure{redacted(what + ": " + url.local_path + " does not exist")});
      }
      auto failed = failure(what, rc, true);
      // "not a repository" here is about the upstream, not the checkout.
      if (const git_error* error = git_error_last(); error != nullptr && error->klass == GIT_ERROR_REPOSITORY) {
        failed.local_damage = false;
      }
      return Unexpected(failed);
    }
    // The advertisement, not the tracking ref: a branch deleted upstream leaves a stale one.
    const git_remote_head** heads = nullptr;
    std::size_t count = 0;
    if (const int rc = git_remote_ls(&heads, &count, remote->get()); rc < 0) {
      return Unexpected(failure(what, rc, false));
    }
    for (std::size_t i = 0; i < count; ++i) {
      if (branch_ref == heads[i]->name) return heads[i]->oid;
    }
    return Unexpected(Failure{redacted("branch '" + options.branch + "' does not exist in " + url.display)});
  }

  // Tracked files whose index or work-tree content differs from HEAD (untracked files are not
  // looked at: generated files such as the Caddy import live in the checkout).
  Expected<std::vector<std::string>, Failure> local_edits(git_repository* repo) const {
    git_status_options status_options;
    if (const int rc = git_status_options_init(&status_options, GIT_STATUS_OPTIONS_VERSION); rc < 0) {
      return Unexpected(failure("preparing the status failed", rc, false));
    }
    status_options.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
    status_options.flags = GIT_STATUS_OPT_EXCLUDE_SUBMODULES;
    git_status_list* raw = nullptr;
    const int rc = git_status_list_new(&raw, repo, &status_options);
    StatusListPtr list(raw);
    if (rc < 0) return Unexpected(failure("reading the status of " + dir.string() + " failed", rc, true));
    std::vector<std::string> paths;
    for (std::size_t i = 0, n = git_status_list_entrycount(list.get()); i < n; ++i) {
      const git_status_entry* entry = git_status_byindex(list.get(), i);
      if (entry == nullptr || entry->status == GIT_STATUS_CURRENT) continue;
      const git_diff_delta* delta = entry->head_to_index != nullptr ? entry->head_to_index : entry->index_to_workdir;
      if (delta == nullptr) continue;
      paths.emplace_back(delta->old_file.path != nullptr ? delta->old_file.path : delta->new_file.path);
    }
    return paths;
  }

  // Work-tree files that exist but differ from `tree` (what a forced checkout overwrites when
  // the index knows nothing, as after a rebuild).
  Expected<std::vector<std::string>, Failure> differing_files(git_repository* repo, git_tree* tree) const {
    git_diff_options diff_options;
    if (const int rc = git_diff_options_init(&diff_options, GIT_DIFF_OPTIONS_VERSION); rc < 0) {
      return Unexpected(failure("preparing a diff failed", rc, false));
    }
    diff_options.flags |= GIT_DIFF_INCLUDE_TYPECHANGE;
    git_diff* raw = nullptr;
    const int rc = git_diff_tree_to_workdir(&raw, repo, tree, &diff_options);
    DiffPtr diff(raw);
    if (rc < 0) return Unexpected(failure("comparing " + dir.string() + " with the new commit failed", rc, true));
    std::vector<std::string> paths;
    for (std::size_t i = 0, n = git_diff_num_deltas(diff.get()); i < n; ++i) {
      const git_diff_delta* delta = git_diff_get_delta(diff.get(), i);
      if (delta->status == GIT_DELTA_MODIFIED || delta->status == GIT_DELTA_TYPECHANGE) {
        paths.emplace_back(delta->new_file.path);
      }
    }
    return paths;
  }

  // Untracked work-tree files at paths the move from `from` to `to` adds: overwritten.
  Expected<std::vector<std::string>, Failure> files_in_the_way(git_repository* repo, git_tree* from,
                                                               git_tree* to) const {
    git_diff* raw = nullptr;
    const int rc = git_diff_tree_to_tree(&raw, repo, from, to, nullptr);
    DiffPtr diff(raw);
    if (rc < 0) return Unexpected(failure("comparing two commits failed", rc, true));
    std::vector<std::string> paths;
    for (std::size_t i = 0, n = git_diff_num_deltas(diff.get()); i < n; ++i) {
      const git_diff_delta* delta = git_diff_get_delta(diff.get(), i);
      if (delta->status != GIT_DELTA_ADDED) continue;
      // Overwritten unless it already holds what the commit has.
      const fs::path file = dir / delta->new_file.path;
      std::error_code ignored;
      const auto status = fs::symlink_status(file, ignored);
      if (!fs::exists(status)) continue;
      git_oid present;
      if (fs::is_regular_file(status) && git_odb_hashfile(&present, file.c_str(), GIT_OBJECT_BLOB) == 0 &&
          git_oid_equal(&present, &delta->new_file.id)) {
        continue;
      }
      paths.emplace_back(delta->new_file.path);
    }
    return paths;
  }

  struct Moved {
    std::vector<std::string> discarded;
    bool rewound = false;  // target is not a descendant of the previous HEAD
  };

  // Puts HEAD on refs/heads/<branch> at `target` and makes index and work tree match it,
  // discarding local edits to tracked files. previous: HEAD's commit, or null for a repository
  // that has none yet (after a clone or rebuild).
  Expected<Moved, Failure> move_work_tree(git_repository* repo, const git_oid& target, const git_oid* previous,
                                          const char* reflog) const {
    Moved moved;
    auto target_tree = tree_of(repo, target);
    if (!target_tree) return Unexpected(target_tree.error());

    const bool same = previous != nullptr && git_oid_equal(previous, &target);
    if (previous != nullptr) {
      auto edits = local_edits(repo);
      if (!edits) return Unexpected(edits.error());
      moved.discarded = std::move(*edits);
      if (!same) {
        const int rc = git_graph_descendant_of(repo, &target, previous);
        if (rc < 0) return Unexpected(failure("comparing " + hex(target) + " with HEAD failed", rc, true));
        moved.rewound = rc == 0;
        auto previous_tree = tree_of(repo, *previous);
        if (!previous_tree) return Unexpected(previous_tree.error());
        auto in_the_way = files_in_the_way(repo, previous_tree->get(), target_tree->get());
        if (!in_the_way) return Unexpected(in_the_way.error());
        moved.discarded.insert(moved.discarded.end(), in_the_way->begin(), in_the_way->end());
      }
    } else {
      auto differing = differing_files(repo, target_tree->get());
      if (!differing) return Unexpected(differing.error());
      moved.discarded = std::move(*differing);
    }
    std::sort(moved.discarded.begin(), moved.discarded.end());
    moved.discarded.erase(std::unique(moved.discarded.begin(), moved.discarded.end()), moved.discarded.end());

    // HEAD must be the branch itself (a changed branch setting, a fresh repository).
    bool on_branch = false;
    {
      git_reference* raw = nullptr;
      const int rc = git_reference_lookup(&raw, repo, "HEAD");
      ReferencePtr head(raw);
      if (rc < 0) return Unexpected(failure("reading HEAD in " + repo_dir.string() + " failed", rc, true));
      const char* symbolic = git_reference_type(head.get()) == GIT_REFERENCE_SYMBOLIC
                                 ? git_reference_symbolic_target(head.get())
                                 : nullptr;
      on_branch = symbolic != nullptr && branch_ref == symbolic && previous != nullptr;
    }
    if (!on_branch) {
      git_reference* raw = nullptr;
      int rc = git_reference_create(&raw, repo, branch_ref.c_str(), &target, 1, reflog);
      ReferencePtr branch(raw);
      if (rc < 0) return Unexpected(failure("creating branch " + options.branch + " failed", rc, true));
      if ((rc = git_repository_set_head(repo, branch_ref.c_str())) < 0) {
        return Unexpected(failure("switching HEAD to " + options.branch + " failed", rc, true));
      }
    } else if (same && moved.discarded.empty()) {
      return moved;  // nothing to do: the common, cheap case
    }

    git_object* raw_commit = nullptr;
    int rc = git_object_lookup(&raw_commit, repo, &target, GIT_OBJECT_COMMIT);
    ObjectPtr commit(raw_commit);
    if (rc < 0) return Unexpected(failure("reading commit " + hex(target) + " failed", rc, true));
    git_checkout_options checkout_options;
    if ((rc = git_checkout_options_init(&checkout_options, GIT_CHECKOUT_OPTIONS_VERSION)) < 0) {
      return Unexpected(failure("preparing the checkout failed", rc, false));
    }
    // FORCE: overwrite local edits; untracked files not in the target stay. No filters (CRLF,
    // ident), whose attributes a container could change in the checkout: the bytes written are
    // the blobs', the ones stage() wrote for the judge.
    checkout_options.checkout_strategy = GIT_CHECKOUT_FORCE;
    checkout_options.disable_filters = 1;
    if ((rc = git_reset(repo, commit.get(), GIT_RESET_HARD, &checkout_options)) < 0) {
      return Unexpected(failure("resetting " + dir.string() + " to " + hex(target) + " failed", rc, true));
    }
    return moved;
  }

  // ----- operations

  fs::path beside_repository(const char* suffix) const { return repo_dir.string() + suffix; }

  // Leftovers of an interrupted clone or rebuild (remove_all removes a symlink, not its target).
  std::optional<std::string> remove_leftovers() const {
    std::error_code ec;
    for (const auto& leftover : {beside_repository(".pgod-new"), beside_repository(".pgod-broken")}) {
      if (fs::remove_all(leftover, ec); ec) return "cannot remove " + leftover.string() + ": " + ec.message();
    }
    return std::nullopt;
  }

  // Builds a new repository beside repo_dir (<repo_dir>.pgod-new), fetches into it, and only
  // then swaps it in for repo_dir (a damaged one kept aside as <repo_dir>.pgod-broken until the
  // swap worked): an interrupted clone never leaves half a repository, a failed fetch changes
  // nothing. HEAD names the branch, which gets its commit at the first move. Returns upstream's
  // tip. The work tree is not touched (with git_dir set; in the old layout the repository
  // itself goes into the checkout).
  Expected<git_oid, GitError> create(const NetworkScope& scope, bool damaged, const std::string& why) {
    auto failed = [&](const std::string& message) {
      return Unexpected(GitError{damaged ? "the repository in " + repo_dir.string() + " is damaged (" + why +
                                               ") and rebuilding it failed: " + message
                                         : "cloning branch '" + options.branch + "' into " + repo_dir.string() +
                                               " failed: " + message});
    };
    const fs::path fresh = beside_repository(".pgod-new");
    const fs::path aside = beside_repository(".pgod-broken");
    std::error_code ec;
    // Only the directory itself: its parent belongs to root and is prepared by the supervisor.
    if (!outside && !fs::is_directory(dir, ec) && !fs::create_directory(dir, ec) && ec) {
      return failed("cannot create " + dir.string() + ": " + ec.message());
    }
    if (auto error = remove_leftovers()) return failed(*error);
    auto discard_fresh = [&] {
      std::error_code ignored;
      fs::remove_all(fresh, ignored);
    };

    git_oid target;
    {
      git_repository_init_options init_options;
      if (const int rc = git_repository_init_options_init(&init_options, GIT_REPOSITORY_INIT_OPTIONS_VERSION); rc < 0) {
        return failed(failure("preparing a repository", rc, false).message);
      }
      // Bare: no work tree, so nothing (no gitlink, no core.worktree) points into the checkout.
      // MKPATH: git_dir's parent is the worker's state directory, normally there already.
      init_options.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
      init_options.initial_head = options.branch.c_str();
      git_repository* raw = nullptr;
      int rc = git_repository_init_ext(&raw, fresh.c_str(), &init_options);
      RepositoryPtr repo(raw);
      if (rc < 0) {
        discard_fresh();
        return failed(failure("creating a repository in " + fresh.string(), rc, false).message);
      }
      auto fetched = fetch_branch(repo.get(), scope);
      if (!fetched) {
        repo.reset();
        discard_fresh();
        return failed(fetched.error().message);
      }
      target = *fetched;
      // The branch tracks origin's, for people running git on the repository. In the old
      // layout it becomes <checkout>/.git, the repository of the work tree around it; with
      // git_dir it stays bare (git --git-dir=<git_dir> --work-tree=<checkout> reads it).
      git_config* raw_config = nullptr;
      rc = git_repository_config(&raw_config, repo.get());
      ConfigPtr config(raw_config);
      const std::string section = "branch." + options.branch;
      if (rc < 0 || (!outside && (rc = git_config_set_bool(config.get(), "core.bare", 0)) < 0) ||
          (rc = git_config_set_string(config.get(), (section + ".remote").c_str(), "origin")) < 0 ||
          (rc = git_config_set_string(config.get(), (section + ".merge").c_str(), branch_ref.c_str())) < 0) {
        auto message = failure("configuring " + fresh.string(), rc, false).message;
        config.reset();
        repo.reset();
        discard_fresh();
        return failed(message);
      }
    }

    const bool had_repository = has_repository();
    if (had_repository) {
      if (fs::rename(repo_dir, aside, ec); ec) {
        discard_fresh();
        return failed("cannot move " + repo_dir.string() + " aside: " + ec.message());
      }
    }
    if (fs::rename(fresh, repo_dir, ec); ec) {
      std::error_code ignored;
      if (had_repository) fs::rename(aside, repo_dir, ignored);
      discard_fresh();
      return failed("cannot move the new repository into place: " + ec.message());
    }
    // The damaged repository goes last; a leftover is removed by the next fetch.
    fs::remove_all(aside, ec);
    rebuilt = rebuilt || damaged;
    damage_seen.clear();
    return target;
  }

  // Fetches origin/<branch> into the repository, cloning it first when there is none and
  // rebuilding it when it is damaged. Returns upstream's tip.
  Expected<git_oid, GitError> fetch_or_clone(const NetworkScope& scope) {
    if (auto error = remove_leftovers()) return Unexpected(GitError{*error});
    if (!has_repository()) return create(scope, false, "");
    std::string damage = damage_seen;
    if (damage.empty()) {
      auto repo = open(false);
      if (!repo) {
        damage = repo.error().message;
      } else if (auto bad = check_local_state(repo->get())) {
        damage = bad->message;
      } else {
        auto target = fetch_branch(repo->get(), scope);
        if (target) return *target;
        if (!target.error().local_damage) return Unexpected(GitError{target.error().message});
        damage = target.error().message;
      }
    }  // the damaged repository is closed before it is moved aside
    return create(scope, true, damage);
  }

  // Moves the checkout to `target`, a commit in the repository (see move_work_tree).
  Expected<SyncResult, Failure> move(const git_oid& target, const char* reflog) {
    std::error_code ec;
    // Only the directory itself: its parent belongs to root and is prepared by the supervisor.
    if (!fs::is_directory(dir, ec) && !fs::create_directory(dir, ec) && ec) {
      return Unexpected(Failure{"cannot create " + dir.string() + ": " + ec.message()});
    }
    auto repo = open(true);
    if (!repo) return Unexpected(repo.error());
    auto head = head_commit(repo->get());
    if (!head) return Unexpected(head.error());
    const git_oid* previous = *head ? &**head : nullptr;

    SyncResult result;
    if (outside) {
      // A commit cannot hold .git: this one was planted (or is the old layout's repository,
      // removed by the first move after the clone, which is not a local edit). Never read.
      auto removed = remove_below(dir, ".git");
      if (!removed) return Unexpected(Failure{"removing " + (dir / ".git").string() + " failed: " + removed.error()});
      if (*removed && (previous != nullptr || rebuilt)) result.discarded.emplace_back(".git");
    }
    auto moved = move_work_tree(repo->get(), target, previous, reflog);
    if (!moved) return Unexpected(moved.error());
    result.previous_hash = previous != nullptr ? hex(*previous) : "";
    result.current_hash = hex(target);
    result.recloned = rebuilt;
    result.force_pushed = moved->rewound;
    result.discarded.insert(result.discarded.end(), moved->discarded.begin(), moved->discarded.end());
    std::sort(result.discarded.begin(), result.discarded.end());
    rebuilt = false;
    return result;
  }

  // move() for the public calls: a damaged repository is rebuilt by the next fetch.
  Expected<SyncResult, GitError> move_local(const std::string& commit_hash, const char* doing, const char* reflog) {
    git_oid target;
    {
      auto repo = open_existing(redacted(doing + (" " + commit_hash) + " in " + dir.string()));
      if (!repo) return Unexpected(repo.error());
      auto found = resolve(repo->get(), commit_hash);
      if (!found) return Unexpected(GitError{found.error().message});
      target = *found;
    }
    auto moved = move(target, reflog);
    if (!moved) {
      if (moved.error().local_damage) damage_seen = moved.error().message;
      return Unexpected(GitError{moved.error().message});
    }
    return std::move(*moved);
  }

  Expected<SyncResult, GitError> sync() {
    if (auto bad = preflight()) return Unexpected(*bad);
    NetworkScope scope(url.uses_sockets, options);
    if (scope.status() < 0) {
      return Unexpected(GitError{failure("installing network timeouts failed", scope.status(), false).message});
    }
    auto target = fetch_or_clone(scope);
    if (!target) return Unexpected(target.error());
    auto moved = move(*target, "pgod: sync");
    if (moved) return std::move(*moved);
    if (!moved.error().local_damage) return Unexpected(GitError{moved.error().message});
    // Damage only the move saw: rebuild now (the network is at hand) and move again.
    const std::string damage = moved.error().message;
    target = create(scope, true, damage);
    if (!target) return Unexpected(target.error());
    moved = move(*target, "pgod: clone");
    if (!moved) {
      return Unexpected(GitError{"the repository in " + repo_dir.string() + " is damaged (" + damage +
                                 ") and rebuilding it failed: " + moved.error().message});
    }
    return std::move(*moved);
  }

  Expected<git_oid, GitError> fetch() {
    if (auto bad = preflight()) return Unexpected(*bad);
    NetworkScope scope(url.uses_sockets, options);
    if (scope.status() < 0) {
      return Unexpected(GitError{failure("installing network timeouts failed", scope.status(), false).message});
    }
    return fetch_or_clone(scope);
  }

  Expected<RepositoryPtr, GitError> open_existing(const std::string& doing) const {
    if (auto bad = preflight()) return Unexpected(*bad);
    if (!has_repository()) {
      return Unexpected(GitError{doing + " failed: no repository in " + repo_dir.string() + " yet"});
    }
    auto repo = open(false);
    if (!repo) return Unexpected(GitError{doing + " failed: " + repo.error().message});
    return std::move(*repo);
  }
};

namespace {
// The id of the tree with no entries.
constexpr char kEmptyTree[] = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
}  // namespace

GitTracker::GitTracker(GitTrackerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
GitTracker::~GitTracker() = default;

Expected<SyncResult, GitError> GitTracker::sync() { return impl_->sync(); }

Expected<std::string, GitError> GitTracker::fetch() {
  auto target = impl_->fetch();
  if (!target) return Unexpected(target.error());
  return hex(*target);
}

Expected<std::string, GitError> GitTracker::stage(const std::string& commit_hash, const std::string& staging_dir) {
  const std::string doing = impl_->redacted("staging commit " + commit_hash + " in " + staging_dir);
  // Without a work tree: the checkout is not even known to this handle.
  auto repo = impl_->open_existing(doing);
  if (!repo) return Unexpected(repo.error());
  auto target = impl_->resolve(repo->get(), commit_hash);
  if (!target) return Unexpected(GitError{target.error().message});
  git_object* raw = nullptr;
  int rc = git_object_lookup(&raw, repo->get(), &*target, GIT_OBJECT_COMMIT);
  ObjectPtr commit(raw);
  if (rc < 0) return Unexpected(GitError{impl_->failure(doing + " failed", rc, false).message});
  if (auto error = make_empty_directory(staging_dir)) return Unexpected(GitError{doing + " failed: " + *error});

  git_checkout_options checkout_options;
  if ((rc = git_checkout_options_init(&checkout_options, GIT_CHECKOUT_OPTIONS_VERSION)) < 0) {
    return Unexpected(GitError{impl_->failure("preparing the checkout failed", rc, false).message});
  }
  // Every file of the commit into the empty directory, compared with the empty tree (the
  // default, HEAD, describes the checkout: a path HEAD has as a directory and the commit as a
  // link would be left out); the index (the checkout's too) neither updated nor written; no
  // filters, as in the checkout (see move_work_tree). libgit2 knows the empty tree without
  // having it in the object database.
  git_oid empty_id;
  if ((rc = git_oid_fromstrn(&empty_id, kEmptyTree, sizeof kEmptyTree - 1)) < 0) {
    return Unexpected(GitError{impl_->failure("preparing the checkout failed", rc, false).message});
  }
  git_tree* raw_empty = nullptr;
  rc = git_tree_lookup(&raw_empty, repo->get(), &empty_id);
  TreePtr empty(raw_empty);
  if (rc < 0) return Unexpected(GitError{impl_->failure("preparing the checkout failed", rc, false).message});
  checkout_options.checkout_strategy =
      GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_UPDATE_INDEX | GIT_CHECKOUT_DONT_WRITE_INDEX;
  checkout_options.disable_filters = 1;
  checkout_options.baseline = empty.get();
  checkout_options.target_directory = staging_dir.c_str();
  if ((rc = git_checkout_tree(repo->get(), commit.get(), &checkout_options)) < 0) {
    return Unexpected(GitError{impl_->failure(doing + " failed", rc, false).message});
  }
  return staging_dir;
}

Expected<SyncResult, GitError> GitTracker::move_to(const std::string& commit_hash) {
  return impl_->move_local(commit_hash, "moving to", "pgod: move");
}

Expected<SyncResult, GitError> GitTracker::checkout(const std::string& commit_hash) {
  auto result = impl_->move_local(commit_hash, "checking out", "pgod: checkout");
  if (result) result->force_pushed = false;  // a rollback goes back on purpose
  return result;
}

std::string GitTracker::head_hash() const {
  if (impl_->preflight() || !impl_->has_repository()) return "";
  auto repo = impl_->open(false);
  if (!repo) return "";
  auto head = impl_->head_commit(repo->get());
  return head && *head ? hex(**head) : "";
}

namespace {

// changed_paths from nothing: everything is new, so a path counts when `to` has it.
// `lookup_failed(i, rc)` is the error for a lookup of paths[i] that failed otherwise than not found.
template <class LookupFailed>
Expected<std::vector<std::string>, GitError> paths_in_tree(git_tree* to_tree, const std::vector<std::string>& paths,
                                                           const std::vector<std::optional<std::string>>& wanted,
                                                           LookupFailed lookup_failed) {
  std::vector<std::string> changed;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    if (!wanted[i]) continue;
    if (wanted[i]->empty()) {
      if (git_tree_entrycount(to_tree) > 0) changed.push_back(paths[i]);
      continue;
    }
    git_tree_entry* raw = nullptr;
    const int rc = git_tree_entry_bypath(&raw, to_tree, wanted[i]->c_str());
    TreeEntryPtr entry(raw);
    if (rc == 0) {
      changed.push_back(paths[i]);
    } else if (rc != GIT_ENOTFOUND) {
      return Unexpected(lookup_failed(i, rc));
    }
  }
  return changed;
}

// The paths a diff touches, in the order asked.
std::vector<std::string> paths_in_diff(git_diff* diff, const std::vector<std::string>& paths,
                                       const std::vector<std::optional<std::string>>& wanted) {
  std::vector<bool> hit(paths.size(), false);
  for (std::size_t d = 0, n = git_diff_num_deltas(diff); d < n; ++d) {
    const git_diff_delta* delta = git_diff_get_delta(diff, d);
    for (std::size_t i = 0; i < paths.size(); ++i) {
      if (hit[i] || !wanted[i]) continue;
      // Both sides: a deleted or renamed-away file has only an old path.
      hit[i] = (delta->old_file.path != nullptr && path_covers(*wanted[i], delta->old_file.path)) ||
               (delta->new_file.path != nullptr && path_covers(*wanted[i], delta->new_file.path));
    }
  }
  std::vector<std::string> changed;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    if (hit[i]) changed.push_back(paths[i]);
  }
  return changed;
}

}  // namespace

Expected<std::vector<std::string>, GitError> GitTracker::changed_paths(const std::string& from, const std::string& to,
                                                                       const std::vector<std::string>& paths) const {
  auto repo = impl_->open_existing("comparing " + from + " and " + to);
  if (!repo) return Unexpected(repo.error());
  auto to_id = impl_->resolve(repo->get(), to);
  if (!to_id) return Unexpected(GitError{to_id.error().message});
  auto to_tree = impl_->tree_of(repo->get(), *to_id);
  if (!to_tree) return Unexpected(GitError{to_tree.error().message});

  // Each wanted path, normalised; paths outside the checkout never change.
  std::vector<std::optional<std::string>> wanted;
  for (const auto& path : paths) wanted.push_back(repository_relative(path));
  if (from.empty()) {
    return paths_in_tree(to_tree->get(), paths, wanted, [&](std::size_t i, int rc) {
      return GitError{impl_->failure("looking up " + paths[i] + " in " + to, rc, false).message};
    });
  }

  auto from_id = impl_->resolve(repo->get(), from);
  if (!from_id) return Unexpected(GitError{from_id.error().message});
  auto from_tree = impl_->tree_of(repo->get(), *from_id);
  if (!from_tree) return Unexpected(GitError{from_tree.error().message});

  // Literal pathspecs (no globbing: file names may contain '*'); a directory covers its files.
  std::vector<std::string> specs;
  bool whole_tree = false;
  for (const auto& path : wanted) {
    if (!path) continue;
    if (path->empty()) whole_tree = true;
    specs.push_back(*path);
  }
  if (specs.empty()) return std::vector<std::string>{};
  std::vector<char*> spec_pointers;
  for (auto& spec : specs) spec_pointers.push_back(spec.data());

  git_diff_options diff_options;
  if (const int rc = git_diff_options_init(&diff_options, GIT_DIFF_OPTIONS_VERSION); rc < 0) {
    return Unexpected(GitError{impl_->failure("preparing a diff failed", rc, false).message});
  }
  if (!whole_tree) {
    diff_options.flags |= GIT_DIFF_DISABLE_PATHSPEC_MATCH;
    diff_options.pathspec = {spec_pointers.data(), spec_pointers.size()};
  }
  git_diff* raw = nullptr;
  const int rc = git_diff_tree_to_tree(&raw, repo->get(), from_tree->get(), to_tree->get(), &diff_options);
  DiffPtr diff(raw);
  if (rc < 0) {
    return Unexpected(GitError{impl_->failure("comparing " + from + " with " + to + " failed", rc, false).message});
  }
  return paths_in_diff(diff.get(), paths, wanted);
}

Expected<GitTracker::Signature, GitError> GitTracker::commit_signature(const std::string& commit_hash) const {
  const std::string doing = impl_->redacted("reading the signature of " + commit_hash);
  auto repo = impl_->open_existing(doing);
  if (!repo) return Unexpected(repo.error());
  auto id = impl_->resolve(repo->get(), commit_hash);
  if (!id) return Unexpected(GitError{id.error().message});
  git_buf signature = GIT_BUF_INIT;
  git_buf signed_data = GIT_BUF_INIT;
  const int rc = git_commit_extract_signature(&signature, &signed_data, repo->get(), &*id, nullptr);
  Signature found;
  if (rc == 0) {
    found.signature.assign(signature.ptr, signature.size);
    found.signed_data.assign(signed_data.ptr, signed_data.size);
  }
  git_buf_dispose(&signature);
  git_buf_dispose(&signed_data);
  if (rc < 0 && rc != GIT_ENOTFOUND) return Unexpected(GitError{impl_->failure(doing + " failed", rc, false).message});
  return found;
}

Expected<bool, GitError> GitTracker::descends_from(const std::string& commit, const std::string& ancestor) const {
  const std::string doing = impl_->redacted("comparing " + commit + " with " + ancestor);
  auto repo = impl_->open_existing(doing);
  if (!repo) return Unexpected(repo.error());
  auto descendant = impl_->resolve(repo->get(), commit);
  if (!descendant) return Unexpected(GitError{descendant.error().message});
  auto base = impl_->resolve(repo->get(), ancestor);
  if (!base) return Unexpected(GitError{base.error().message});
  if (git_oid_equal(&*descendant, &*base)) return true;
  const int rc = git_graph_descendant_of(repo->get(), &*descendant, &*base);
  if (rc < 0) return Unexpected(GitError{impl_->failure(doing + " failed", rc, false).message});
  return rc == 1;
}

Expected<std::string, GitError> GitTracker::resolve_commit(const std::string& hash) const {
  auto repo = impl_->open_existing(impl_->redacted("resolving commit " + hash));
  if (!repo) return Unexpected(repo.error());
  auto id = impl_->resolve(repo->get(), hash);
  if (!id) return Unexpected(GitError{id.error().message});
  return hex(*id);
}

Expected<std::vector<std::pair<std::string, std::string>>, GitError> GitTracker::read_directory(
    const std::string& commit_hash, const std::string& directory, std::size_t max_files,
    std::size_t max_bytes_per_file) const {
  const std::string doing = impl_->redacted("reading " + directory + " at " + commit_hash);
  auto repo = impl_->open_existing(doing);
  if (!repo) return Unexpected(repo.error());
  auto id = impl_->resolve(repo->get(), commit_hash);
  if (!id) return Unexpected(GitError{id.error().message});
  auto root = impl_->tree_of(repo->get(), *id);
  if (!root) return Unexpected(GitError{root.error().message});
  const auto relative = repository_relative(directory);
  if (!relative) return Unexpected(GitError{impl_->redacted("'" + directory + "' is outside the repository")});

  std::vector<std::pair<std::string, std::string>> files;
  TreePtr subtree;
  const git_tree* tree = root->get();
  if (!relative->empty()) {
    git_tree_entry* raw = nullptr;
    int rc = git_tree_entry_bypath(&raw, root->get(), relative->c_str());
    TreeEntryPtr entry(raw);
    if (rc == GIT_ENOTFOUND) return files;
    if (rc < 0) return Unexpected(GitError{impl_->failure(doing + " failed", rc, false).message});
    if (git_tree_entry_filemode(entry.get()) != GIT_FILEMODE_TREE) return files;  // a file or link, not a directory
    git_tree* raw_tree = nullptr;
    rc = git_tree_lookup(&raw_tree, repo->get(), git_tree_entry_id(entry.get()));
    subtree.reset(raw_tree);
    if (rc < 0) return Unexpected(GitError{impl_->failure(doing + " failed", rc, false).message});
    tree = subtree.get();
  }

  std::vector<std::pair<std::string, git_oid>> blobs;
  for (std::size_t i = 0, n = git_tree_entrycount(tree); i < n; ++i) {
    const git_tree_entry* entry = git_tree_entry_byindex(tree, i);
    const auto mode = git_tree_entry_filemode(entry);
    if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE) continue;
    blobs.emplace_back(git_tree_entry_name(entry), *git_tree_entry_id(entry));
  }
  // Git orders a tree as if directories' names ended in '/': sorted again, by name alone.
  std::sort(blobs.begin(), blobs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });

  git_odb* raw_odb = nullptr;
  int rc = git_repository_odb(&raw_odb, repo->get());
  OdbPtr odb(raw_odb);
  if (rc < 0) return Unexpected(GitError{impl_->failure(doing + " failed", rc, false).message});
  for (const auto& [name, blob_id] : blobs) {
    if (files.size() >= max_files) break;
    // The size from the header: an oversize blob is never loaded.
    std::size_t size = 0;
    git_object_t type = GIT_OBJECT_INVALID;
    if ((rc = git_odb_read_header(&size, &type, odb.get(), &blob_id)) < 0) {
      return Unexpected(GitError{impl_->failure(doing + "/" + name + " failed", rc, false).message});
    }
    if (size > max_bytes_per_file) continue;
    git_blob* raw_blob = nullptr;
    rc = git_blob_lookup(&raw_blob, repo->get(), &blob_id);
    BlobPtr blob(raw_blob);
    if (rc < 0) return Unexpected(GitError{impl_->failure(doing + "/" + name + " failed", rc, false).message});
    const auto* content = static_cast<const char*>(git_blob_rawcontent(blob.get()));
    files.emplace_back(name, std::string(content, static_cast<std::size_t>(git_blob_rawsize(blob.get()))));
  }
  return files;
}

}  // namespace pgod::worker
