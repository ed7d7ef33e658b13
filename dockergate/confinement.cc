#include "confinement.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <deque>
#include <memory>
#include <optional>
#include <string_view>

#include "seccomp_allowlist.h"
#include "system_call.h"
#include "unique_fd.h"

namespace pgod::dockergate {
namespace {

using seccomp::allow;
using seccomp::allow_if;
using seccomp::arg_eq;
using seccomp::arg_has_none;
using seccomp::arg_is_own_pid;
using seccomp::arg_masked;
using seccomp::fail;
using seccomp::fail_if;
using seccomp::kCloneNewAny;
using seccomp::Rule;
using seccomp::Verdict;

// ---------------------------------------------------------------------------------------------
// enter_private_root

// The new root is built on a tmpfs mounted here, shadowing the host's directory in the gate's own
// mount namespace only. Sources under it stay reachable through descriptors opened before.
constexpr char kScratch[] = "/tmp";
constexpr char kOldRoot[] = "/.old";  // inside the new root, detached at once

// A host file or directory to show inside the private root at `path` (its resolved path), and a
// descriptor of it taken before the tmpfs can shadow it.
struct Exposed {
  std::string path;
  UniqueFd source;
};

// The last call's failure; `what` and `where` must be built before the call (building them could
// change errno).
std::string failed(std::string_view what, std::string_view where) {
  const int error = errno;
  return os_error(what, where, error);
}

// realpath(3); nullopt when it does not exist.
Expected<std::optional<std::string>, std::string> resolve(const std::string& path) {
  const std::unique_ptr<char, decltype(&std::free)> resolved(realpath(path.c_str(), nullptr), &std::free);
  if (resolved) return std::optional<std::string>(resolved.get());
  if (errno == ENOENT) return std::optional<std::string>();
  return Unexpected{failed("realpath", path)};
}

bool is_within(std::string_view path, std::string_view dir) {
  return path == dir || (path.size() > dir.size() && path.substr(0, dir.size()) == dir && path[dir.size()] == '/');
}

// A symlink on the way to a root, at its resolved location, with its target as written.
struct Link {
  std::string at;
  std::string target;
};

// The symlinks met while resolving `path` as the kernel does (the path is known to resolve).
// Shown at the same places inside the private root, they make a root's path as pgod wrote it lead
// where it leads on the host: the bind-source resolver, walking a request's path inside the
// private root, then meets every link dockerd's mount would follow.
Expected<Done, std::string> collect_links(const std::string& path, std::vector<Link>& links) {
  std::deque<std::string> pending;
  const auto push_front_parts = [&](const std::string& text) {
    std::vector<std::string> parts;
    for (std::size_t begin = 0; begin < text.size();) {
      const std::size_t end = std::min(text.find('/', begin), text.size());
      if (end > begin) parts.push_back(text.substr(begin, end - begin));
      begin = end + 1;
    }
    pending.insert(pending.begin(), parts.begin(), parts.end());
  };
  push_front_parts(path);
  std::string resolved;  // "" is "/"
  for (int followed = 0; !pending.empty();) {
    const std::string part = std::move(pending.front());
    pending.pop_front();
    if (part == ".") continue;
    if (part == "..") {
      resolved.resize(resolved.rfind('/') == std::string::npos ? 0 : resolved.rfind('/'));
      continue;
    }
    const std::string at = resolved + "/" + part;
    struct stat info {};
    if (lstat(at.c_str(), &info) != 0) return Unexpected{failed("lstat", at)};
    if (!S_ISLNK(info.st_mode)) {
      resolved = at;
      continue;
    }
    if (++followed > 40) return Unexpected{os_error("resolving", path, ELOOP)};
    std::string target(PATH_MAX, '\0');
    const ssize_t length = readlink(at.c_str(), target.data(), target.size());
    if (length < 0) return Unexpected{failed("readlink", at)};
    if (static_cast<std::size_t>(length) >= target.size()) return Unexpected{os_error("readlink", at, ENAMETOOLONG)};
    target.resize(static_cast<std::size_t>(length));
    links.push_back({at, target});
    if (!target.empty() && target.front() == '/') resolved.clear();
    push_front_parts(target);
  }
  return Done{};
}

// What the private root shows besides the socket.
struct Roots {
  std::vector<std::string> paths;  // resolved, without duplicates, none inside another
  std::vector<Link> links;         // on the way to them as written, none inside a root
};

// The roots resolved, without those inside another root (a recursive bind of the outer one shows
// them already), and the links on their way.
Expected<Roots, std::string> resolve_roots(const std::vector<std::string>& roots) {
  std::vector<std::string> resolved;
  std::vector<Link> links;
  for (const auto& root : roots) {
    auto path = resolve(root);
    if (!path) return Unexpected{path.error()};
    if (!*path) continue;
    if (**path == "/") return Unexpected{fmt::format("bind root \"{}\" is the whole file system: refused", root)};
    if (auto walked = collect_links(root, links); !walked) return Unexpected{walked.error()};
    resolved.push_back(std::move(**path));
  }
  std::sort(resolved.begin(), resolved.end());  // a directory before what it contains
  Roots kept;
  const auto inside_a_root = [&](const std::string& at) {
    return std::any_of(kept.paths.begin(), kept.paths.end(), [&](const auto& root) { return is_within(at, root); });
  };
  for (auto& path : resolved) {
    if (!inside_a_root(path)) kept.paths.push_back(std::move(path));
  }
  for (auto& link : links) {
    const bool known =
        std::any_of(kept.links.begin(), kept.links.end(), [&](const Link& other) { return other.at == link.at; });
    if (!known && !inside_a_root(link.at)) kept.links.push_back(std::move(link));
  }
  return kept;
}

// An O_PATH descriptor of `path`, which must be of `type` (S_IFDIR, S_IFSOCK).
Expected<UniqueFd, std::string> open_source(const std::string& path, mode_t type, std::string_view kind) {
  // O_NOFOLLOW: `path` is resolved already; a link here would be a swap since.
  UniqueFd fd(retry_eintr([&] { return open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC); }));
  if (!fd) return Unexpected{failed("open", path)};
  struct stat info {};
  if (fstat(fd.get(), &info) != 0) return Unexpected{failed("fstat", path)};
  if ((info.st_mode & S_IFMT) != type) return Unexpected{fmt::format("{} is not a {}", path, kind)};
  return fd;
}

Expected<Done, std::string> write_file(const std::string& path, std::string_view text) {
  UniqueFd fd(retry_eintr([&] { return open(path.c_str(), O_WRONLY | O_CLOEXEC); }));
  if (!fd) {
    const int error = errno;
    // /proc/self is root's while the process is not dumpable (a uid change without exec).
    if (error == EACCES && prctl(PR_GET_DUMPABLE) == 0)
      return Unexpected{os_error("open", path, error) + " (the process is not dumpable)"};
    return Unexpected{os_error("open", path, error)};
  }
  const ssize_t wrote = retry_eintr([&] { return write(fd.get(), text.data(), text.size()); });
  if (wrote < 0) return Unexpected{failed("write", path)};
  if (static_cast<std::size_t>(wrote) != text.size()) return Unexpected{fmt::format("write {}: short write", path)};
  return Done{};
}

// The current ids mapped to themselves: the gate keeps its uid, gid and supplementary groups
// (the docker group among them) as the host sees them, so the host's permission checks on the
// docker socket are unchanged. setgroups must be denied before an unprivileged gid_map write.
// The ids are the host's, read before the unshare: inside, until mapped, they read as 65534.
Expected<Done, std::string> map_own_ids(uid_t uid, gid_t gid) {
  if (auto done = write_file("/proc/self/setgroups", "deny"); !done) return done;
  if (auto done = write_file("/proc/self/uid_map", fmt::format("{} {} 1", uid, uid)); !done) return done;
  return write_file("/proc/self/gid_map", fmt::format("{} {} 1", gid, gid));
}

// mkdir -p of `path` inside the tmpfs; what exists already (a parent shared with another
// target) is fine.
Expected<Done, std::string> make_directories(const std::string& path) {
  for (std::size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    const std::string parent = path.substr(0, slash);
    if (mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) return Unexpected{failed("mkdir", parent)};
  }
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return Unexpected{failed("mkdir", path)};
  return Done{};
}

Expected<Done, std::string> make_file(const std::string& path) {
  if (auto parents = make_directories(path.substr(0, path.rfind('/'))); !parents) return parents;
  const int fd = retry_eintr([&] { return open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600); });
  if (fd < 0 && errno != EEXIST) return Unexpected{failed("creating the mount point", path)};
  if (fd >= 0) close(fd);
  return Done{};
}

