#!/usr/bin/env python3
"""The benchmark table, from what tests/bench/run.sh collected.

Reads the figures (one line per figure and program run: `PROGRAM ROUND BENCH KEY SAMPLE...` or
`PROGRAM ROUND BENCHTEXT KEY TEXT`), pools the samples of every round, and writes the template
document with the text between its markers replaced by the machine, the command and the table.
Exits 1 when a figure the table needs is missing (a program changed its output)."""

import argparse
import math
import random
import re
import statistics
import sys

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def load(path):
    samples, texts, rounds = {}, {}, {}
    with open(path) as lines:
        for line in lines:
            parts = line.rstrip("\n").split(" ")
            if len(parts) < 4:
                continue
            program, round_, kind, key = parts[:4]
            rounds.setdefault(program, set()).add(round_)
            if kind == "BENCH":
                samples.setdefault(key, []).extend(float(value) for value in parts[4:])
            elif kind == "BENCHTEXT":
                texts.setdefault(key, []).append(" ".join(parts[4:]))
    return samples, texts, rounds


class Table:
    def __init__(self, samples, texts):
        self.samples, self.texts = samples, texts
        self.rows, self.missing, self.missed, self.unresolved = [], [], [], []

    def has(self, key):
        return bool(self.samples.get(key))

    def median(self, key, required=True):
        values = self.samples.get(key)
        if not values:
            if required:
                self.missing.append(key)
            return math.nan
        return statistics.median(values)

    def percentile(self, key, p):
        values = sorted(self.samples.get(key) or [])
        if not values:
            self.missing.append(key)
            return math.nan
        return values[min(len(values), max(1, math.ceil(p * len(values)))) - 1]

    def median_difference_interval(self, key, reference_key, rounds=2000):
        """A 95 % bootstrap interval of median(key) - median(reference_key): how far noise alone
        moves the difference of the two medians on this machine."""
        ours, theirs = self.samples.get(key), self.samples.get(reference_key)
        if not ours or not theirs:
            return math.nan, math.nan
        draw = random.Random(1)  # fixed: the same figures give the same interval
        differences = sorted(
            statistics.median(draw.choices(ours, k=len(ours))) - statistics.median(draw.choices(theirs, k=len(theirs)))
            for _ in range(rounds))
        return differences[int(0.025 * rounds)], differences[int(0.975 * rounds) - 1]

    def count(self, key):
        return len(self.samples.get(key) or [])

    def text(self, key):
        values = self.texts.get(key)
        return max(set(values), key=values.count) if values else "?"

    def row(self, number, what, ours, reference, compare, samples, goal="—", holds=None, resolved=True):
        if holds is None:
            verdict = "—" if goal == "—" else "n/a"
        elif holds and not resolved:
            verdict = "met?, within noise"
            self.unresolved.append(f"{number} {strip(what)}: {strip(ours)} (goal {goal})")
        elif holds:
            verdict = "met"
        else:
            verdict = "**MISSED**" if resolved else "**MISSED**, within noise"
            self.missed.append(f"{number} {strip(what)}: {strip(ours)} (goal {goal})")
        self.rows.append((number, what, ours, reference, compare, goal, verdict, samples))


def strip(text):
    return re.sub(r"[`*]", "", text)


def num(value, digits=1, unit=""):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}{unit}"


def ratio(ours, reference):
    if math.isnan(ours) or math.isnan(reference) or reference == 0:
        return "n/a"
    return f"{ours / reference:.2f}×"


def signed(value, unit=" ms"):
    return "n/a" if math.isnan(value) else f"{value:+.1f}{unit}"


def build(table, mode, programs):
    """The rows of the programs that ran (all of them, unless run.sh was given --only)."""
    t = table
    if "gateway_bench" in programs:
        build_gateway_ping_stream(t)
    if "compose_bench" in programs:
        build_compose(t)
    if "gateway_bench" in programs:
        build_gateway_crowd(t)
    if "supervisor_bench" in programs:
        build_supervisor_memory(t)
    if "worker_bench" in programs:
        build_worker_push(t)
    if "supervisor_bench" in programs:
        build_supervisor_idle_start(t)
    if "worker_bench" in programs:
        build_worker_poll(t)
    if "dockergate_bench" in programs:
        build_dockergate(t)
    if "gateway_flood_bench" in programs:
        build_gateway_flood(t)


