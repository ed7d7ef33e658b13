#!/usr/bin/env bash
# Installs the Debian 12 packages pgod needs, only those missing, with apt-get update first.
#   install-deps.sh build    what building and testing need
# Needs root when something is missing; says what to install otherwise.
set -euo pipefail

build_packages=(
  cmake make g++ pkg-config
  capnproto libcapnp-dev
  libssh-dev libgit2-dev libseccomp-dev
  libtomlplusplus-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev
)

case "${1:-build}" in
  build) wanted=("${build_packages[@]}") ;;
  *) echo "install-deps.sh: unknown set '$1' (use: build)" >&2; exit 2 ;;
esac

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
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
