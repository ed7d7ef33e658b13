#!/usr/bin/env bash
# The .deb, installed with dpkg on a machine booted with real systemd: a container
# (systemd-nspawn) booting this host's own system through a throw-away overlay of its root
# filesystem (writes go to a tmpfs), in a network namespace of its own, so nothing it installs
# or starts touches this host. The
# containers pgod starts go to this host's docker engine through its socket.
#
#   package_test.sh DEB IMAGE
#     DEB    the package cpack built
#     IMAGE  an image present in this host's engine (the tests pull it from their registry)
#
# Checks: the files are where they belong; `pgod --check` accepts the example; pgod.service
# (Type=notify) and pgod-gateway.service start under their hardening; pgoctl reaches a service
# through the gateway with the host key pgod made; the service's container runs; reload
# (SIGHUP) reads the new config; restarting the gateway leaves the workers alone; both
# daemons run confined; an NFS share is mounted by systemd where dockerd sees it (the server
# stood in for by a tmpfs); stopping pgod stops the workers and leaves the containers running.
set -euo pipefail
deb=$(realpath "$1")
image=$2
project="pgodpkg$$"
machine="pgod-pkg-$$"
work=$(mktemp -d)
nspawn_pid=""
mounted_nspawn_run=0
mounted_changes=0
mounted_root=0
fail() { echo "FAIL: $*" >&2; exit 1; }

# Runs a command in the container. Never on this host: should the container be gone and its
# PID reused, the mount namespace would be ours, and the command is refused.
in_container() {
  [ "$(readlink "/proc/$leader/ns/mnt" 2>/dev/null)" != "$(readlink /proc/self/ns/mnt)" ] ||
    fail "the container is gone (pid $leader is in this host's namespace)"
  nsenter -t "$leader" -a -- "$@"
}

# The compose projects the test made: its service's and the ones added on reload.
test_projects() {
  docker ps -a --format '{{.Label "com.docker.compose.project"}}' 2>/dev/null | grep "^$project" | sort -u
}

cleanup() {
  local status=$?
  set +e  # clean up everything, whatever fails
  if [ "$status" -ne 0 ] && [ -n "${leader:-}" ]; then
    echo "--- journal of the units ---" >&2
    in_container journalctl --no-pager -o cat -u pgod -u pgod-gateway 2>&1 | tail -60 >&2 || true
  fi
  if [ -n "$nspawn_pid" ]; then
    kill -TERM "$nspawn_pid" 2>/dev/null || true  # nspawn halts the container on TERM
    for _ in $(seq 300); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn_pid" 2>/dev/null
    wait "$nspawn_pid" 2>/dev/null
  fi
  local name
  for name in $(test_projects); do
    docker rm -f $(docker ps -aq --filter "label=com.docker.compose.project=$name") >/dev/null 2>&1
    docker network rm "${name}_default" >/dev/null 2>&1
  done
  [ "$mounted_nspawn_run" = 1 ] && umount /run/systemd/nspawn
  [ "$mounted_root" = 1 ] && umount "$work/root"
  [ "$mounted_changes" = 1 ] && umount "$work/changes"
  rm -rf --one-file-system "$work"
  exit "$status"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "needs root (systemd-nspawn)"
[ -S /run/docker.sock ] || fail "no docker engine at /run/docker.sock"

# nspawn keeps per-machine state under /run/systemd/nspawn and will only clean it up on tmpfs;
# /run is not one on every machine (containers, sandboxes).
mkdir -p /run/systemd/nspawn
if [ "$(stat -f -c %T /run/systemd/nspawn)" != tmpfs ]; then
  mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn
  mounted_nspawn_run=1
fi

# The host's root filesystem below, the container's writes in a tmpfs above.
mkdir "$work/root" "$work/changes"
mount -t tmpfs -o mode=0755 tmpfs "$work/changes"
mounted_changes=1
mkdir "$work/changes/upper" "$work/changes/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/changes/upper,workdir=$work/changes/work" "$work/root"
mounted_root=1

# Only what the test needs: basic.target, and the host's own docker and containerd masked (the
# container uses this host's engine through the bound socket).
systemd-nspawn -D "$work/root" --private-network --register=no --keep-unit -M "$machine" \
  --bind-ro="$deb:/pkg/pgod.deb" --bind=/run/docker.sock:/run/docker.sock \
  -b --console=pipe -q \
  systemd.unit=basic.target systemd.mask=docker.service systemd.mask=docker.socket \
  systemd.mask=containerd.service >"$work/boot.log" 2>&1 &
nspawn_pid=$!

leader=""
for _ in $(seq 100); do
  for child in $(pgrep -P "$nspawn_pid" 2>/dev/null); do
    [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] && leader=$child
  done
  [ -n "$leader" ] && break
  kill -0 "$nspawn_pid" 2>/dev/null || fail "systemd-nspawn exited: $(cat "$work/boot.log")"
  sleep 0.1
done
[ -n "$leader" ] || fail "the container's systemd did not start: $(cat "$work/boot.log")"
state=""
for _ in $(seq 120); do  # until systemd answers on its socket, then until boot is done
  state=$(in_container timeout 60 systemctl is-system-running --wait 2>&1 || true)
  case $state in running | degraded | maintenance) break ;; esac
  sleep 0.5