def build_gateway_ping_stream(t):
    # 1. Ping.
    ping, pong = t.median("ping_ssh_ms"), t.median("ping_sshd_ms")
    t.row("1", "Ping round trip: `ssh … a//ping` through pgod-gateway (median)", num(ping, unit=" ms"),
          f"`ssh … echo pong` to sshd: {num(pong, unit=' ms')}", ratio(ping, pong), t.count("ping_ssh_ms"),
          "≤ 30 ms", None if math.isnan(ping) else ping <= 30)
    pgoctl = t.median("ping_pgoctl_ms", required=False)
    t.row("1b", "Ping round trip: `pgoctl … a//ping` (median)", num(pgoctl, unit=" ms"),
          f"as row 1: {num(pong, unit=' ms')}", ratio(pgoctl, pong), t.count("ping_pgoctl_ms"), "≤ 5 ms",
          None if math.isnan(pgoctl) else pgoctl <= 5)
    # 1c-1h. Where a ping's time goes: process start, then each step of an in-process login.
    if t.has("phase_start_pgoctl_ms"):
        bare = t.median("phase_start_true_ms")
        start = t.median("phase_start_pgoctl_ms")
        t.row("1c", "Where 1b goes: starting pgoctl (`pgoctl --version`, whole process)", num(start, 2, " ms"),
              f"`/bin/true`: {num(bare, 2, ' ms')}", ratio(start, bare), t.count("phase_start_pgoctl_ms"))
        cold = t.has("phase_start_libssh_ms")  # the benches that time the libssh floor time fresh logins too
        if cold:
            floor = t.median("phase_start_libssh_ms")
            t.row("1c2", "Where 1b goes: a program that only loads the shared libssh and returns (what 1c was before pgoctl linked libssh in)",
                  num(floor, 2, " ms"), f"`/bin/true`: {num(bare, 2, ' ms')}", ratio(floor, bare),
                  t.count("phase_start_libssh_ms"))
            t.row("1c3", "Where 1b goes: reading the ed25519 key file (fresh process)",
                  num(t.median("phase_cold_key_ms"), 2, " ms"), "—", "", t.count("phase_cold_key_ms"))
        # Each step warm (the bench's own client, its first login left out) and, beside it, the
        # same step in a fresh process of the bench's, one login per process as pgoctl makes:
        # first use of libssh and OpenSSL included.
        for number, key, what in (("1d", "tcp", "the TCP connect"),
                                  ("1e", "kex", "version and key exchange (libssh's `ssh_connect`)"),
                                  ("1f", "auth", "authentication (`none`, then the ed25519 key)"),
                                  ("1g", "ping", "`a//ping` on a channel (the gateway answers)"),
                                  ("1h", "worker", "`a//git hash` on a channel (the worker answers)")):
            fresh = (f"first use, fresh process: {num(t.median(f'phase_cold_{key}_ms'), 2, ' ms')} "
                     f"(of {t.count(f'phase_cold_{key}_ms')})" if cold else "—")
            t.row(number, f"Where 1b goes, in-process libssh client, warm: {what}",
                  num(t.median(f"phase_{key}_ms"), 2, " ms"), fresh, "", t.count(f"phase_{key}_ms"))
    # 2. Streamed output.
    mib = num(t.median("stream_mib"), 0)
    ours, ref = t.median("stream_ours_mbs"), t.median("stream_sshd_mbs")
    # Single runs vary by several per cent on a small machine: the verdict says when the 95 %
    # interval of the difference reaches across the goal.
    low, high = t.median_difference_interval("stream_ours_mbs", "stream_sshd_mbs")
    holds = None if math.isnan(ours) or math.isnan(ref) else ours >= ref
    t.row("2", f"Streamed output, {mib} MiB of `a//logs`, first byte to EOF (median)",
          f"{num(ours, 0, ' MB/s')} ({signed(ours - ref, ' MB/s')}, 95 % interval {signed(low, '')}…{signed(high, ' MB/s')})",
          f"`head -c` on sshd: {num(ref, 0, ' MB/s')}", ratio(ours, ref), t.count("stream_ours_mbs"), "≥ 1.0× sshd",
          holds, resolved=(low >= 0) if holds else (high < 0))
    whole, whole_ref = t.median("stream_whole_ours_mbs"), t.median("stream_whole_sshd_mbs")
    t.row("2b", "Streamed output, whole client run incl. login (median)", num(whole, 0, " MB/s"),
          num(whole_ref, 0, " MB/s"), ratio(whole, whole_ref), t.count("stream_whole_ours_mbs"))
    t.row("2c", "Cipher / key exchange negotiated", f"{t.text('cipher_ours')} / {t.text('kex_ours')}",
          f"{t.text('cipher_sshd')} / {t.text('kex_sshd')}", "", "")


