#!/bin/sh
# Every program is built as Debian hardens its packages (CMakeLists.txt): a PIE, bound now with
# a read-only GOT (full RELRO), stack canaries, stack-clash probes, and (--fortified, the
# optimised builds) glibc's checked functions. pgod runs as root and every server reads hostile
# bytes, so none may quietly lose one.
# The imports are the whole program's: pgoctl's come partly from the libssh, OpenSSL and zlib it
# carries, which Debian built hardened. The project's own code is checked through the compiler
# options GCC records in the debug information (DW_AT_producer), which those archives do not
# carry; a program without debug information (a Release build) is checked by its imports only.
# Usage: hardening_test.sh [--fortified] PROGRAM...
set -eu
fortify=0
if [ "${1:-}" = --fortified ]; then
  fortify=1
  shift
fi
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
  [ "$fortify" = 0 ] || [ "$fortified" -gt 0 ] || fail "$program" "no fortified glibc calls (-D_FORTIFY_SOURCE=2)"
  producers=$(readelf -p .debug_str "$program" 2>/dev/null | sed -n 's/^ *\[ *[0-9a-f]*\]  *\(GNU C.*\)$/\1/p' | sort -u)
  own="no debug information: imports only"
  if [ -z "$producers" ] && readelf -SW "$program" | grep -q ' \.debug_info '; then
    fail "$program" "debug information without the compiler's options in .debug_str: check it another way"
  elif [ -n "$producers" ]; then
    units=$(echo "$producers" | wc -l)
    own="$units compiler command lines"
    for option in -fstack-protector-strong -fstack-clash-protection; do
      unhardened=$(echo "$producers" | grep -v -e " $option\( \|$\)" || true)
      [ -z "$unhardened" ] || fail "$program" "compiled without $option: $(echo "$unhardened" | head -1)"
    done
  fi
  [ "$this_failed" = 1 ] || echo "$(basename "$program"): PIE, full RELRO, canaries, $fortified fortified functions; own code: $own"
done
exit "$failed"
