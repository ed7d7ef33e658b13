@0xd50e1d2d2d7a9e84;
# Types shared by the worker and supervisor interfaces.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("pgod::rpc");

enum ServiceState {
  # The states of a service, after gitopper.
  ok @0;        # tracking upstream, containers reconciled
  frozen @1;    # not tracking upstream (freeze)
  rollback @2;  # pinned to a commit (rollback <hash>)
  broken @3;    # compose or docker error; running containers were left alone
  diff @4;      # git cannot be reconciled (repeated fetch failures, unreachable upstream)
  stopped @5;   # <dir>/<service>.stop exists: brought down, stays down
  starting @6;  # the first cycle has not finished yet
  reverted @7;  # a deploy failed its health gate: the last good one runs again until upstream moves
}

struct ServiceStatus {
  state @0 :ServiceState;
  hash @1 :Text;          # the commit the checkout is at
  upstreamHash @2 :Text;  # origin/<branch> at the last successful fetch
  pinnedHash @3 :Text;    # the rollback target, when state is rollback
  lastChange @4 :Int64;   # unix seconds: when the checkout last moved
  lastDeploy @5 :Int64;   # unix seconds: when compose last ran up successfully
  lastError @6 :Text;     # the reason for broken/diff, else empty
  composeFile @7 :Text;   # the compose file in use, relative to the checkout
}