def build_compose(t):
    # 3. ps on a real engine: Compose v2 (the plugin, what the worker prefers), then v1 when the
    # host has it (Debian 12's docker-compose).
    for prefix, label, first in (("plugin_", "Compose v2, `docker compose`", "3"),
                                 ("standalone_", "Compose v1, `docker-compose`", "3v1")):
        if prefix == "standalone_" and not t.has("standalone_ps_direct_ms"):
            continue
        direct, sshd = t.median(prefix + "ps_direct_ms"), t.median(prefix + "ps_sshd_ms")
        t.row(f"{first}", f"{label} `ps`: {t.text(prefix + 'compose_program')}", "", "", "", "")
        for suffix, key, client in (("a", "ps_ssh_ms", "ssh"), ("b", "ps_pgoctl_ms", "pgoctl")):
            total = t.median(prefix + key)
            overhead = total - sshd
            low, high = t.median_difference_interval(prefix + key, prefix + "ps_sshd_ms")
            t.row(first + suffix, f"`{client} … svc//ps` end to end (real engine, 1 running container) against "
                  "sshd running the same compose ps (both pay a login)",
                  f"{num(total, unit=' ms')} ({signed(overhead)}, 95 % interval {signed(low, '')}…{signed(high)})",
                  f"sshd: {num(sshd, unit=' ms')}", ratio(total, sshd), t.count(prefix + key))
        worker = t.median(prefix + "ps_worker_ms")
        low, high = t.median_difference_interval(prefix + "ps_worker_ms", prefix + "ps_direct_ms")
        goal = worker - direct
        t.row(first + "c", "the worker's own `run(ps)` on its socket (no SSH) against compose ps run directly as "
              "the service's user", f"{num(worker, unit=' ms')} ({signed(goal)}, 95 % interval "
              f"{signed(low, '')}…{signed(high)})", f"direct: {num(direct, unit=' ms')}", ratio(worker, direct),
              t.count(prefix + "ps_worker_ms"), "≤ +10 ms", None if math.isnan(goal) else goal <= 10,
              resolved=high <= 10 if goal <= 10 else low > 10)
        login = t.median(prefix + "ps_ping_ssh_ms")
        t.row(first + "d", "the SSH login and a gateway round trip: `ssh … svc//ping`, same rounds",
              num(login, unit=" ms"), "—", "", t.count(prefix + "ps_ping_ssh_ms"))


