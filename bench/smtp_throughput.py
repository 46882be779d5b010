"""SMTP throughput of a whole ``pat up``, and of MailDev on the same load.

Starts ``pat up`` in a temporary data directory on free loopback ports, then:

1. warm-up: a few messages from one session, and waits until they are processed, so that the
   Temporal client, the worker and the relay are connected before anything is timed;
2. throughput: postfix's ``smtp-source`` sends ``--messages`` messages of ``--size`` body bytes
   over ``--sessions`` concurrent SMTP sessions (each session reuses its connection);
3. latency: this script's own asyncio SMTP client sends ``--latency-messages`` more over the
   same number of sessions and times each message from the end of DATA (the ``.`` line) to
   the 250 reply;
4. waits until every accepted message is ``processed`` (GET /api/v3/messages?status=...),
   and reads the peak RSS of every process under ``pat up`` (Temporal included) from /proc.

Then the same load against MailDev (npm ``maildev``, installed on first use into
~/.cache/pat-bench/maildev) and the ratio of accepted msg/s. Everything runs on 127.0.0.1 and
is stopped at the end, also on Ctrl-C or an error. This is a benchmark, not a test: it prints
figures and exits 1 only if a message was lost or refused.

    .venv/bin/python bench/smtp_throughput.py --messages 5000 --sessions 20 --size 4096
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
SENDER = "bench@sender.example"
RECIPIENT = "inbox@pat.example"
SMTP_SOURCE = "/usr/sbin/smtp-source"
MAILDEV_DIR = Path.home() / ".cache" / "pat-bench" / "maildev"
MAILDEV_VERSION = "3"
REPO = Path(__file__).resolve().parent.parent


class BenchError(RuntimeError):
    """A failure that ends the run with a message instead of a traceback."""


# --------------------------------------------------------------------------------------------
# processes, ports and memory


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on loopback (all held open until every one is found,
    so none is handed out twice)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            held.append(sock)
        return [s.getsockname()[1] for s in held]
    finally:
        for sock in held:
            sock.close()


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.2)
    raise BenchError(f"{what} did not listen on {HOST}:{port} within {timeout:.0f}s")


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses itself.
    return int(stat.rpartition(")")[2].split()[1])


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _ppid(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User plus system CPU time each process has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            used[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def process_cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


class MemoryWatch:
    """Samples the summed VmRSS of a process tree twice a second (the tree is re-read each
    time), and keeps each process's own peak (VmHWM) as last seen."""

    def __init__(self, root: int, label: Callable[[int], str]) -> None:
        self._root = root
        self._label = label
        self.peak_sum_kib = 0
        self.hwm_kib: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemoryWatch:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def sample(self) -> None:
        total = 0
        for pid in process_tree(self._root):
            total += status_kib(pid, "VmRSS")
            hwm = status_kib(pid, "VmHWM")
            if hwm:
                self.hwm_kib[pid] = max(hwm, self.hwm_kib.get(pid, 0))
                self.names.setdefault(pid, self._label(pid))
        self.peak_sum_kib = max(self.peak_sum_kib, total)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    @property
    def hwm_sum_kib(self) -> int:
        return sum(self.hwm_kib.values())