done
case $state in running | degraded) ;; *) fail "the container did not boot: $state" ;; esac
echo "booted: systemd $(in_container systemctl --version | head -1 | awk '{print $2}'), $state"

# ---- install ---------------------------------------------------------------------------------
in_container dpkg -i /pkg/pgod.deb >"$work/dpkg.log" 2>&1 || fail "dpkg -i: $(cat "$work/dpkg.log")"
for file in /usr/sbin/pgod /usr/sbin/pgod-worker /usr/sbin/pgod-gateway /usr/sbin/pgod-dockergate /usr/bin/pgoctl; do
  in_container test -x "$file" || fail "$file missing or not executable"
done
for file in /usr/lib/systemd/system/pgod.service /usr/lib/systemd/system/pgod-gateway.service \
  /usr/lib/systemd/system/pgod-dockergate.service \
  /usr/lib/sysusers.d/pgod.conf /usr/lib/tmpfiles.d/pgod.conf \
  /usr/share/man/man8/pgod.8.gz /usr/share/man/man1/pgoctl.1.gz \
  /usr/share/bash-completion/completions/pgoctl /usr/share/doc/pgod/examples/pgo.toml \
  /usr/share/doc/pgod/SECURITY.md; do
  in_container dpkg -S "$file" >/dev/null 2>&1 || fail "$file is not in the package"
  in_container test -s "$file" || fail "$file missing or empty"
done
in_container id pgod-gw >/dev/null || fail "postinst did not create pgod-gw"
in_container id -nG pgod-docker | grep -qw docker || fail "postinst did not put pgod-docker in the docker group"
[ "$(in_container stat -c '%a %U' /run/pgod /var/lib/pgo /var/lib/pgo-data | tr '\n' ' ')" = "755 root 755 root 755 root " ] ||
  fail "tmpfiles: $(in_container stat -c '%n %a %U' /run/pgod /var/lib/pgo /var/lib/pgo-data)"
in_container man -P cat pgod 2>/dev/null | grep -q 'pgod-gateway' || fail "man pgod does not show the page"
in_container man -P cat pgoctl 2>/dev/null | grep -q 'PGOCTL_ID' || fail "man pgoctl does not show the page"
in_container systemctl cat pgod.service >/dev/null || fail "systemd does not know pgod.service"
check=$(in_container pgod --check -c /usr/share/doc/pgod/examples/pgo.toml 2>&1) ||
  fail "pgod --check rejects the example: $check"
echo "installed: $check"

