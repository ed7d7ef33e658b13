#!/usr/bin/env bash
# The manual pages render without a warning, and name every option the programs accept:
# pgod(8) pgod's and pgod-gateway's, pgoctl(1) pgoctl's (from their --help).
#   man_test.sh SOURCE_DIR BIN_DIR
set -euo pipefail
docs=$1/docs
bin=$2
fail() { echo "FAIL: $*" >&2; exit 1; }

for page in pgod.8 pgoctl.1; do
  warnings=$(groff -man -Tutf8 -ww -z "$docs/$page" 2>&1)
  [ -z "$warnings" ] || fail "$page: $warnings"
  MANWIDTH=80 man -l "$docs/$page" >/dev/null 2>&1 || fail "man -l $page"
done

long_options() { "$1" --help 2>&1 | grep -oE '^ +(-[a-zA-Z], )?--[a-z-]+' | grep -oE -- '--[a-z-]+' | sort -u; }
check() {
  local page=$1 program=$2 rendered option
  rendered=$(MANWIDTH=200 man -l "$docs/$page" 2>/dev/null)
  for option in $(long_options "$bin/$program"); do
    # the whole option: --host-key must not pass for --host-key-fd
    grep -qE -- "${option}([^a-z-]|$)" <<<"$rendered" || fail "$page does not describe $program $option"
  done
}
check pgod.8 pgod
check pgod.8 pgod-gateway
check pgoctl.1 pgoctl
echo "man_test: OK"
