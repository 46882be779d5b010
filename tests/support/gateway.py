"""The SMTP gateway alone (SMTP listeners and spool on a store, no relay, no Temporal): what
the SMTP policy tests and the SMTP fuzzer talk to."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.smtp import serve_smtp
from pat.settings import Settings
from pat.spool import Spool
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore


@dataclass
class RunningGateway:
    settings: Settings
    store: MessageStore

    @property
    def smtp_port(self) -> int:
        return self.settings.smtp_port


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    engine = make_engine(settings.store_url)
    await migrate(engine)
    store = MessageStore(engine)
    spool = Spool(store, max_batch=settings.spool_batch_size,
                  max_bytes=settings.spool_max_bytes)
    spool.start()
    listeners = await serve_smtp(spool, settings)
    try:
        yield RunningGateway(settings=settings, store=store)
    finally:
        listeners.close()
        await listeners.wait_closed()
        await spool.stop()
        await engine.dispose()