// The flags a remount must keep: in a user namespace, the mounts copied from the host are locked,
// and a remount that would clear their read-only, nosuid, nodev, noexec or atime mode is refused.
// The first four are set anyway, and kernels since 3.17 keep the atime mode of a remount that
// names none; naming what statvfs reports keeps the remount right without relying on that.
unsigned long locked_flags(const std::string& target) {
  struct statvfs info {};
  if (statvfs(target.c_str(), &info) != 0) return 0;  // the remount then reports the real error
  static constexpr std::array<std::pair<unsigned long, unsigned long>, 7> kFlags{{
      {ST_RDONLY, MS_RDONLY},
      {ST_NOSUID, MS_NOSUID},
      {ST_NODEV, MS_NODEV},
      {ST_NOEXEC, MS_NOEXEC},
      {ST_NOATIME, MS_NOATIME},
      {ST_NODIRATIME, MS_NODIRATIME},
      {ST_RELATIME, MS_RELATIME},
  }};
  unsigned long flags = 0;
  for (const auto& [st, ms] : kFlags) {
    if ((info.f_flag & st) != 0) flags |= ms;
  }
  return flags;
}

// Bind-mounts `source` at `target` (already created), then makes it read-only, nosuid, nodev and
// noexec, mounts beneath it included.
Expected<Done, std::string> bind_read_only(const Exposed& source, const std::string& target, bool recursive) {
  const std::string from = fmt::format("/proc/self/fd/{}", source.source.get());
  const std::string what = fmt::format("bind-mounting {} on", source.path);
  const unsigned long bind = MS_BIND | (recursive ? MS_REC : 0);
  if (mount(from.c_str(), target.c_str(), nullptr, bind, nullptr) != 0) return Unexpected{failed(what, target)};
  // A bind mount takes its source's flags; read-only needs a remount of the new mount.
  const unsigned long flags =
      MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | locked_flags(target);
  if (mount(nullptr, target.c_str(), nullptr, flags, nullptr) != 0)
    return Unexpected{failed("remounting read-only", target)};
  if (!recursive) return Done{};
  // The remount changes the top mount only: the mounts beneath (an NFS mount pgod made inside a
  // service directory) get the same with mount_setattr, which only sets flags, so it never
  // conflicts with a locked one.
  mount_attr attributes{};
  attributes.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
  if (syscall(SYS_mount_setattr, AT_FDCWD, target.c_str(), AT_RECURSIVE, &attributes, sizeof attributes) != 0)
    return Unexpected{failed("mount_setattr(read-only, recursive)", target)};
  return Done{};
}

