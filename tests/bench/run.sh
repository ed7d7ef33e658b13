#!/bin/bash
# The benchmark table: builds the benchmark programs, runs each of them several times (the
# programs of one round in turn, then the next round, so drift hits all alike), pools their
# samples, describes the machine, and writes the table between the markers of
# docs/PERFORMANCE.md. Run as root from anywhere (it creates test users, runs pgod and sshd, and
# uses dockerd, starting one only when none answers).
#
#   sudo tests/bench/run.sh [--quick] [--build-dir DIR] [--no-build] [--runs N] [--out FILE]
#                           [--only PROGRAM]
#
#   --quick      a smoke run (1 round, few iterations, 5 services, 5 s idle window, a 5 s flood);
#                the table goes to DIR/bench/PERFORMANCE.md, never to docs/ (ctest's BenchQuick
#                runs this)
#   --build-dir  where to build (default: build-bench in the repository)
#   --no-build   use the programs already built in DIR
#   --runs N     rounds: how many times each program runs (default 3; --quick: 1)
#   --out FILE   where the document goes (default docs/PERFORMANCE.md; --quick: see above)
#   --only P     run only program P (e.g. dockergate_bench), its rounds as usual; the table then
#                has only P's rows and, like --quick, goes to DIR/bench/PERFORMANCE.md, never
#                to docs/ (copy the rows by hand)
#   JOBS=N       parallel build jobs (default: nproc)
#
# Exit status 1 when a program fails or a figure is missing. A missed goal is written in the
# table, not failed: this is a benchmark, not a test.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build="$repo/build-bench"
quick=0
no_build=0
runs=""
out=""
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --build-dir) build=$(realpath -m "$2"); shift ;;
    --no-build) no_build=1 ;;
    --runs) runs="$2"; shift ;;
    --out) out=$(realpath -m "$2"); shift ;;
    --only) only="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$(id -u)" != 0 ]; then
  echo "run.sh: run as root (sudo tests/bench/run.sh): the benchmarks create users and run pgod" >&2
  exit 2
fi

# What each program is given: full and quick.
if [ "$quick" = 1 ]; then
  runs=${runs:-1}
  worker_args=(5)                # iterations
  compose_args=(3)               # interleaved rounds
  gateway_args=(3 16 2 1 8)      # ping runs, stream MiB, stream runs, rounds, clients at once
  supervisor_args=(3 5 5)        # start runs, idle seconds, service counts...
  dockergate_args=(3 16 2 1 100) # ps/up rounds, logs MiB, logs rounds, gate starts for PSS, services
  flood_args=(40 2 5 30)         # pings, ramp s, attack at least s, at most s
  out=${out:-$build/bench/PERFORMANCE.md}
else
  runs=${runs:-3}
  worker_args=(30)
  compose_args=(15)
  gateway_args=(30 256 5 5 64)
  supervisor_args=(20 30 50 100)
  dockergate_args=(15 64 5 3 100)
  flood_args=(300 10 60 300)
  if [ -n "$only" ]; then out=${out:-$build/bench/PERFORMANCE.md}; else out=${out:-$repo/docs/PERFORMANCE.md}; fi
fi
if [ "$quick" = 1 ] && [ "$out" -ef "$repo/docs/PERFORMANCE.md" ]; then
  echo "run.sh: --quick never writes docs/PERFORMANCE.md (its figures mean little)" >&2
  exit 2
fi
if [ -n "$only" ] && [ "$out" -ef "$repo/docs/PERFORMANCE.md" ]; then
  echo "run.sh: --only never writes docs/PERFORMANCE.md (it would drop the other programs' rows)" >&2
  exit 2
fi
programs=(worker_bench compose_bench gateway_bench supervisor_bench dockergate_bench gateway_flood_bench)
if [ -n "$only" ]; then
  [[ " ${programs[*]} " == *" $only "* ]] || { echo "run.sh: --only takes one of: ${programs[*]}" >&2; exit 2; }
  programs=("$only")
fi
case "$runs" in ''|*[!0-9]*|0) echo "run.sh: --runs needs a positive number" >&2; exit 2 ;; esac

started=$(date +%s)
if [ "$no_build" = 0 ]; then
  type_flag=()
  [ -f "$build/CMakeCache.txt" ] || type_flag=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
  echo "== building in $build"
  cmake -S "$repo" -B "$build" "${type_flag[@]}" >/dev/null
  cmake --build "$build" -j "${JOBS:-$(nproc)}" --target "${programs[@]}" \
    >"$build/bench-build.log" 2>&1 || { tail -40 "$build/bench-build.log"; exit 1; }
fi
for program in "${programs[@]}"; do
  [ -x "$build/tests/$program" ] || { echo "run.sh: $build/tests/$program is not built" >&2; exit 1; }
done

work="$build/bench"
rm -rf "$work/logs"
mkdir -p "$work/logs"
figures="$work/figures.txt"
machine="$work/machine.txt"
: >"$figures"