def stop_tree(proc: subprocess.Popen[bytes], pids: list[int], grace: float = 30) -> None:
    """SIGINT to ``proc`` (it stops its own children), then SIGKILL to whatever of ``pids``
    (the tree as last seen) is still alive."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in pids:
        if pid != proc.pid and Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def log_tail(path: Path, lines: int = 25) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def http_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


# --------------------------------------------------------------------------------------------
# load: smtp-source and the latency client


def make_message(number: int, size: int) -> bytes:
    """A plain RFC 5322 message with ``size`` bytes of body in 78-byte lines, CRLF ended,
    with no line that needs dot-stuffing."""
    head = (f"From: Bench <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: latency probe {number}\r\n"
            f"Message-ID: <{number}.{time.time_ns()}@bench.localhost>\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    body = (line * (size // len(line) + 1))[:size]
    if not body.endswith(b"\r\n"):
        body = body[:-2] + b"\r\n"
    return head + body


@dataclass
class LoadResult:
    messages: int
    seconds: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def percentile(self, pct: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def run_smtp_source(port: int, messages: int, sessions: int, size: int,
                    timeout: float) -> LoadResult:
    """postfix's smtp-source: ``sessions`` connections in parallel, each sending messages one
    after another over the same connection (-d) until ``messages`` have been sent in all."""
    cmd = [SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size),
           "-M", "bench.localhost", "-f", SENDER, "-t", RECIPIENT, f"inet:{HOST}:{port}"]
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"smtp-source did not finish within {timeout:.0f}s") from exc
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"smtp-source failed (status {done.returncode}): "
                         f"{done.stderr.decode(errors='replace').strip()[-500:]}")
    return LoadResult(messages, elapsed)


class SMTPReplyError(RuntimeError):
    pass


async def _reply(reader: asyncio.StreamReader, expect: str) -> bytes:
    """Read one (possibly multi-line) reply; raise unless its code starts with ``expect``."""
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SMTPReplyError("connection closed by the server")
        lines.append(line)
        if line[3:4] != b"-":
            break
    if not line.startswith(expect.encode()):
        raise SMTPReplyError(b"".join(lines).decode(errors="replace").strip())
    return line


async def _session(port: int, todo: Iterator[int], size: int, latencies: list[float]) -> int:
    reader, writer = await asyncio.open_connection(HOST, port)
    sent = 0
    try:
        await _reply(reader, "220")
        writer.write(b"EHLO bench.localhost\r\n")
        await _reply(reader, "250")
        for number in todo:
            message = make_message(number, size)
            writer.write(f"MAIL FROM:<{SENDER}>\r\n".encode())
            await _reply(reader, "250")
            writer.write(f"RCPT TO:<{RECIPIENT}>\r\n".encode())
            await _reply(reader, "250")
            writer.write(b"DATA\r\n")
            await _reply(reader, "354")
            writer.write(message + b".\r\n")
            # write() hands the bytes to the kernel at once when its buffer has room (always,
            # for a few KB on loopback), so this is the moment the final dot is sent.
            end_of_data = time.perf_counter()
            await _reply(reader, "250")
            latencies.append(time.perf_counter() - end_of_data)
            sent += 1
        writer.write(b"QUIT\r\n")
        with contextlib.suppress(SMTPReplyError):
            await _reply(reader, "221")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return sent


async def _latency_load(port: int, messages: int, sessions: int, size: int,
                        first: int) -> LoadResult:
    todo = iter(range(first, first + messages))  # shared: each session takes the next number
    latencies: list[float] = []
    started = time.perf_counter()
    sent = await asyncio.gather(*(_session(port, todo, size, latencies)
                                  for _ in range(min(sessions, messages))))
    return LoadResult(sum(sent), time.perf_counter() - started, latencies)


def run_latency_client(port: int, messages: int, sessions: int, size: int, timeout: float,
                       first: int = 0) -> LoadResult:
    async def bounded() -> LoadResult:
        return await asyncio.wait_for(_latency_load(port, messages, sessions, size, first),
                                      timeout)

    try:
        return asyncio.run(bounded())
    except TimeoutError as exc:
        raise BenchError(f"the latency client did not finish within {timeout:.0f}s") from exc
    except (SMTPReplyError, OSError) as exc:
        raise BenchError(f"the latency client failed: {exc}") from exc


# --------------------------------------------------------------------------------------------
# the two servers


@dataclass
class ServerFigures:
    name: str
    throughput: LoadResult | None = None
    latency: LoadResult | None = None
    expected: int = 0
    stored: int = 0
    processed: int | None = None
    failed: int | None = None
    all_done_s: float | None = None
    after_last_250_s: float | None = None
    peak_rss_sum_kib: int = 0
    hwm_sum_kib: int = 0
    hwm_by_process: list[tuple[str, int]] = field(default_factory=list)
    load_cpu: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        if self.stored != self.expected:
            return False
        return self.processed is None or self.processed == self.expected


class Pat:
    def __init__(self, workdir: Path) -> None:
        self.data_dir = workdir / "pat-data"
        self.log = workdir / "pat-up.log"
        self.smtp_port, self.http_port, self.temporal_port, self.ui_port = free_ports(4)
        self.proc: subprocess.Popen[bytes] | None = None
        self.tree: list[int] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "PAT_DATA_DIR": str(self.data_dir),
            "PAT_SMTP_PORT": str(self.smtp_port), "PAT_SMTP_HOST": HOST,
            "PAT_HTTP_PORT": str(self.http_port), "PAT_HTTP_HOST": HOST,
            "PAT_TEMPORAL_ADDRESS": f"{HOST}:{self.temporal_port}",
            "PAT_TEMPORAL_UI_PORT": str(self.ui_port),
            "PAT_TEMPORAL_UI_URL": f"http://{HOST}:{self.ui_port}",
            "PAT_LOG_LEVEL": env.get("PAT_LOG_LEVEL", "WARNING"),
        })
        return env

    def start(self, timeout: float = 180) -> None:
        self.data_dir.mkdir(parents=True)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pat", "up"], cwd=self.data_dir.parent, env=self.env(),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        try:
            wait_for_port(self.smtp_port, timeout, self.proc, "pat up (SMTP)")
            wait_for_port(self.http_port, timeout, self.proc, "pat up (API)")
        except BenchError as exc:
            raise BenchError(f"{exc}\n--- {self.log} ---\n{log_tail(self.log)}") from exc
        self.tree = process_tree(self.proc.pid)

    def counts(self) -> tuple[int, int, int]:
        """(all messages, processed, failed) from the v3 API."""
        base = f"http://{HOST}:{self.http_port}/api/v3/messages?limit=1"
        return (http_json(base)["total"], http_json(f"{base}&status=processed")["total"],
                http_json(f"{base}&status=failed")["total"])

    def wait_processed(self, expected: int, timeout: float, stall: float) -> tuple[
            bool, tuple[int, int, int]]:
        """Poll until ``expected`` messages are processed or failed; give up after
        ``timeout`` seconds, or after ``stall`` seconds without progress."""
        deadline = time.monotonic() + timeout
        last, last_change = (-1, -1, -1), time.monotonic()
        while True:
            try:
                now = self.counts()
            except (OSError, urllib.error.URLError, KeyError, ValueError):
                now = last
            if now != last:
                last, last_change = now, time.monotonic()
            if now[1] + now[2] >= expected:
                return True, now
            if time.monotonic() > deadline or time.monotonic() - last_change > stall:
                return False, now
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BenchError(f"pat up exited with status {self.proc.returncode}\n"
                                 f"--- {self.log} ---\n{log_tail(self.log)}")
            time.sleep(0.25)

    def stop(self) -> None:
        if self.proc is not None:
            self.tree = sorted(set(self.tree) | set(process_tree(self.proc.pid)))
            stop_tree(self.proc, self.tree)


def timed_smtp_source(args: argparse.Namespace, port: int, root: int,
                      label: Callable[[int], str], figures: ServerFigures) -> None:
    """The throughput phase, with the CPU seconds each server process spent during it."""
    tree = process_tree(root)
    before = cpu_seconds(tree)
    figures.throughput = run_smtp_source(port, args.messages, args.sessions, args.size,
                                         args.load_timeout)
    after = cpu_seconds(tree)
    figures.load_cpu = sorted(((label(pid), after[pid] - before[pid]) for pid in after
                               if pid in before), key=lambda x: -x[1])


def _label_pat(pid: int) -> str:
    cmd = process_cmdline(pid)
    for name in ("server start-dev", "pat up", "pat worker", "pat gateway", "pat api"):
        if name in cmd:
            return "temporal dev server" if name.startswith("server") else name
    return process_name(pid)


def run_pat(args: argparse.Namespace, workdir: Path) -> ServerFigures:
    figures = ServerFigures("Pat")
    pat = Pat(workdir)
    print(f"[pat] starting pat up (data {pat.data_dir}, SMTP {pat.smtp_port}, "
          f"API {pat.http_port}, Temporal {pat.temporal_port}) ...", flush=True)
    try:
        pat.start()
        assert pat.proc is not None
        with MemoryWatch(pat.proc.pid, _label_pat) as memory:
            warm = run_latency_client(pat.smtp_port, args.warmup, 1, args.size, 120,
                                      first=10**9)
            figures.expected = warm.messages
            ok, counts = pat.wait_processed(figures.expected, 180, 120)
            if not ok:
                raise BenchError(f"warm-up messages were not processed: {counts}\n"
                                 f"--- {pat.log} ---\n{log_tail(pat.log)}")
            print(f"[pat] warm: {warm.messages} messages processed; sending "
                  f"{args.messages} x {args.size} B over {args.sessions} sessions "
                  "with smtp-source ...", flush=True)
            load_started = time.perf_counter()
            timed_smtp_source(args, pat.smtp_port, pat.proc.pid, _label_pat, figures)
            figures.expected += args.messages
            print(f"[pat] {figures.throughput.rate:,.0f} msg/s accepted; latency client: "
                  f"{args.latency_messages} over {args.sessions} sessions ...", flush=True)
            if args.latency_messages:
                figures.latency = run_latency_client(pat.smtp_port, args.latency_messages,
                                                     args.sessions, args.size,
                                                     args.load_timeout)
                figures.expected += figures.latency.messages
            last_250 = time.perf_counter()
            print(f"[pat] waiting for all {figures.expected} workflows ...", flush=True)
            ok, counts = pat.wait_processed(figures.expected, args.drain_timeout, args.stall)
            done = time.perf_counter()
            figures.stored, figures.processed, figures.failed = counts
            if ok:
                figures.all_done_s = done - load_started
                figures.after_last_250_s = done - last_250
            else:
                figures.notes.append(f"gave up waiting after {done - last_250:.0f}s: "
                                     f"{counts[1]} processed, {counts[2]} failed of "
                                     f"{figures.expected}")
        figures.peak_rss_sum_kib = memory.peak_sum_kib
        figures.hwm_sum_kib = memory.hwm_sum_kib
        figures.hwm_by_process = sorted(((memory.names[p], k) for p, k in
                                         memory.hwm_kib.items()), key=lambda x: -x[1])
    finally:
        pat.stop()
    return figures


def _label_maildev(pid: int) -> str:
    return "maildev " + process_name(pid)


def ensure_maildev() -> Path:
    """MailDev's launcher, installed with npm into a cache directory on first use."""
    launcher = MAILDEV_DIR / "node_modules" / ".bin" / "maildev"
    if launcher.exists():
        return launcher
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        raise BenchError("MailDev needs node and npm (Debian: apt-get install nodejs npm); "
                         "or pass --skip-maildev")
    print(f"[maildev] installing maildev@{MAILDEV_VERSION} into {MAILDEV_DIR} ...", flush=True)
    MAILDEV_DIR.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--prefix", str(MAILDEV_DIR), "--no-audit",
                           "--no-fund", f"maildev@{MAILDEV_VERSION}"],
                          capture_output=True, timeout=600, check=False)
    if done.returncode != 0 or not launcher.exists():
        raise BenchError("npm could not install maildev: "
                         f"{done.stderr.decode(errors='replace').strip()[-800:]}")
    return launcher


