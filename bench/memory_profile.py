"""Resident memory of each of Pat's processes, idle and after a burst over a large store,
and Mailpit's on the same load.

Starts ``pat up`` on free loopback ports in a temporary data directory, then:

1. idle: a warm-up of ``--warmup`` messages, processed; the RSS of every process (pat up, the
   gateway, the worker(s), the API, the Temporal dev server, the spam engine) once it is
   steady;
2. a large store: ``--templates`` varied messages go through SMTP and their pipelines; their
   rows (message, raw bytes, outbox, and any other row keyed by the message) are then copied
   in the SQLite store, with new ids, until ``--stored`` messages are stored, all processed
   (``--stored`` pipelines would take hours on this machine);
3. load: smtp-source sends a burst of ``--burst`` messages, waited for until processed; then
   a client reads the APIs (MailHog v1 and v2 lists and searches, Pat's v3 lists and
   filters, message details, raw downloads) ``--api-rounds`` times, each request timed;
4. loaded: the RSS of every process once it is steady again, and each one's peak (VmHWM).

Each of Pat's own processes passes if its loaded RSS is within ``--limit-mb`` of its idle
RSS (issue 8). The same run on Mailpit (built from the Go module proxy on first use): the
same templates through SMTP to ``--stored``, the same burst, the equivalent requests.

    .venv/bin/python -m bench.memory_profile --stored 100000 --burst 2000
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from bench._harness import (
    MIB,
    PatUnderTest,
    add_pat_arguments,
    check_pat_arguments,
    is_judged,
    label_processes,
    machine_load,
    mib,
    peak_kib,
    settled_rss,
    status_counts,
    wait_pipelines,
)
from bench.smtp_throughput import (
    HOST,
    SMTP_SOURCE,
    BenchError,
    free_ports,
    http_json,
    log_tail,
    process_tree,
    run_latency_client,
    run_smtp_source,
    stop_tree,
    wait_for_port,
)
from pat.domain import new_message_id

MAILPIT_VERSION = "1.27.11"
MAILPIT_DIR = Path.home() / ".cache" / "pat-bench" / f"mailpit-{MAILPIT_VERSION}"
COPY = "COPYNUMBER"  # in each template's Message-ID, replaced by the copy's number
SEARCHED = 7  # the template whose sender, recipient, subject and body word are searched for
MIN_TEMPLATES = SEARCHED + 1
WORDS = ("invoice", "receipt", "password", "welcome", "newsletter", "shipping", "refund",
         "report", "reminder", "verification", "account", "delivery", "payment", "survey")


# --------------------------------------------------------------------------------------------
# the messages


@dataclass(frozen=True)
class Template:
    number: int
    sender: str
    recipient: str
    data: bytes

    def copy(self, number: int) -> bytes:
        return self.data.replace(COPY.encode(), str(number).encode(), 1)


def search_token(number: int) -> str:
    """A word in the body of template ``number`` only (so a search for it finds 1 message in
    ``--templates``)."""
    return f"ref{number:05d}x"


def _shop(number: int) -> str:
    return f"shop{number % 50}@sender.example"


def _user(number: int) -> str:
    return f"user{number % 100}@pat.example"


def _subject(number: int) -> str:
    return f"Order {number}: your {WORDS[number % len(WORDS)]}"


def make_template(number: int, size: int) -> Template:
    """A message with about ``size`` bytes of text; every other one with an HTML alternative
    too. Senders, recipients and subjects repeat in cycles, so searches find many."""
    shop, user = number % 50, number % 100
    sender, recipient = _shop(number), _user(number)
    message = EmailMessage(policy=SMTP)
    message["From"] = f"Shop {shop} <{sender}>"
    message["To"] = f"User {user} <{recipient}>"
    message["Subject"] = _subject(number)
    message["Date"] = "Thu, 01 Jan 2026 00:00:00 +0000"
    message["Message-ID"] = f"<t{number}.{COPY}@bench.localhost>"
    words = " ".join(WORDS[(number * 7 + i) % len(WORDS)] for i in range(size // 8))
    body = textwrap.fill(words, 76)[:size]
    message.set_content(f"Hello user {user},\n\nreference {search_token(number)}\n\n{body}\n")
    if number % 2:
        message.add_alternative(
            f"<html><body><p>Hello user {user},</p><p>reference {search_token(number)}</p>"
            f"<p>{body[:size // 2]}</p></body></html>\n", subtype="html")
    return Template(number, sender, recipient, message.as_bytes())


def send_copies(port: int, templates: list[Template], count: int, sessions: int) -> float:
    """Send ``count`` messages, copy ``i`` of template ``i % len(templates)``, over
    ``sessions`` SMTP sessions in threads; the seconds it took."""
    todo = iter(range(count))
    lock = threading.Lock()

    def session() -> None:
        with smtplib.SMTP(HOST, port, local_hostname="bench.localhost", timeout=120) as smtp:
            while True:
                with lock:
                    number = next(todo, None)
                if number is None:
                    return
                template = templates[number % len(templates)]
                smtp.sendmail(template.sender, [template.recipient], template.copy(number))

    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(sessions) as pool:
            for done in [pool.submit(session) for _ in range(min(sessions, count))]:
                done.result()
    except (smtplib.SMTPException, OSError) as exc:
        raise BenchError(f"sending the templates failed: {exc}") from exc
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# memory


@dataclass
class ProcessMemory:
    """RSS (KiB) of each process at each moment, by its name: a role such as ``worker`` or
    ``spamd child #1``, so that a process replaced in between (spamd recycles its children)
    is compared with the one it replaced."""

    start: dict[str, int] = field(default_factory=dict)
    idle: dict[str, int] = field(default_factory=dict)
    loaded: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    settle_seconds: list[float] = field(default_factory=list)

    @property
    def names(self) -> set[str]:
        return {*self.start, *self.idle, *self.loaded}


def snapshot(root: int, memory: ProcessMemory, moment: str, timeout: float) -> None:
    names = label_processes(root)
    found, waited = settled_rss(list(names), timeout=timeout)
    setattr(memory, moment, {names[pid]: kib for pid, kib in found.items()})
    memory.settle_seconds.append(waited)
    memory.peak = {names[pid]: kib for pid, kib in peak_kib(list(names)).items()}


# --------------------------------------------------------------------------------------------
# the API client


@dataclass
class Request:
    what: str
    path: str
    seconds: list[float] = field(default_factory=list)
    outcome: str = ""


def timed_get(base: str, request: Request, timeout: float) -> bytes:
    started = time.perf_counter()
    body = b""
    try:
        with urllib.request.urlopen(base + request.path, timeout=timeout) as response:
            body = response.read()
            request.outcome = f"{response.status}, {len(body):,} B"
    except urllib.error.HTTPError as exc:
        request.outcome = f"HTTP {exc.code}"
    except (TimeoutError, urllib.error.URLError) as exc:
        request.outcome = f"failed: {exc}"
    request.seconds.append(time.perf_counter() - started)
    return body


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def pat_requests(base: str, stored: int, timeout: float) -> list[Request]:
    """What a client of each of Pat's APIs asks, with ids of new and of old messages."""
    newest = http_json(f"{base}/api/v3/messages?limit=3", timeout=timeout)["items"]
    older = http_json(f"{base}/api/v3/messages?limit=2&offset={stored // 2}",
                      timeout=timeout)["items"]
    ids = [m["id"] for m in newest + older]
    middle, last = stored // 2, max(0, stored - 50)
    requests = [
        Request("v1 list (MailHog: newest 1,000)", "/api/v1/messages"),
        Request("v2 list, newest 50", "/api/v2/messages?start=0&limit=50"),
        Request(f"v2 list, 50 from {middle:,}", f"/api/v2/messages?start={middle}&limit=50"),
        Request("v2 list, last 50", f"/api/v2/messages?start={last}&limit=50"),
        Request("v2 search containing a body word",
                f"/api/v2/search?kind=containing&query={search_token(SEARCHED)}"),
        Request("v2 search from", f"/api/v2/search?kind=from&query={_q(_shop(SEARCHED))}"),
        Request("v2 search to", f"/api/v2/search?kind=to&query={_q(_user(SEARCHED))}"),
        Request("v3 list, newest 50", "/api/v3/messages?limit=50"),
        Request(f"v3 list, 50 from {middle:,}", f"/api/v3/messages?limit=50&offset={middle}"),
        Request("v3 filter from", f"/api/v3/messages?from={_q(_shop(SEARCHED))}&limit=50"),
        Request("v3 filter to", f"/api/v3/messages?to={_q(_user(SEARCHED))}&limit=50"),
        Request("v3 filter subject",
                f"/api/v3/messages?subject={_q(_subject(SEARCHED))}&limit=50"),
    ]
    for number, message_id in enumerate(ids):
        requests += [Request(f"v1 message #{number}", f"/api/v1/messages/{_q(message_id)}"),
                     Request(f"v1 download #{number}",
                             f"/api/v1/messages/{_q(message_id)}/download"),
                     Request(f"v3 message #{number}", f"/api/v3/messages/{_q(message_id)}"),
                     Request(f"v3 raw #{number}", f"/api/v3/messages/{_q(message_id)}/raw")]
    return requests