# The machine, gathered here (the table says where its figures come from).
{
  echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "cores: $(nproc) online ($(lscpu 2>/dev/null | sed -n 's/^Thread(s) per core:[[:space:]]*/threads per core /p' | head -1))"
  echo "ram: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "kernel: $(uname -r) ($(uname -m))"
  echo "os: $(. /etc/os-release && echo "$PRETTY_NAME"), debian_version $(cat /etc/debian_version 2>/dev/null || echo '?')"
  echo "virtualization: $(systemd-detect-virt 2>/dev/null || echo none)"
  # With no engine running yet (the programs start one), `docker version` fails: dockerd's own.
  engine=$(/usr/bin/docker version --format '{{.Server.Version}}' 2>/dev/null) ||
    engine=$(/usr/sbin/dockerd --version 2>/dev/null | sed -n 's/^Docker version \([^,]*\),.*/\1/p')
  client=$(/usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null | head -1 || true)
  echo "docker: engine ${engine:-?}, client ${client:-?}"
  echo "compose: $(docker compose version --short 2>/dev/null || echo '?') (docker compose), $(docker-compose version --short 2>/dev/null || echo '?') (docker-compose)"
  echo "openssh: $(ssh -V 2>&1)"
  echo "compiler: $(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt") $("$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")" -dumpfullversion 2>/dev/null), $(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt") build"
  echo "source: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"
  echo "load_before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
} >"$machine"

# compose_bench runs once with Compose v2 (the plugin) and, where docker-compose is v1
# (Debian 12), once more with it.
compose_runs=(compose_bench:plugin)
# Captured first: under pipefail, grep -q leaving early can fail docker-compose on a closed pipe.
compose_v1=$(docker-compose version 2>/dev/null || true)
[[ "$compose_v1" == *'version 1.'* ]] && compose_runs+=(compose_bench:standalone)
entries=()
for program in "${programs[@]}"; do
  if [ "$program" = compose_bench ]; then entries+=("${compose_runs[@]}"); else entries+=("$program"); fi
done
# Percent of the CPUs busy over the next second (/proc/stat: everything but idle and iowait).
busy_percent() {
  local a b
  read -r -a a < <(sed -n 's/^cpu  //p' /proc/stat)
  sleep 1
  read -r -a b < <(sed -n 's/^cpu  //p' /proc/stat)
  local total=0 idle=$(((b[3] + b[4]) - (a[3] + a[4]))) i
  for i in "${!b[@]}"; do total=$((total + b[i] - a[i])); done
  echo $((total > 0 ? 100 * (total - idle) / total : 0))
}

# What a program leaves behind (an engine tidying up containers, processes ending) must not be
# measured as the next one's cost: each program starts once the CPUs are mostly idle, or after
# 60 s however busy they are, and says which. Not in a quick run: its figures are not kept, and
# under ctest the sanitizer builds keep the CPUs busy on purpose (it waited 60 s a program).
settle() {
  [ "$quick" = 0 ] || return 0
  local waited=0 busy
  busy=$(busy_percent)
  while [ "$busy" -ge 15 ] && [ "$waited" -lt 60 ]; do
    busy=$(busy_percent)
    waited=$((waited + 1))
  done
  printf '(settled %s s, %s %% busy) ' "$waited" "$busy"
}

for round in $(seq 1 "$runs"); do
  for entry in "${entries[@]}"; do
    program=${entry%%:*}
    case "$entry" in
      worker_bench) args=("${worker_args[@]}") ;;
      compose_bench:*) args=("${compose_args[@]}" "${entry#*:}") ;;
      gateway_bench) args=("${gateway_args[@]}") ;;
      supervisor_bench) args=("${supervisor_args[@]}") ;;
      dockergate_bench) args=("${dockergate_args[@]}") ;;
      gateway_flood_bench) args=("${flood_args[@]}") ;;
    esac
    log="$work/logs/${entry/:/.}.$round.log"
    printf '== round %s/%s: %s %s ... ' "$round" "$runs" "$program" "${args[*]}"
    settle
    t0=$(date +%s)
    if ! (cd "$work" && "$build/tests/$program" "${args[@]}") >"$log" 2>&1; then
      echo "FAILED"
      tail -40 "$log"
      echo "run.sh: $program failed (whole log: $log)" >&2
      exit 1
    fi
    echo "$(($(date +%s) - t0)) s"
    sed -n "s/^\(BENCH\(TEXT\)\{0,1\}\) /$program $round \1 /p" "$log" >>"$figures"
  done
done
echo "load_after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$machine"

mode=full
[ "$quick" = 1 ] && mode=quick
command="sudo tests/bench/run.sh"
[ "$quick" = 1 ] && command="$command --quick"
[ -n "$only" ] && command="$command --only $only"
declare -A program_args=(
  [worker_bench]="worker_bench ${worker_args[*]}"
  [compose_bench]="compose_bench ${compose_args[*]} plugin|standalone"
  [gateway_bench]="gateway_bench ${gateway_args[*]}"
  [supervisor_bench]="supervisor_bench ${supervisor_args[*]}"
  [dockergate_bench]="dockergate_bench ${dockergate_args[*]}"
  [gateway_flood_bench]="gateway_flood_bench ${flood_args[*]}"
)
all_args=""
for program in "${programs[@]}"; do all_args="${all_args:+$all_args; }${program_args[$program]}"; done
mkdir -p "$(dirname "$out")"
python3 "$repo/tests/bench/report.py" --figures "$figures" --machine "$machine" --template "$repo/docs/PERFORMANCE.md" \
  --out "$out" --mode "$mode" --runs "$runs" --seconds "$(($(date +%s) - started))" --command "$command" \
  --args "$all_args" --programs "${programs[*]}"
echo "== $(($(date +%s) - started)) s in all; the table is in $out (logs: $work/logs)"