# ---- a service -------------------------------------------------------------------------------
# The service's user is not in the docker group: its worker reaches docker through the gate.
in_container useradd -m -s /bin/bash "$project"
in_container ssh-keygen -q -t ed25519 -N '' -C "dev@$project" -f /root/dev-key
in_container sh -euc "
  git init -q -b main /root/src
  cd /root/src
  mkdir ssh
  cp /root/dev-key.pub ssh/dev.pub
  printf 'services:\n  app:\n    image: $image\n    command: [\"sh\", \"-c\", \"echo hello from the package test; sleep 3600\"]\n' >compose.yaml
  git add -A
  git -c user.name=t -c user.email=t@localhost commit -q -m one
  git clone -q --bare /root/src /srv/$project.git
  chmod -R a+rX /srv/$project.git"
# The services added on reload get users of their own: pgod refuses a user shared by two
# services. (The container's /etc is the overlay's: they go with it.)
for extra in b n x; do
  in_container useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$project$extra"
done
# A [[services]] table of the test's repository, run by the user of the service's name: NAME [MOUNT].
service_table() {
  printf '[[services]]\nname = "%s"\nuser = "%s"\nrepository = "/srv/%s.git"\n' "$1" "$1" "$project"
  [ -z "${2:-}" ] || printf 'mount = "%s"\n' "$2"
  echo
}
# As an admin keeps /etc/pgo.toml: root's, mode 0600, replaced whole (pgod(8), FILES).
write_config() {
  in_container sh -c "umask 077 && cat >/etc/pgo.toml.new && chmod 0600 /etc/pgo.toml.new && mv -f /etc/pgo.toml.new /etc/pgo.toml"
}
service_table "$project" | write_config

# ---- the units -------------------------------------------------------------------------------
in_container systemctl start pgod.service || fail "pgod.service did not start"
in_container systemctl start pgod-gateway.service || fail "pgod-gateway.service did not start"
in_container systemctl start pgod-dockergate.service || fail "pgod-dockergate.service did not start"
units="pgod.service pgod-gateway.service pgod-dockergate.service"
# shellcheck disable=SC2086
[ "$(in_container systemctl is-active $units | tr '\n' ' ')" = "active active active " ] ||
  fail "not active: $(in_container systemctl is-active $units)"
[ "$(in_container stat -c '%a %U' /etc/pgo/ssh_host_ed25519_key)" = "600 root" ] || fail "the host key is not 0600 root"

pgoctl() { in_container pgoctl -i /root/dev-key --known-hosts /root/known_hosts "$@"; }
pong=""
for _ in $(seq 50); do
  pong=$(pgoctl "localhost:$project//ping" 2>"$work/ping.err") && break
  sleep 0.2
done
case $pong in "pong! - "*) ;; *) fail "ping through the gateway: $pong $(cat "$work/ping.err")" ;; esac
# The gateway shows the host key pgod.service made (LoadCredential hands it over).
recorded=$(in_container awk '{print $3}' /root/known_hosts)
made=$(in_container ssh-keygen -y -f /etc/pgo/ssh_host_ed25519_key | awk '{print $2}')
[ -n "$made" ] && [ "$recorded" = "$made" ] || fail "host key: recorded $recorded, made $made"

ps=""
for _ in $(seq 150); do
  ps=$(pgoctl "localhost:$project//ps" 2>&1 || true)
  case $ps in *Up*) break ;; esac
  sleep 0.2
done
case $ps in *Up*) ;; *) fail "the service's container is not up: $ps" ;; esac
logs=$(pgoctl "localhost:$project//logs" 2>&1 || true)
case $logs in *"hello from the package test"*) ;; *) fail "logs: $logs" ;; esac
echo "served: ping, ps and logs through pgod-gateway.service"

