#!/usr/bin/env bash
# Installs the Debian 12 packages pgod needs, only those missing, with apt-get update first.
#   install-deps.sh build    what building (and cpack -G DEB) needs
#   install-deps.sh test     what the tests need besides: git, a docker engine, compose, a
#                            loopback registry, lighttpd for git over HTTP (python3's ssl and
#                            openssl for HTTPS in front of it), OpenSSH as reference,
#                            systemd-analyze for the units, systemd-nspawn to boot them,
#                            bash-completion and man for the installed files, clang and
#                            libFuzzer for the fuzz targets
# Needs root when something is missing; says what to install otherwise.
set -euo pipefail

build_packages=(
  cmake make g++ pkg-config
  capnproto libcapnp-dev
  libssh-dev libgit2-dev libseccomp-dev libsystemd-dev prometheus-cpp-dev
  libtomlplusplus-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev
  dpkg-dev
)

test_packages=(
  git lighttpd python3 openssl ca-certificates
  docker.io docker-compose busybox-static docker-registry apache2-utils
  openssh-client openssh-server
  systemd systemd-container bash-completion man-db
  curl iproute2
  clang libclang-rt-14-dev
)

wanted=()
for set in "${@:-build}"; do
  case "$set" in
    build) wanted+=("${build_packages[@]}") ;;
    test) wanted+=("${test_packages[@]}") ;;
    *) echo "install-deps.sh: unknown set '$set' (use: build, test)" >&2; exit 2 ;;
  esac
done

missing=()
for package in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: missing packages: ${missing[*]}" >&2
  echo "install-deps.sh: run as root, or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "== installing: ${missing[*]} =="
export DEBIAN_FRONTEND=noninteractive
# Packages such as docker.io and openssh-server start their daemons when installed; the tests
# start their own on loopback. policy-rc.d (Debian's switch for that) blocks it during the
# install, if the machine has none of its own.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
