"""``pat gateway``: the SMTP server and the outbox relay on one event loop."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client

from gateway.relay import OutboxRelay, TemporalStarter
from gateway.smtp import serve_smtp
from pat import temporal
from pat.domain import EmailReceived
from pat.settings import Settings
from pat.spool import Spool
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore

log = logging.getLogger(__name__)


class LazyTemporalStarter:
    """Connects to Temporal on first use, so that the gateway accepts mail while Temporal is
    still starting or down: the outbox keeps the events until a start succeeds."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._starter: TemporalStarter | None = None
        self._lock = asyncio.Lock()

    async def publish(self, event: EmailReceived) -> None:
        if self._starter is None:
            async with self._lock:
                if self._starter is None:
                    client: Client = await temporal.connect(self._settings)
                    self._starter = TemporalStarter(client, self._settings.temporal_task_queue)
        await self._starter.publish(event)


async def run_gateway(settings: Settings, ready: asyncio.Event | None = None) -> None:
    engine = make_engine(settings.store_url)
    await migrate(engine)
    store = MessageStore(engine)
    relay = OutboxRelay(store, LazyTemporalStarter(settings),
                        poll_interval=settings.relay_poll_interval,
                        concurrency=settings.relay_concurrency)
    spool = Spool(store, max_batch=settings.spool_batch_size, max_bytes=settings.spool_max_bytes,
                  on_commit=lambda _batch: relay.wake())
    spool.start()
    relay.start()
    server = await serve_smtp(spool, settings)
    if ready:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        server.close()
        await server.wait_closed()
        await spool.stop()
        await relay.stop()
        await engine.dispose()