def mailpit_requests(base: str, stored: int, timeout: float) -> list[Request]:
    """Mailpit's equivalents of ``pat_requests``."""
    newest = http_json(f"{base}/api/v1/messages?limit=3", timeout=timeout)["messages"]
    older = http_json(f"{base}/api/v1/messages?limit=2&start={stored // 2}",
                      timeout=timeout)["messages"]
    ids = [m["ID"] for m in newest + older]
    middle, last = stored // 2, max(0, stored - 50)
    requests = [
        Request("list, newest 1,000", "/api/v1/messages?limit=1000"),
        Request("list, newest 50", "/api/v1/messages?limit=50"),
        Request(f"list, 50 from {middle:,}", f"/api/v1/messages?start={middle}&limit=50"),
        Request("list, last 50", f"/api/v1/messages?start={last}&limit=50"),
        Request("search a body word", f"/api/v1/search?query={search_token(SEARCHED)}"),
        Request("search from", "/api/v1/search?query=" + _q(f"from:{_shop(SEARCHED)}")),
        Request("search to", "/api/v1/search?query=" + _q(f"to:{_user(SEARCHED)}")),
        Request("search subject",
                "/api/v1/search?query=" + _q(f'subject:"{_subject(SEARCHED)}"')),
    ]
    for number, message_id in enumerate(ids):
        requests += [Request(f"message #{number}", f"/api/v1/message/{_q(message_id)}"),
                     Request(f"raw #{number}", f"/api/v1/message/{_q(message_id)}/raw")]
    return requests