// The tmpfs, then each root and the socket at its own path inside it.
Expected<Done, std::string> build_root(const std::string& root, const std::vector<Exposed>& roots,
                                       const std::vector<Link>& links, const Exposed& socket) {
  if (mount("tmpfs", root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m") != 0)
    return Unexpected{failed("mounting a tmpfs on", root)};
  for (const auto& exposed : roots) {
    const std::string target = root + exposed.path;
    if (auto made = make_directories(target); !made) return made;
    if (auto bound = bind_read_only(exposed, target, true); !bound) return bound;
  }
  for (const auto& link : links) {
    const std::string at = root + link.at;
    if (auto made = make_directories(at.substr(0, at.rfind('/'))); !made) return made;
    if (symlink(link.target.c_str(), at.c_str()) != 0) return Unexpected{failed("symlink", at)};
  }
  // After the roots: a socket inside one gets its mount point from the root's bind.
  const std::string target = root + socket.path;
  if (auto made = make_file(target); !made) return made;
  return bind_read_only(socket, target, false);
}

// The tmpfs becomes "/", the host's tree is detached, and the tmpfs is made read-only as well.
Expected<Done, std::string> pivot_to(const std::string& root) {
  const std::string old_root = root + kOldRoot;
  const std::string what = fmt::format("pivot_root({}, {})", root, old_root);
  if (mkdir(old_root.c_str(), 0700) != 0) return Unexpected{failed("mkdir", old_root)};
  if (syscall(SYS_pivot_root, root.c_str(), old_root.c_str()) != 0) return Unexpected{failed(what, "")};
  if (auto done = check_call(chdir("/"), "chdir", "/"); !done) return done;
  if (auto done = check_call(umount2(kOldRoot, MNT_DETACH), "umount2(MNT_DETACH)", kOldRoot); !done) return done;
  if (auto done = check_call(rmdir(kOldRoot), "rmdir", kOldRoot); !done) return done;
  return check_call(
      mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr),
      "remounting read-only", "/");
}

// ---------------------------------------------------------------------------------------------
// The allowlist

// Everything the gate may do once it serves: anything not listed kills the process with SIGSYS.
// The service sockets, logging and the private root exist before the filter. The gate serves each
// connection on a thread of its own, with blocking sockets and poll.
constexpr Rule kRules[] = {
    // I/O on descriptors the gate already holds or connects: sockets, stderr.
    allow("read"),
    allow("write"),
    allow("readv"),
    allow("writev"),
    allow("close"),
    // The bind-source resolver walks paths one component at a time: O_PATH opens (below), stat
    // and readlink. glibc 2.33+ makes fstat newfstatat(fd, "", AT_EMPTY_PATH); with a path it is
    // a probe of what the private root shows (only the service directories and the socket).
    allow("fstat"),
    allow("newfstatat"),
    allow("readlink"),
    allow("readlinkat"),
    // Files are opened only with O_PATH, which gives a descriptor that can name a file but never
    // read or write it. Libraries may try real opens (glibc reads time zones and CPU counts): they
    // must fail, not take the gate down.
    allow_if("openat", arg_masked(2, O_PATH, O_PATH)),
    fail_if("openat", Verdict::kEacces, arg_masked(2, O_PATH, 0)),
    fail("open", Verdict::kEacces),
    // Connections: accepting on the service sockets, talking on them and to dockerd; receive
    // timeouts are set with SO_RCVTIMEO.
    allow("accept"),
    allow("accept4"),
    allow("recvfrom"),
    allow("recvmsg"),
    allow("sendto"),
    // No sendmsg: the gate never sends a descriptor, and this is the call that can. Its
    // hand-over connection to pgod is one pgod closes unread: a descriptor queued on it would be
    // closed on pgod's loop (see the gateway's allowlist).
    fail("sendmsg", Verdict::kEperm),
    allow("shutdown"),
    allow("getsockopt"),
    allow("setsockopt"),
    allow("getsockname"),
    allow("getpeername"),
    // New sockets: unix only, for dockerd's socket. An IP, netlink or packet socket kills.
    allow_if("socket", arg_eq(0, AF_UNIX)),
    allow_if("socketpair", arg_eq(0, AF_UNIX)),
    allow("connect"),
    // Waiting: blocking calls and poll, no event loop.
    allow("poll"),
    allow("ppoll"),
    // Descriptor housekeeping; anonymous pipes (the sanitizers' thread start makes one).
    allow("pipe2"),
    allow("dup"),
    allow("dup2"),
    allow("dup3"),
    allow("fcntl"),
    // Non-blocking mode and close-on-exec may be set with ioctl. isatty() (spdlog's colour sinks)
    // asks TCGETS: the answer is "not a terminal". Any other request (terminal, device,
    // file-system ioctls) kills.
    allow_if("ioctl", arg_eq(1, FIONBIO)),
    allow_if("ioctl", arg_eq(1, FIOCLEX)),
    fail_if("ioctl", Verdict::kEnotty, arg_eq(1, TCGETS)),
};

}  // namespace

