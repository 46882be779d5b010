"""How fast the store answers at a million messages, on SQLite and on PostgreSQL.

Seeds ``--messages`` processed messages (default 1,000,000) into each store asked for, with
bulk inserts rather than SMTP and pipelines: ``bench._scale_corpus`` runs a few hundred
template messages once through the parse step's own code and stamps each message with its own
id, time, sender (1,000 of them), recipient (10,000) and order number, in every table a
processed message has (``messages`` with its summary columns and check results,
``message_raw``, ``message_artifacts``, ``message_search``, ``outbox``). The schema is
``pat.store.db.migrate``'s. A sample of the seeded messages is read back and compared with
what the parse step writes for their bytes.

Then, for each store, every operation ``--repeat`` times with varied parameters (after
``--warmup`` untimed), one at a time:

- through ``MessageStore`` in this process (store time), then
- through the HTTP API of a ``pat api`` started on the seeded store, with one keep-alive
  client (what a client sees: store time plus HTTP, validation and JSON):

list page (one of the newest ten pages of 50), a deep page (``--deep-offset``), get (one
message, as ``/api/v3/messages/{id}`` reads it), filters ``to=`` one recipient and ``from=`` one
sender, full-text search ``q=`` a word that occurs in few messages and ``q=`` one order number,
MailHog's ``/api/v2/search?kind=containing``, and a delete. It prints p50 and p95 of each
against the targets of the issue (20 ms for list, get and filters; 100 ms for full-text
searches) and how many messages each query matched. Deleted messages are put back at the end.

    .venv/bin/python -m bench.store_scale                                  # 1,000,000, both
    .venv/bin/python -m bench.store_scale --messages 100000 --store sqlite
    .venv/bin/python -m bench.store_scale --data-dir /var/tmp/pat-scale --reuse

Run from the repository root (it reuses ``tests/support``'s PostgreSQL server). The stores
live in a temporary directory removed at the end, or in ``--data-dir``, where they are kept;
with ``--reuse`` a store seeded there before with the same ``--messages``, ``--templates`` and
``--seed`` is measured again without seeding. At a million messages SQLite takes about
40 KB a message on disk (its FTS5 trigram index about a third of it), PostgreSQL about 20 KB.

Seeding: SQLite through one ``sqlite3`` connection, ``executemany`` in transactions of
``--batch`` messages (the search index's triggers fire on every row, as for any insert), with
the journal off while it runs and WAL mode after, as Pat opens it; no ANALYZE, as Pat runs
none. PostgreSQL with ``COPY`` (asyncpg), its four ``pg_trgm`` GIN indexes dropped for the
load and made again from their own definitions afterwards (as ``pg_restore`` does), then
``VACUUM ANALYZE`` (what autovacuum does to a table that grew). The PostgreSQL server of
``tests/support`` seeds with ``fsync=off`` and is restarted with ``fsync=on`` and otherwise
default settings (as ``docker-compose.yml`` runs postgres) before anything is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
from sqlalchemy import select

from bench._scale_corpus import (
    COLUMNS,
    RECIPIENTS,
    SENDERS,
    Identity,
    Rows,
    Template,
    build_templates,
    differences,
    identity,
    recipient_address,
    sender_address,
    stamp,
)
from bench.smtp_throughput import BenchError, free_ports, log_tail
from pat.settings import Settings
from pat.store.db import make_engine, migrate
from pat.store.models import message_search
from pat.store.repository import MessageFilter, MessageStore
from tests.support.postgres import PostgresServer

LIST_MS = 20.0    # list, get and filters: p95 below this
SEARCH_MS = 100.0  # full-text searches
HOST = "127.0.0.1"
STORES = ("sqlite", "postgres")
# PostgreSQL while it is seeded: nothing of it needs to survive a crash.
PG_SEEDING = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
              "maintenance_work_mem": "1GB", "max_wal_size": "2GB",
              "checkpoint_timeout": "30min"}
# ... and while it is measured: postgres's defaults, durable commits.
PG_MEASURING = {"fsync": "on"}


def say(text: str) -> None:
    print(text, flush=True)


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB"


# --------------------------------------------------------------------------------------------
# the corpus of one run


@dataclass(frozen=True)
class Corpus:
    messages: int
    templates: list[Template]
    seed: int
    hostname: str

    def who(self, index: int) -> Identity:
        return identity(index, self.seed, len(self.templates), self.hostname)

    def rows(self, indices: Sequence[int]) -> list[Rows]:
        found = []
        for index in indices:
            who = self.who(index)
            found.append(stamp(self.templates[who.template], who))
        return found

    def chunks(self, size: int) -> list[range]:
        return [range(start, min(self.messages, start + size))
                for start in range(0, self.messages, size)]

    def batches(self, size: int) -> Iterator[list[Rows]]:
        """The rows of every message, ``size`` messages at a time, each batch made in a second
        thread while the caller stores the one before (sqlite3 lets go of the GIL while SQLite
        works)."""
        chunks = self.chunks(size)
        with ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(self.rows, chunks[0]) if chunks else None
            for number in range(len(chunks)):
                assert ahead is not None
                rows = ahead.result()
                if number + 1 < len(chunks):
                    ahead = pool.submit(self.rows, chunks[number + 1])
                yield rows

    def marker(self) -> dict[str, Any]:
        return {"messages": self.messages, "templates": len(self.templates), "seed": self.seed,
                "hostname": self.hostname}


def progress(store: str, done: int, total: int, started: float) -> None:
    elapsed = time.monotonic() - started
    rate = done / elapsed if elapsed else 0.0
    left = (total - done) / rate if rate else 0.0
    say(f"[{store}] seeded {done:,} of {total:,} ({rate:,.0f} msg/s, about {left:,.0f} s left)")


# --------------------------------------------------------------------------------------------
# the stores


class Store:
    """One store under test: where it lives, how to seed it and how to reach it."""

    name = ""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seed_seconds: float | None = None

    @property
    def marker_file(self) -> Path:
        return self.directory / "seeded.json"

    def seeded_as(self) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            found: dict[str, Any] = json.loads(self.marker_file.read_text())
            return found
        return None

    def mark_seeded(self, corpus: Corpus, seconds: float) -> None:
        self.marker_file.write_text(json.dumps({**corpus.marker(), "seconds": seconds}))

    @property
    def url(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        """Make the store reachable at ``url`` (for measuring)."""

    def stop(self) -> None:
        """Undo ``start``."""

    def wipe(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)

    def seed(self, corpus: Corpus, batch: int) -> None:
        raise NotImplementedError

    def put_back(self, corpus: Corpus, indices: Sequence[int]) -> None:
        """Store messages ``indices`` again (the deleted ones), as seeding stored them."""
        raise NotImplementedError

    def size(self) -> int:
        raise NotImplementedError


def _insert_sql(table: str) -> str:
    columns = COLUMNS[table]
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})")


_TABLE_ROWS: list[tuple[str, Callable[[Rows], tuple[Any, ...]]]] = [
    ("messages", lambda r: r.message), ("message_raw", lambda r: r.raw),
    ("message_artifacts", lambda r: r.artifact), ("message_search", lambda r: r.search),
    ("outbox", lambda r: r.outbox)]


class SqliteStore(Store):
    name = "sqlite"

    @property
    def path(self) -> Path:
        return self.directory / "pat.db"

    @property
    def url(self) -> str:
        return f"sqlite+aiosqlite:///{self.path}"

    def _insert(self, conn: sqlite3.Connection, rows: list[Rows]) -> None:
        conn.execute("BEGIN")
        for table, of in _TABLE_ROWS:
            conn.executemany(_insert_sql(table), [of(r) for r in rows])
        conn.execute("COMMIT")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def seed(self, corpus: Corpus, batch: int) -> None:
        asyncio.run(_migrate(self.url))
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode=OFF")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("PRAGMA cache_size=-1000000")  # 1 GB
            started = time.monotonic()
            done = 0
            for rows in corpus.batches(batch):
                self._insert(conn, rows)
                done += len(rows)
                if done % (batch * 20) == 0 or done == corpus.messages:
                    progress(self.name, done, corpus.messages, started)
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()

    def put_back(self, corpus: Corpus, indices: Sequence[int]) -> None:
        conn = self._connect()
        try:
            self._insert(conn, corpus.rows(indices))
        finally:
            conn.close()

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.directory.glob("pat.db*"))


class PostgresStore(Store):
    name = "postgres"
    database = "pat"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.server = PostgresServer(directory / "cluster")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://pat@{HOST}:{self.server.port}/{self.database}"

    @property
    def dsn(self) -> str:
        return self.url.replace("postgresql+asyncpg://", "postgresql://")

    def start(self) -> None:
        self.server.settings = dict(PG_MEASURING)
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def wipe(self) -> None:
        super().wipe()
        self.server = PostgresServer(self.directory / "cluster")

    def seed(self, corpus: Corpus, batch: int) -> None:
        self.server.settings = dict(PG_SEEDING)
        self.server.start()
        try:
            self.server.create_database(self.database)
            asyncio.run(_migrate(self.url))
            asyncio.run(self._load(corpus, batch))
        finally:
            self.server.stop()

    async def _copy(self, conn: asyncpg.Connection, rows: list[Rows]) -> None:
        async with conn.transaction():
            for table, of in _TABLE_ROWS:
                await conn.copy_records_to_table(table, records=[of(r) for r in rows],
                                                 columns=list(COLUMNS[table]))

    async def _load(self, corpus: Corpus, batch: int) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            indexes = await conn.fetch(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'message_search' "
                "AND indexdef LIKE '%USING gin%'")
            for index in indexes:
                await conn.execute(f"DROP INDEX {index['indexname']}")
            started = time.monotonic()
            done = 0
            chunks = corpus.chunks(batch)
            # Each batch is made in a thread while the one before is copied.
            ahead = asyncio.ensure_future(asyncio.to_thread(corpus.rows, chunks[0]))
            for number in range(len(chunks)):
                rows = await ahead
                if number + 1 < len(chunks):
                    ahead = asyncio.ensure_future(
                        asyncio.to_thread(corpus.rows, chunks[number + 1]))
                await self._copy(conn, rows)
                done += len(rows)
                if done % (batch * 20) == 0 or done == corpus.messages:
                    progress(self.name, done, corpus.messages, started)
            for index in indexes:
                begun = time.monotonic()
                await conn.execute(index["indexdef"])
                say(f"[{self.name}] made {index['indexname']} again in "
                    f"{time.monotonic() - begun:,.0f} s")
            begun = time.monotonic()
            await conn.execute("VACUUM ANALYZE")
            say(f"[{self.name}] VACUUM ANALYZE in {time.monotonic() - begun:,.0f} s")
        finally:
            await conn.close()

    def put_back(self, corpus: Corpus, indices: Sequence[int]) -> None:
        async def copy() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await self._copy(conn, corpus.rows(indices))
            finally:
                await conn.close()

        asyncio.run(copy())

    def size(self) -> int:
        async def database_size() -> int:
            conn = await asyncpg.connect(self.dsn)
            try:
                return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
            finally:
                await conn.close()

        return asyncio.run(database_size())


async def _migrate(url: str) -> None:
    engine = make_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def prepare(store: Store, corpus: Corpus, batch: int, reuse: bool) -> None:
    """Seed ``store``, unless ``reuse`` and it holds this corpus already."""
    previous = store.seeded_as()
    if reuse and previous is not None and all(previous.get(k) == v
                                              for k, v in corpus.marker().items()):
        say(f"[{store.name}] reusing the store seeded in {store.directory} "
            f"({previous['messages']:,} messages, seeded in {previous['seconds']:,.0f} s)")
        store.seed_seconds = None
        return
    if reuse:
        say(f"[{store.name}] nothing to reuse in {store.directory} for these options: seeding")
    store.wipe()
    say(f"[{store.name}] seeding {corpus.messages:,} messages in {store.directory} ...")
    started = time.monotonic()
    store.seed(corpus, batch)
    store.seed_seconds = time.monotonic() - started
    store.mark_seeded(corpus, store.seed_seconds)


# --------------------------------------------------------------------------------------------
# is it what the parse step would have written?


async def verify(store: MessageStore, corpus: Corpus, count: int, rng: random.Random) -> None:
    """Read ``count`` messages back and compare each with what the parse step writes for its
    bytes; BenchError on the first that differs."""
    indices = {0, corpus.messages - 1, *rng.sample(range(corpus.messages),
                                                   min(count, corpus.messages))}
    for index in sorted(indices):
        who = corpus.who(index)
        message = await store.get(who.message_id)
        raw = await store.get_raw(who.message_id)
        artifact = await store.get_artifact(who.message_id)
        if message is None or raw is None or artifact is None:
            raise BenchError(f"seeded message {index} ({who.message_id}) is not in the store")
        async with store.engine.connect() as conn:
            search = (await conn.execute(select(message_search).where(
                message_search.c.message_id == who.message_id))).one()
        stored = {"subject": message.subject, "from_header": message.from_header,
                  "to_header": message.to_header, "snippet": message.snippet,
                  "attachment_count": message.attachment_count, "size": message.size,
                  "view": artifact.view, "text": artifact.text, "html": artifact.html,
                  "mailhog": zlib.decompress(artifact.mailhog or b"").decode(
                      "utf-8", "surrogateescape"),
                  "to_text": search.to_text, "from_text": search.from_text,
                  "subject_text": search.subject_text, "all_text": search.all_text}
        problems = differences(stored, raw, who, corpus.hostname)
        if message.status != "processed":
            problems.append(f"status is {message.status}")
        if problems:
            raise BenchError(f"seeded message {index} is not what the parse step writes:\n  "
                             + "\n  ".join(problems))


# --------------------------------------------------------------------------------------------
# the operations


@dataclass
class Operation:
    """One operation: its parameters (one per repetition), how to run it on the store and
    over HTTP, and its target; each run answers how many messages it matched."""

    label: str
    target_ms: float | None
    parameters: list[Any]
    on_store: Callable[[MessageStore, Any], Awaitable[int]]
    over_http: Callable[[httpx.Client, Any], int]


@dataclass
class Timings:
    ms: list[float] = field(default_factory=list)
    matched: list[int] = field(default_factory=list)

    def p(self, pct: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def _list(store: MessageStore, flt: MessageFilter, offset: int = 0) -> int:
    total, _ = await store.list(flt, offset=offset, limit=50)
    return total


async def _get(store: MessageStore, message_id: str) -> int:
    message = await store.get(message_id)
    if message is None:
        raise BenchError(f"message {message_id} is missing")
    await store.get_reading(message_id)
    return 1


async def _mailhog_search(store: MessageStore, text: str) -> int:
    total, found = await store.list(MessageFilter(text=text), limit=50)
    await store.get_many_mailhog([m.id for m in found])
    return total


async def _delete(store: MessageStore, message_id: str) -> int:
    if await store.delete(message_id) is None:
        raise BenchError(f"message {message_id} could not be deleted: it is missing")
    return 1


def _http_total(client: httpx.Client, path: str, params: dict[str, Any]) -> int:
    response = client.get(path, params=params)
    if response.status_code != 200:
        raise BenchError(f"GET {response.url} answered {response.status_code}: "
                         f"{response.text[:300]}")
    return int(response.json()["total"])


def _http_get(client: httpx.Client, message_id: str) -> int:
    response = client.get(f"/api/v3/messages/{message_id}")
    if response.status_code != 200:
        raise BenchError(f"GET {response.url} answered {response.status_code}")
    response.json()
    return 1


def _http_delete(client: httpx.Client, message_id: str) -> int:
    response = client.delete(f"/api/v3/messages/{message_id}")
    if response.status_code != 204:
        raise BenchError(f"DELETE {response.url} answered {response.status_code}")
    return 1


@dataclass
class Plan:
    """The parameters of every operation, for the store and for HTTP (deletes differ)."""

    operations: list[Operation]
    deleted: list[int]


def plan(corpus: Corpus, repeat: int, warmup: int, deep_offset: int,
         rng: random.Random) -> Plan:
    """The parameters of each operation: ``warmup`` untimed then ``repeat`` timed ones, the
    same for the store and for HTTP; deletes have ``repeat`` for each, distinct."""
    n = corpus.messages
    count = warmup + repeat

    def some(population: int) -> list[int]:
        return [rng.randrange(population) for _ in range(count)]

    markers = [corpus.templates[t].marker for t in some(len(corpus.templates))]
    deleted = rng.sample(range(n), min(n, 2 * repeat))
    ids = [corpus.who(i).message_id for i in deleted]
    pages = [50 * rng.randrange(10) for _ in range(count)]
    deep = [max(0, min(n - 50, deep_offset + 50 * rng.randrange(-5, 6))) for _ in range(count)]
    recipients = [recipient_address(r) for r in some(RECIPIENTS)]
    senders = [sender_address(s) for s in some(SENDERS)]
    orders = [corpus.who(i).order for i in some(n)]
    gets = [corpus.who(i).message_id for i in some(n)]
    words = [corpus.templates[t].marker for t in some(len(corpus.templates))]
    v3 = "/api/v3/messages"
    return Plan(deleted=deleted, operations=[
        Operation("list page (newest 10 pages)", LIST_MS, pages,
                  lambda s, o: _list(s, MessageFilter(), o),
                  lambda c, o: _http_total(c, v3, {"offset": o, "limit": 50})),
        Operation(f"list page at offset ~{deep_offset:,}", LIST_MS, deep,
                  lambda s, o: _list(s, MessageFilter(), o),
                  lambda c, o: _http_total(c, v3, {"offset": o, "limit": 50})),
        Operation("get one message", LIST_MS, gets, _get, _http_get),
        Operation("filter to=<one recipient>", LIST_MS, recipients,
                  lambda s, a: _list(s, MessageFilter(to=a)),
                  lambda c, a: _http_total(c, v3, {"to": a})),
        Operation("filter from=<one sender>", LIST_MS, senders,
                  lambda s, a: _list(s, MessageFilter(sender=a)),
                  lambda c, a: _http_total(c, v3, {"from": a})),
        Operation("search q=<rare word>", SEARCH_MS, words,
                  lambda s, w: _list(s, MessageFilter(q=w)),
                  lambda c, w: _http_total(c, v3, {"q": w})),
        Operation("search q=<order number>", SEARCH_MS, orders,
                  lambda s, w: _list(s, MessageFilter(q=w)),
                  lambda c, w: _http_total(c, v3, {"q": w})),
        Operation("MailHog v2 search containing", SEARCH_MS, markers, _mailhog_search,
                  lambda c, w: _http_total(c, "/api/v2/search",
                                           {"kind": "containing", "query": w})),
        Operation("delete one message", None, ids, _delete, _http_delete),
    ])


def _parameters(operation: Operation, warmup: int, over_http: bool) -> tuple[list[Any], int]:
    """The parameters one side runs and how many of the first are untimed: deletes take
    distinct halves and warm nothing up."""
    values = operation.parameters
    if operation.target_ms is not None:
        return values, warmup
    half = len(values) // 2
    return (values[half:] if over_http else values[:half]), 0


async def measure_store(url: str, ops: Plan, warmup: int) -> dict[str, Timings]:
    engine = make_engine(url)
    store = MessageStore(engine)
    found: dict[str, Timings] = {}
    try:
        for op in ops.operations:
            values, untimed = _parameters(op, warmup, over_http=False)
            timings = Timings()
            for number, value in enumerate(values):
                started = time.perf_counter()
                matched = await op.on_store(store, value)
                elapsed = (time.perf_counter() - started) * 1000
                if number >= untimed:
                    timings.ms.append(elapsed)
                    timings.matched.append(matched)
            found[op.label] = timings
    finally:
        await engine.dispose()
    return found


def measure_http(base_url: str, ops: Plan, warmup: int) -> dict[str, Timings]:
    found: dict[str, Timings] = {}
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for op in ops.operations:
            values, untimed = _parameters(op, warmup, over_http=True)
            timings = Timings()
            for number, value in enumerate(values):
                started = time.perf_counter()
                matched = op.over_http(client, value)
                elapsed = (time.perf_counter() - started) * 1000
                if number >= untimed:
                    timings.ms.append(elapsed)
                    timings.matched.append(matched)
            found[op.label] = timings
    return found


# --------------------------------------------------------------------------------------------
# pat api


class PatApi:
    """``pat api`` on a free port, against ``url``."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url = url
        self.workdir = workdir
        self.port = free_ports(1)[0]
        self.log = workdir / "pat-api.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 600) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAT_")}
        env.update({"PAT_DATABASE_URL": self.url, "PAT_HTTP_HOST": HOST,
                    "PAT_HTTP_PORT": str(self.port), "PAT_DATA_DIR": str(self.workdir)})
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "pat", "api"], env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"pat api exited with status {self.proc.returncode}\n"
                                 f"--- {self.log} ---\n{log_tail(self.log)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/readyz", timeout=5).status_code == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"pat api was not ready within {timeout:.0f} s\n{log_tail(self.log)}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------------------------