# ---- confinement under the units ------------------------------------------------------------
status_of() { in_container cat "/proc/$1/status"; }
gateway=$(in_container systemctl show -P MainPID pgod-gateway.service)
dockergate=$(in_container systemctl show -P MainPID pgod-dockergate.service)
pgod=$(in_container systemctl show -P MainPID pgod.service)
worker=$(in_container pgrep -u "$project" -x pgod-worker | head -1)
[ -n "$worker" ] || fail "no worker running as $project"
status_of "$gateway" | grep -q "^Uid:.*$(in_container id -u pgod-gw)" || fail "the gateway is not pgod-gw"
status_of "$dockergate" | grep -q "^Uid:.*$(in_container id -u pgod-docker)" || fail "the docker gate is not pgod-docker"
# The worker holds no docker group; the gate alone does.
status_of "$worker" | grep '^Groups:' | grep -qw "$(stat -c %g /run/docker.sock)" && fail "the worker has the docker group"
for pid in "$gateway" "$worker" "$dockergate"; do
  status_of "$pid" | grep -q '^NoNewPrivs:[[:space:]]*1' || fail "$pid: NoNewPrivs"
  status_of "$pid" | grep -q '^Seccomp:[[:space:]]*2' || fail "$pid: no seccomp filter"
  status_of "$pid" | grep -q '^CapEff:[[:space:]]*0000000000000000' || fail "$pid: capabilities"
done
status_of "$pgod" | grep -q '^Seccomp:[[:space:]]*2' || fail "pgod runs without the unit's filter"
echo "confined: gateway $gateway and worker $worker (seccomp, no caps, no new privileges)"

# ---- reload and independent restarts --------------------------------------------------------
{ service_table "$project"; service_table "${project}b"; } | write_config
in_container systemctl reload pgod.service || fail "systemctl reload pgod"
listed=""
for _ in $(seq 50); do
  listed=$(in_container pgod --status 2>&1 || true)
  case $listed in *"${project}b"*) break ;; esac
  sleep 0.2
done
case $listed in *"${project}b"*) ;; *) fail "reload did not add ${project}b: $listed" ;; esac
[ "$(in_container systemctl show -P MainPID pgod.service)" = "$pgod" ] || fail "reload restarted pgod"

in_container systemctl restart pgod-gateway.service || fail "restart pgod-gateway"
[ "$(in_container systemctl show -P MainPID pgod-gateway.service)" != "$gateway" ] || fail "the gateway did not restart"
in_container kill -0 "$worker" || fail "restarting the gateway stopped the worker"
for _ in $(seq 50); do
  pong=$(pgoctl "localhost:$project//ping" 2>"$work/ping.err") && break
  sleep 0.2
done
case $pong in "pong! - "*) ;; *) fail "ping after the gateway restart: $pong $(cat "$work/ping.err")" ;; esac
echo "reloaded: ${project}b added without a restart; the gateway restarted alone"

# ---- NFS shares, mounted by systemd in the host's namespace ----------------------------------
# This kernel has no NFS client, so the one stand-in here is for the server: a share of
# "share-server" becomes a tmpfs, still mounted by systemd-mount (PID 1) as pgod asked it to.
# Any other share goes to the real systemd-mount, and fails as a missing server does.
in_container mv /usr/bin/systemd-mount /usr/bin/systemd-mount.real
in_container sh -c 'cat >/usr/bin/systemd-mount && chmod 755 /usr/bin/systemd-mount' <<'STANDIN'
#!/bin/bash
case $0 in *umount) exec -a systemd-umount /usr/bin/systemd-mount.real "$@" ;; esac
case " $* " in
  *" share-server:/"*) for last; do :; done; exec /usr/bin/systemd-mount.real --collect -t tmpfs -o size=1m tmpfs "$last" ;;