Expected<std::string, std::string> enter_private_root(const std::string& docker_socket,
                                                      const std::vector<std::string>& roots) {
  // Resolved on the host's tree, so that a missing socket is told before anything changes.
  auto socket_path = resolve(docker_socket);
  if (!socket_path) return Unexpected{socket_path.error()};
  if (!*socket_path) return Unexpected{fmt::format("the docker socket {} does not exist", docker_socket)};
  auto root_paths = resolve_roots(roots);
  if (!root_paths) return Unexpected{root_paths.error()};

  const uid_t uid = geteuid();
  const gid_t gid = getegid();
  // A network namespace of its own too: the gate speaks only to unix sockets on the file system
  // (which no network namespace hides), so abstract sockets and every network stay out of reach.
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET) != 0) {
    const int error = errno;
    // The kernel refuses these namespaces to a process with threads; EPERM (or ENOSPC) when the
    // host does not let unprivileged users have a user namespace.
    std::string hint;
    if (error == EINVAL) hint = " (the process must have a single thread)";
    if (error == EPERM || error == ENOSPC)
      hint =
          " (are unprivileged user namespaces disabled? see user.max_user_namespaces, and "
          "kernel.unprivileged_userns_clone where the kernel has it)";
    return Unexpected{os_error("unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET)", "", error) + hint};
  }
  if (auto mapped = map_own_ids(uid, gid); !mapped) return Unexpected{mapped.error()};
  // Nothing mounted from here on may reach the host's namespace, nor the host's mounts ours.
  if (auto done = check_call(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "making / private"); !done)
    return Unexpected{done.error()};

  // Opened in the new namespace (a mount of another namespace cannot be bound) and before the
  // tmpfs shadows any of them.
  auto socket_fd = open_source(**socket_path, S_IFSOCK, "socket");
  if (!socket_fd) return Unexpected{socket_fd.error()};
  Exposed socket{**socket_path, std::move(*socket_fd)};
  std::vector<Exposed> exposed;
  for (auto& path : root_paths->paths) {
    auto fd = open_source(path, S_IFDIR, "directory");
    if (!fd) return Unexpected{fd.error()};
    exposed.push_back({std::move(path), std::move(*fd)});
  }
  if (auto built = build_root(kScratch, exposed, root_paths->links, socket); !built) return Unexpected{built.error()};
  // No descriptor of the host's tree outlives the pivot.
  exposed.clear();
  socket.source.reset();
  if (auto pivoted = pivot_to(kScratch); !pivoted) return Unexpected{pivoted.error()};
  return socket.path;
}

