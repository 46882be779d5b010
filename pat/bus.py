"""In-process pub/sub of message changes, feeding the live APIs (events, websockets, UI).

``StoreWatcher`` turns store changes made by other processes (the gateway writes, the worker
updates) into bus events by following ``messages.updated_ns``; Redis replaces it in production."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pat.domain import now_ns
from pat.store.models import Message
from pat.store.repository import Deleted, MessageStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MessageChange:
    kind: str  # "received", "updated" or "deleted"
    message_id: str
    message: Message | None
    tenant: str | None = None  # whose message it is; subscribers bound to a tenant filter on it

    def visible_to(self, tenant: str | None) -> bool:
        """Whether a caller who may see ``tenant``'s messages (None: all) sees this change."""
        return tenant is None or self.tenant == tenant


class Bus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[MessageChange]] = set()

    def publish(self, change: MessageChange) -> None:
        for queue in self._subscribers:
            if queue.qsize() < 10_000:  # a stalled subscriber loses events, not memory
                queue.put_nowait(change)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[MessageChange]]:
        queue: asyncio.Queue[MessageChange] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


class StoreWatcher:
    """Publishes each message written since the watcher started: "received" at its first
    sight, "updated" at each later change.

    What it has seen is remembered only for changes of the last ``memory_seconds``: enough
    to tell a first sight from a later one and to skip a row read twice at the cursor, without
    a memory that grows with every message ever received. A message whose entry is forgotten
    can only change again as "updated": the watcher also remembers the newest arrival time
    it forgot (``_horizon_ns``), and only a message that arrived after it can be new."""

    def __init__(self, store: MessageStore, bus: Bus, interval: float = 0.2,
                 memory_seconds: float = 60.0) -> None:
        self._store = store
        self._bus = bus
        self._interval = interval
        self._memory_ns = int(memory_seconds * 1e9)
        self._cursor = self._horizon_ns = now_ns()
        # message id -> (updated_ns last seen, created_ns); oldest sight first.
        self._seen: dict[str, tuple[int, int]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-watcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def forget(self, deleted: Deleted) -> None:
        self._seen.pop(deleted.message_id, None)
        self._bus.publish(MessageChange("deleted", deleted.message_id, None, deleted.tenant))

    @property
    def remembered(self) -> int:
        """How many messages the watcher remembers now."""
        return len(self._seen)

    async def poll_once(self) -> None:
        for message in await self._store.changed_since(self._cursor):
            self._cursor = max(self._cursor, message.updated_ns)
            previous = self._seen.pop(message.id, None)
            if previous is not None and previous[0] == message.updated_ns:
                self._seen[message.id] = previous
                continue
            # First sight of a message that arrived after the watcher started is its arrival,
            # whatever status its pipeline has already given it.
            new = previous is None and message.created_ns > self._horizon_ns
            self._seen[message.id] = (message.updated_ns, message.created_ns)
            self._bus.publish(MessageChange("received" if new else "updated", message.id, message,
                                            message.tenant))
        self._forget_before(self._cursor - self._memory_ns)

    def _forget_before(self, cutoff_ns: int) -> None:
        while self._seen:
            message_id, (updated_ns, created_ns) = next(iter(self._seen.items()))
            if updated_ns >= cutoff_ns:
                return
            del self._seen[message_id]
            self._horizon_ns = max(self._horizon_ns, created_ns)

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception as exc:
                log.warning("store watch failed, retrying: %s", exc)
            await asyncio.sleep(self._interval)