def build_gateway_crowd(t):
    # 4. 64 clients at once (fewer in --quick).
    clients = num(t.median("crowd_clients"), 0)
    for number, p, label in (("4", 0.5, "p50"), ("4b", 0.99, "p99")):
        ours, ref = t.percentile("crowd_ours_ms", p), t.percentile("crowd_sshd_ms", p)
        # The goal is for 64 at once (--quick runs fewer).
        goal = number == "4b" and t.median("crowd_clients") == 64
        t.row(number, f"{clients} clients at once, `a//ping`, {label} of all rounds pooled", num(ours, unit=" ms"),
              f"{clients} × `echo pong` to sshd: {num(ref, unit=' ms')}", ratio(ours, ref), t.count("crowd_ours_ms"),
              "≤ 250 ms" if goal else "—", (None if math.isnan(ours) else ours <= 250) if goal else None)
    if t.has("crowd_client_cpu_ms"):
        # What the clients alone ask of the cores: no server can answer the last of them sooner.
        cpu, cores = t.median("crowd_client_cpu_ms"), t.median("online_cpus")
        floor = cpu * t.median("crowd_clients") / cores
        t.row("4d", f"{clients} clients at once: each `ssh` client's own CPU time (median), and the wall time "
              f"{clients} of them need of {num(cores, 0)} cores however fast the server", num(cpu, 1, " ms"),
              f"floor: {num(floor, 0, ' ms')}", "", t.count("crowd_client_cpu_ms"))
    if t.has("crowd_gateway_cpu_ms_per_login"):
        # The server's side of it: the gateway does every key exchange on one thread.
        login = t.median("crowd_gateway_cpu_ms_per_login")
        t.row("4e", f"{clients} clients at once: pgod-gateway's CPU time per login (median of rounds), and what "
              f"{clients} logins take of its one thread", num(login, 2, " ms"),
              f"{clients} logins: {num(login * t.median('crowd_clients'), 0, ' ms')}", "",
              t.count("crowd_gateway_cpu_ms_per_login"))
    build_gateway_lighter_crowds(t, clients)
    if t.has("ssh_client_gateway_cpu_ms"):
        build_ssh_client_cost(t, clients)
    failed = sum(t.samples.get("crowd_failed_ours") or [math.nan])
    failed_ref = sum(t.samples.get("crowd_failed_sshd") or [math.nan])
    ours = f"{num(failed, 0)} of {t.count('crowd_ours_ms')}"
    # The lighter crowds' failures count too: each is a client of ours that got no answer.
    # (A failed process still has a wall time, among the samples; a failed in-process login not.)
    for name, key, failed_key, timed_failures in (("pgoctl", "crowd_pgoctl_ms", "crowd_failed_pgoctl", True),
                                                  ("in-process", "crowd_in_process_ms", "crowd_failed_in_process",
                                                   False)):
        if failed_key in t.samples:
            lighter = sum(t.samples[failed_key])
            clients_run = t.count(key) + (0 if timed_failures else lighter)
            ours += f"; {name}: {num(lighter, 0)} of {num(clients_run, 0)}"
            failed += lighter
    t.row("4c", f"{clients} clients at once: failed clients", ours,
          f"{num(failed_ref, 0)} of {t.count('crowd_sshd_ms')}", "", "", "0", None if math.isnan(failed) else failed == 0)


def build_ssh_client_cost(t, clients):
    # Where 4d's CPU goes, one client alone: its start, then what the algorithms the gateway offers
    # cost it. OpenSSH computes curve25519 and ed25519 in portable C and NIST P-256 with OpenSSL's
    # assembly; the gateway keeps the former (see PERFORMANCE.md, "Reading the misses").
    start, login = t.median("ssh_client_start_cpu_ms"), t.median("ssh_client_gateway_cpu_ms")
    curve, nist = t.median("ssh_client_curve25519_cpu_ms"), t.median("ssh_client_nistp256_cpu_ms")
    crowd, cores = t.median("crowd_clients"), t.median("online_cpus")
    t.row("4i", "Where 4d goes: one `ssh` client alone, its own CPU time for a login and `a//ping` to pgod-gateway "
          "(median), against starting `ssh -V`", num(login, 2, " ms"), f"`ssh -V`: {num(start, 2, ' ms')}",
          ratio(login, start), t.count("ssh_client_gateway_cpu_ms"))
    t.row("4j", "Where 4d goes: one `ssh` client's CPU time for a login and `true` to sshd with the gateway's "
          "algorithms (curve25519-sha256, ssh-ed25519 host key), against ecdh-sha2-nistp256 with an "
          f"ecdsa-sha2-nistp256 host key; and the floor of 4d were the gateway's logins cheaper by the "
          f"difference", num(curve, 2, " ms"),
          f"nistp256: {num(nist, 2, ' ms')}; floor: {num((login - (curve - nist)) * crowd / cores, 0, ' ms')}",
          ratio(curve, nist), t.count("ssh_client_curve25519_cpu_ms"))