def run_maildev(args: argparse.Namespace, workdir: Path) -> ServerFigures:
    figures = ServerFigures("MailDev")
    launcher = ensure_maildev()
    smtp_port, web_port = free_ports(2)
    mail_dir = workdir / "maildev-mail"
    mail_dir.mkdir()
    log = workdir / "maildev.log"
    node = shutil.which("node") or "node"
    print(f"[maildev] starting MailDev (SMTP {smtp_port}, web {web_port}, "
          f"mail directory {mail_dir}) ...", flush=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [node, str(launcher), "--smtp", str(smtp_port), "--web", str(web_port),
             "--ip", HOST, "--web-ip", HOST, "--mail-directory", str(mail_dir), "--silent"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    tree = [proc.pid]
    try:
        try:
            wait_for_port(smtp_port, 60, proc, "MailDev (SMTP)")
            wait_for_port(web_port, 60, proc, "MailDev (web)")
        except BenchError as exc:
            raise BenchError(f"{exc}\n--- {log} ---\n{log_tail(log)}") from exc
        tree = process_tree(proc.pid)
        with MemoryWatch(proc.pid, _label_maildev) as memory:
            warm = run_latency_client(smtp_port, args.warmup, 1, args.size, 120, first=10**9)
            figures.expected = warm.messages
            timed_smtp_source(args, smtp_port, proc.pid, _label_maildev, figures)
            figures.expected += args.messages
            print(f"[maildev] {figures.throughput.rate:,.0f} msg/s accepted", flush=True)
            if args.latency_messages:
                figures.latency = run_latency_client(smtp_port, args.latency_messages,
                                                     args.sessions, args.size,
                                                     args.load_timeout)
                figures.expected += figures.latency.messages
            summary = f"http://{HOST}:{web_port}/api/email/summary?limit=1"
            deadline = time.monotonic() + 60
            while True:  # MailDev stores after it answers 250; give it a moment to catch up
                figures.stored = int(http_json(summary, timeout=30)["total"])
                if figures.stored >= figures.expected or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        figures.peak_rss_sum_kib = memory.peak_sum_kib
        figures.hwm_sum_kib = memory.hwm_sum_kib
        figures.hwm_by_process = sorted(((memory.names[p], k) for p, k in
                                         memory.hwm_kib.items()), key=lambda x: -x[1])
    finally:
        stop_tree(proc, sorted(set(tree) | set(process_tree(proc.pid))), grace=10)
    return figures


# --------------------------------------------------------------------------------------------
# report


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def report(args: argparse.Namespace, results: list[ServerFigures]) -> None:
    print()
    print(f"=== SMTP load: {args.messages} messages x {args.size} B body, "
          f"{args.sessions} sessions (smtp-source -d); latency client: "
          f"{args.latency_messages} messages, {args.sessions} sessions; "
          f"{os.cpu_count()} CPUs ===")
    overrides = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("PAT_"))
    if overrides:
        print("settings from the environment: " + " ".join(overrides))
    for fig in results:
        print(f"\n{fig.name}")
        if fig.throughput:
            print(f"  accepted              {fig.throughput.rate:9,.0f} msg/s   "
                  f"({fig.throughput.messages} in {fig.throughput.seconds:.2f} s)")
        if fig.throughput and fig.load_cpu:
            wall = fig.throughput.seconds
            print("  CPU while accepting   " + ", ".join(
                f"{name} {secs:.1f} s ({secs / wall:.0%})" for name, secs in fig.load_cpu
                if secs >= 0.05))
        if fig.latency:
            print(f"  end of DATA -> 250    p50 {_ms(fig.latency.percentile(50))}, "
                  f"p99 {_ms(fig.latency.percentile(99))}, "
                  f"max {_ms(max(fig.latency.latencies))}   "
                  f"(latency client: {fig.latency.rate:,.0f} msg/s)")
        if fig.all_done_s is not None and fig.after_last_250_s is not None:
            print(f"  all workflows done    {fig.all_done_s:9.1f} s after the load began, "
                  f"{fig.after_last_250_s:.1f} s after the last 250 "
                  f"({(fig.expected - args.warmup) / fig.all_done_s:,.0f} workflows/s)")
        processed = ("" if fig.processed is None
                     else f", {fig.processed} processed, {fig.failed} failed")
        verdict = "none lost" if fig.complete else "INCOMPLETE"
        print(f"  stored                {fig.stored} of {fig.expected} sent "
              f"(incl. {args.warmup} warm-up){processed}: {verdict}")
        print(f"  peak RSS              {_mib(fig.peak_rss_sum_kib)} (peak of the summed RSS, "
              f"sampled), {_mib(fig.hwm_sum_kib)} (sum of each process's VmHWM)")
        for name, kib in fig.hwm_by_process:
            print(f"      {name:22} {_mib(kib):>9}")
        for note in fig.notes:
            print(f"  note: {note}")
    by_name = {fig.name: fig for fig in results}
    pat, maildev = by_name.get("Pat"), by_name.get("MailDev")
    if pat and maildev and pat.throughput and maildev.throughput:
        print(f"\nPat / MailDev accepted msg/s: "
              f"{pat.throughput.rate / maildev.throughput.rate:.2f}x")
    if pat and pat.throughput:
        verdict = "met" if pat.throughput.rate >= 1000 and pat.complete else "NOT met"
        print(f"target >= 1,000 msg/s accepted, every message processed: {verdict}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000,
                        help="messages smtp-source sends (the throughput figure)")
    parser.add_argument("--sessions", type=int, default=20, help="concurrent SMTP sessions")
    parser.add_argument("--size", type=int, default=4096,
                        help="body bytes per message (about 130 bytes of headers come on top)")
    parser.add_argument("--latency-messages", type=int, default=1000,
                        help="messages the latency client sends after smtp-source (0: none)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="messages sent and processed before anything is timed")
    parser.add_argument("--skip-maildev", action="store_true", help="benchmark Pat alone")
    parser.add_argument("--skip-pat", action="store_true", help="benchmark MailDev alone")
    parser.add_argument("--load-timeout", type=float, default=600,
                        help="seconds one load phase may take")
    parser.add_argument("--drain-timeout", type=float, default=1800,
                        help="seconds to wait for every workflow to complete")
    parser.add_argument("--stall", type=float, default=120,
                        help="give up waiting when no workflow completes for this many seconds")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (data, logs) and print its path")
    args = parser.parse_args(argv)
    for name in ("messages", "sessions", "size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.access(SMTP_SOURCE, os.X_OK):
        print(f"{SMTP_SOURCE} is missing: run `scripts/system-deps.sh bench` (Debian package "
              "postfix)", file=sys.stderr)
        return 2
    # SIGTERM ends the run as Ctrl-C does, so the finally blocks stop what was started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="pat-bench-"))
    results: list[ServerFigures] = []
    try:
        if not args.skip_pat:
            results.append(run_pat(args, workdir))
        if not args.skip_maildev:
            results.append(run_maildev(args, workdir))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(args, results)
    return 0 if all(fig.complete for fig in results) else 1


if __name__ == "__main__":
    sys.exit(main())
