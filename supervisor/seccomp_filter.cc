#include "seccomp_filter.h"

#include <fmt/format.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string_view>

#include "system_call.h"
#include "unique_fd.h"

namespace pgod::supervisor {
namespace {

// ---------------------------------------------------------------------------------------------
// What the worker may not do

// A syscall refused outright, and the errno its caller sees.
struct Refusal {
  const char* name;  // libseccomp's name; one this libseccomp does not know is skipped
  int error;
};

// EPERM reads to programs as "not allowed here", which docker and git report and survive.
// Names that are not syscalls on this architecture (umount, stime, set*uid32 on x86_64) are
// libseccomp pseudo-syscalls: adding them is a no-op here and keeps the list architecture-free.
constexpr Refusal kRefused[] = {
    // Mounts, namespaces and chroot: rearranging the file system view, or a user namespace in
    // which the worker holds every capability, is the usual first step out of a sandbox.
    {"mount", EPERM},
    {"umount", EPERM},
    {"umount2", EPERM},
    {"pivot_root", EPERM},
    {"chroot", EPERM},
    {"fsopen", EPERM},
    {"fsconfig", EPERM},
    {"fsmount", EPERM},
    {"fspick", EPERM},
    {"move_mount", EPERM},
    {"open_tree", EPERM},
    {"mount_setattr", EPERM},
    {"setns", EPERM},
    {"unshare", EPERM},
    // The kernel itself: modules, reboot and kexec, swap, the clocks, raw port I/O.
    {"init_module", EPERM},
    {"finit_module", EPERM},
    {"delete_module", EPERM},
    {"reboot", EPERM},
    {"kexec_load", EPERM},
    {"kexec_file_load", EPERM},
    {"swapon", EPERM},
    {"swapoff", EPERM},
    {"adjtimex", EPERM},
    {"clock_adjtime", EPERM},
    {"clock_adjtime64", EPERM},
    {"clock_settime", EPERM},
    {"clock_settime64", EPERM},
    {"settimeofday", EPERM},
    {"stime", EPERM},
    {"iopl", EPERM},
    {"ioperm", EPERM},
    // Identity: the supervisor dropped to the service's user before the filter; nothing after
    // it may change uids, gids, groups or capabilities (not even to the same values).
    {"setuid", EPERM},
    {"setgid", EPERM},
    {"setreuid", EPERM},
    {"setregid", EPERM},
    {"setresuid", EPERM},
    {"setresgid", EPERM},
    {"setgroups", EPERM},
    {"setfsuid", EPERM},
    {"setfsgid", EPERM},
    {"capset", EPERM},
    {"setuid32", EPERM},
    {"setgid32", EPERM},
    {"setreuid32", EPERM},
    {"setregid32", EPERM},
    {"setresuid32", EPERM},
    {"setresgid32", EPERM},
    {"setgroups32", EPERM},
    {"setfsuid32", EPERM},
    {"setfsgid32", EPERM},
    // Looking into other processes: tracing, their memory, their fds, comparing their kernel
    // objects, performance counters (side channels, and a long history of kernel bugs).
    {"ptrace", EPERM},
    {"process_vm_readv", EPERM},
    {"process_vm_writev", EPERM},
    {"perf_event_open", EPERM},
    {"kcmp", EPERM},
    {"pidfd_getfd", EPERM},
    {"lookup_dcookie", EPERM},
    // Large kernel attack surface no worker needs: eBPF, userfaultfd (holds the kernel mid-copy
    // in exploits), keyrings, io_uring (bypasses syscall filtering for the I/O it performs).
    {"bpf", EPERM},
    {"userfaultfd", EPERM},
    {"keyctl", EPERM},
    {"add_key", EPERM},
    {"request_key", EPERM},
    {"io_uring_setup", EPERM},
    {"io_uring_enter", EPERM},
    {"io_uring_register", EPERM},
    // Host-wide administration and obsolete interfaces.
    {"syslog", EPERM},
    {"acct", EPERM},
    {"quotactl", EPERM},
    {"quotactl_fd", EPERM},
    {"nfsservctl", EPERM},
    {"open_by_handle_at", EPERM},
    {"fanotify_init", EPERM},
    {"modify_ldt", EPERM},
    {"uselib", EPERM},
    {"ustat", EPERM},
    {"sysfs", EPERM},
    {"_sysctl", EPERM},
    // NUMA placement: the memory of the host's other processes is not the worker's to move.
    {"mbind", EPERM},
    {"set_mempolicy", EPERM},
    {"migrate_pages", EPERM},
    {"move_pages", EPERM},
    // Nothing the worker runs installs filters. A further filter could only narrow this one, but
    // seccomp(2) also creates user-notification listeners, with which a process answers the
    // syscalls of what it runs. (prctl(PR_SET_SECCOMP) stays: it installs plain filters only.)
    {"seccomp", EPERM},
    // clone3 passes its flags in memory a filter cannot read, so CLONE_NEW* cannot be checked.
    // ENOSYS, never EPERM: glibc (pthread_create, posix_spawn), Python and Go fall back to
    // clone(2), whose flags are checked below, only on ENOSYS.
    {"clone3", ENOSYS},
};

// A flag or request number, with its name for messages.
struct Named {
  const char* name;
  std::uint64_t value;
};

// clone(2) may not create namespaces: one masked-equal rule per flag, since a rule's
// comparisons are ANDed and the flags may come in any combination.
constexpr Named kNamespaceFlags[] = {
    {"CLONE_NEWNS", CLONE_NEWNS},
    {"CLONE_NEWCGROUP", CLONE_NEWCGROUP},
    {"CLONE_NEWUTS", CLONE_NEWUTS},
    {"CLONE_NEWIPC", CLONE_NEWIPC},
    {"CLONE_NEWUSER", CLONE_NEWUSER},
    {"CLONE_NEWPID", CLONE_NEWPID},
    {"CLONE_NEWNET", CLONE_NEWNET},
#ifdef CLONE_NEWTIME
    // In clone(2) this bit lies in the exit-signal byte, where no valid signal sets it: the rule
    // refuses only calls the kernel rejects anyway, and keeps the list the whole CLONE_NEW* set.
    {"CLONE_NEWTIME", CLONE_NEWTIME},
#endif
};

// TIOCSTI pushes input into a terminal (commands typed into the session that owns it);
// TIOCLINUX selects and pastes on the console. The kernel reads ioctl's request as an unsigned
// int, so only the low 32 bits are compared: with a 64-bit comparison, a request with high
// bits set would slip past (flatpak's CVE-2019-10063).
constexpr Named kRefusedIoctls[] = {{"TIOCSTI", TIOCSTI}, {"TIOCLINUX", TIOCLINUX}};
constexpr std::uint64_t kIoctlRequestMask = 0xffffffff;

// The socket families docker, docker-compose and libgit2 use: the docker socket, IP, and
// netlink routing (interface and address listings). Packet sockets, vsock, Bluetooth and the
// rest of the ~45 families get EAFNOSUPPORT, as if not built in; netlink other than routing
// (audit, xfrm, uevents, ...) gets EPROTONOSUPPORT.
constexpr Named kAllowedFamilies[] = {
    {"AF_UNIX", AF_UNIX}, {"AF_INET", AF_INET}, {"AF_INET6", AF_INET6}, {"AF_NETLINK", AF_NETLINK}};

// ---------------------------------------------------------------------------------------------
// libseccomp

struct ReleaseFilter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};
using FilterContext = std::unique_ptr<void, ReleaseFilter>;

// What went wrong, if anything.
using Failure = std::optional<std::string>;

const char* errno_name(int error) {
  const char* name = strerrorname_np(error);
  return name != nullptr ? name : "?";
}

// libseccomp returns -errno.
std::string failed(std::string_view call, int rc) { return fmt::format("{}: {}", call, errno_text(-rc)); }

// Makes `syscall` fail with `error` when all `conditions` hold (always, with none). `shown`
// describes the conditions in messages.
Failure refuse(scmp_filter_ctx ctx, const char* syscall, int error, std::initializer_list<scmp_arg_cmp> conditions = {},
               std::string_view shown = "") {
  const int number = seccomp_syscall_resolve_name(syscall);
  if (number == __NR_SCMP_ERROR) return std::nullopt;  // newer than this libseccomp: cannot be named
  const int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(static_cast<std::uint32_t>(error)), number,
                                        static_cast<unsigned>(conditions.size()), conditions.begin());
  if (rc != 0) return failed(fmt::format("seccomp_rule_add({}{}, ERRNO({}))", syscall, shown, errno_name(error)), rc);
  return std::nullopt;
}

