@0xd822b7c3ce5de44f;
# What pgod hands the docker gate: for each service, the socket it bound (an inherited fd) and
# what the gate needs to judge that service's requests. No secrets: registry credentials reach
# dockerd only from the worker, in the X-Registry-Auth header of its own requests.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("pgod::rpc");

struct DockerGateSettings {
  dockerSocket @0 :Text;     # dockerd's socket, e.g. /var/run/docker.sock
  services @1 :List(Service);
  debug @2 :Bool;

  struct Service {
    name @0 :Text;
    project @1 :Text;        # its compose project name
    bindRoots @2 :List(Text);  # the checkout and data directories: bind sources must be inside
    networks @3 :List(Text);   # pgo.toml `networks`: external networks it may join
    socketFd @4 :Int32;        # the listening socket pgod bound, as an inherited fd number
  }
}
