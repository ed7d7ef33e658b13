// Starting a program as another user, confined: the one place where root turns into a worker
// or the gateway. Everything is prepared in the parent (argv, env, groups, the seccomp program);
// between fork and exec the child only makes system calls (run_child in confine.cc), in this
// order:
//
//   1. every signal back to its default action, none blocked
//   2. a new session (setsid)
//   3. fd 0 /dev/null, fds 1-2 pgod's (or the given ones), the given fds moved to 3, 4, ...
//   4. every other fd closed at exec
//   5. chdir /, umask 022
//   6. with change_identity: the capability bounding set emptied (while still root),
//      supplementary groups, gid, uid (real, effective, saved), every capability set emptied
//   7. ambient capabilities cleared
//   8. with change_identity, for a non-root user: proof that uid 0 cannot be regained
//   9. no_new_privs
//  10. with a parent-death signal: the signal set, then a check that pgod has not exited
//  11. with a seccomp program: the filter installed
//  12. exec
//
// A step that fails is reported back through a close-on-exec pipe as "step: errno", so the
// log says exactly what went wrong.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <kj/common.h>

#include "expected.h"
#include "seccomp_filter.h"
#include "unique_fd.h"

namespace pgod::supervisor {

struct Identity {
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary: the user's groups (never docker), plus docker for the docker gate
  std::string home;
};

// The user's identity from the user database. With `with_docker_group` (the docker gate only),
// the docker group is added to the supplementary groups; a host without a docker group gets a
// warning-worthy note in `*note` instead. Without it, the docker group is taken out even when the
// user is a member: no worker holds it.
Expected<Identity, std::string> lookup_user(const std::string& user, bool with_docker_group, std::string* note);

// The identity of a uid that may have no user database entry (a stale directory's owner).
Identity identity_of_uid(uid_t uid, gid_t fallback_gid, bool with_docker_group);

struct SpawnSpec {
  std::string program;            // absolute path
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // the whole environment: nothing is inherited
  Identity identity;
  std::vector<int> fds;                     // passed as fds 3, 4, …, in this order
  int stdout_fd = -1;                       // becomes fd 1; -1: pgod's own stdout
  int stderr_fd = -1;                       // becomes fd 2; -1: pgod's own stderr
  const SeccompProgram* seccomp = nullptr;  // nullptr: none (the gateway installs its own)
  int parent_death_signal = 0;              // 0: none
  bool change_identity = true;              // false only under --no-root-check, as a non-root user
};

// How pgod starts pgod-worker (a service's worker, a retirement, a judge for --check): as
// `identity`, under the worker seccomp filter, ending with pgod, and with an environment of its
// own (nothing of pgod's: the worker sets what docker and git need from its settings). The
// caller fills in the program, argv and fds.
SpawnSpec worker_spawn_spec(const Identity& identity, const SeccompProgram& filter, bool change_identity);

// A memfd holding `bytes`, sealed against any change and positioned at its start: how a
// worker receives its settings (never a file on disk, never another service's).
Expected<UniqueFd, std::string> sealed_memfd(const std::string& name, kj::ArrayPtr<const kj::byte> bytes);

// Forks and execs; returns the child's pid once the exec succeeded, or what failed.
Expected<pid_t, std::string> spawn_confined(const SpawnSpec& spec);

// A wait status in words, for logs: "exit 3", "signal 9".
std::string describe_exit(int status);

}  // namespace pgod::supervisor
