"""``pat worker``: runs EmailPipeline until stopped."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client

from pat import temporal
from pat.settings import Settings
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from workers.email import email_worker
from workers.ended_runs import EndedRunSweep

log = logging.getLogger(__name__)


async def connect_with_retry(settings: Settings, attempts: int = 60) -> Client:
    for attempt in range(1, attempts + 1):
        try:
            return await temporal.connect(settings)
        except Exception as exc:
            if attempt == attempts:
                raise RuntimeError(f"cannot reach Temporal at {settings.temporal_address}: "
                                   f"{exc}") from exc
            log.info("Temporal not reachable yet (%s), retrying", exc)
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


async def run_worker(settings: Settings) -> None:
    engine = make_engine(settings.store_url)
    await migrate(engine)
    client = await connect_with_retry(settings)
    await temporal.ensure_search_attributes(client, settings.temporal_namespace)
    store = MessageStore(engine)
    worker = email_worker(client, store, settings.temporal_task_queue, settings)
    sweep = EndedRunSweep(client, store)
    sweep.start()
    log.info("worker polling task queue %s", settings.temporal_task_queue)
    try:
        await worker.run()
    finally:
        await sweep.stop()
        await engine.dispose()
