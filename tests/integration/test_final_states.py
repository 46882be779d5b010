"""Every EmailPipeline run ends in a state the user sees on the message, a stored message can
be run again, and /wait answers with the newest matching message once it has finished."""

from __future__ import annotations

import asyncio
import smtplib
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus

from gateway.relay import OutboxRelay
from pat.domain import EmailReceived, workflow_id_for
from pat.events import EventRefused
from pat.store.models import MessageStatus
from tests.support.harness import RunningPat, make_settings, running_pat
from workers.email import email_worker

GOOD = (b"From: app@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n"
        b"Message-ID: <{subject}@example.test>\r\n\r\nHello\r\n")
NOT_AN_EMAIL = b"this line is not a header\r\nnor is this one\r\n"


def _send_blocking(port: int, to: str, data: bytes) -> str:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        client.mail("app@example.test")
        client.rcpt(to)
        code, reply = client.data(data)
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]


async def _send(pat: RunningPat, to: str, data: bytes) -> str:
    """Send from a thread: the gateway under test serves on this test's event loop."""
    return await asyncio.to_thread(_send_blocking, pat.smtp_port, to, data)


def _good(to: str, subject: str) -> bytes:
    return GOOD.replace(b"{to}", to.encode()).replace(b"{subject}", subject.encode())


async def _wait_started(client: Client, workflow_id: str) -> None:
    for _ in range(200):
        try:
            await client.get_workflow_handle(workflow_id).describe()
            return
        except Exception:
            await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} was never started")


async def test_a_terminated_run_leaves_its_message_failed_with_the_reason(
        tmp_path: Path, temporal_client: Client) -> None:
    async with running_pat(make_settings(tmp_path), temporal_client, worker=False) as pat:
        message_id = await _send(pat, "dev@example.test", _good("dev@example.test", "terminated"))
        workflow_id = workflow_id_for(message_id)
        await _wait_started(temporal_client, workflow_id)
        await temporal_client.get_workflow_handle(workflow_id).terminate(
            reason="operator stopped it")
        for _ in range(100):  # visibility is eventually consistent
            if await pat.sweep.sweep_once():
                break
            await asyncio.sleep(0.1)
        message = await pat.store.get(message_id)
        assert message is not None and message.status == MessageStatus.failed
        assert message.failure_reason == (f"the pipeline run {workflow_id} was terminated: "
                                          "operator stopped it")
        assert await pat.sweep.sweep_once() == 0  # marked once, not again


async def test_a_cancelled_run_marks_its_message_failed_and_shows_cancelled_in_temporal(
        tmp_path: Path, temporal_client: Client) -> None:
    async with running_pat(make_settings(tmp_path), temporal_client, worker=False) as pat:
        message_id = await _send(pat, "dev@example.test", _good("dev@example.test", "cancelled"))
        handle = temporal_client.get_workflow_handle(workflow_id_for(message_id))
        await _wait_started(temporal_client, handle.id)
        await handle.cancel()
        async with email_worker(temporal_client, pat.store, pat.settings.temporal_task_queue,
                                pat.settings):
            await pat.wait_status(message_id, "failed")
            for _ in range(100):
                if (await handle.describe()).status == WorkflowExecutionStatus.CANCELED:
                    break
                await asyncio.sleep(0.05)
        message = await pat.store.get(message_id)
        assert message is not None and message.failure_reason == "the pipeline run was cancelled"
        assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED


async def test_reprocess_runs_the_stored_message_again_as_a_new_run(
        pat_sqlite: RunningPat, temporal_client: Client) -> None:
    message_id = await _send(pat_sqlite, "dev@example.test", _good("dev@example.test", "again"))
    await pat_sqlite.wait_status(message_id, "processed")

    answer = await pat_sqlite.http.post(f"/api/v3/messages/{message_id}/reprocess")
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["run"] == 1 and body["workflow_id"] == f"email-{message_id}-r1"
    await _wait_started(temporal_client, body["workflow_id"])
    await pat_sqlite.wait_status(message_id, "processed")
    result = await temporal_client.get_workflow_handle(body["workflow_id"]).result()
    assert result["status"] == "processed"
    shown = (await pat_sqlite.http.get(f"/api/v3/messages/{message_id}")).json()
    assert shown["workflow_id"] == f"email-{message_id}-r1" and shown["status"] == "processed"

    # The first run is over, and anything it would still mark no longer counts.
    assert not await pat_sqlite.store.set_status(message_id, MessageStatus.failed, "late",
                                                 run=0)
    second = await pat_sqlite.http.post(f"/api/v3/messages/{message_id}/reprocess")
    assert second.json()["workflow_id"] == f"email-{message_id}-r2"