def build_gateway_lighter_crowds(t, clients):
    # The same crowd from lighter clients, in the same rounds: pgoctl processes, then libssh
    # clients on threads of one process (no process start each), so that less of the wall time
    # is the clients' own and more the gateway's.
    ssh_p50, ssh_p99 = t.percentile("crowd_ours_ms", 0.5), t.percentile("crowd_ours_ms", 0.99)
    for number, key, failed_key, who in (
            ("4f", "crowd_pgoctl_ms", "crowd_failed_pgoctl", "`pgoctl … a//ping` processes"),
            ("4h", "crowd_in_process_ms", "crowd_failed_in_process",
             "libssh clients on threads of one process (a login and `a//ping` each, no process start)")):
        if failed_key not in t.samples:
            continue  # figures from a bench without these crowds
        # Every client of a crowd may have failed: the row stays, with n/a, and 4c counts them.
        p50 = t.percentile(key, 0.5) if t.has(key) else math.nan
        p99 = t.percentile(key, 0.99) if t.has(key) else math.nan
        failed = sum(t.samples[failed_key])
        t.row(number, f"{clients} clients at once, {who}: p50 / p99 of all rounds pooled ({num(failed, 0)} failed; "
              "the ratio is of the p99s)", f"{num(p50, unit=' ms')} / {num(p99, unit=' ms')}",
              f"`ssh` clients (4, 4b): {num(ssh_p50, unit=' ms')} / {num(ssh_p99, unit=' ms')}", ratio(p99, ssh_p99),
              t.count(key))
        if number == "4f" and t.has("crowd_pgoctl_client_cpu_ms"):
            cpu, cores = t.median("crowd_pgoctl_client_cpu_ms"), t.median("online_cpus")
            t.row("4g", f"{clients} clients at once: each `pgoctl` client's own CPU time (median), and the wall "
                  f"time {clients} of them need of {num(cores, 0)} cores however fast the server", num(cpu, 1, " ms"),
                  f"floor: {num(cpu * t.median('crowd_clients') / cores, 0, ' ms')}", "",
                  t.count("crowd_pgoctl_client_cpu_ms"))


def build_supervisor_memory(t):
    # 5, 6. Memory.
    sshd = t.median("pss_sshd_kib")
    counts = sorted(int(key.rsplit("_", 1)[1]) for key in t.samples if key.startswith("pss_worker_kib_"))
    if not counts:
        t.missing.append("pss_worker_kib_N")
    for i, count in enumerate(counts):
        pss = t.median(f"pss_worker_kib_{count}")
        total = t.median(f"pss_workers_total_mib_{count}")
        t.row(f"5{'abcdefgh'[i] if i else ''}", f"PSS per idle worker, {count} services (median; all workers: "
              f"{num(total, 1, ' MiB')})", num(pss / 1024, 2, " MiB"), f"idle sshd: {num(sshd / 1024, 2, ' MiB')}",
              ratio(pss, sshd), t.count(f"pss_worker_kib_{count}"), "≤ 3 MiB",
              None if math.isnan(pss) else pss <= 3 * 1024)
    if counts:
        most = counts[-1]
        gateway, supervisor = t.median(f"pss_gateway_kib_{most}"), t.median(f"pss_pgod_kib_{most}")
        t.row("6", f"PSS of pgod-gateway (idle, {most} services)", num(gateway / 1024, 2, " MiB"),
              f"idle sshd: {num(sshd / 1024, 2, ' MiB')}", ratio(gateway, sshd), t.count(f"pss_gateway_kib_{most}"))
        t.row("6b", f"PSS of pgod, the supervisor (idle, {most} services)", num(supervisor / 1024, 2, " MiB"),
              f"idle sshd: {num(sshd / 1024, 2, ' MiB')}", ratio(supervisor, sshd), t.count(f"pss_pgod_kib_{most}"))


def build_worker_push(t):
    # 7. Push to up.
    up, up_ref = t.median("push_up_ms"), t.median("push_up_git_cli_ms")
    t.row("7", "Push → `up -d` started, after the worker's `git pull` (median)", num(up, unit=" ms"),
          f"`git fetch` + `reset --hard` + spawn `up -d`: {num(up_ref, unit=' ms')}", ratio(up, up_ref),
          t.count("push_up_ms"), "≤ 200 ms", None if math.isnan(up) else up <= 200)
    if t.has("push_hook_up_ms"):
        hook, pulled = t.median("push_hook_up_ms"), t.median("push_pgoctl_up_ms")
        t.row("7b", "Push → `up -d` started, through a signed push hook to pgod-gateway (median; gateway_bench)",
              num(hook, unit=" ms"), f"`pgoctl … a//git pull`: {num(pulled, unit=' ms')}", ratio(hook, pulled),
              t.count("push_hook_up_ms"))


