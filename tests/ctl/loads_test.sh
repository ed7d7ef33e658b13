#!/bin/sh
# pgoctl is a fresh process per command, so every shared library it loads is paid by every
# command (ctl/CMakeLists.txt): it needs libssh and libc, nothing else (the loader, which
# every program has, may be named too).
# Usage: loads_test.sh PGOCTL
set -eu
needed=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' | grep -v '^ld-linux' | sort | tr '\n' ' ')
if [ "$needed" != "libc.so.6 libssh.so.4 " ]; then
  echo "$1 needs: $needed" >&2
  echo "expected libc.so.6 and libssh.so.4 only: fmt header-only, libstdc++ and libgcc static (ctl/CMakeLists.txt)" >&2
  exit 1
fi
"$1" --version | grep -q '^pgoctl ' || { echo "$1 --version does not run" >&2; exit 1; }
echo "pgoctl needs $needed"
