// Fork-and-assert for the gateway's confinement: a body runs in a forked child, which reports
// one line through a pipe and ends with _exit; the parent gets the line, or how the child died
// ("killed by SIGSYS"). The child never dumps core and is bounded by an alarm.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "unique_fd.h"

namespace pgod::gateway::test {

// A call's outcome as one word: "ok", or the errno's name ("EACCES"). Reads errno first.
std::string outcome(long rc);

// Runs `body` in a forked child and returns what it returned, or "killed by SIG…", or
// "exit N: …" when the child ended otherwise. Exceptions in the child become "threw: …".
std::string run_child(const std::function<std::string()>& body);

// run_child in two halves, for a parent that must do something while the child runs (be the
// client of a server in the child). Every started child must be waited for.
struct StartedChild {
  pid_t pid = -1;
  UniqueFd report;      // the read end of the child's report pipe
  std::string failure;  // why it could not be started; then pid is -1
};
StartedChild start_child(const std::function<std::string()>& body);
std::string wait_child(StartedChild& child);

// run_child with the real filter installed (install_gateway_filter) before `call`: what the
// gateway's code would see.
std::string confined(const std::function<std::string()>& call);

// The same call without the filter: the control that shows the filter made the difference.
std::string unconfined(const std::function<std::string()>& call);

// Installs the filter in the calling (child) process; "" on success, else why not.
std::string install_filter();

}  // namespace pgod::gateway::test