def run_requests(base: str, requests: list[Request], rounds: int, timeout: float) -> None:
    for _ in range(rounds):
        for request in requests:
            timed_get(base, request, timeout)


# --------------------------------------------------------------------------------------------
# Pat


@dataclass
class ServerRun:
    name: str
    memory: ProcessMemory = field(default_factory=ProcessMemory)
    requests: list[Request] = field(default_factory=list)
    seed_seconds: float = 0
    burst_accepted: float = 0
    burst_seconds: float = 0
    notes: list[str] = field(default_factory=list)


def _row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "AND name != 'alembic_version'")]
    return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


@dataclass(frozen=True)
class CopyPlan:
    """How to copy one table's rows of a message: the column that names the message, and
    the others (an INTEGER PRIMARY KEY is left to SQLite to number)."""

    table: str
    key: str
    columns: list[str]

    def statement(self, fresh: list[str]) -> str:
        copied = [c for c in self.columns if c not in fresh]
        names = ", ".join(f'"{c}"' for c in [self.key, *fresh, *copied])
        params = ", ".join("?" for _ in [self.key, *fresh])
        sources = "".join(f', "{c}"' for c in copied)
        return (f'INSERT INTO "{self.table}" ({names}) SELECT {params}{sources} '
                f'FROM "{self.table}" WHERE "{self.key}" = ?')


