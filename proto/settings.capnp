@0xfadc692ec83df8ac;
# What the supervisor hands one worker: that service's settings and nothing of any other
# service. Sent as one message on an inherited fd (or read from --settings FILE by hand).

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("pgod::rpc");

struct ServiceSettings {
  name @0 :Text;
  user @1 :Text;
  uid @2 :UInt32;
  gid @3 :UInt32;
  home @4 :Text;             # the user's home directory (HOME for git and docker)

  repository @5 :Text;       # may carry a token in its userinfo: log only through redact_url()
  branch @6 :Text;
  composeFile @7 :Text;      # relative to the checkout; empty: first of the standard names
  env @8 :List(EnvVar);      # values are secrets: never logged
  registries @9 :List(RegistryLogin);
  urls @10 :List(Url);
  networks @11 :List(Text);  # allowed external networks; empty: all
  importPath @12 :Text;      # relative to the checkout; empty: no Caddy import
  importContent @13 :Text;   # the Caddy snippet built from every service's urls
  reload @14 :Text;          # a command line in the pgoctl grammar (an exec), validated
  ignore @15 :Bool;          # the older key: never down on a compose change, only up -d

  checkoutDir @16 :Text;     # <dir>/<service>
  dataDir @17 :Text;         # <datadir>/<service>, or empty when --datadir is not set
  stateDir @18 :Text;        # freeze/rollback state and DOCKER_CONFIG live here
  stopFile @19 :Text;        # <dir>/<service>.stop

  pollIntervalNs @20 :UInt64;   # -t/--duration; each cycle adds jitter up to half of it
  gatewayUid @21 :UInt32;       # the only non-root peer uid the worker's socket accepts
  debug @22 :Bool;
  composeProgram @23 :ComposeProgram;
  dockerHost @24 :Text;         # unix://<rundir>/docker/<service>.sock on the docker gate; empty: dockerd's own
  healthTimeoutNs @25 :UInt64;  # pgo.toml health_timeout: how long a deploy's containers get to be ready; 0: the default
  signers @26 :List(Text);      # pgo.toml signers: allowed-signers lines; set: only commits they signed deploy
  allowForcePush @27 :Bool;     # with signers: a head that does not descend from the deployed commit is followed

  struct EnvVar {
    name @0 :Text;
    value @1 :Text;
  }

  struct RegistryLogin {
    user @0 :Text;
    token @1 :Text;          # goes to docker login on stdin, never on argv or in a log
    registry @2 :Text;       # host[:port]
  }

  struct Url {
    host @0 :Text;           # example.org
    target @1 :Text;         # compose-service:port
  }

  enum ComposeProgram {
    auto @0;                 # the docker compose plugin if present, else docker-compose
    plugin @1;               # docker compose
    standalone @2;           # docker-compose
  }
}
