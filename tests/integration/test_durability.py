"""Nothing accepted is lost: a down store answers 451, a down worker or relay only delays."""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from gateway.relay import OutboxRelay, TemporalStarter
from pat.domain import EmailReceived, SpooledMessage, workflow_id_for
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from tests.support.harness import make_settings, running_pat
from tests.support.postgres import PostgresServer
from workers.email import email_worker

RAW = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: %s\r\n\r\nbody\r\n"


def _send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("a@example.test", ["b@example.test"], RAW % subject.encode())


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


async def test_store_outage_answers_451_and_loses_nothing(
        own_postgres: PostgresServer, temporal_client: Client, tmp_path: Path) -> None:
    url = own_postgres.create_database("pat")
    async with running_pat(make_settings(tmp_path, url), temporal_client) as pat:
        await asyncio.to_thread(_send, pat.smtp_port, "before")
        await asyncio.to_thread(own_postgres.pause)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await asyncio.to_thread(_send, pat.smtp_port, "during")
        assert refused.value.smtp_code == 451
        assert b"4.3.0" in refused.value.smtp_error
        await asyncio.to_thread(own_postgres.resume)
        await asyncio.to_thread(_send, pat.smtp_port, "after")  # the sender's retry

        total, found = await pat.store.list()
        assert total == 2
        for message in found:
            assert await pat.wait_status(message.id, "processed") == "processed"
        assert sorted(m.subject or "" for m in await _all(pat.store)) == ["after", "before"]
        for message in found:
            raw = await pat.store.get_raw(message.id)
            assert raw is not None and raw.endswith(b"\r\n\r\nbody\r\n")


async def _all(store: MessageStore) -> list:  # type: ignore[type-arg]
    return (await store.list(limit=1000))[1]


async def test_message_spooled_while_the_worker_was_down_is_processed_when_it_returns(
        temporal_client: Client, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with running_pat(settings, temporal_client, worker=False) as pat:
        await asyncio.to_thread(_send, pat.smtp_port, "queued")
        message = (await pat.store.list())[1][0]
        await asyncio.sleep(1)
        assert (await pat.store.get(message.id)).status == "received"  # type: ignore[union-attr]
        async with email_worker(temporal_client, pat.store, settings.temporal_task_queue):
            assert await pat.wait_status(message.id, "processed") == "processed"


async def test_relay_starts_what_was_spooled_before_it_ran_exactly_once(
        temporal_client: Client, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'pat.db'}")
    await migrate(engine)
    store = MessageStore(engine)
    ids = [f"{uuid.uuid4()}@test" for _ in range(3)]
    await store.insert_batch([SpooledMessage(id=i, tenant="default", mail_from="a@x",
                                             recipients=["b@y"], helo="h", peer="127.0.0.1",
                                             data=RAW % b"s") for i in ids])
    queue = str(uuid.uuid4())
    starter = TemporalStarter(temporal_client, queue)
    relay = OutboxRelay(store, starter)
    assert await relay.relay_pending() == 3
    assert await relay.relay_pending() == 0
    # Redelivery of an event whose workflow already exists is a no-op, not an error.
    await starter.publish(EmailReceived(message_id=ids[0], tenant="default", size=1,
                                        mail_from="a@x", recipients=["b@y"]))
    async with email_worker(temporal_client, store, queue):
        for message_id in ids:
            handle = temporal_client.get_workflow_handle(workflow_id_for(message_id))
            await handle.result()
            assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    first_run = (await temporal_client.get_workflow_handle(
        workflow_id_for(ids[0])).describe()).run_id
    await starter.publish(EmailReceived(message_id=ids[0], tenant="default", size=1,
                                        mail_from="a@x", recipients=["b@y"]))
    latest = await temporal_client.get_workflow_handle(workflow_id_for(ids[0])).describe()
    assert latest.run_id == first_run  # a completed pipeline is not run again
    await engine.dispose()