def _copy_plans(conn: sqlite3.Connection, tables: list[str]) -> tuple[list[CopyPlan], list[str]]:
    """Plans for the tables keyed by a message (``messages`` by ``id``, the others by
    ``message_id``), messages first; and the tables that are not."""
    plans, unkeyed = [], []
    for table in tables:
        info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        names = [row[1] for row in info]
        key = "id" if table == "messages" else "message_id"
        if key not in names:
            unkeyed.append(table)
            continue
        numbered = {row[1] for row in info if row[5] == 1 and row[2].upper() == "INTEGER"}
        plans.append(CopyPlan(table, key, [n for n in names if n != key and n not in numbered]))
    plans.sort(key=lambda plan: plan.table != "messages")
    return plans, unkeyed


def copy_messages(store: Path, template_ids: list[str], copies: int,
                  grown: dict[str, int]) -> list[str]:
    """Copy the templates' rows until ``copies`` more messages are stored, newest last, in
    transactions of 2,000 (Pat's own writers wait at most that long). ``grown`` is how many
    rows each table gained while the templates went through their pipelines; the notes
    returned say which of them the copies do not fill."""
    conn = sqlite3.connect(store, timeout=60)
    try:
        before = _row_counts(conn)
        plans, unkeyed = _copy_plans(conn, [t for t, n in grown.items() if n])
        base_ns = time.time_ns()
        fresh_message_ids = [new_message_id("pat.localhost") for _ in range(copies)]
        for start in range(0, copies, 2000):
            batch = range(start, min(copies, start + 2000))
            with conn:
                for plan in plans:
                    if plan.table == "messages":
                        stamp = [base_ns + 1000 * i for i in batch]
                        conn.executemany(plan.statement(["created_ns", "updated_ns"]), [
                            (fresh_message_ids[i], stamp[n], stamp[n],
                             template_ids[i % len(template_ids)])
                            for n, i in enumerate(batch)])
                    else:
                        conn.executemany(plan.statement([]), [
                            (fresh_message_ids[i], template_ids[i % len(template_ids)])
                            for i in batch])
        after = _row_counts(conn)
    except sqlite3.Error as exc:
        raise BenchError(f"copying the templates' rows in {store} failed: {exc}") from exc
    finally:
        conn.close()
    notes = []
    for table, rows in grown.items():
        expected = rows * copies // len(template_ids)
        if rows and after.get(table, 0) - before.get(table, 0) < 0.9 * expected:
            how = "no message id column" if table in unkeyed else "copied rows fell short"
            notes.append(f"table {table} gained {rows} rows for {len(template_ids)} templates "
                         f"but {after.get(table, 0) - before.get(table, 0)} for {copies} "
                         f"copies ({how}): what reads it sees the templates only")
    return notes


def seed_pat(args: argparse.Namespace, pat: PatUnderTest, run: ServerRun,
             templates: list[Template]) -> None:
    with sqlite3.connect(f"file:{pat.store_file}?mode=ro", uri=True, timeout=30) as conn:
        before = _row_counts(conn)
    seed_from = time.time_ns()
    started = time.perf_counter()
    send_copies(pat.smtp_port, templates, len(templates), args.sessions)
    wait_pipelines(pat, seed_from, len(templates), timeout=args.drain_timeout,
                   stall=args.stall, what="templates")
    with sqlite3.connect(f"file:{pat.store_file}?mode=ro", uri=True, timeout=30) as conn:
        grown = {t: n - before.get(t, 0) for t, n in _row_counts(conn).items()}
        template_ids = [r[0] for r in conn.execute(
            "SELECT id FROM messages WHERE created_ns >= ? ORDER BY created_ns", (seed_from,))]
    copies = args.stored - len(template_ids) - args.warmup
    print(f"[pat] {len(template_ids)} templates processed; copying their rows "
          f"{copies:,} times ...", flush=True)
    run.notes += copy_messages(pat.store_file, template_ids, copies, grown)
    run.seed_seconds = time.perf_counter() - started
    stored = status_counts(pat.store_file, 0)
    if stored.stored != args.stored:
        run.notes.append(f"{stored.stored:,} messages stored, {args.stored:,} were meant")


