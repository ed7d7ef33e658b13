#include "confinement.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <vector>

#include "seccomp_allowlist.h"
#include "system_call.h"

namespace pgod::gateway {
namespace {

// The shared engine (proto/seccomp_allowlist.h); the table below is the gateway's own.
using seccomp::allow;
using seccomp::allow_if;
using seccomp::arg_eq;
using seccomp::arg_has_none;
using seccomp::arg_is_own_pid;
using seccomp::arg_masked;
using seccomp::arg_ne;
using seccomp::fail;
using seccomp::fail_if;
using seccomp::kCloneNewAny;
using seccomp::Rule;
using seccomp::Verdict;

// ---------------------------------------------------------------------------------------------
// drop_root

// The user database entry of `user`, read with a buffer grown until it fits.
Expected<passwd, std::string> look_up(const std::string& user, std::vector<char>& buffer) {
  const long suggested = sysconf(_SC_GETPW_R_SIZE_MAX);
  buffer.resize(suggested > 0 ? static_cast<std::size_t>(suggested) : 16384);
  passwd entry{};
  passwd* found = nullptr;
  int error = 0;
  while ((error = getpwnam_r(user.c_str(), &entry, buffer.data(), buffer.size(), &found)) == ERANGE)
    buffer.resize(buffer.size() * 2);
  // Some NSS modules say "no such user" with ENOENT or ESRCH instead of a null result.
  if (error != 0 && error != ENOENT && error != ESRCH)
    return Unexpected{os_error(fmt::format("getpwnam_r(\"{}\")", user), "", error)};
  if (found == nullptr)
    return Unexpected{
        fmt::format("the gateway's user \"{}\" does not exist (create it with `useradd --system "
                    "--no-create-home --shell /usr/sbin/nologin {}`)",
                    user, user)};
  return entry;
}

// After the drop: no way back to root, exactly the user's ids, no group but its own, no
// capability left (setresuid from root clears them unless SECBIT_KEEP_CAPS was set, which this
// catches).
Expected<Done, std::string> check_dropped(uid_t uid, gid_t gid) {
  // glibc's setuid applies to every thread; a success here would mean root is still reachable.
  if (setuid(0) == 0) return Unexpected{std::string("setuid(0) succeeded after the drop: root was not given up")};
  uid_t ruid = 0, euid = 0, suid = 0;
  if (auto got = check_call(getresuid(&ruid, &euid, &suid), "getresuid"); !got) return got;
  if (ruid != uid || euid != uid || suid != uid)
    return Unexpected{fmt::format("getresuid: {}/{}/{} after the drop, expected {} for all", ruid, euid, suid, uid)};
  gid_t rgid = 0, egid = 0, sgid = 0;
  if (auto got = check_call(getresgid(&rgid, &egid, &sgid), "getresgid"); !got) return got;
  if (rgid != gid || egid != gid || sgid != gid)
    return Unexpected{fmt::format("getresgid: {}/{}/{} after the drop, expected {} for all", rgid, egid, sgid, gid)};
  std::array<gid_t, 2> groups{};
  const int count = getgroups(static_cast<int>(groups.size()), groups.data());
  if (count < 0) return Unexpected{os_error("getgroups", "", errno)};
  if (count != 1 || groups[0] != gid)
    return Unexpected{fmt::format("getgroups: {} groups after the drop, expected only {}", count, gid)};
  // capget directly: no libcap, and no /proc (which the caller may not be able to read).
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> data{};
  if (auto got = check_call(syscall(SYS_capget, &header, data.data()), "capget"); !got) return got;
  for (const auto& word : data) {
    if (word.effective != 0 || word.permitted != 0)
      return Unexpected{fmt::format("capget: capabilities left after the drop (effective {:#x}, permitted {:#x})",
                                    word.effective, word.permitted)};
  }
  return Done{};
}

// ---------------------------------------------------------------------------------------------
// The allowlist

// Everything the gateway may do once it serves: anything not listed kills the process with
// SIGSYS. Listeners, the host key, logging and the KJ event loop exist before the filter.
constexpr Rule kRules[] = {
    // I/O on descriptors the gateway already holds: sockets, pipes, eventfds, stderr.
    allow("read"),
    allow("write"),
    allow("readv"),
    allow("writev"),
    allow("pread64"),
    allow("pwrite64"),
    allow("close"),
    allow("lseek"),
    // fstat: glibc 2.33+ makes it newfstatat(fd, "", buf, AT_EMPTY_PATH) (stdio calls it on a
    // stream's first use). With a path, newfstatat is a file probe: glibc's localtime() re-stats
    // /etc/localtime on every call. Probes fail as open does.
    allow("fstat"),
    allow_if("newfstatat", arg_eq(3, AT_EMPTY_PATH)),
    fail_if("newfstatat", Verdict::kEacces, arg_ne(3, AT_EMPTY_PATH)),
    // No file is ever opened after start-up, but libraries may try (OpenSSL loads openssl.cnf
    // lazily during the first key exchange, glibc reads time zones and CPU counts, the
    // sanitizers' reports read /proc/self/exe): they must just fail, not take the gateway down.
    fail("open", Verdict::kEacces),
    fail("openat", Verdict::kEacces),
    fail("readlink", Verdict::kEacces),
    fail("readlinkat", Verdict::kEacces),
    // Connections: accepting on the listeners (libssh calls accept, KJ accept4) and talking on
    // the accepted and connected sockets.
    allow("accept"),
    allow("accept4"),
    allow("recvfrom"),
    allow("recvmsg"),
    allow("sendto"),
    // No sendmsg (nor sendmmsg, unlisted): it is the only way to send a descriptor. A gateway
    // taken over could otherwise hand pgod's loop or a worker's one whose last close waits (a
    // lingering TCP socket whose peer stops reading, a pipe whose lock is held, a FUSE file),
    // and Debian's kernels have no SO_PASSRIGHTS to refuse it. The audit trail goes with sendto.
    fail("sendmsg", Verdict::kEperm),
    allow("shutdown"),
    allow("getsockopt"),
    allow("setsockopt"),
    allow("getsockname"),
    allow("getpeername"),
    // New sockets: unix only, for the worker and supervisor sockets in the run directory and
    // KJ's socketpair. An IP, netlink or packet socket kills the process.
    allow_if("socket", arg_eq(0, AF_UNIX)),
    allow_if("socketpair", arg_eq(0, AF_UNIX)),
    allow("connect"),
    // Waiting: libssh polls, KJ's event port is epoll with an eventfd for wake-ups and a signalfd.
    allow("poll"),
    allow("ppoll"),
    allow("epoll_create1"),
    allow("epoll_ctl"),
    allow("epoll_wait"),
    allow("epoll_pwait"),
    allow("eventfd2"),
    allow("signalfd4"),
    allow("pipe2"),
    // Descriptor housekeeping (the gateway watches a dup of each libssh fd, see ssh_server.cc).
    allow("dup"),
    allow("dup3"),
    allow("fcntl"),
    // KJ sets non-blocking mode and close-on-exec with ioctl. isatty() (spdlog's colour sinks,
    // the sanitizers' reports) asks TCGETS: the answer is "not a terminal". Any other request
    // (terminal, device, file-system ioctls) kills.
    allow_if("ioctl", arg_eq(1, FIONBIO)),
    allow_if("ioctl", arg_eq(1, FIOCLEX)),
    fail_if("ioctl", Verdict::kEnotty, arg_eq(1, TCGETS)),
};

}  // namespace

Expected<Done, std::string> drop_root(const std::string& user) {
  if (geteuid() != 0) return Done{};  // already unprivileged: nothing to give up
  std::vector<char> buffer;
  auto entry = look_up(user, buffer);
  if (!entry) return Unexpected{entry.error()};
  const uid_t uid = entry->pw_uid;
  const gid_t gid = entry->pw_gid;
  if (uid == 0) return Unexpected{fmt::format("the gateway's user \"{}\" has uid 0: refusing to run as root", user)};
  if (gid == 0) return Unexpected{fmt::format("the gateway's user \"{}\" has the root group (gid 0): refusing", user)};
  // Groups first, then gid, then uid: each step needs the privileges the next one gives up.
  if (auto set = check_call(setgroups(1, &gid), "setgroups"); !set) return set;
  if (auto set = check_call(setresgid(gid, gid, gid), "setresgid"); !set) return set;
  if (auto set = check_call(setresuid(uid, uid, uid), "setresuid"); !set) return set;
  return check_dropped(uid, gid);
}

Expected<Done, std::string> install_gateway_filter() { return seccomp::install_allowlist(kRules); }

}  // namespace pgod::gateway