Failure refuse_namespace_clones(scmp_filter_ctx ctx) {
  for (const auto& flag : kNamespaceFlags) {
    const auto condition = SCMP_A0(SCMP_CMP_MASKED_EQ, flag.value, flag.value);
    if (auto failure = refuse(ctx, "clone", EPERM, {condition}, fmt::format(" with {}", flag.name))) return failure;
  }
  return std::nullopt;
}

Failure refuse_terminal_ioctls(scmp_filter_ctx ctx) {
  for (const auto& request : kRefusedIoctls) {
    const auto condition = SCMP_A1(SCMP_CMP_MASKED_EQ, kIoctlRequestMask, request.value);
    if (auto failure = refuse(ctx, "ioctl", EPERM, {condition}, fmt::format(" {}", request.name))) return failure;
  }
  return std::nullopt;
}

// A denylist can only say which families are refused, so the allowlist becomes: everything
// above the highest allowed family (any high bit, or a negative int, compares above it too),
// and each gap below it. Netlink is then narrowed to NETLINK_ROUTE by protocol.
Failure refuse_other_sockets(scmp_filter_ctx ctx) {
  const auto is_allowed = [](std::uint64_t family) {
    return std::any_of(std::begin(kAllowedFamilies), std::end(kAllowedFamilies),
                       [family](const Named& allowed) { return allowed.value == family; });
  };
  const std::uint64_t highest =
      std::max_element(std::begin(kAllowedFamilies), std::end(kAllowedFamilies), [](const Named& a, const Named& b) {
        return a.value < b.value;
      })->value;
  if (auto failure = refuse(ctx, "socket", EAFNOSUPPORT, {SCMP_A0(SCMP_CMP_GT, highest, 0)},
                            fmt::format(" with family > {}", highest)))
    return failure;
  for (std::uint64_t family = 0; family < highest; ++family) {
    if (is_allowed(family)) continue;
    if (auto failure = refuse(ctx, "socket", EAFNOSUPPORT, {SCMP_A0(SCMP_CMP_EQ, family, 0)},
                              fmt::format(" with family {}", family)))
      return failure;
  }
  return refuse(
      ctx, "socket", EPROTONOSUPPORT,
      {SCMP_A0(SCMP_CMP_EQ, std::uint64_t{AF_NETLINK}, 0), SCMP_A2(SCMP_CMP_NE, std::uint64_t{NETLINK_ROUTE}, 0)},
      " AF_NETLINK with protocol other than NETLINK_ROUTE");
}

