"""Engine creation and schema migration for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> AsyncEngine:
    """An engine for the store at ``url``. SQLite runs in WAL mode with synchronous=NORMAL:
    a commit is durable against a process crash without an fsync per transaction, and readers
    in other processes (API, worker) never block the gateway's writer."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # A fixed pool: with aiosqlite every new connection is a new thread plus an open and
        # its PRAGMAs, and a pool that overflows under load closes and reopens connections on
        # every checkout. Callers beyond the pool wait their turn instead.
        engine = create_async_engine(url, connect_args={"timeout": 10}, pool_size=16,
                                     max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _no_implicit_begin(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # the "begin" event below says how a transaction starts


def _begin_immediate(conn: Connection) -> None:
    # The write lock from the first statement on (waited for in SQLite's busy handler): a
    # transaction that reads first cannot find, when it comes to write, that another writer
    # went first.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


T = TypeVar("T")


class SqliteWriter:
    """Runs a process's write transactions on SQLite, one at a time, each whole in one call
    on one thread.

    SQLite lets one writer at a time hold a database, and every other writer (the gateway, the
    relay, each worker: separate processes) sleeps in SQLite's busy handler, waking at 1, 2,
    5, ... up to 100 ms intervals, until the lock is free. With aiosqlite a transaction of
    several statements goes back to the event loop between statements, and each return waits
    for a busy loop and the GIL, all the while holding the lock. Here a transaction holds the
    lock only while SQLite itself works on it, and writers of one process queue in order
    instead of sleeping against each other. (Measured alone, this change did not move the
    pipeline benchmark, which a slow DNS resolver bounded then; see the README's
    Performance section.)"""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")

    @classmethod
    def for_engine(cls, engine: AsyncEngine) -> SqliteWriter | None:
        """A writer on the database of ``engine``; None unless it is a SQLite file."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        sync = create_engine(url.set(drivername="sqlite+pysqlite"),
                             connect_args={"timeout": 10, "check_same_thread": False},
                             pool_size=1, max_overflow=0)
        event.listen(sync, "connect", _sqlite_pragmas)
        event.listen(sync, "connect", _no_implicit_begin)
        event.listen(sync, "begin", _begin_immediate)
        return cls(sync)

    def _run_now(self, work: Callable[[Connection], T]) -> T:
        with self._engine.begin() as conn:
            return work(conn)

    async def run(self, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction, committed when it returns, rolled back if it raises."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run_now,
                                                                 work)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    # "heads": independent features add their own revisions off the same parent.
    command.upgrade(config, "heads")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest Alembic revision; a no-op when it is there already."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
