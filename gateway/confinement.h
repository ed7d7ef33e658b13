// The gateway's confinement, applied once the listeners are open and the host key is loaded:
// drop root to the gateway's own user, then a seccomp allowlist (default: kill the process).
// After it the gateway cannot exec, fork, open files or make new network sockets; it can only
// serve the sockets it already holds and connect to the unix sockets in the run directory.
//
// Order in the gateway (main.cc): set up logging, open the listeners, load the host key, start
// the KJ event loop (kj::setupAsyncIo), then drop_root, then install_gateway_filter; the
// listeners are handed to the event loop only after that, and then it serves.
#pragma once

#include <string>

#include "expected.h"

namespace pgod::gateway {

// When running as root: become `user` (its uid, its primary gid, no supplementary groups), and
// check that root cannot be regained (setuid(0) fails, all three uids and gids are the user's,
// no effective or permitted capability is left). A user with uid 0 or gid 0 is refused; a
// missing user's error says how to create it. When not root: nothing to do, the user is not
// even looked up. Errors name the step ("setresuid: Operation not permitted"); the process may
// be half-changed after one, so the caller must exit.
Expected<Done, std::string> drop_root(const std::string& user);

// Sets no_new_privs and installs the allowlist on every thread of the process (TSYNC). Call
// once: the filter forbids the calls that would install another. Errors name the step; the
// caller must exit on error.
Expected<Done, std::string> install_gateway_filter();

}  // namespace pgod::gateway