def build_supervisor_idle_start(t):
    # 8. Idle CPU.
    idle, idle_ref = t.median("idle_cpu_pct"), t.median("idle_cpu_sshd_pct")
    services = int(t.median("idle_services")) if t.has("idle_services") else 0
    window = t.median("idle_window_s")
    parts = ", ".join(f"{name} {num(t.median(f'idle_cpu_{name}_pct'), 3, ' %')}" for name in ("pgod", "workers", "gateway"))
    t.row("8", f"Idle CPU, pgod + {services} workers + gateway, {num(window, 0, ' s')} window (median; {parts})",
          num(idle, 3, " % of a core"), f"idle sshd: {num(idle_ref, 3, ' %')}", "", t.count("idle_cpu_pct"))
    # Extras: what the programs measure beside the required rows.
    start, by_hand = t.median("start_pgod_ms"), t.median("start_byhand_ms")
    t.row("9", "Start → worker answers `status` (pgod: config, fork, confine, exec)", num(start, unit=" ms"),
          f"pgod-worker spawned by hand, unconfined: {num(by_hand, unit=' ms')}", ratio(start, by_hand),
          t.count("start_pgod_ms"))


def build_worker_poll(t):
    poll, poll_ref = t.median("poll_ms"), t.median("poll_git_cli_ms")
    t.row("10", "No-change poll: `git pull` RPC, upstream unchanged (stand-in compose)", num(poll, unit=" ms"),
          f"`git fetch` + `rev-parse`: {num(poll_ref, unit=' ms')}", ratio(poll, poll_ref), t.count("poll_ms"))
    cpu, cpu_ref = t.median("poll_worker_cpu_ms"), t.median("poll_git_cli_cpu_ms")
    t.row("10b", "No-change poll: worker CPU per poll (mean per run, median of runs)", num(cpu, unit=" ms"),
          f"git CLI CPU: {num(cpu_ref, unit=' ms')}", ratio(cpu, cpu_ref), t.count("poll_worker_cpu_ms"))


def build_dockergate(t):
    # 11. The docker gate: compose through it against dockerd's socket directly, same rounds.
    t.row("11", f"The docker gate, compose through it: {t.text('gate_compose_program')}", "", "", "", "")
    for number, verb, key in (("11a", "`docker compose ps` (1 running container)", "ps"),
                              ("11b", "`docker compose up -d`, nothing to change (the worker's self-heal)", "up")):
        ours, direct = t.median(f"gate_{key}_gate_ms"), t.median(f"gate_{key}_direct_ms")
        difference = ours - direct
        low, high = t.median_difference_interval(f"gate_{key}_gate_ms", f"gate_{key}_direct_ms")
        allowed = 0.05 * direct
        holds = None if math.isnan(difference) else difference <= allowed
        t.row(number, f"{verb} with DOCKER_HOST the service's gate socket, against dockerd's socket directly",
              f"{num(ours, unit=' ms')} ({signed(difference)} = {signed(100 * difference / direct, ' %')}, "
              f"95 % interval {signed(low, '')}…{signed(high)})",
              f"direct: {num(direct, unit=' ms')}", ratio(ours, direct), t.count(f"gate_{key}_gate_ms"), "≤ +5 %",
              holds, resolved=high <= allowed if holds else low > allowed)
    # 12. Streamed logs.
    mib = num(t.median("gate_logs_mib"), 0)
    ours, direct = t.median("gate_logs_gate_mbs"), t.median("gate_logs_direct_mbs")
    t.row("12", f"`docker logs` of a container that wrote {mib} MiB, through the gate, whole client run (median)",
          num(ours, 0, " MB/s"), f"direct: {num(direct, 0, ' MB/s')}", ratio(ours, direct),
          t.count("gate_logs_gate_mbs"), "≥ 0.9× direct",
          None if math.isnan(ours) or math.isnan(direct) else ours >= 0.9 * direct)
    ours, direct = t.median("gate_logs_stream_gate_mbs"), t.median("gate_logs_stream_direct_mbs")
    t.row("12b", "`docker logs` through the gate, first byte to EOF (median)", num(ours, 0, " MB/s"),
          f"direct: {num(direct, 0, ' MB/s')}", ratio(ours, direct), t.count("gate_logs_stream_gate_mbs"))
    if t.has("gate_logs_gate_cpu_ms"):
        t.row("12c", f"the gate's CPU time while it relays one `docker logs` run of {mib} MiB (median)",
              num(t.median("gate_logs_gate_cpu_ms"), 0, " ms"), "—", "", t.count("gate_logs_gate_cpu_ms"))
    # 13. Memory.
    one = t.median("gate_pss_kib_1")
    t.row("13", "PSS of pgod-dockergate, idle, 1 service", num(one / 1024, 2, " MiB"), "—", "",
          t.count("gate_pss_kib_1"))
    counts = sorted(int(key.rsplit("_", 1)[1]) for key in t.samples
                    if key.startswith("gate_pss_kib_") and key != "gate_pss_kib_1")
    if not counts:
        t.missing.append("gate_pss_kib_N")
    for i, count in enumerate(counts):
        many = t.median(f"gate_pss_kib_{count}")
        t.row(f"13{'bcdefgh'[i]}", f"PSS of pgod-dockergate, idle, {count} services ({count} sockets)",
              num(many / 1024, 2, " MiB"),
              f"1 service: {num(one / 1024, 2, ' MiB')}", ratio(many, one), t.count(f"gate_pss_kib_{count}"))