def profile_pat(args: argparse.Namespace, workdir: Path, templates: list[Template]) -> ServerRun:
    run = ServerRun("Pat")
    pat = PatUnderTest(workdir, args.spam_engine, args.worker_processes)
    pat.announce("pat")
    try:
        pat.start()
        assert pat.proc is not None
        root = pat.proc.pid
        snapshot(root, run.memory, "start", 5)
        warm_from = time.time_ns()
        run_latency_client(pat.smtp_port, args.warmup, 1, args.size, 120, first=10**9)
        wait_pipelines(pat, warm_from, args.warmup, timeout=300, stall=120, what="warm-up")
        snapshot(root, run.memory, "idle", args.settle_timeout)
        print(f"[pat] idle: {mib(sum(run.memory.idle.values()))} in all; seeding "
              f"{args.stored:,} messages ...", flush=True)
        seed_pat(args, pat, run, templates)
        print(f"[pat] {args.stored:,} stored in {run.seed_seconds:.0f} s; burst of "
              f"{args.burst:,} with smtp-source ...", flush=True)
        burst_from = time.time_ns()
        burst = run_smtp_source(pat.smtp_port, args.burst, args.sessions, args.size, 600)
        run.burst_accepted = burst.rate
        started = time.perf_counter()
        wait_pipelines(pat, burst_from, args.burst, timeout=args.drain_timeout,
                       stall=args.stall, what="burst")
        run.burst_seconds = time.perf_counter() - started
        base = f"http://{HOST}:{pat.http_port}"
        print(f"[pat] burst processed in {run.burst_seconds:.0f} s after smtp-source; "
              f"reading the APIs ({args.api_rounds} rounds) ...", flush=True)
        run.requests = pat_requests(base, args.stored + args.burst, args.request_timeout)
        run_requests(base, run.requests, args.api_rounds, args.request_timeout)
        snapshot(root, run.memory, "loaded", args.settle_timeout)
        pat.ensure_running()
    finally:
        pat.stop()
    return run


# --------------------------------------------------------------------------------------------
# Mailpit


class MailpitUnavailable(RuntimeError):
    """Mailpit cannot be built here; the run goes on without it."""


def ensure_mailpit() -> Path:
    """Mailpit's binary, built with ``go install`` from the Go module proxy on first use."""
    binary = MAILPIT_DIR / "mailpit"
    if binary.exists():
        return binary
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(go, os.X_OK):
        raise MailpitUnavailable("Go is not installed (https://go.dev/dl, or Debian's golang)")
    print(f"[mailpit] building mailpit v{MAILPIT_VERSION} into {MAILPIT_DIR} "
          "(a few minutes, once) ...", flush=True)
    MAILPIT_DIR.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run([go, "install", f"github.com/axllent/mailpit@v{MAILPIT_VERSION}"],
                              env={**os.environ, "GOBIN": str(MAILPIT_DIR)},
                              capture_output=True, timeout=1800, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MailpitUnavailable("go install did not finish within 30 minutes") from exc
    if done.returncode != 0 or not binary.exists():
        raise MailpitUnavailable("go install failed: "
                                 f"{done.stderr.decode(errors='replace').strip()[-600:]}")
    return binary


def wait_mailpit_stored(base: str, expected: int, timeout: float) -> None:
    """Mailpit stores after it answers 250: wait until it lists ``expected`` messages."""
    deadline = time.monotonic() + timeout
    while True:
        total = int(http_json(f"{base}/api/v1/messages?limit=1", timeout=60)["total"])
        if total >= expected:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"Mailpit lists {total} of {expected} messages after "
                             f"{timeout:.0f}s")
        time.sleep(0.5)


