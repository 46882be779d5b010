"""Group commit: the gateway's sessions hand their messages to one writer task, which writes
whatever has queued up while the previous transaction was committing in ONE transaction. Each
session waits for the commit that holds its message and only then answers 250, so durability
costs one commit per batch, not one per message.

What waits for a commit is held in memory, so the spool is bounded in bytes: past ``max_bytes``
a message is refused (the gateway answers 452 and the sender retries), never dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pat.domain import SpooledMessage
from pat.store.repository import MessageStore

log = logging.getLogger(__name__)

_Pending = tuple[SpooledMessage, "asyncio.Future[None]"]


class SpoolFull(Exception):
    """The spool holds ``max_bytes`` of messages waiting for their commit: try again later."""


class Spool:
    def __init__(self, store: MessageStore, *, max_batch: int = 512,
                 max_bytes: int = 256 * 1024 * 1024,
                 on_commit: Callable[[list[SpooledMessage]], None] | None = None) -> None:
        self._store = store
        self._max_batch = max_batch
        self._max_bytes = max_bytes
        self._on_commit = on_commit
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        # Bytes of the messages queued or in the transaction being written: a message's bytes
        # are held from its arrival until the writer is done with it, even if its session has
        # gone meanwhile.
        self._held_bytes = 0
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_batches(), name="spool-writer")

    async def stop(self) -> None:
        if self._writer:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        while not self._queue.empty():
            message, fut = self._queue.get_nowait()
            self._held_bytes -= len(message.data)
            if not fut.done():
                fut.set_exception(RuntimeError("spool is shutting down"))

    def is_full(self) -> bool:
        return self._held_bytes >= self._max_bytes

    async def spool_message(self, message: SpooledMessage) -> None:
        """Return once ``message`` is durable; raise ``SpoolFull`` if it does not fit in the
        spool now, or whatever the store raised if it refused the message."""
        size = len(message.data)
        # An empty spool takes any message, or one larger than max_bytes could never be taken.
        if self._held_bytes and self._held_bytes + size > self._max_bytes:
            raise SpoolFull(f"{self._held_bytes} bytes are waiting for the store")
        self._held_bytes += size
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((message, fut))
        await fut

    async def _write_batches(self) -> None:
        while True:
            taken = [await self._queue.get()]
            while len(taken) < self._max_batch and not self._queue.empty():
                taken.append(self._queue.get_nowait())
            try:
                await self._write([(m, f) for m, f in taken if not f.cancelled()])
            finally:
                self._held_bytes -= sum(len(m.data) for m, _ in taken)

    async def _write(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        try:
            await self._store.insert_batch([m for m, _ in batch])
        except Exception as exc:  # any store failure becomes a 451 for every waiting session
            log.warning("store refused a batch of %d messages: %s", len(batch), exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for _, fut in batch:
            if not fut.done():
                fut.set_result(None)
        if self._on_commit:
            self._on_commit([m for m, _ in batch])
