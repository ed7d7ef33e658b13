#!/usr/bin/env bash
# Runs every test: installs the Debian packages the build needs (when missing), configures,
# builds warning-free (-Werror), runs ctest, then builds what the unit and cli tests and the
# hostile RPC tests need again under AddressSanitizer + UndefinedBehaviorSanitizer and reruns
# those there (PGOD_ASAN_LABELS widens it, e.g. 'unit|cli|integration', building everything), and
# finally builds the fuzz targets with clang and runs each for PGOD_FUZZ_SECONDS (default 20).
# The sanitizer and fuzz builds run while the main tests do, at the idle scheduling class, on
# CPU time the tests leave: the end-to-end tests, one at a time, keep two cores ~70 % idle.
# Exits non-zero on any failure.
#
#   tests/run.sh            everything
#   tests/run.sh --no-asan  skip the sanitizer and fuzz passes
#   tests/run.sh --quick    for iterating: the unit, cli and integration tests only, once; none of
#                           the docker engine, fault or isolation suites (e2e, faults,
#                           isolation). Most integration tests still need root (test users).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
jobs=$(nproc 2>/dev/null || echo 2)
asan=1
quick=0
for arg in "$@"; do
  case "$arg" in
    --no-asan) asan=0 ;;
    --quick) quick=1 asan=0 ;;
    *) echo "tests/run.sh: unknown argument $arg (use --quick, --no-asan or nothing)" >&2; exit 2 ;;
  esac
done

"$root/deploy/install-deps.sh" build test

echo "== build (RelWithDebInfo, -Werror) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGOD_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

if [ "$quick" = 1 ]; then
  echo "== unit, cli and integration tests (--quick) =="
  (cd build && ctest --output-on-failure -j"$jobs" -L 'unit|cli|integration' -LE 'e2e|faults|isolation')
  exit
fi

