"""Group commit: the gateway's sessions hand their messages to one writer task, which writes
whatever has queued up while the previous transaction was committing in ONE transaction. Each
session waits for the commit that holds its message and only then answers 250, so durability
costs one commit per batch, not one per message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pat.domain import SpooledMessage
from pat.store.repository import MessageStore

log = logging.getLogger(__name__)

_Pending = tuple[SpooledMessage, "asyncio.Future[None]"]


class Spool:
    def __init__(self, store: MessageStore, *, max_batch: int = 512,
                 on_commit: Callable[[list[SpooledMessage]], None] | None = None) -> None:
        self._store = store
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_batches(), name="spool-writer")

    async def stop(self) -> None:
        if self._writer:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(RuntimeError("spool is shutting down"))

    async def spool_message(self, message: SpooledMessage) -> None:
        """Return once ``message`` is durable; raise if the store refused it."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((message, fut))
        await fut

    async def _write_batches(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [(m, f) for m, f in batch if not f.cancelled()]
            if not batch:
                continue
            try:
                await self._store.insert_batch([m for m, _ in batch])
            except Exception as exc:  # any store failure becomes a 451 for every waiting session
                log.warning("store refused a batch of %d messages: %s", len(batch), exc)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)
            if self._on_commit:
                self._on_commit([m for m, _ in batch])
