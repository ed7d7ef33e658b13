#!/usr/bin/env bash
# Installs the Debian packages pgod needs, only those missing, with apt-get update first.
# Knows Debian 12 (bookworm) and Debian 13 (trixie); each gets its own release's packages.
#   install-deps.sh build       what building (and cpack -G DEB) needs
#   install-deps.sh unit        what the unit and cli tests need besides (Compose v2 and the
#                               release's docker-compose for the policy's normalisation cases,
#                               git, systemd-analyze, man, ...)
#   install-deps.sh test        everything the whole suite needs: the unit set, a docker
#                               engine, Compose v2 and (Debian 12) v1, a loopback registry,
#                               lighttpd for git over HTTP (python3's ssl and openssl for HTTPS
#                               in front of it), OpenSSH as reference, systemd-nspawn to boot
#                               the units, clang and libFuzzer for the fuzz targets
#   install-deps.sh compose-v2  Compose v2 as the docker CLI plugin. Debian 13 packages it
#                               (docker-compose); Debian 12 has only v1, so the plugin is taken
#                               from Debian 13's docker-compose package (a static Go binary that
#                               needs only libc) and installed as
#                               /usr/local/libexec/docker/cli-plugins/docker-compose.
#   install-deps.sh ci          what .ci/run needs besides (debootstrap for the Debian 13 root,
#                               pgrep)
# Needs root when something is missing; says what to install otherwise.
set -euo pipefail

release=unknown
[ -r /etc/os-release ] && release=$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")

build_packages=(
  cmake make g++ pkg-config
  capnproto libcapnp-dev
  libssh-dev libgit2-dev libseccomp-dev libsystemd-dev prometheus-cpp-dev
  libtomlplusplus-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libhttp-parser-dev libssl-dev
  zlib1g-dev libzstd-dev libkrb5-dev  # pgoctl's static libssh, OpenSSL (zstd on 13), zlib; gssapi.h
  libgtest-dev libgmock-dev
  dpkg-dev
)

unit_packages=(
  git openssh-client docker-compose
  systemd bash-completion man-db
  iproute2
)

test_packages=(
  lighttpd python3 openssl ca-certificates
  docker.io busybox-static docker-registry apache2-utils
  openssh-server iptables
  systemd-container
  curl
  clang
)

ci_packages=(debootstrap procps)  # procps: pgrep in .ci/run

# What differs between the releases. docker-compose is v1 (1.29, Python) on Debian 12 and v2
# (2.26, also the CLI plugin) on Debian 13; clang's runtime (LeakSanitizer, libFuzzer) is named
# after its version.
case "$release" in
  bookworm) clang_runtime=libclang-rt-14-dev compose_v2_from=trixie ;;
  trixie) clang_runtime=libclang-rt-19-dev compose_v2_from= ;;
  *) clang_runtime= compose_v2_from= ;;
esac

need_known_release() {
  [ -n "$clang_runtime" ] && return
  echo "install-deps.sh: this is Debian '$release'; the test packages are known for Debian 12 (bookworm)" >&2
  echo "install-deps.sh: and 13 (trixie). See README.md, 'Supported platforms', for other systems." >&2
  exit 1
}

wanted=()
compose_v2=0
for set in "${@:-build}"; do
  case "$set" in
    build) wanted+=("${build_packages[@]}") ;;
    unit) wanted+=("${unit_packages[@]}") compose_v2=1 ;;
    test)
      need_known_release
      wanted+=("${unit_packages[@]}" "${test_packages[@]}" "$clang_runtime")
      compose_v2=1
      ;;
    compose-v2) wanted+=(docker-compose) compose_v2=1 ;;
    ci) wanted+=("${ci_packages[@]}") ;;
    *) echo "install-deps.sh: unknown set '$set' (use: build, unit, test, compose-v2, ci)" >&2; exit 2 ;;
  esac
done

# Where a Compose v2 plugin not managed by dpkg goes: the docker CLI looks here first, then in
# /usr/local/lib, /usr/lib and /usr/libexec (the packages' places: Docker's own
# docker-compose-plugin, say). A v2 in any of them is kept; this copy is not updated by apt.
local_plugin=/usr/local/libexec/docker/cli-plugins/docker-compose
compose_v2_missing() {
  [ "$compose_v2" = 1 ] && [ -n "$compose_v2_from" ] || return 1
  local dir
  for dir in /usr/local/libexec /usr/local/lib /usr/lib /usr/libexec; do
    "$dir/docker/cli-plugins/docker-compose" version 2>/dev/null | grep -Eq 'version v?[2-9]\.' && return 1
  done
  return 0
}

missing=()
for package in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && ! compose_v2_missing && exit 0

if [ "$(id -u)" -ne 0 ]; then
  [ ${#missing[@]} -eq 0 ] || echo "install-deps.sh: missing packages: ${missing[*]}" >&2
  compose_v2_missing && echo "install-deps.sh: missing: Compose v2 as $local_plugin" >&2
  echo "install-deps.sh: run it as root${missing[0]:+, or: sudo apt-get install ${missing[*]}}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
made_policy= scratch=
cleanup() {
  [ -z "$made_policy" ] || rm -f "$made_policy"
  [ -z "$scratch" ] || rm -rf "$scratch"
}
trap cleanup EXIT
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]} =="
  # Packages such as docker.io and openssh-server start their daemons when installed; the tests
  # start their own on loopback. policy-rc.d (Debian's switch for that) blocks it during the
  # install, if the machine has none of its own.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    made_policy=$policy
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if compose_v2_missing; then
  echo "== installing: Compose v2 from Debian $compose_v2_from's docker-compose as $local_plugin =="
  # A private apt configuration (its own sources, lists and cache) fetches the one .deb, its
  # checksum checked against the release's signed index; the system's sources stay as they are.
  mirror=
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    mirror=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$mirror" ] && [ -r /etc/apt/sources.list ]; then
    mirror=$(awk '$1 == "deb" && $2 !~ /^\[/ && $3 !~ /security/ { print $2; exit }' /etc/apt/sources.list)
  fi
  mirror=${mirror:-http://deb.debian.org/debian}
  scratch=$(mktemp -d)
  mkdir -p "$scratch/lists/partial" "$scratch/cache/archives/partial" "$scratch/deb"
  # apt downloads as its own user, _apt, where it has one.
  chmod 0755 "$scratch"
  id -u _apt >/dev/null 2>&1 && chown _apt "$scratch/lists/partial" "$scratch/cache/archives/partial" "$scratch/deb"
  echo "deb $mirror $compose_v2_from main" >"$scratch/sources.list"
  apt_private=(-o "Dir::Etc::SourceList=$scratch/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$scratch/lists" -o "Dir::Cache=$scratch/cache")
  apt-get "${apt_private[@]}" update -q
  (cd "$scratch/deb" && apt-get "${apt_private[@]}" download -q docker-compose)
  chown -R root: "$scratch/deb"  # checked by apt; nobody else writes it from here on
  dpkg-deb -x "$scratch"/deb/docker-compose_*.deb "$scratch/root"
  install -D -m 0755 "$scratch/root/usr/libexec/docker/cli-plugins/docker-compose" "$local_plugin"
  "$local_plugin" version
fi
