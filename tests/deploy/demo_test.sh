#!/usr/bin/env bash
# The README's first command, deploy/demo.sh, as a new user runs it: it must succeed, every
# command it prints must work as printed, a pushed change must redeploy, a second run must
# work too, and `demo.sh stop` must stop pgod. Everything lives in a scratch directory and on
# free loopback ports, under a service name and user of its own, so a demo the user runs (the
# README's first command) is never touched; what the test creates on the machine (its user,
# image, containers, docker engine) is removed again if it was not there before.
#   demo_test.sh SOURCE_DIR BIN_DIR
set -euo pipefail
source_dir=$1
bin=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root, as the demo does"

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    ss -Hltn "sport = :$port" | grep -q . || { echo "$port"; return; }
  done
}

work=$(mktemp -d)
chmod 0755 "$work"  # the demo's users run programs from here, as from /var/lib/pgod-demo
export PGOD_DEMO_DIR=$work/demo PGOD_DEMO_RUNDIR=$work/run PGOD_DEMO_LOG=$work/pgod.log PGOD_DEMO_BIN=$bin
PGOD_DEMO_SSH_PORT=$(free_port)
PGOD_DEMO_METRICS_PORT=$(free_port)
PGOD_DEMO_HOOKS_PORT=$(free_port)
export PGOD_DEMO_SSH_PORT PGOD_DEMO_METRICS_PORT PGOD_DEMO_HOOKS_PORT
service=demotest$$
export PGOD_DEMO_SERVICE=$service PGOD_DEMO_USER=pgo-demotest
image=pgod-demo/busybox:1
containers() { docker ps -q --filter "label=com.docker.compose.project=$service" 2>/dev/null || true; }

# What is here already is never removed. With the engine stopped, its files tell.
engine_was_running=0
docker info >/dev/null 2>&1 && engine_was_running=1
had_image=0
had_users=()
if [ "$engine_was_running" = 1 ]; then
  [ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$service")" ] ||
    fail "a compose project named $service exists here already: remove it first"
  docker image inspect "$image" >/dev/null 2>&1 && had_image=1
else
  if grep -qs "\"com.docker.compose.project\":\"$service\"" /var/lib/docker/containers/*/config.v2.json; then
    fail "a compose project named $service exists here already: remove it first"
  fi
  grep -qs "\"$image\"\|\"${image%:*}\"" /var/lib/docker/image/*/repositories.json && had_image=1
fi
# A demo the user runs (deploy/demo.sh, the README's first command) must be left as it is.
users_demo=$(docker ps -q --no-trunc --filter label=com.docker.compose.project=demo 2>/dev/null | sort || true)
users_pgod=$(cat /run/pgod-demo/pgod.pid 2>/dev/null || true)
[ -n "$users_pgod" ] && ! kill -0 "$users_pgod" 2>/dev/null && users_pgod=
for name in "$PGOD_DEMO_USER" pgod-gw; do id -u "$name" >/dev/null 2>&1 && had_users+=("$name"); done

cleanup() {
  local status=$?
  set +e  # clean up everything, whatever fails
  [ "$status" -ne 0 ] && [ -f "$work/pgod.log" ] && tail -30 "$work/pgod.log" >&2
  "$source_dir/deploy/demo.sh" stop >/dev/null 2>&1
  docker rm -f $(docker ps -aq --filter "label=com.docker.compose.project=$service") >/dev/null 2>&1
  docker network rm "${service}_default" >/dev/null 2>&1
  [ "$had_image" = 1 ] || docker rmi "$image" >/dev/null 2>&1
  if [ "$engine_was_running" = 0 ] && [ -f /var/run/docker.pid ]; then
    local pid
    pid=$(cat /var/run/docker.pid)
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  for name in "$PGOD_DEMO_USER" pgod-gw; do
    case " ${had_users[*]} " in *" $name "*) ;; *) userdel "$name" >/dev/null 2>&1 ;; esac
  done
  rm -rf --one-file-system "$work"
  exit "$status"
}
trap cleanup EXIT