# Each end-to-end test program starts a docker engine when none answers and stops it at its
# end: about 2 s a program, for well over a hundred of them. One engine for the whole run instead,
# started here only when none answers (the demo's, say, is used as it is) and stopped at the end.
engine_pid=
engine_log=build/dockerd.log  # kept, for a look after a failure
# terminate PID SECONDS [group]: stops PID, a job of this shell, if it still runs (bash reaps a
# job as it ends, so a finished job's PID may be someone else's by now): SIGTERM to it (with
# "group", to its process group), up to SECONDS to go, then SIGKILL. Fails if it had ended.
terminate() {
  jobs -rp | grep -qx "$1" || return 1
  local target=$1
  [ "${3:-}" != group ] || target=-$1
  kill -- "$target" 2>/dev/null || true
  for _ in $(seq $(($2 * 4))); do
    kill -0 -- "$target" 2>/dev/null || return 0
    sleep 0.25
  done
  kill -KILL -- "$target" 2>/dev/null || true
}
stop_engine() {
  [ -n "$engine_pid" ] || return 0
  terminate "$engine_pid" 30 || true
  wait "$engine_pid" 2>/dev/null || true
  engine_pid=
}
trap stop_engine EXIT
if ! docker info >/dev/null 2>&1; then
  /usr/sbin/dockerd >"$engine_log" 2>&1 &
  engine_pid=$!
  for _ in $(seq 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$engine_pid" 2>/dev/null || break  # it gave up (another engine took the socket, say)
    sleep 0.25
  done
  if ! kill -0 "$engine_pid" 2>/dev/null; then
    wait "$engine_pid" 2>/dev/null || true
    engine_pid=
  fi
  docker info >/dev/null 2>&1 || {
    echo "tests/run.sh: dockerd did not start ($engine_log):" >&2
    tail -20 "$engine_log" >&2
    exit 1
  }
fi

labels=${PGOD_ASAN_LABELS:-unit|cli}
fuzz_seconds=${PGOD_FUZZ_SECONDS:-20}
# The sanitizer and fuzz builds, meanwhile, at the idle scheduling class: they get a core when
# no test wants it, and a waking test preempts them at once. Their own session, so that a
# failing step stops them all (stop_background_builds); --wait, so that their exit status is
# theirs even if setsid had to fork (it does not without job control). A session is also an
# autogroup (Debian's kernels schedule by them): the CPUs are shared between sessions first,
# and the idle class counts only within its own, so the session's autogroup gets nice 19 too.
# Without it the builds had as much CPU as all the tests together (two busy loops beside two
# idle-class ones in sessions of their own: 1.1 s of CPU each against 2.3 s; with nice 19: 3.0
# against 0.07 s, over 4 s). The gtest discovery of the sanitizer build runs when ctest reads
# the tests, not at link time: at the idle class it could wait past its 30 s limit.
background_pid=
background_log=build/background-builds.log
stop_background_builds() {
  [ -n "$background_pid" ] || return 0
  if terminate "$background_pid" 10 group; then
    echo "tests/run.sh: stopped the sanitizer and fuzz builds; their output so far: $background_log" >&2
  fi
  wait "$background_pid" 2>/dev/null || true
  background_pid=
}
trap 'stop_background_builds; stop_engine' EXIT
if [ "$asan" = 1 ]; then
  asan_target=(--target sanitizer_pass_tests)
  [ "$labels" = 'unit|cli' ] || asan_target=()
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  setsid --wait chrt --idle 0 ionice -c 3 bash -euo pipefail -c '
    { echo 19 >/proc/self/autogroup; } 2>/dev/null || true  # no autogroups: the idle class suffices
    echo "== sanitizer build (build-asan/) =="
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPGOD_WERROR=ON -DPGOD_SANITIZE=ON \
      -DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST >/dev/null
    cmake --build build-asan -j"$1" "${@:3}"
    echo "== fuzz build (build-fuzz/) =="
    cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPGOD_FUZZ=ON -DPGOD_WERROR=ON -DPGOD_FUZZ_SECONDS="$2" >/dev/null
    cmake --build build-fuzz -j"$1" --target fuzzers
  ' background-builds "$jobs" "$fuzz_seconds" "${asan_target[@]}" >"$background_log" 2>&1 &
  background_pid=$!
fi

echo "== tests =="
(cd build && ctest --output-on-failure -j"$jobs")
stop_engine

if [ "$asan" = 1 ]; then
  echo "== sanitizer and fuzz builds (run during the tests; $background_log) =="
  background_status=0
  wait "$background_pid" || background_status=$?
  background_pid=
  cat "$background_log"
  if [ "$background_status" != 0 ]; then
    echo "tests/run.sh: the sanitizer or fuzz build failed (exit $background_status; $background_log)" >&2
    exit 1
  fi
  echo "== tests labelled $labels under ASan+UBSan =="
  # A test program left out of the build would leave its tests out of the pass without a word:
  # every test the full build has must be there (the sanitizer build has a few of its own).
  names() { ctest --test-dir "$1" -N "${@:2}" | sed -n 's/^ *Test *#[0-9]*: //p' | sort; }
  for selection in "-L $labels" "-R /HostileRpcTest\."; do
    # shellcheck disable=SC2086 # two words each
    missing=$(comm -23 <(names build $selection) <(names build-asan $selection))
    if [ -n "$missing" ]; then
      echo "tests/run.sh: the sanitizer build lacks these tests ($selection) of the full build; add their" \
        "program to sanitizer_pass_tests in tests/CMakeLists.txt:" >&2
      echo "$missing" | head -20 >&2
      exit 1
    fi
  done
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -L "$labels"
  [[ "$labels" == *integration* ]] || ctest --test-dir build-asan --output-on-failure -R '/HostileRpcTest\.'
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi

if [ "$asan" = 1 ]; then
  # One target a core: each still fuzzes for its full time on a core of its own.
  echo "== fuzz targets (clang, libFuzzer + ASan/UBSan), $fuzz_seconds s each =="
  (cd build-fuzz && ctest --output-on-failure -j"$jobs" -L fuzz)
fi