async def test_reprocess_of_an_unknown_message_is_404(pat_sqlite: RunningPat) -> None:
    answer = await pat_sqlite.http.post("/api/v3/messages/nope@pat/reprocess")
    assert answer.status_code == 404 and "nope@pat" in answer.json()["detail"]


async def test_wait_returns_a_newer_failed_message_not_an_older_processed_one(
        pat_sqlite: RunningPat) -> None:
    since = datetime.now(UTC).isoformat()
    older = await _send(pat_sqlite, "wait@example.test", _good("wait@example.test", "older"))
    await pat_sqlite.wait_status(older, "processed")
    newer = await _send(pat_sqlite, "wait@example.test", NOT_AN_EMAIL)
    answer = await pat_sqlite.http.get("/api/v3/messages/wait",
                                       params={"to": "wait@example.test", "since": since,
                                               "timeout": 20})
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == newer and answer.json()["status"] == "failed"
    assert answer.json()["failure_reason"]


async def test_wait_does_not_answer_with_an_older_message_while_a_newer_one_is_in_its_pipeline(
        tmp_path: Path, temporal_client: Client) -> None:
    async with running_pat(make_settings(tmp_path), temporal_client, worker=False) as pat:
        older = await _send(pat, "dev@example.test", _good("dev@example.test", "first"))
        assert await pat.store.set_status(older, MessageStatus.processed)
        newer = await _send(pat, "dev@example.test", _good("dev@example.test", "second"))
        early = await pat.http.get("/api/v3/messages/wait",
                                   params={"to": "dev@example.test", "timeout": 1})
        assert early.status_code == 408
        assert f"message {newer} is still in its pipeline" in early.json()["error"]

        waiting = asyncio.create_task(pat.http.get(
            "/api/v3/messages/wait", params={"to": "dev@example.test", "timeout": 30}))
        async with email_worker(temporal_client, pat.store, pat.settings.temporal_task_queue,
                                pat.settings):
            answer = await waiting
        assert answer.status_code == 200 and answer.json()["id"] == newer


class _RefusingPublisher:
    """Stands in for a receiver that can never take the event (Temporal refusing the start
    of a run, a broker refusing the record)."""

    async def publish(self, event: EmailReceived) -> None:
        raise EventRefused("Temporal refused to start its pipeline: a value is too large")


async def test_an_event_that_can_never_be_delivered_leaves_its_message_failed_with_why(
        tmp_path: Path, temporal_client: Client) -> None:
    async with running_pat(make_settings(tmp_path), temporal_client, worker=False) as pat:
        await pat.relay.stop()
        message_id = await _send(pat, "dev@example.test", _good("dev@example.test", "refused"))
        relay = OutboxRelay(pat.store, _RefusingPublisher())
        assert await relay.relay_pending() == 1
        message = await pat.store.get(message_id)
        assert message is not None and message.status == MessageStatus.failed
        assert message.failure_reason == ("Temporal refused to start its pipeline: a value is "
                                          "too large")
        assert await relay.relay_pending() == 0  # not retried


async def test_a_message_with_a_hundred_long_recipients_still_gets_its_pipeline(
        pat_sqlite: RunningPat) -> None:
    recipients = [f"{'r' * 200}{n}@{'d' * 40}.example.test" for n in range(100)]

    def send() -> str:
        with smtplib.SMTP("127.0.0.1", pat_sqlite.smtp_port) as client:
            client.ehlo()
            client.mail("app@example.test")
            for recipient in recipients:
                client.rcpt(recipient)
            code, reply = client.data(_good(recipients[0], "many"))
        assert code == 250, reply
        return reply.decode().rsplit(" ", 1)[-1]

    message_id = await asyncio.to_thread(send)
    assert await pat_sqlite.wait_status(message_id, "processed", timeout=30) == "processed"