out=$("$source_dir/deploy/demo.sh" 2>&1) || fail "demo.sh: $out"
grep -q "^pgod runs the demo" <<<"$out" || fail "demo.sh did not say pgod runs: $out"
first_pid=$(cat "$work/run/pgod.pid")
echo "demo.sh: pgod $first_pid runs the demo"
# Its config as pgod(8) asks of /etc/pgo.toml: root's, and for root alone.
[ "$(stat -c '%a %U' "$work/demo/pgo.toml")" = "600 root" ] ||
  fail "the demo's pgo.toml is not 0600 root: $(stat -c '%a %U' "$work/demo/pgo.toml")"

# The commands it prints under "Try:", run as printed (logs -f for 3 s: it follows).
tries=$(sed -n '/^pgod runs the demo/,/^Push a change/p' <<<"$out" | grep '^  ' | sed 's/ *#.*$//')
[ "$(wc -l <<<"$tries")" -ge 5 ] || fail "fewer commands printed than expected: $tries"
tried=0
while IFS= read -r line; do
  status=0
  limit=60
  case $line in *"logs -f"*) limit=3 ;; esac
  result=$(timeout "$limit" bash -c "$line" 2>&1 </dev/null) || status=$?
  case $line in *"logs -f"*) [ "$status" = 124 ] || fail "'$line' ended ($status): $result" ;;
    *) [ "$status" = 0 ] || fail "'$line' failed ($status): $result" ;; esac
  [ -n "$result" ] || fail "'$line' printed nothing"
  case $line in
    *"//ps"*) grep -q ' Up' <<<"$result" || fail "ps: $result" ;;
    *"logs -f"*) grep -q 'hello from the pgod demo' <<<"$result" || fail "logs: $result" ;;
    *"//ping"*) grep -q '^pong! - ' <<<"$result" || fail "ping: $result" ;;
    *metrics*) grep -q "^pgo_service_state{service=\"$service\"" <<<"$result" || fail "metrics: $result" ;;
    *--status*) grep -q "^$service .*running" <<<"$result" || fail "status: $result" ;;
  esac
  echo "ok: $line"
  tried=$((tried + 1))
done <<<"$tries"
[ "$tried" = "$(wc -l <<<"$tries")" ] || fail "only $tried of the printed commands were tried"

# The push it prints, with the clone in the scratch directory, then the change is deployed.
push=$(sed -n '/^Push a change/,/^Stop it/p' <<<"$out" | grep '^  ' | sed "s|/tmp/demo|$work/clone|g")
(bash -euc "$push") >"$work/push.log" 2>&1 || fail "the printed push: $(cat "$work/push.log")"
pgoctl=("$bin/pgoctl" -i "$work/demo/id_demo" -p "$PGOD_DEMO_SSH_PORT" --known-hosts "$work/demo/known_hosts")
redeployed=0
for _ in $(seq 60); do
  if "${pgoctl[@]}" localhost:$service//logs 2>/dev/null | grep -q 'hello again from the pgod demo'; then
    redeployed=1
    break
  fi
  sleep 0.5
done
[ "$redeployed" = 1 ] || fail "the pushed change was not deployed: $("${pgoctl[@]}" localhost:$service//status 2>&1)"
echo "ok: a pushed change is deployed after git pull"

out=$("$source_dir/deploy/demo.sh" 2>&1) || fail "demo.sh, the second time: $out"
second_pid=$(cat "$work/run/pgod.pid")
[ "$second_pid" != "$first_pid" ] || fail "the second run did not restart pgod"
kill -0 "$first_pid" 2>/dev/null && fail "the first pgod still runs"
"${pgoctl[@]}" localhost:$service//ps | grep -q ' Up' || fail "ps after the second run"
echo "ok: a second run restarts pgod ($second_pid) and the demo still serves"

"$source_dir/deploy/demo.sh" stop >/dev/null
for _ in $(seq 50); do kill -0 "$second_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$second_pid" 2>/dev/null && fail "demo.sh stop left pgod running"
[ -n "$(containers)" ] || fail "stopping pgod stopped the container"
[ "$(docker ps -q --no-trunc --filter label=com.docker.compose.project=demo | sort)" = "$users_demo" ] ||
  fail "the user's own demo containers changed"
[ -z "$users_pgod" ] || kill -0 "$users_pgod" 2>/dev/null || fail "the user's own demo pgod ($users_pgod) was stopped"
echo "demo_test: OK"