# the report


@dataclass
class Measured:
    store: str
    messages: int
    seeded: str
    size: int
    on_store: dict[str, Timings]
    over_http: dict[str, Timings]


def _verdict(p95: float, target: float | None) -> str:
    if target is None:
        return "    "
    return "met " if p95 < target else "MISS"


def _matched(values: list[int]) -> str:
    low, high = min(values), max(values)
    if low == high:
        return f"{low:,}"
    ordered = sorted(values)
    return f"{low:,}-{high:,} (median {ordered[len(ordered) // 2]:,})"


def report(results: list[Measured], plan_: Plan, repeat: int, warmup: int) -> None:
    say("")
    say(f"p50/p95 in ms of {repeat} timed runs each (after {warmup} untimed), one at a time; "
        "store = MessageStore in this process, HTTP = pat api over one keep-alive client")
    for measured in results:
        say("")
        say(f"{measured.store}: {measured.messages:,} messages, {measured.seeded}, "
            f"{gigabytes(measured.size)} on disk")
        say(f"  {'operation':<34}{'target':>7}  {'store p50':>9} {'p95':>7}      "
            f"{'HTTP p50':>8} {'p95':>7}       matched")
        for op in plan_.operations:
            on_store, over_http = measured.on_store[op.label], measured.over_http[op.label]
            target = f"{op.target_ms:.0f} ms" if op.target_ms is not None else "-"
            say(f"  {op.label:<34}{target:>7}  {on_store.p(50):>9.1f} {on_store.p(95):>7.1f} "
                f"{_verdict(on_store.p(95), op.target_ms)} {over_http.p(50):>8.1f} "
                f"{over_http.p(95):>7.1f} {_verdict(over_http.p(95), op.target_ms)}  "
                f"{_matched(on_store.matched + over_http.matched)}")


