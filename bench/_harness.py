"""What ``pipeline_throughput.py`` and ``memory_profile.py`` share on top of
``smtp_throughput.py``: a ``pat up`` with the spam engine and the number of workers under test,
the store read directly (read-only) for the times Pat recorded, which spam engine answers, and
the resident memory of each process by name."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.smtp_throughput import (
    HOST,
    BenchError,
    Pat,
    free_ports,
    log_tail,
    process_cmdline,
    process_name,
    process_tree,
    status_kib,
)

SPAM_ENGINES = ("rspamd", "spamassassin", "none")
MIB = 1024  # KiB


def add_pat_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the ``pat up`` under test that both benchmarks take."""
    parser.add_argument("--spam-engine", choices=SPAM_ENGINES, default="rspamd",
                        help="passed to pat up as PAT_SPAM_ENGINE (code without that setting "
                             "ignores it and runs spamd); none also stops pat up from starting "
                             "spamd or rspamd")
    parser.add_argument("--worker-processes", type=int, default=None,
                        help="passed to pat up as PAT_WORKER_PROCESSES (default: not set, "
                             "Pat's own default)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (data, logs) and print its path")


def check_pat_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.worker_processes is not None and args.worker_processes < 1:
        parser.error("--worker-processes must be at least 1")
    if os.environ.get("PAT_DATABASE_URL"):
        parser.error("PAT_DATABASE_URL is set: this benchmark reads the times Pat recorded "
                     "from the SQLite store in pat up's data directory, so it runs Pat on "
                     "SQLite only; unset PAT_DATABASE_URL")


def machine_load() -> str:
    """The load averages, as uptime prints them: how busy the machine was."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return f"load average {one}, {five}, {fifteen} ({os.cpu_count()} CPUs)"


# --------------------------------------------------------------------------------------------
# pat up under test


class PatUnderTest(Pat):
    """``pat up`` on free ports with the spam engine and the worker processes asked for. The
    spam engines get free ports too, so that an spamd or rspamd somebody else runs on the
    default port is never the one measured."""

    def __init__(self, workdir: Path, spam_engine: str, worker_processes: int | None) -> None:
        super().__init__(workdir)
        self.spam_engine = spam_engine
        self.worker_processes = worker_processes
        self.spamd_port, self.rspamd_port = free_ports(2)

    @property
    def store_file(self) -> Path:
        return self.data_dir / "pat.db"

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({"PAT_SPAM_ENGINE": self.spam_engine,
                    "PAT_SPAMD_HOST": HOST, "PAT_SPAMD_PORT": str(self.spamd_port),
                    "PAT_RSPAMD_HOST": HOST, "PAT_RSPAMD_PORT": str(self.rspamd_port)})
        if self.spam_engine == "none":
            # On code without PAT_SPAM_ENGINE this is the nearest thing: no spamd runs and
            # the spam check finds nothing listening (it says unavailable at once).
            env.update({"PAT_SPAMD_EMBEDDED": "false", "PAT_RSPAMD_EMBEDDED": "false"})
        if self.worker_processes is not None:
            env["PAT_WORKER_PROCESSES"] = str(self.worker_processes)
        return env

    def announce(self, what: str) -> None:
        print(f"[{what}] starting pat up (data {self.data_dir}, SMTP {self.smtp_port}, "
              f"API {self.http_port}, Temporal {self.temporal_port}, spam engine "
              f"{self.spam_engine}) ...", flush=True)

    def banner_spam_line(self) -> str:
        """What pat up's banner says of the spam check (empty if it printed none)."""
        with contextlib.suppress(OSError):
            for line in self.log.read_text(errors="replace").splitlines():
                if line.strip().startswith("Spam check"):
                    return line.strip().removeprefix("Spam check").strip()
        return ""

    def ensure_running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchError(f"pat up exited with status {self.proc.returncode}\n"
                             f"--- {self.log} ---\n{log_tail(self.log)}")


# --------------------------------------------------------------------------------------------
# the store, read directly


@dataclass(frozen=True)
class StatusCounts:
    stored: int
    processed: int
    failed: int

    @property
    def ended(self) -> int:
        return self.processed + self.failed


