#!/bin/sh
# pgoctl is a fresh process per command, so every shared library it loads is paid by every
# command (ctl/CMakeLists.txt): it needs libc, nothing else (the loader, which every program has,
# may be named too). libssh, OpenSSL and zlib are linked in, the GSS-API functions libssh refers
# to are pgoctl's own (ctl/without_gssapi.cc). tests/deploy/hardening_test.sh checks its hardening.
# Usage: loads_test.sh PGOCTL
set -eu
needed=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' | grep -v '^ld-linux' | sort | tr '\n' ' ')
if [ "$needed" != "libc.so.6 " ]; then
  echo "$1 needs: $needed" >&2
  echo "expected libc.so.6 only: fmt header-only; libstdc++, libgcc, libssh, OpenSSL and zlib static (ctl/CMakeLists.txt)" >&2
  exit 1
fi
undefined=$(readelf --dyn-syms -W "$1" | awk '$7 == "UND" && $8 ~ /^(gss_|ssh_|EVP_|deflate)/ { print $8 }')
if [ -n "$undefined" ]; then
  echo "$1 leaves these to a shared library: $undefined" >&2
  exit 1
fi
defined=$(readelf -s -W "$1" | awk '$7 != "UND" && $8 == "gss_init_sec_context" { print $8 }')
[ -n "$defined" ] || { echo "$1 does not define gss_init_sec_context (ctl/without_gssapi.cc)" >&2; exit 1; }
version=$("$1" --version) || { echo "$1 --version does not run" >&2; exit 1; }
case "$version" in
  "pgoctl "*"(libssh "*) ;;
  *) echo "$1 --version does not name its libssh: $version" >&2; exit 1 ;;
esac
echo "pgoctl needs $needed; $version"