def machine_load() -> str:
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return f"load average {one}, {five}, {fifteen} ({os.cpu_count()} CPUs)"


# --------------------------------------------------------------------------------------------


def run_store(store: Store, corpus: Corpus, ops: Plan, args: argparse.Namespace,
              workdir: Path) -> Measured:
    prepare(store, corpus, args.batch, args.reuse)
    seeded = (f"seeded in {store.seed_seconds:,.0f} s "
              f"({corpus.messages / store.seed_seconds:,.0f} msg/s)"
              if store.seed_seconds else "reused")
    store.start()
    try:
        size = store.size()
        say(f"[{store.name}] {seeded}; {gigabytes(size)} on disk; {machine_load()}")
        asyncio.run(_verify(store.url, corpus, args.verify, random.Random(args.seed)))
        say(f"[{store.name}] {args.verify} seeded messages read back: each is what the parse "
            "step writes for its bytes")
        say(f"[{store.name}] timing MessageStore ...")
        on_store = asyncio.run(measure_store(store.url, ops, args.warmup))
        deleted = ops.deleted[:len(ops.deleted) // 2]
        store.put_back(corpus, deleted)  # HTTP sees the store the store side saw
        api = PatApi(store.url, workdir)
        say(f"[{store.name}] starting pat api (log {api.log}) ...")
        try:
            api.start()
            say(f"[{store.name}] timing HTTP ...")
            over_http = measure_http(api.base_url, ops, args.warmup)
        finally:
            api.stop()
        store.put_back(corpus, ops.deleted[len(deleted):])
        say(f"[{store.name}] the {len(ops.deleted)} deleted messages are stored again; "
            f"{machine_load()}")
        return Measured(store.name, corpus.messages, seeded, size, on_store, over_http)
    finally:
        store.stop()


async def _verify(url: str, corpus: Corpus, count: int, rng: random.Random) -> None:
    engine = make_engine(url)
    try:
        await migrate(engine)  # a reused store may have been seeded on an older schema
        await verify(MessageStore(engine), corpus, count, rng)
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages to seed")
    parser.add_argument("--store", choices=(*STORES, "both"), default="both")
    parser.add_argument("--templates", type=int, default=500,
                        help="distinct template messages (a word of one template occurs in "
                             "about messages/templates messages)")
    parser.add_argument("--seed", type=int, default=1, help="of the corpus: same seed, same "
                        "messages")
    parser.add_argument("--batch", type=int, default=5000, help="messages per transaction")
    parser.add_argument("--repeat", type=int, default=200, help="timed runs per operation")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs before them")
    parser.add_argument("--deep-offset", type=int, default=None,
                        help="offset of the deep list page (default: half the messages)")
    parser.add_argument("--verify", type=int, default=20,
                        help="seeded messages to read back and check against the parse step")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the stores here (default: a temporary directory, removed)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the stores seeded in --data-dir before, if they hold "
                             "the same --messages, --templates and --seed")
    args = parser.parse_args(argv)
    if args.messages < 100 or args.repeat < 1 or args.templates < 1:
        parser.error("--messages must be at least 100, --repeat and --templates at least 1")
    if args.reuse and args.data_dir is None:
        parser.error("--reuse needs --data-dir")
    if args.deep_offset is None:
        args.deep_offset = args.messages // 2

    workdir = Path(tempfile.mkdtemp(prefix="pat-store-scale-"))
    workdir.chmod(0o755)  # the PostgreSQL server runs as postgres and must reach its cluster
    root = args.data_dir.resolve() if args.data_dir else workdir / "stores"
    names = STORES if args.store == "both" else (args.store,)
    hostname = Settings().smtp_hostname
    say(f"store_scale: {args.messages:,} messages, {args.templates} templates, seed "
        f"{args.seed}; {machine_load()}")
    started = time.monotonic()
    templates = build_templates(args.templates, args.seed, hostname)
    say(f"{len(templates)} templates parsed in {time.monotonic() - started:.1f} s")
    corpus = Corpus(args.messages, templates, args.seed, hostname)
    ops = plan(corpus, args.repeat, args.warmup, args.deep_offset, random.Random(args.seed))
    results: list[Measured] = []
    try:
        for name in names:
            directory = root / name
            store: Store = (SqliteStore(directory) if name == "sqlite"
                            else PostgresStore(directory))
            results.append(run_store(store, corpus, ops, args, workdir))
            if args.data_dir is None:  # one store on disk at a time
                shutil.rmtree(directory, ignore_errors=True)
    except BenchError as exc:
        print(f"store_scale: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, ops, args.repeat, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
