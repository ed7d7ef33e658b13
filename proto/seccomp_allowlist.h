// A seccomp allowlist as a table: one row per syscall (and argument condition) a confined program
// may make, what happens then (allowed, or a chosen errno), and the process killed on anything
// else. The gateway and the docker gate each keep their own table beside their code; this is
// the engine that checks a table and installs it.
#pragma once

#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>

#include "expected.h"

namespace pgod::seccomp {

enum class Verdict {
  kAllow,
  kEacces,  // the call fails as if the file were unreadable
  kEnosys,  // the call fails as if the kernel did not have it
  kEnotty,  // the descriptor is not a terminal
  kEperm,   // the call is not permitted
};

// One comparison of a syscall argument. For SCMP_CMP_MASKED_EQ, `datum` is the mask and
// `value` what the masked argument must equal; otherwise `datum` is compared and `value` unused.
struct Check {
  unsigned arg = 0;
  scmp_compare op = SCMP_CMP_EQ;
  std::uint64_t datum = 0;
  std::uint64_t value = 0;
  bool own_pid = false;  // `datum` is this process's pid, known only when the filter is built
};

// What happens to `syscall` when every check holds (always, with none). libseccomp allows one
// check per argument in a rule, and an unconditional rule silently replaces the conditional
// ones of the same syscall: the installer refuses such a table.
struct Rule {
  const char* syscall;  // libseccomp's name; one it does not know is skipped (so: killed)
  Verdict verdict = Verdict::kAllow;
  std::array<Check, 2> checks{};
  unsigned check_count = 0;
};

constexpr Rule allow(const char* syscall) { return {syscall, Verdict::kAllow, {}, 0}; }
constexpr Rule allow_if(const char* syscall, Check check) { return {syscall, Verdict::kAllow, {check}, 1}; }
constexpr Rule allow_if(const char* syscall, Check first, Check second) {
  return {syscall, Verdict::kAllow, {first, second}, 2};
}
constexpr Rule fail(const char* syscall, Verdict verdict) { return {syscall, verdict, {}, 0}; }
constexpr Rule fail_if(const char* syscall, Verdict verdict, Check check) { return {syscall, verdict, {check}, 1}; }

constexpr Check arg_eq(unsigned arg, std::uint64_t value) { return {arg, SCMP_CMP_EQ, value, 0, false}; }
constexpr Check arg_ne(unsigned arg, std::uint64_t value) { return {arg, SCMP_CMP_NE, value, 0, false}; }
constexpr Check arg_has_none(unsigned arg, std::uint64_t bits) { return {arg, SCMP_CMP_MASKED_EQ, bits, 0, false}; }
constexpr Check arg_masked(unsigned arg, std::uint64_t mask, std::uint64_t value) {
  return {arg, SCMP_CMP_MASKED_EQ, mask, value, false};
}
constexpr Check arg_is_own_pid(unsigned arg) { return {arg, SCMP_CMP_EQ, 0, 0, true}; }

// Namespace flags a thread's clone must not carry (CLONE_NEWTIME is left out: in clone(2) its
// bit is part of the exit-signal byte, which a thread's clone leaves zero anyway).
inline constexpr std::uint64_t kCloneNewAny =
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;

// What every confined server of pgod's (the gateway, the docker gate) needs once it serves,
// beside its own rules: memory that is never executable, threads but no processes, signals to
// itself, identity getters, clocks and randomness, its own limits read, its threads named, exit.
inline constexpr Rule kServerCommonRules[] = {
    // Memory, never executable: no new code can be mapped or made runnable.
    allow("brk"),
    allow("munmap"),
    allow("mremap"),
    allow("madvise"),
    allow_if("mmap", arg_has_none(2, PROT_EXEC)),
    allow_if("mprotect", arg_has_none(2, PROT_EXEC)),
    // Threads, never processes: clone must carry CLONE_THREAD (fork and vfork do not) and no
    // namespace flag. clone3 hides its flags in memory a filter cannot read: ENOSYS makes glibc
    // fall back to clone (EPERM would make pthread_create fail).
    allow_if("clone", arg_masked(0, CLONE_THREAD | kCloneNewAny, CLONE_THREAD)),
    fail("clone3", Verdict::kEnosys),
    allow("futex"),
    allow("set_robust_list"),
    allow("rseq"),
    allow("sched_yield"),
    // Read-only CPU masks: glibc's malloc counts the CPUs when it makes its 9th arena (many
    // threads allocating at once; /sys fails first), and pthread_getattr_np asks for a thread's
    // own (by its tid, so the pid cannot be pinned to 0).
    allow("sched_getaffinity"),
    // Signals: handlers, masks and their return; a signal only to this process (raise, abort).
    allow("rt_sigaction"),
    allow("rt_sigprocmask"),
    allow("rt_sigreturn"),
    allow("sigaltstack"),
    allow("restart_syscall"),
    allow_if("tgkill", arg_is_own_pid(0)),
    // Who and what: identity getters, clocks (vDSO normally; real syscalls on some clock
    // sources), randomness (the SSH key exchange), uname, and reading its own limits.
    allow("getpid"),
    allow("gettid"),
    allow("getuid"),
    allow("geteuid"),
    allow("getgid"),
    allow("getegid"),
    allow("getresuid"),
    allow("getresgid"),
    allow("clock_gettime"),
    allow("clock_getres"),
    allow("clock_nanosleep"),
    allow("nanosleep"),
    allow("gettimeofday"),
    allow("time"),
    allow("getrandom"),
    allow("uname"),
    allow_if("prlimit64", arg_eq(0, 0), arg_eq(2, 0)),
    // Naming its own threads only.
    allow_if("prctl", arg_eq(0, PR_SET_NAME)),
    allow_if("prctl", arg_eq(0, PR_GET_NAME)),
    allow("exit"),
    allow("exit_group"),
};

// Sets no_new_privs, then installs `rules` and kServerCommonRules on every thread of the process
// (TSYNC), killing the
// whole process on any call the table does not list, and on any other ABI (i386, x32). Call
// once: a table that does not allow seccomp() forbids a second one. Errors name the step; the
// process may be half-confined after one, so the caller must exit.
Expected<Done, std::string> install_allowlist(std::span<const Rule> own_rules);

}  // namespace pgod::seccomp
