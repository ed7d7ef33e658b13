#!/usr/bin/env bash
# The one-command demo, on a fresh Debian 12 machine, as root: installs what is missing, builds,
# creates the demo's users, starts a docker engine if none runs, makes a local busybox image,
# a local git repository with a compose file and an SSH key in ssh/, a pgo.toml, and starts
# pgod (with its gateway on 127.0.0.1:2222). Then it waits until the container runs and prints
# what to try. Running it again rebuilds, restarts pgod and keeps the repository.
#
#   deploy/demo.sh          set up and start
#   deploy/demo.sh stop     stop the demo's pgod (its container keeps running, as with any pgod)
#
# For its test, which must leave a running demo alone, the places and names can be moved:
# PGOD_DEMO_DIR, PGOD_DEMO_RUNDIR, PGOD_DEMO_LOG, PGOD_DEMO_SSH_PORT, PGOD_DEMO_METRICS_PORT,
# PGOD_DEMO_HOOKS_PORT (push hooks, 9113),
# PGOD_DEMO_SERVICE (the service and compose project, "demo"), PGOD_DEMO_USER ("pgo-demo"),
# and PGOD_DEMO_BIN (programs already built: no build).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
demo=${PGOD_DEMO_DIR:-/var/lib/pgod-demo}   # everything of the demo lives here
rundir=${PGOD_DEMO_RUNDIR:-/run/pgod-demo}
log=${PGOD_DEMO_LOG:-/var/log/pgod-demo.log}
service=${PGOD_DEMO_SERVICE:-demo}
user=${PGOD_DEMO_USER:-pgo-demo}
image=pgod-demo/busybox:1
ssh_port=${PGOD_DEMO_SSH_PORT:-2222}
metrics_port=${PGOD_DEMO_METRICS_PORT:-9112}
hooks_port=${PGOD_DEMO_HOOKS_PORT:-9113}

