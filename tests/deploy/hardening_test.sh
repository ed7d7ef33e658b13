#!/bin/sh
# Every installed program is built as Debian hardens its packages (CMakeLists.txt): a PIE, bound
# now with a read-only GOT (full RELRO), stack canaries, and glibc's checked functions. pgod runs
# as root and every server reads hostile bytes, so none may quietly lose one.
# Usage: hardening_test.sh PROGRAM...
set -eu
failed=0
fail() {
  echo "$1: $2" >&2
  failed=1 this_failed=1
}
for program in "$@"; do
  this_failed=0
  header=$(readelf -h "$program") || { fail "$program" "not an ELF file"; continue; }
  dynamic=$(readelf -d "$program")
  imports=$(readelf --dyn-syms -W "$program" | awk '$7 == "UND" { sub(/@.*/, "", $8); print $8 }')
  echo "$header" | grep -q 'Type: *DYN' || fail "$program" "not a PIE: no ASLR for its code"
  echo "$dynamic" | grep -q 'FLAGS.*BIND_NOW\|FLAGS_1.*NOW' || fail "$program" "binds lazily: its GOT stays writable (-z now)"
  readelf -lW "$program" | grep -q 'GNU_RELRO' || fail "$program" "no RELRO segment (-z relro)"
  echo "$imports" | grep -qx '__stack_chk_fail' || fail "$program" "no stack canaries (-fstack-protector-strong)"
  # -D_FORTIFY_SOURCE=2 turns calls whose buffer size is known into __*_chk ones.
  fortified=$(echo "$imports" | grep -c '^__.*_chk$' || true)
  [ "$fortified" -gt 0 ] || fail "$program" "no fortified glibc calls (-D_FORTIFY_SOURCE=2)"
  [ "$this_failed" = 1 ] || echo "$(basename "$program"): PIE, full RELRO, canaries, $fortified fortified functions"
done
exit "$failed"