def build_gateway_flood(t):
    # 14. The gateway under a flood of hostile clients, pgoctl logging in meanwhile (every round's
    # pings pooled; the reference is the same pings with no attack, earlier in the same run).
    attempted, ok = sum(t.samples.get("flood_attempted") or [math.nan]), sum(t.samples.get("flood_ok") or [math.nan])
    ref_attempted = sum(t.samples.get("flood_ref_attempted") or [math.nan])
    ref_ok = sum(t.samples.get("flood_ref_ok") or [math.nan])
    success = ok / attempted if attempted else math.nan
    t.row("14", "`pgoctl … a//ping` from 127.0.0.1 during a flood from 50 other loopback sources (1000 silent "
          "connections, 100 slow-loris, DH-only clients, 20 key holders with idle channels): logins that succeeded",
          f"{num(ok, 0)} of {num(attempted, 0)} ({num(100 * success, 1, ' %')})",
          f"no attack: {num(ref_ok, 0)} of {num(ref_attempted, 0)}", "", t.count("flood_attempted"), "≥ 99 %",
          None if math.isnan(success) else success >= 0.99)
    for number, p, label in (("14b", 0.5, "p50"), ("14c", 0.99, "p99")):
        ours, ref = t.percentile("flood_ms", p), t.percentile("flood_ref_ms", p)
        goal = "< 1000 ms" if p == 0.99 else "—"
        t.row(number, f"the same pings under the flood, {label} of the successful ones", num(ours, unit=" ms"),
              f"no attack: {num(ref, unit=' ms')}", ratio(ours, ref), t.count("flood_ms"), goal,
              None if p != 0.99 or math.isnan(ours) else ours < 1000)
    peak = max(t.samples.get("flood_rss_peak_kib") or [math.nan])
    idle = t.median("flood_rss_idle_kib")
    t.row("14d", "RSS of pgod-gateway during the flood, peak of 100 ms samples (highest of all rounds)",
          num(peak / 1024, 1, " MiB"), f"idle, before: {num(idle / 1024, 1, ' MiB')}", ratio(peak, idle),
          t.count("flood_rss_peak_kib"), "< 256 MiB", None if math.isnan(peak) else peak < 256 * 1024)
    serving, serving_of = sum(t.samples.get("flood_serving_ok") or [math.nan]), sum(
        t.samples.get("flood_serving_attempted") or [math.nan])
    restarts = sum(t.samples.get("flood_gateway_restarts") or [math.nan])
    t.row("14e", f"after the flood: pings in a row that succeeded (gateway restarts by pgod during it: "
          f"{num(restarts, 0)})", f"{num(serving, 0)} of {num(serving_of, 0)}", "—", "",
          t.count("flood_serving_ok"), "all", None if math.isnan(serving) else serving == serving_of)
    m = t.median
    t.row("14f", "what became of the flood (median of rounds): connections the gateway closed and how soon; "
          "DH-only attempts and key exchanges completed; key holders' channels held and closed; CPU; the "
          "kernel's accept queue; the gateway's rejections (/metrics)",
          f"silent: {num(m('flood_silent_closed'), 0)} closed, after {num(m('flood_silent_life_ms'), 1)} ms (p50); "
          f"slow-loris: {num(m('flood_loris_closed'), 0)}, after {num(m('flood_loris_life_ms'), 1)} ms; "
          f"DH-only: {num(m('flood_dh_attempts'), 0)} tried, {num(m('flood_dh_completed'), 0)} completed; "
          f"holders: {num(m('flood_holder_held'), 0)} held, {num(m('flood_holder_closed'), 0)} closed after "
          f"{num(m('flood_holder_life_ms'), 0)} ms; gateway CPU {num(m('flood_gateway_cpu_pct'), 1, ' %')} "
          f"(attackers {num(m('flood_attackers_cpu_pct'), 0, ' %')}); longest accept queue "
          f"{num(m('flood_accept_queue_max'), 0)}, host accept-queue drops {num(m('flood_listen_drops'), 0)}; "
          f"rejected: {t.text('flood_rejected')}",
          "—", "", t.count("flood_attack_s"))


