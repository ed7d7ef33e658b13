#!/usr/bin/env bash
# The systemd files in deploy/systemd: the units verify with the programs where the build put
# them, their exposure stays within bounds (gateway <= 2.0, supervisor <= 3.5), both keep the
# seccomp syscall allowed (workers and the gateway install their own filters), and sysusers and
# tmpfiles create what they promise in a scratch root.
#   units_test.sh SOURCE_DIR BIN_DIR
set -euo pipefail
source_dir=$1
bin_dir=$2
units=$source_dir/deploy/systemd
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir "$scratch/units"
for unit in pgod.service pgod-gateway.service pgod-dockergate.service; do
  sed "s|/usr/sbin/|$bin_dir/|g" "$units/$unit" >"$scratch/units/$unit"
done
(cd "$scratch/units" && systemd-analyze verify --man=no ./pgod.service ./pgod-gateway.service ./pgod-dockergate.service) ||
  fail "systemd-analyze verify"

check_exposure() {
  local unit=$1 limit_tenths=$2 report
  report=$(systemd-analyze security --offline=yes "$units/$unit" 2>&1 | tail -1)
  echo "$unit: $report"
  systemd-analyze security --offline=yes --threshold="$limit_tenths" "$units/$unit" >/dev/null 2>&1 ||
    fail "$unit: exposure above $((limit_tenths / 10)).$((limit_tenths % 10)): $report"
}
check_exposure pgod-gateway.service 20
check_exposure pgod.service 35
check_exposure pgod-dockergate.service 20

for unit in pgod.service pgod-gateway.service; do
  grep -q '^SystemCallFilter=@system-service seccomp$' "$units/$unit" || fail "$unit must allow seccomp"
  if grep '^SystemCallFilter=~' "$units/$unit" | grep -qw seccomp; then fail "$unit denies seccomp"; fi
done
grep -q '^ExecStart=/usr/sbin/pgod .*--no-gateway' "$units/pgod.service" || fail "pgod.service must run --no-gateway"
grep -q '^User=pgod-gw$' "$units/pgod-gateway.service" || fail "the gateway must run as pgod-gw"
grep -q '^ExecStart=/usr/sbin/pgod .*--no-dockergate' "$units/pgod.service" || fail "pgod.service must run --no-dockergate"
grep -q '^User=pgod-docker$' "$units/pgod-dockergate.service" || fail "the docker gate must run as pgod-docker"
grep -q '^SupplementaryGroups=docker$' "$units/pgod-dockergate.service" || fail "the docker gate needs the docker group"
if grep -q 'SupplementaryGroups=.*docker' "$units/pgod.service" "$units/pgod-gateway.service"; then
  fail "only the docker gate may have the docker group"
fi

mkdir -p "$scratch/root/etc"
: >"$scratch/root/etc/passwd"
: >"$scratch/root/etc/group"
systemd-sysusers --root="$scratch/root" "$units/pgod.sysusers" || fail "systemd-sysusers"
grep -q '^pgod-gw:x:[0-9]*:[0-9]*:pgod SSH gateway:/nonexistent:/usr/sbin/nologin$' "$scratch/root/etc/passwd" ||
  fail "no pgod-gw user: $(cat "$scratch/root/etc/passwd")"
grep -q '^pgod-gw:' "$scratch/root/etc/group" || fail "no pgod-gw group"
grep -q '^pgod-docker:x:[0-9]*:[0-9]*:pgod docker gate:' "$scratch/root/etc/passwd" || fail "no pgod-docker user"
grep -q '^docker:x:[0-9]*:pgod-docker$' "$scratch/root/etc/group" ||
  fail "pgod-docker is not the docker group's only member: $(grep '^docker:' "$scratch/root/etc/group")"
systemd-tmpfiles --root="$scratch/root" --create "$units/pgod.tmpfiles" || fail "systemd-tmpfiles"
for dir in var/lib/pgo var/lib/pgo-data run/pgod; do
  [ "$(stat -c %a "$scratch/root/$dir")" = 755 ] || fail "$dir is not 0755"
done
echo "units_test: OK"