say() { printf '== %s\n' "$*"; }
die() { printf 'deploy/demo.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run it as root (it installs packages, creates users and starts pgod)"

stop_demo() {
  local pid
  pid=$(cat "$rundir/pgod.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    say "stopping the demo's pgod (pid $pid)"
    kill -TERM "$pid"
    # pgod gives its workers 10 s to stop; then it is made to go.
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$rundir/pgod.pid"
}

if [ "${1:-}" = stop ]; then
  stop_demo
  exit 0
fi
[ $# -eq 0 ] || die "unknown argument '$1' (use: deploy/demo.sh [stop])"

say "packages"
"$root/deploy/install-deps.sh" build test

if [ -n "${PGOD_DEMO_BIN:-}" ]; then
  bin=$PGOD_DEMO_BIN
else
  say "build"
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$root/build" -j"$(nproc)" --target pgod pgod-worker pgod-gateway pgod-dockergate pgoctl
  bin="$root/build/bin"
fi
# Workers run as the demo's user: they must be able to execute the programs.
install -d -m 0755 "$demo/bin"
install -m 0755 "$bin/pgod" "$bin/pgod-worker" "$bin/pgod-gateway" "$bin/pgod-dockergate" "$bin/pgoctl" "$demo/bin/"

# None of them is put in the docker group: pgod gives it to the docker gate's process alone.
say "users: $user (runs the compose file), pgod-gw (the SSH gateway) and pgod-docker (the docker gate)"
for name in "$user" pgod-gw pgod-docker; do
  id -u "$name" >/dev/null 2>&1 ||
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$name"
done

say "docker engine"
if ! docker info >/dev/null 2>&1; then
  # No systemd to start it here (containers, minimal machines): run it in the background.
  nohup /usr/sbin/dockerd >"$log.dockerd" 2>&1 &
  for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || die "dockerd did not start; see $log.dockerd"
fi

say "image $image (made locally from busybox-static: nothing is pulled)"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  tree=$(mktemp -d)
  mkdir -p "$tree/bin"
  cp /bin/busybox "$tree/bin/"
  ln -s busybox "$tree/bin/sh"
  tar -C "$tree" -c . | docker import - "$image" >/dev/null
  rm -rf "$tree"
fi

say "repository $demo/upstream.git"
install -d -m 0755 "$demo"
if [ ! -f "$demo/id_demo" ]; then
  ssh-keygen -q -t ed25519 -N '' -C demo@pgod -f "$demo/id_demo"
fi
if [ ! -d "$demo/upstream.git" ]; then
  git init -q --bare -b main "$demo/upstream.git"
  work=$(mktemp -d)
  git -C "$work" init -q -b main
  mkdir -p "$work/ssh"
  cp "$demo/id_demo.pub" "$work/ssh/demo.pub"
  cat >"$work/compose.yaml" <<EOF
services:
  web:
    image: $image
    command: ["/bin/busybox", "sh", "-c", "while true; do echo hello from the pgod demo; sleep 5; done"]
EOF
  git -C "$work" add -A
  git -C "$work" -c user.name=demo -c user.email=demo@pgod commit -q -m "the demo service"
  git -C "$work" push -q "$demo/upstream.git" main
  rm -rf "$work"
fi
# The demo's user clones it: readable by all, as a repository served to many would be.
chmod -R a+rX "$demo/upstream.git"

# root's and private (0600), as pgod(8) asks of /etc/pgo.toml once it holds a token or an env
# value; written beside it and renamed, so pgod never reads a half-written file. One service,
# with a user of its own (pgod refuses a user shared by two services, and nobody or pgod-gw).
(
  umask 077
  cat >"$demo/pgo.toml.new" <<EOF
# The demo's pgod config (see pgod(8)).
[[services]]
name = "$service"
user = "$user"
repository = "$demo/upstream.git"
branch = "main"
EOF
)
chown root:root "$demo/pgo.toml.new"
chmod 0600 "$demo/pgo.toml.new"
mv -f "$demo/pgo.toml.new" "$demo/pgo.toml"
"$demo/bin/pgod" --check -c "$demo/pgo.toml" -d "$demo/checkouts"

say "pgod"
stop_demo
install -d -m 0755 "$demo/checkouts" "$rundir"
setsid "$demo/bin/pgod" -c "$demo/pgo.toml" -d "$demo/checkouts" --rundir "$rundir" \
  --host-key "$demo/ssh_host_ed25519_key" -s "127.0.0.1:$ssh_port" -m "127.0.0.1:$metrics_port" \
  --hooks "127.0.0.1:$hooks_port" -t 30s \
  >>"$log" 2>&1 </dev/null &
echo $! >"$rundir/pgod.pid"

pgoctl=("$demo/bin/pgoctl" -i "$demo/id_demo" -p "$ssh_port" --known-hosts "$demo/known_hosts")
say "waiting for the container (log: $log)"
for _ in $(seq 120); do
  if "${pgoctl[@]}" localhost:$service//ps 2>/dev/null | grep ' Up' >/dev/null; then break; fi
  kill -0 "$(cat "$rundir/pgod.pid")" 2>/dev/null || { tail -20 "$log" >&2; die "pgod exited; see $log"; }
  sleep 1
done
"${pgoctl[@]}" localhost:$service//ps | grep ' Up' >/dev/null || { tail -20 "$log" >&2; die "the container did not come up; see $log"; }

cat <<EOF

pgod runs the demo (pid $(cat "$rundir/pgod.pid"), log $log). Try:

  ${pgoctl[*]} localhost:$service//ps
  ${pgoctl[*]} localhost:$service//logs -f            # Ctrl-C to stop
  ssh -p $ssh_port -i $demo/id_demo -o UserKnownHostsFile=$demo/known_hosts localhost '$service//ping'
  curl -s 127.0.0.1:$metrics_port/metrics | grep pgo_
  $demo/bin/pgod --status --rundir $rundir

Push a change and watch it redeploy (pgod polls every 30 s; git pull makes it now):

  git clone $demo/upstream.git /tmp/demo && cd /tmp/demo
  sed -i 's/hello from/hello again from/' compose.yaml
  git -c user.name=you -c user.email=you@example.org commit -qam change && git push -q
  ${pgoctl[*]} localhost:$service//git pull

Stop it with: deploy/demo.sh stop
EOF