def profile_mailpit(args: argparse.Namespace, workdir: Path,
                    templates: list[Template]) -> ServerRun:
    run = ServerRun("Mailpit")
    binary = ensure_mailpit()
    smtp_port, http_port = free_ports(2)
    log = workdir / "mailpit.log"
    print(f"[mailpit] starting Mailpit {MAILPIT_VERSION} (SMTP {smtp_port}, web {http_port}, "
          f"database {workdir / 'mailpit.db'}) ...", flush=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(binary), "--smtp", f"{HOST}:{smtp_port}", "--listen", f"{HOST}:{http_port}",
             "--database", str(workdir / "mailpit.db"), "--max", "0",
             "--disable-version-check", "--smtp-disable-rdns", "--quiet"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    base = f"http://{HOST}:{http_port}"
    try:
        try:
            wait_for_port(smtp_port, 60, proc, "Mailpit (SMTP)")
            wait_for_port(http_port, 60, proc, "Mailpit (web)")
        except BenchError as exc:
            raise BenchError(f"{exc}\n--- {log} ---\n{log_tail(log)}") from exc
        snapshot(proc.pid, run.memory, "start", 5)
        run_latency_client(smtp_port, args.warmup, 1, args.size, 120, first=10**9)
        wait_mailpit_stored(base, args.warmup, 60)
        snapshot(proc.pid, run.memory, "idle", args.settle_timeout)
        print(f"[mailpit] idle: {mib(sum(run.memory.idle.values()))}; sending "
              f"{args.stored - args.warmup:,} template copies over SMTP ...", flush=True)
        run.seed_seconds = send_copies(smtp_port, templates, args.stored - args.warmup,
                                       args.sessions)
        wait_mailpit_stored(base, args.stored, 600)
        print(f"[mailpit] {args.stored:,} stored in {run.seed_seconds:.0f} s; burst of "
              f"{args.burst:,} with smtp-source ...", flush=True)
        burst = run_smtp_source(smtp_port, args.burst, args.sessions, args.size, 600)
        run.burst_accepted = burst.rate
        started = time.perf_counter()
        wait_mailpit_stored(base, args.stored + args.burst, 600)
        run.burst_seconds = time.perf_counter() - started
        run.requests = mailpit_requests(base, args.stored + args.burst, args.request_timeout)
        run_requests(base, run.requests, args.api_rounds, args.request_timeout)
        snapshot(proc.pid, run.memory, "loaded", args.settle_timeout)
    finally:
        stop_tree(proc, process_tree(proc.pid), grace=10)
    return run


# --------------------------------------------------------------------------------------------
# report


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def report_memory(run: ServerRun, limit_kib: int, judge: bool) -> bool:
    """The memory table of one server; whether every judged process passed."""
    mem = run.memory
    print(f"\n{run.name}: resident memory (MiB) per process")
    print(f"  {'process':<24}{'start':>8}{'idle':>8}{'loaded':>8}{'peak':>8}{'loaded-idle':>13}")
    passed = True
    for name in sorted(mem.names, key=lambda n: (not is_judged(n), n)):
        cells = [mem.start.get(name), mem.idle.get(name), mem.loaded.get(name),
                 mem.peak.get(name)]
        shown = "".join(f"{c / MIB:>8,.0f}" if c else f"{'-':>8}" for c in cells)
        idle, loaded = mem.idle.get(name), mem.loaded.get(name)
        verdict = ""
        if idle and loaded:
            growth = loaded - idle
            verdict = f"{growth / MIB:>+13,.0f}"
            if judge and is_judged(name):
                ok = growth <= limit_kib
                passed = passed and ok
                verdict += "  PASS" if ok else "  FAIL"
        elif judge and is_judged(name):
            verdict = f"{'':>13}  (not running at both moments)"
        print(f"  {name:<24}{shown}{verdict}")
    totals = [sum(getattr(mem, m).values()) for m in ("start", "idle", "loaded")]
    print(f"  {'all':<24}" + "".join(f"{t / MIB:>8,.0f}" for t in totals))
    return passed


def report(args: argparse.Namespace, runs: list[ServerRun], load_before: str) -> bool:
    print()
    print(f"=== memory: {args.stored:,} messages stored ({args.templates} templates, "
          f"~{args.size} B of text each), then a burst of {args.burst:,} over {args.sessions} "
          f"sessions and {args.api_rounds} rounds of API reads; spam engine "
          f"{args.spam_engine} ===")
    overrides = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("PAT_"))
    if overrides:
        print("settings from the environment: " + " ".join(overrides))
    print(f"machine: {load_before} before, {machine_load()} after")
    limit_kib = args.limit_mb * MIB
    passed = True
    for run in runs:
        judged = run.name == "Pat"
        passed = report_memory(run, limit_kib, judged) and passed
        print(f"  stored in {run.seed_seconds:,.0f} s; burst accepted at "
              f"{run.burst_accepted:,.0f} msg/s, all "
              f"{'processed' if judged else 'listed'} {run.burst_seconds:,.0f} s after "
              f"smtp-source; RSS settled in "
              + ", ".join(f"{s:.0f}" for s in run.memory.settle_seconds) + " s")
        for note in run.notes:
            print(f"  note: {note}")
    for run in runs:
        print(f"\n{run.name}: requests (ms, each round)")
        for request in run.requests:
            times = " / ".join(_ms(s) for s in request.seconds)
            print(f"  {request.what:<36}{times:>22}   {request.outcome}")
    if any(run.name == "Pat" for run in runs):
        print(f"\nevery Pat process within {args.limit_mb} MB of its idle RSS: "
              f"{'PASS' if passed else 'FAIL'}")
    return passed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--stored", type=int, default=100_000,
                        help="messages in the store before the burst")
    parser.add_argument("--templates", type=int, default=200,
                        help="distinct messages sent through SMTP and the pipeline; the rest "
                             "of --stored are copies of them")
    parser.add_argument("--burst", type=int, default=2000,
                        help="messages smtp-source sends once the store is full")
    parser.add_argument("--sessions", type=int, default=20, help="concurrent SMTP sessions")
    parser.add_argument("--size", type=int, default=4096, help="bytes of text per message")
    parser.add_argument("--warmup", type=int, default=20,
                        help="messages processed before the idle RSS is read")
    parser.add_argument("--api-rounds", type=int, default=2,
                        help="times the client reads the whole set of API requests")
    parser.add_argument("--request-timeout", type=float, default=300,
                        help="seconds one API request may take")
    parser.add_argument("--limit-mb", type=int, default=50,
                        help="how far above its idle RSS a Pat process may be after the load")
    parser.add_argument("--settle-timeout", type=float, default=60,
                        help="most seconds to wait for RSS to stop moving before reading it")
    parser.add_argument("--drain-timeout", type=float, default=3600,
                        help="seconds to wait for the templates' and the burst's pipelines")
    parser.add_argument("--stall", type=float, default=180,
                        help="give up when no pipeline ends for this many seconds")
    parser.add_argument("--skip-mailpit", action="store_true", help="profile Pat alone")
    parser.add_argument("--skip-pat", action="store_true", help="profile Mailpit alone")
    add_pat_arguments(parser)
    args = parser.parse_args(argv)
    check_pat_arguments(parser, args)
    for name in ("templates", "burst", "sessions", "size", "warmup", "api_rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.templates < MIN_TEMPLATES:
        parser.error(f"--templates must be at least {MIN_TEMPLATES}")
    if args.stored < args.templates + args.warmup:
        parser.error("--stored must be at least --templates plus --warmup")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.access(SMTP_SOURCE, os.X_OK):
        print(f"{SMTP_SOURCE} is missing: run `scripts/system-deps.sh bench` (Debian package "
              "postfix)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="pat-memory-bench-"))
    load_before = machine_load()
    templates = [make_template(n, args.size) for n in range(args.templates)]
    runs: list[ServerRun] = []
    try:
        if not args.skip_pat:
            runs.append(profile_pat(args, workdir, templates))
        if not args.skip_mailpit:
            try:
                runs.append(profile_mailpit(args, workdir, templates))
            except MailpitUnavailable as exc:
                print(f"[mailpit] skipped: {exc}", flush=True)
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
    passed = report(args, runs, load_before)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