def render(table, machine, args, rounds):
    out = []
    if args.mode == "quick":
        out.append("> **Quick smoke run** (`--quick`): one round of a few iterations and 5 services. It checks "
                   "that the command works; its figures mean little.\n")
    m = machine
    out.append(f"Measured {m.get('date', '?')} on: {m.get('cpu', '?')}, {m.get('cores', '?')}, {m.get('ram', '?')} RAM; "
               f"Linux {m.get('kernel', '?')}; {m.get('os', '?')}; virtualization: {m.get('virtualization', '?')}. "
               f"Docker {m.get('docker', '?')}; compose {m.get('compose', '?')}; {m.get('openssh', '?')}. "
               f"Built with {m.get('compiler', '?')} from {m.get('source', '?')}.\n")
    per_program = ", ".join(f"{program} {len(r)}" for program, r in sorted(rounds.items()))
    minutes, seconds = divmod(int(args.seconds), 60)
    out.append(f"Command: `{args.command}` as root from the repository root ({args.runs} round(s): {per_program} "
               f"runs; {minutes} min {seconds} s in all, build included). Each program's arguments: "
               f"`{args.args}`. Load average before {m.get('load_before', '?')}, after "
               f"{m.get('load_after', '?')}.\n")
    out.append("Every figure is the median (or the stated percentile) of all samples of all rounds pooled; "
               "*Samples* is how many. Each reference was measured in the same program run, interleaved with "
               "pgod's side.\n")
    out.append("| # | Measure | pgod | Reference (same run) | pgod / reference | Samples | Goal | Verdict |")
    out.append("|---|---|---|---|---|---|---|---|")
    for number, what, ours, reference, compare, goal, verdict, samples in table.rows:
        out.append(f"| {number} | {what} | {ours} | {reference} | {compare} | {samples} | {goal} | {verdict} |")
    out.append("")
    if table.missed:
        out.append("**Goals missed in this run:** " + "; ".join(table.missed) + ".")
    if table.unresolved:
        out.append("\n**Goals met by the medians but not resolved** (the 95 % bootstrap interval of the "
                   "difference reaches past the goal: this machine's noise could hide a miss): "
                   + "; ".join(table.unresolved) + ".")
    if not table.missed and not table.unresolved:
        out.append("All goals were met in this run.")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    for name in ("figures", "machine", "template", "out", "mode", "runs", "seconds", "command", "args"):
        parser.add_argument("--" + name, required=True)
    parser.add_argument("--programs", default="worker_bench compose_bench gateway_bench supervisor_bench "
                        "dockergate_bench gateway_flood_bench",
                        help="the programs that ran (space-separated): only their rows")
    args = parser.parse_args()
    samples, texts, rounds = load(args.figures)
    machine = {}
    with open(args.machine) as lines:
        for line in lines:
            key, _, value = line.rstrip("\n").partition(": ")
            machine[key] = value
    table = Table(samples, texts)
    build(table, args.mode, args.programs.split())
    with open(args.template) as template:
        document = template.read()
    if BEGIN not in document or END not in document:
        sys.exit(f"report.py: {args.template} lacks the markers {BEGIN} and {END}")
    head, rest = document.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(args.out, "w") as out:
        out.write(head + BEGIN + "\n" + render(table, machine, args, rounds) + "\n" + END + tail)
    print(render(table, machine, args, rounds))
    if table.missing:
        sys.exit("report.py: figures missing from the programs' output: " + ", ".join(sorted(set(table.missing))))


if __name__ == "__main__":
    main()
