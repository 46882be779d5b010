"""Runs Pat's services in-process for integration tests: the gateway (spool, relay, SMTP), an
EmailPipeline worker and the HTTP app, all against one store and one Temporal server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from temporalio.client import Client

from api.app import create_app
from gateway.relay import OutboxRelay, TemporalStarter
from gateway.smtp import serve_smtp
from pat.settings import Settings
from pat.spool import Spool
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from tests.support.postgres import free_port
from workers.email import email_worker
from workers.ended_runs import EndedRunSweep


@dataclass
class RunningPat:
    settings: Settings
    store: MessageStore
    relay: OutboxRelay
    http: httpx.AsyncClient
    sweep: EndedRunSweep

    @property
    def smtp_port(self) -> int:
        return self.settings.smtp_port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    async def wait_status(self, message_id: str, *statuses: str, timeout: float = 15) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            message = await self.store.get(message_id)
            if message and message.status in statuses:
                return message.status
            await asyncio.sleep(0.05)
        raise AssertionError(f"{message_id} did not reach {statuses} in {timeout}s")


def make_settings(tmp: Path, store_url: str | None = None, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp, "database_url": store_url or "", "smtp_port": free_port(),
        "http_port": free_port(), "temporal_task_queue": f"pat-test-{uuid.uuid4()}",
        "relay_poll_interval": 0.2, **overrides}
    return Settings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_pat(settings: Settings, client: Client, *, worker: bool = True,
                      gateway: bool = True) -> AsyncIterator[RunningPat]:
    engine = make_engine(settings.store_url)
    await migrate(engine)
    store = MessageStore(engine)
    relay = OutboxRelay(store, TemporalStarter(client, settings.temporal_task_queue),
                        poll_interval=settings.relay_poll_interval)
    spool = Spool(store, on_commit=lambda _b: relay.wake())
    server = None
    if gateway:
        spool.start()
        relay.start()
        server = await serve_smtp(spool, settings)
    app = create_app(settings)
    api = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.http_port,
                                        log_level="warning", lifespan="on"))
    api_task = asyncio.create_task(api.serve())
    while not api.started:  # noqa: ASYNC110 (uvicorn offers no event to await)
        await asyncio.sleep(0.02)
    worker_cm = (email_worker(client, store, settings.temporal_task_queue, settings)
                 if worker else contextlib.nullcontext())
    # Started by the tests that need it (sweep_once): a sweep lists every run on the shared
    # test server, not only this Pat's.
    sweep = EndedRunSweep(client, store)
    try:
        async with worker_cm, httpx.AsyncClient(base_url=f"http://127.0.0.1:"
                                                f"{settings.http_port}", timeout=30) as http:
            yield RunningPat(settings=settings, store=store, relay=relay, http=http,
                             sweep=sweep)
    finally:
        if server:
            server.close()
            await server.wait_closed()
        await spool.stop()
        await relay.stop()
        api.should_exit = True
        await api_task
        await engine.dispose()
