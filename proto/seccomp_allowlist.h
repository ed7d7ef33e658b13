// A seccomp allowlist as a table: one row per syscall (and argument condition) a confined program
// may make, what happens then (allowed, or a chosen errno), and the process killed on anything
// else. The gateway and the docker gate each keep their own table beside their code; this is
// the engine that checks a table and installs it.
#pragma once

#include <sched.h>
#include <seccomp.h>

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

// Sets no_new_privs, then installs `rules` on every thread of the process (TSYNC), killing the
// whole process on any call the table does not list, and on any other ABI (i386, x32). Call
// once: a table that does not allow seccomp() forbids a second one. Errors name the step; the
// process may be half-confined after one, so the caller must exit.
Expected<Done, std::string> install_allowlist(std::span<const Rule> rules);

}  // namespace pgod::seccomp
