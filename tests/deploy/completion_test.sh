#!/usr/bin/env bash
# The bash completion for pgoctl, driven the way bash drives it: COMP_WORDS in, COMPREPLY out.
# Its command list must be pgoctl's own (from pgoctl -h).
#   completion_test.sh SOURCE_DIR PGOCTL
set -euo pipefail
source_dir=$1
pgoctl=$2
fail() { echo "FAIL: $*" >&2; exit 1; }

# shellcheck disable=SC1091
source /usr/share/bash-completion/bash_completion
# shellcheck disable=SC1091
source "$source_dir/deploy/bash-completion/pgoctl"

# Completes the end of LINE as bash would: words split at blanks and at ':' (COMP_WORDBREAKS),
# which stands as a word of its own.
complete_line() {
  local line=$1 word part
  COMP_WORDS=()
  read -ra blank_split <<<"$line"
  for word in "${blank_split[@]}"; do
    while [[ $word == *:* ]]; do
      part=${word%%:*}
      [ -n "$part" ] && COMP_WORDS+=("$part")
      COMP_WORDS+=(":")
      word=${word#*:}
    done
    [ -n "$word" ] && COMP_WORDS+=("$word")
  done
  [[ $line == *" " || $line == *: ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE=$line
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  _pgoctl pgoctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
  printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}

# What pgoctl accepts: the first word of each command in its help.
from_help=$("$pgoctl" -h | sed -n 's/^Commands: //p' | tr ',' '\n' | awk '{print $1}' | sort -u | tr '\n' ' ' | sed 's/ $//')
[ -n "$from_help" ] || fail "no Commands: line in pgoctl -h"
got=$(complete_line "pgoctl web:app//")
want=$(for c in $from_help; do echo "app//$c"; done | sort | tr '\n' ' ' | sed 's/ $//')
[ "$got" = "$want" ] || fail "commands: got '$got', want '$want'"

got=$(complete_line "pgoctl -i key web:app//lo")
[ "$got" = "app//load app//logs" ] || fail "prefix: got '$got'"
got=$(complete_line "pgoctl web:app//git p")
[ "$got" = "pull" ] || fail "git's second word: got '$got'"
got=$(complete_line "pgoctl web:app//worker ")
[ "$got" = "restart" ] || fail "worker's second word: got '$got'"
got=$(complete_line "pgoctl web:app//ps ")
[ -z "$got" ] || fail "nothing after ps: got '$got'"
got=$(complete_line "pgoctl --insec")
[ "$got" = "--insecure-no-host-key-check" ] || fail "options: got '$got'"

# Every option pgoctl -h lists is offered.
for option in $("$pgoctl" -h | grep -oE '^ +(-[a-z], )?--[a-z-]+' | grep -oE -- '--[a-z-]+'); do
  got=$(complete_line "pgoctl $option")
  case " $got " in *" $option "*) ;; *) fail "option $option not offered (got '$got')" ;; esac
done

# Hosts come from known_hosts, with the ':' that follows them.
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
mkdir "$home/.ssh"
echo "prod.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3jnIsdN2gyV2FTBHfRrTGnMyrd1hk+sUYW2WHJ0qZ4" >"$home/.ssh/known_hosts"
got=$(HOME=$home complete_line "pgoctl prod.ex")
[ "$got" = "prod.example.org:" ] || fail "hosts: got '$got'"
echo "completion_test: OK"
