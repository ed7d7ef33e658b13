// The worker's seccomp filter: a denylist (default allow) of what docker, docker-compose and
// libgit2 never need and an attacker holding the worker would want — mounts and namespaces,
// identity changes, kernel modules, tracing, keyrings, io_uring, exotic sockets. It is built
// with libseccomp in the parent, before fork, so that the child installs it with one raw
// syscall: nothing is allocated between fork and exec.
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "expected.h"

namespace pgod::supervisor {

// A compiled seccomp BPF program for the native architecture.
struct SeccompProgram {
  std::vector<sock_filter> instructions;
};

// The worker denylist (docs/SECURITY.md, "Boundary 4: supervisor → worker"): EPERM for the refused
// syscalls, clone with any CLONE_NEW* flag, ioctl TIOCSTI/TIOCLINUX; ENOSYS for clone3 (glibc
// falls back to clone); socket limited to AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK with
// NETLINK_ROUTE; syscalls of other architectures kill the process. Syscalls this libseccomp does
// not know are skipped. The error names the libseccomp call and the syscall.
Expected<SeccompProgram, std::string> build_worker_filter();

// Installs `program` on the calling thread with seccomp(SECCOMP_SET_MODE_FILTER). No allocation
// and async-signal-safe, for use between fork and exec; PR_SET_NO_NEW_PRIVS must already be set
// (or the caller must hold CAP_SYS_ADMIN). Returns 0 or -errno.
int install_seccomp_program(const SeccompProgram& program) noexcept;

}  // namespace pgod::supervisor