Expected<Done, std::string> drop_capabilities() {
  // The bounding set first, while CAP_SETPCAP (the namespace's) still allows it; EINVAL marks
  // the end of the capabilities this kernel knows.
  for (unsigned long cap = 0;; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0) continue;
    const int error = errno;
    if (error == EINVAL) break;
    return Unexpected{os_error("prctl(PR_CAPBSET_DROP)", std::to_string(cap), error)};
  }
  // capset directly: no libcap. Emptying the permitted set empties the ambient set as well.
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> data{};
  if (auto set = check_call(syscall(SYS_capset, &header, data.data()), "capset"); !set) return set;
  header = {_LINUX_CAPABILITY_VERSION_3, 0};
  if (auto got = check_call(syscall(SYS_capget, &header, data.data()), "capget"); !got) return got;
  for (const auto& word : data) {
    if (word.effective != 0 || word.permitted != 0 || word.inheritable != 0)
      return Unexpected{
          fmt::format("capget: capabilities left after the drop (effective {:#x}, permitted {:#x}, "
                      "inheritable {:#x})",
                      word.effective, word.permitted, word.inheritable)};
  }
  return Done{};
}

Expected<Done, std::string> install_dockergate_filter() { return seccomp::install_allowlist(kRules); }

}  // namespace pgod::dockergate
