// The push hook listener: `POST /hooks/<service>` from GitHub, Gitea, Forgejo or GitLab. A
// delivery that verifies against the service's hook_secret (asked of the supervisor for each
// delivery: the gateway reads no config) makes that service's worker poll now; nothing of the
// delivery reaches the worker but "a push arrived", its forge and its source address.
#pragma once

#include <kj/async-io.h>

namespace pgod::gateway {

class Backends;

kj::Promise<void> serve_hooks(kj::ConnectionReceiver& listener, kj::Timer& timer, Backends& backends);

}  // namespace pgod::gateway
