"""Group commit: concurrent sessions share transactions, and a refused batch fails every
message in it (so each session answers 451) without writing any of them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from pat.domain import SpooledMessage
from pat.spool import Spool
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore


def _message(n: int) -> SpooledMessage:
    return SpooledMessage(id=f"m{n}@test", tenant="default", mail_from="a@x", recipients=["b@y"],
                          helo="h", peer="127.0.0.1", data=b"Subject: %d\r\n\r\nx\r\n" % n)


class CountingStore(MessageStore):
    def __init__(self, *args: object, fail: bool = False) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.batches: list[int] = []
        self.fail = fail

    async def insert_batch(self, batch: Sequence[SpooledMessage]) -> None:
        self.batches.append(len(batch))
        if self.fail:
            raise ConnectionError("store is down")
        await super().insert_batch(batch)


async def _store(tmp_path: Path, fail: bool = False) -> CountingStore:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'pat.db'}")
    await migrate(engine)
    return CountingStore(engine, fail=fail)


async def test_concurrent_messages_are_written_in_fewer_transactions(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    committed: list[int] = []
    spool = Spool(store, on_commit=lambda batch: committed.append(len(batch)))
    spool.start()
    await asyncio.gather(*(spool.spool_message(_message(n)) for n in range(200)))
    await spool.stop()
    assert sum(store.batches) == 200
    assert len(store.batches) < 200
    assert committed == store.batches
    assert len(await store.ids()) == 200
    assert len(await store.unpublished(1000)) == 200
    await store.engine.dispose()


async def test_a_refused_batch_fails_each_waiting_message_and_stores_none(
        tmp_path: Path) -> None:
    store = await _store(tmp_path, fail=True)
    spool = Spool(store)
    spool.start()
    results = await asyncio.gather(*(spool.spool_message(_message(n)) for n in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    store.fail = False
    await spool.spool_message(_message(99))
    await spool.stop()
    assert await store.ids() == {"m99@test"}
    await store.engine.dispose()


async def test_messages_queued_at_shutdown_are_refused_not_dropped_silently(
        tmp_path: Path) -> None:
    store = await _store(tmp_path)
    spool = Spool(store)  # never started: nothing drains the queue
    waiting = asyncio.ensure_future(spool.spool_message(_message(1)))
    await asyncio.sleep(0.05)
    await spool.stop()
    with pytest.raises(RuntimeError, match="shutting down"):
        await waiting
    await store.engine.dispose()