esac
exec /usr/bin/systemd-mount.real "$@"
STANDIN
{
  service_table "$project"
  service_table "${project}n" nfs://share-server/export
  service_table "${project}x" nfs://127.0.0.1/nothing
} | write_config
in_container systemctl reload pgod.service
share=/var/lib/pgo-data/${project}n
for _ in $(seq 100); do
  [ "$(in_container findmnt -n -o FSTYPE "$share" 2>/dev/null)" = tmpfs ] && break
  sleep 0.2
done
[ "$(in_container findmnt -n -o FSTYPE "$share" 2>/dev/null)" = tmpfs ] ||
  fail "the share is not mounted in the host's namespace: $(in_container pgod --status 2>&1)"
listed=""
for _ in $(seq 150); do
  listed=$(in_container pgod --status 2>&1 || true)
  echo "$listed" | grep -q "^${project}n .*running" && echo "$listed" | grep -q "^${project}x .*mount .*failed" && break
  sleep 0.2
done
echo "$listed" | grep -q "^${project}n .*running" || fail "no worker on the mounted share: $listed"
echo "$listed" | grep -q "^${project}x .*mount .*failed" || fail "the failed mount is not reported: $listed"
# A failed mount leaves no failed unit behind (--collect), so the next attempt can be made.
if in_container systemctl list-units --all --plain --no-legend 'var-lib-pgo\x2ddata-*.mount' | grep -q failed; then
  fail "a failed mount unit lingers: $(in_container systemctl list-units --all --plain --no-legend '*.mount')"
fi
# Both services go again: the share is unmounted (systemd-umount) and its mount point removed.
service_table "$project" | write_config
in_container systemctl reload pgod.service
for _ in $(seq 100); do
  in_container findmnt -n "$share" >/dev/null 2>&1 || break
  sleep 0.2
done
if in_container findmnt -n "$share" >/dev/null 2>&1; then fail "the share stayed mounted after its service went"; fi
echo "mounted: a share by systemd-mount from the sandboxed pgod.service, seen outside it; unmounted on removal"

# ---- stop ------------------------------------------------------------------------------------
in_container systemctl stop pgod.service
if in_container pgrep -x pgod-worker >/dev/null; then fail "workers left after stopping pgod"; fi
[ -n "$(docker ps -q --filter "label=com.docker.compose.project=$project")" ] ||
  fail "stopping pgod stopped the containers"
echo "stopped: no worker left, the container still runs"

# ---- upgrade and removal ---------------------------------------------------------------------
in_container systemctl enable --now pgod.service pgod-gateway.service >/dev/null 2>&1 || fail "enable --now"
gateway=$(in_container systemctl show -P MainPID pgod-gateway.service)
pgod=$(in_container systemctl show -P MainPID pgod.service)
in_container dpkg -i /pkg/pgod.deb >"$work/dpkg.log" 2>&1 || fail "dpkg -i over itself: $(cat "$work/dpkg.log")"
[ "$(in_container systemctl show -P MainPID pgod.service)" != "$pgod" ] || fail "an upgrade did not restart pgod"
[ "$(in_container systemctl show -P MainPID pgod-gateway.service)" != "$gateway" ] ||
  fail "an upgrade did not restart the gateway"
[ "$(in_container systemctl is-active pgod.service pgod-gateway.service | tr '\n' ' ')" = "active active " ] ||
  fail "not active after the upgrade"
in_container dpkg -r pgod >"$work/dpkg.log" 2>&1 || fail "dpkg -r: $(cat "$work/dpkg.log")"
if in_container pgrep -x 'pgod|pgod-gateway|pgod-worker' >/dev/null; then fail "pgod still runs after dpkg -r"; fi
if in_container sh -c 'ls /etc/systemd/system/*.wants/pgod* 2>/dev/null' | grep -q .; then
  fail "enablement links left after dpkg -r"
fi
[ -n "$(docker ps -q --filter "label=com.docker.compose.project=$project")" ] ||
  fail "removing the package stopped the containers"
echo "upgraded: both units restarted; removed: stopped and disabled, the container still runs"
echo "package_test: OK"
