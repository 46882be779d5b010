"""The store watcher turns other processes' writes into live events: each message is
"received" once and "updated" after, and what it remembers to tell them apart stays bounded
however many messages go by."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pat.bus import Bus, MessageChange, StoreWatcher
from pat.domain import SpooledMessage, new_message_id
from pat.store.db import make_engine, migrate
from pat.store.models import MessageStatus
from pat.store.repository import MessageStore


def _spooled(count: int) -> list[SpooledMessage]:
    return [SpooledMessage(id=new_message_id("pat.test"), tenant="default",
                           mail_from="app@example.test", recipients=["dev@example.test"],
                           helo="client", peer="127.0.0.1",
                           data=b"Subject: hello\r\n\r\nbody\r\n") for _ in range(count)]


def _drain(queue: asyncio.Queue[MessageChange]) -> list[tuple[str, str]]:
    found = []
    while not queue.empty():
        change = queue.get_nowait()
        found.append((change.kind, change.message_id))
    return found


async def test_each_message_is_received_once_then_updated_and_memory_stays_bounded(
        tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'pat.db'}")
    await migrate(engine)
    store = MessageStore(engine)
    bus = Bus()
    # Remembers nothing past the poll that saw a change: the harshest setting.
    watcher = StoreWatcher(store, bus, memory_seconds=0)
    async with bus.subscribe() as queue:
        first = _spooled(300)
        await store.insert_batch(first)
        await watcher.poll_once()
        assert _drain(queue) == [("received", m.id) for m in first]
        await watcher.poll_once()  # nothing changed: the rows at the cursor are not told again
        assert _drain(queue) == []
        # One write, one stamp: what sits at the cursor is all it remembers.
        assert watcher.remembered == len(first)

        for message in first[:5]:
            await store.set_status(message.id, MessageStatus.processed)
        second = _spooled(3)
        await store.insert_batch(second)
        await watcher.poll_once()
        assert _drain(queue) == ([("updated", m.id) for m in first[:5]]
                                 + [("received", m.id) for m in second])
        assert watcher.remembered == len(second)  # the first 300 are forgotten

    long_memory = StoreWatcher(store, bus, memory_seconds=3600)
    async with bus.subscribe() as queue:
        third = _spooled(50)
        await store.insert_batch(third)
        await long_memory.poll_once()
        await long_memory.poll_once()
        assert _drain(queue) == [("received", m.id) for m in third]
        assert long_memory.remembered == 50
    await engine.dispose()
