@0xa02edff92f4e598f;
# The worker's interface, served on /run/pgod/workers/<service>.sock to the gateway (and root).

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("pgod::rpc");

using Common = import "common.capnp";

interface OutputSink {
  # A command's output as it is produced. `-> stream` gives flow control: the worker stops
  # reading the command's pipes while the sink's window is full, so a slow reader slows only
  # its own command and memory stays bounded. Calls arrive in order; stdout and stderr stay
  # apart.
  stdout @0 (data :Data) -> stream;
  stderr @1 (data :Data) -> stream;

  done @2 () -> ();
  # Called by the worker after the last write and before `run` returns: a streaming call is
  # delivered only after the one before it has finished, so when this returns every byte has
  # reached the client's channel, and the exit status cannot overtake the output.

  stdoutPipe @3 (pipe :PipeEnd, inode :UInt64) -> () $Cxx.allowCancellation;
  # A streamed command's stdout as the pipe itself: `pipe` carries the read end of the
  # command's stdout pipe as a file descriptor, and the sink reads it to EOF, with the same flow
  # control, before it returns; the worker makes no `stdout` calls meanwhile. Saves the worker
  # a copy of every byte on a long stream. A sink that cannot take a descriptor (this link does
  # not pass them, or none came) answers unimplemented before reading anything, and the worker
  # pumps the pipe into `stdout` itself. `inode` is the pipe's inode number (st_ino): the
  # gateway's relay takes descriptors off the link as they come, and the number pairs this call
  # with its own.
}

interface PipeEnd {
  # Only a carrier: the file descriptor rides on the capability (Capability.getFd).
}

enum Verb {
  # The verbs a worker runs (ping is answered by the gateway, "worker restart" by the
  # supervisor). Each has an argument allowlist in the worker.
  up @0;
  down @1;
  stop @2;
  start @3;
  restart @4;
  ps @5;
  pull @6;
  build @7;
  logs @8;
  exec @9;
  load @10;
  gitPull @11;
  gitHash @12;
  status @13;
  freeze @14;
  unfreeze @15;
  rollback @16;
  history @17;
}

struct AuthorizedKey {
  # One key from ssh/*.pub in the checkout, parsed by the worker (the repository is untrusted
  # input; the gateway re-parses the base64 blob with libssh before comparing).
  type @0 :Text;     # ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ...
  base64 @1 :Text;   # the key blob
  comment @2 :Text;
  file @3 :Text;     # which ssh/*.pub listed it
}

interface Worker {
  run @0 (verb :Verb, args :List(Text), output :OutputSink, caller :Text, keyFingerprint :Text)
      -> (exitStatus :UInt32, message :Text, commit :Text) $Cxx.allowCancellation;
  # Runs one verb. exitStatus is the compose program's own exit code (0..255), or one of the
  # status codes 400/406/500 with message saying why. Dropping the call (the client went away)
  # cancels it: the worker kills the command's process group. (On Cap'n Proto 0.9, which
  # lacks the annotation, the build takes it out and the worker allows cancellation at run
  # time: see proto/CMakeLists.txt.) `caller` says who asked ("user@address:port (the file
  # listing the key)"), for the worker's log; it and `keyFingerprint` (as ssh-keygen -l shows it) go into
  # the service's history, which records every command. Both are empty for root. `commit` is the checkout's commit once the verb is
  # done, for the gateway's audit entry.

  status @1 () -> (status :Common.ServiceStatus);

  authorizedKeys @2 (after :UInt64) -> (generation :UInt64, keys :List(AuthorizedKey)) $Cxx.allowCancellation;
  # The keys this service accepts. A long poll: returns at once when the key set's generation
  # differs from `after`, else when it next changes (pass 0 the first time).

  pushed @3 (source :Text) -> (queued :Bool);
  # A push hook for this service verified at the gateway: the worker polls now, as `git pull`
  # would, and answers at once. `source` ("push hook (github) from 192.0.2.7") is what the
  # history records as the trigger. false: a poll queued by an earlier push had not started
  # yet, and serves this one too.
}