// The program as libseccomp generates it, read back from a memfd (libseccomp only writes
// programs to file descriptors).
Expected<SeccompProgram, std::string> export_program(scmp_filter_ctx ctx) {
  const UniqueFd memory(memfd_create("pgod-seccomp-filter", MFD_CLOEXEC));
  if (!memory) return Unexpected{os_error("memfd_create", "", errno)};
  if (const int rc = seccomp_export_bpf(ctx, memory.get()); rc != 0)
    return Unexpected{failed("seccomp_export_bpf", rc)};
  struct stat info {};
  if (fstat(memory.get(), &info) != 0) return Unexpected{os_error("fstat", "(exported filter)", errno)};
  const auto size = static_cast<std::size_t>(info.st_size);
  if (size == 0 || size % sizeof(sock_filter) != 0 || size / sizeof(sock_filter) > BPF_MAXINSNS) {
    return Unexpected{fmt::format("seccomp_export_bpf wrote {} bytes: not 1 to {} whole {}-byte instructions", size,
                                  BPF_MAXINSNS, sizeof(sock_filter))};
  }
  SeccompProgram program;
  program.instructions.resize(size / sizeof(sock_filter));
  auto* bytes = reinterpret_cast<char*>(program.instructions.data());
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n =
        retry_eintr([&] { return pread(memory.get(), bytes + done, size - done, static_cast<off_t>(done)); });
    if (n < 0) return Unexpected{os_error("read", "(exported filter)", errno)};
    if (n == 0) return Unexpected{fmt::format("read (exported filter): ended after {} of {} bytes", done, size)};
    done += static_cast<std::size_t>(n);
  }
  return program;
}

}  // namespace

Expected<SeccompProgram, std::string> build_worker_filter() {
  const FilterContext ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return Unexpected{std::string("seccomp_init(SCMP_ACT_ALLOW) failed")};
  // Other ABIs (i386 through int 0x80, x32) number their syscalls differently, so a denylist in
  // native numbers would not apply to them: they are not allowed at all. KILL_PROCESS rather
  // than libseccomp's default (kill the thread): a worker must not go on with a thread missing.
  if (const int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc != 0)
    return Unexpected{failed("seccomp_attr_set(SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)", rc)};
  // The attribute only makes seccomp_load set no_new_privs; we install the exported program
  // ourselves, and no_new_privs is its own step in the child's confinement (the kernel refuses
  // an unprivileged filter without it). Off, so that nothing depends on a side effect here.
  if (const int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0); rc != 0)
    return Unexpected{failed("seccomp_attr_set(SCMP_FLTATR_CTL_NNP, 0)", rc)};

  for (const auto& refusal : kRefused) {
    if (auto failure = refuse(ctx.get(), refusal.name, refusal.error)) return Unexpected{*failure};
  }
  if (auto failure = refuse_namespace_clones(ctx.get())) return Unexpected{*failure};
  if (auto failure = refuse_terminal_ioctls(ctx.get())) return Unexpected{*failure};
  if (auto failure = refuse_other_sockets(ctx.get())) return Unexpected{*failure};
  return export_program(ctx.get());
}

int install_seccomp_program(const SeccompProgram& program) noexcept {
  const std::size_t count = program.instructions.size();
  if (count == 0 || count > BPF_MAXINSNS) return -EINVAL;
  // The kernel copies the instructions; sock_fprog's pointer is non-const only by declaration.
  sock_fprog fprog{static_cast<unsigned short>(count), const_cast<sock_filter*>(program.instructions.data())};
  // No flags: no TSYNC (between fork and exec the child has one thread), no logging.
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) return -errno;
  return 0;
}

}  // namespace pgod::supervisor
