"""Group commit: concurrent sessions share transactions, and a refused batch fails every
message in it (so each session answers 451) without writing any of them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from pat.domain import SpooledMessage
from pat.spool import Spool, SpoolFull
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


class HeldStore(CountingStore):
    """Commits only when the test lets it, so that messages pile up behind the first batch."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.commit = asyncio.Event()

    async def insert_batch(self, batch: Sequence[SpooledMessage]) -> None:
        await self.commit.wait()
        await super().insert_batch(batch)


async def _held_store(tmp_path: Path) -> HeldStore:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'pat.db'}")
    await migrate(engine)
    return HeldStore(engine)


async def test_past_max_bytes_a_message_is_refused_until_the_waiting_ones_are_committed(
        tmp_path: Path) -> None:
    store = await _held_store(tmp_path)
    size = len(_message(0).data)
    spool = Spool(store, max_bytes=3 * size)
    spool.start()
    accepted = [asyncio.ensure_future(spool.spool_message(_message(n))) for n in range(3)]
    await asyncio.sleep(0.05)
    assert spool.is_full()
    with pytest.raises(SpoolFull):
        await spool.spool_message(_message(3))
    store.commit.set()
    await asyncio.gather(*accepted)
    assert not spool.is_full()
    await spool.spool_message(_message(4))
    await spool.stop()
    assert await store.ids() == {"m0@test", "m1@test", "m2@test", "m4@test"}
    await store.engine.dispose()


async def test_an_empty_spool_takes_a_message_larger_than_max_bytes(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    spool = Spool(store, max_bytes=1)
    spool.start()
    await spool.spool_message(_message(1))
    await spool.stop()
    assert await store.ids() == {"m1@test"}
    await store.engine.dispose()


async def test_a_message_whose_sender_left_holds_its_bytes_until_the_writer_drops_it(
        tmp_path: Path) -> None:
    store = await _held_store(tmp_path)
    size = len(_message(0).data)
    spool = Spool(store, max_bytes=2 * size)
    spool.start()
    first = asyncio.ensure_future(spool.spool_message(_message(1)))
    await asyncio.sleep(0.05)  # the writer has taken it and waits for the commit
    left = asyncio.ensure_future(spool.spool_message(_message(2)))
    await asyncio.sleep(0.05)
    left.cancel()  # its SMTP session closed while it was queued
    with pytest.raises(SpoolFull):
        await spool.spool_message(_message(3))
    store.commit.set()
    await first
    await spool.spool_message(_message(4))
    await spool.stop()
    assert await store.ids() == {"m1@test", "m4@test"}
    await store.engine.dispose()