@dataclass(frozen=True)
class MessageTimes:
    """One message as the store recorded it: spooled (just before its 250) and last changed
    (for a message whose pipeline ended: when it was marked processed or failed)."""

    created_ns: int
    updated_ns: int
    status: str
    failure_reason: str | None


@contextlib.contextmanager
def read_store(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to Pat's SQLite store: in WAL mode it never blocks Pat's
    writers, and the benchmark cannot change what it measures."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def status_counts(path: Path, since_ns: int) -> StatusCounts:
    """Messages spooled at or after ``since_ns``, by status."""
    with read_store(path) as conn:
        rows = conn.execute("SELECT status, count(*) FROM messages WHERE created_ns >= ? "
                            "GROUP BY status", (since_ns,)).fetchall()
    by_status = dict(rows)
    return StatusCounts(stored=sum(by_status.values()), processed=by_status.get("processed", 0),
                        failed=by_status.get("failed", 0))


def message_times(path: Path, since_ns: int) -> list[MessageTimes]:
    with read_store(path) as conn:
        rows = conn.execute("SELECT created_ns, updated_ns, status, failure_reason FROM messages "
                            "WHERE created_ns >= ?", (since_ns,)).fetchall()
    return [MessageTimes(*row) for row in rows]


def raw_messages(path: Path, since_ns: int, limit: int) -> list[tuple[str, list[str], bytes]]:
    """(envelope sender, recipients, bytes) of up to ``limit`` messages spooled at or after
    ``since_ns``."""
    with read_store(path) as conn:
        rows = conn.execute(
            "SELECT m.mail_from, m.recipients, r.data FROM messages m JOIN message_raw r "
            "ON r.message_id = m.id WHERE m.created_ns >= ? ORDER BY m.created_ns LIMIT ?",
            (since_ns, limit)).fetchall()
    return [(sender, list(json.loads(recipients)), bytes(data))
            for sender, recipients, data in rows]


def wait_pipelines(pat: PatUnderTest, since_ns: int, expected: int, *, timeout: float,
                   stall: float, what: str) -> StatusCounts:
    """Poll the store once a second until ``expected`` messages spooled since ``since_ns``
    are processed or failed; raise after ``timeout`` seconds, or after ``stall`` seconds
    without a pipeline ending. Progress is printed every ten seconds."""
    started = last_change = last_print = time.monotonic()
    last = StatusCounts(0, 0, 0)
    while True:
        pat.ensure_running()
        try:
            now = status_counts(pat.store_file, since_ns)
        except sqlite3.Error:  # the store is busy or not created yet: ask again
            now = last
        moment = time.monotonic()
        if now != last:
            last, last_change = now, moment
        if now.ended >= expected:
            return now
        if moment - last_print >= 10:
            print(f"[{what}] {now.ended} of {expected} pipelines ended "
                  f"({now.failed} failed) after {moment - started:.0f} s", flush=True)
            last_print = moment
        if moment - started > timeout or moment - last_change > stall:
            raise BenchError(f"{what}: gave up after {moment - started:.0f} s: {now.processed} "
                             f"processed, {now.failed} failed of {expected} "
                             f"({now.stored} stored)\n--- {pat.log} ---\n{log_tail(pat.log)}")
        time.sleep(1)


# --------------------------------------------------------------------------------------------
# the spam engine that answers


@dataclass(frozen=True)
class SpamEndpoint:
    engine: str  # "spamassassin" or "rspamd"
    host: str
    port: int

    def __str__(self) -> str:
        name = "spamd" if self.engine == "spamassassin" else "rspamd"
        return f"{name} {self.host}:{self.port}"


def _spamd_pongs(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=2) as sock:
        sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
        return b"PONG" in sock.recv(128)
    return False


def _rspamd_pongs(port: int) -> bool:
    with contextlib.suppress(OSError, urllib.error.URLError):
        with urllib.request.urlopen(f"http://{HOST}:{port}/ping", timeout=2) as response:
            return bool(response.read().strip() == b"pong")
    return False


def answering_spam_engine(pat: PatUnderTest) -> SpamEndpoint | None:
    """The engine that answers on the ports given to pat up: rspamd first, as Pat asks the
    one PAT_SPAM_ENGINE names and code without that setting runs spamd only."""
    if _rspamd_pongs(pat.rspamd_port):
        return SpamEndpoint("rspamd", HOST, pat.rspamd_port)
    if _spamd_pongs(pat.spamd_port):
        return SpamEndpoint("spamassassin", HOST, pat.spamd_port)
    return None


# --------------------------------------------------------------------------------------------
# processes by name, and their resident memory

# The ``pat`` subcommand each of Pat's own processes runs, and its name in the tables.
PAT_SERVICES = {"up": "pat up", "gateway": "gateway", "worker": "worker", "api": "api"}


def _own_label(pid: int) -> str | None:
    cmd = process_cmdline(pid)
    if "server start-dev" in cmd:
        return "temporal dev server"
    for command, service in PAT_SERVICES.items():
        if f"pat {command}" in cmd:
            return service
    name = process_name(pid)
    if name.startswith("rspamd") or cmd.startswith("rspamd"):
        role = cmd.partition("rspamd:")[2].split("(")[0].replace("process", "").strip()
        return f"rspamd {role}".strip()
    if "spamd" in name or "spamd" in cmd:
        return "spamd child" if cmd.startswith("spamd child") else "spamd"
    if name == "mailpit":
        return "mailpit"
    return None


def label_processes(root: int) -> dict[int, str]:
    """A name for each process of the tree under ``root``: the service it is (``worker``,
    ``temporal dev server``, ``spamd child`` ...), or its parent's name and ``child`` for
    helpers such as a worker's subprocesses. Repeated names get ``#1``, ``#2`` in pid order."""
    tree = sorted(process_tree(root))
    parents: dict[int, int] = {}
    for pid in tree:
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[pid] = int(Path(f"/proc/{pid}/stat").read_text()
                               .rpartition(")")[2].split()[1])
    labels: dict[int, str] = {}

    def label(pid: int) -> str:
        if pid not in labels:
            parent = parents.get(pid)
            inherited = f"{label(parent)} child" if parent in parents else process_name(pid)
            labels[pid] = _own_label(pid) or inherited
        return labels[pid]

    for pid in tree:
        label(pid)
    counts: dict[str, int] = {}
    for name in labels.values():
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    numbered: dict[int, str] = {}
    for pid in tree:
        name = labels[pid]
        if counts[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            name = f"{name} #{seen[name]}"
        numbered[pid] = name
    return numbered


def is_judged(label: str) -> bool:
    """Whether the process is one of Pat's own (the 50 MB rule applies to those; Temporal's
    dev server and the spam engine are shown beside them)."""
    return label.split(" #")[0].removesuffix(" child") in PAT_SERVICES.values()


def rss_kib(pids: list[int]) -> dict[int, int]:
    """Resident memory (VmRSS) of each process still alive."""
    found = {pid: status_kib(pid, "VmRSS") for pid in pids}
    return {pid: kib for pid, kib in found.items() if kib}


def peak_kib(pids: list[int]) -> dict[int, int]:
    """Each process's peak resident memory so far (VmHWM)."""
    found = {pid: status_kib(pid, "VmHWM") for pid in pids}
    return {pid: kib for pid, kib in found.items() if kib}


def settled_rss(pids: list[int], *, window: float = 5, tolerance_kib: int = 2 * MIB,
                timeout: float = 60) -> tuple[dict[int, int], float]:
    """Each process's RSS once the sum has moved by less than ``tolerance_kib`` over
    ``window`` seconds (sampled twice a second), or after ``timeout`` seconds; and how long
    that took."""
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    while True:
        now = rss_kib(pids)
        moment = time.monotonic()
        samples = [(t, k) for t, k in samples if moment - t <= window]
        samples.append((moment, sum(now.values())))
        sums = [k for _, k in samples]
        steady = moment - samples[0][0] >= window - 0.6 and max(sums) - min(sums) < tolerance_kib
        if steady or moment - started > timeout:
            return now, moment - started
        time.sleep(0.5)


def mib(kib: int) -> str:
    return f"{kib / MIB:,.0f} MiB"

