@0xf6489211a103cb6e;
# The supervisor's interface, served on /run/pgod/supervisor.sock to the gateway (and root).
# Deliberately small: it is the root process's whole RPC surface.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("pgod::rpc");

struct ServiceInfo {
  name @0 :Text;
  workerState @1 :WorkerState;
  workerPid @2 :Int32;       # 0 when not running
  restarts @3 :UInt32;       # worker restarts since pgod started
  lastExit @4 :Text;         # how the worker last ended: "exit 1", "signal 9"; empty if never
  mountError @5 :Text;       # why the NFS mount failed, empty when fine or none configured

  enum WorkerState {
    running @0;
    backingOff @1;           # exited; waiting before the next start
    stopped @2;              # being removed, or pgod is shutting down
  }
}

interface Supervisor {
  listServices @0 () -> (services :List(ServiceInfo));

  restartWorker @1 (name :Text) -> ();
  # Restarts one service's worker now (containers are not touched). Fails with an error
  # naming the service when there is none.

  hookSettings @2 (name :Text) -> (secret :Data, branch :Text);
  # What the gateway checks a push hook for this service against: its hook_secret from
  # pgo.toml and the branch it tracks. Asked for each delivery, so a changed secret counts at
  # once; an empty secret (or no such service) means the service takes no hooks.
}
