"""EmailPipeline in a real Temporal dev server, with real and stand-in activities."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

from activities.parse import MALFORMED, MISSING, MarkInput, ParseInput, PersistInput
from pat.domain import EmailPipelineInput, SpooledMessage, workflow_id_for
from pat.parsing import ParsedMessage, parse_message
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from workers.email import email_worker
from workflows.email_pipeline import EmailPipeline

HISTORY = Path(__file__).parent.parent / "histories" / "email_pipeline.json"
RAW = (b"From: App <app@example.test>\r\nTo: dev@example.test\r\nSubject: Hi\r\n"
       b"Message-ID: <1@example.test>\r\n\r\nHello\r\n")


async def _run(client: Client, worker: Worker, message_id: str) -> object:
    async with worker:
        return await client.execute_workflow(
            EmailPipeline.run, EmailPipelineInput(message_id=message_id),
            id=workflow_id_for(message_id) + uuid.uuid4().hex, task_queue=worker.task_queue)


async def test_real_activities_store_the_parsed_view_and_mark_processed(
        temporal_client: Client, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'pat.db'}")
    await migrate(engine)
    store = MessageStore(engine)
    await store.insert_batch([SpooledMessage(id="m1@test", tenant="default", mail_from="a@x",
                                             recipients=["b@y"], helo="h", peer="127.0.0.1",
                                             data=RAW)])
    result = await _run(temporal_client, email_worker(temporal_client, store, str(uuid.uuid4())),
                        "m1@test")
    assert result.status == "processed"  # type: ignore[attr-defined]
    stored = await store.get("m1@test")
    assert stored is not None and stored.status == "processed"
    assert stored.subject == "Hi" and stored.from_header == "App <app@example.test>"
    await engine.dispose()


def _stand_in_worker(client: Client, parse: object, calls: list[object]) -> Worker:
    @activity.defn(name="persist_parsed")
    async def persist(params: PersistInput) -> bool:
        calls.append(("persist", params.message_id))
        return True

    @activity.defn(name="mark_message")
    async def mark(params: MarkInput) -> bool:
        calls.append(("mark", params.status, params.reason))
        return True

    return Worker(client, task_queue=str(uuid.uuid4()), workflows=[EmailPipeline],
                  activities=[parse, persist, mark])


async def test_malformed_message_is_marked_failed_without_retrying(
        temporal_client: Client) -> None:
    attempts: list[int] = []
    calls: list[object] = []

    @activity.defn(name="parse_message")
    async def parse(params: ParseInput) -> ParsedMessage:
        attempts.append(activity.info().attempt)
        raise ApplicationError("the message has no header section", type=MALFORMED,
                               non_retryable=True)

    result = await _run(temporal_client, _stand_in_worker(temporal_client, parse, calls), "m2")
    assert result.status == "failed"  # type: ignore[attr-defined]
    assert attempts == [1]
    assert calls == [("mark", "failed", "the message has no header section")]


async def test_message_deleted_before_its_pipeline_ends_the_run_quietly(
        temporal_client: Client) -> None:
    calls: list[object] = []

    @activity.defn(name="parse_message")
    async def parse(params: ParseInput) -> ParsedMessage:
        raise ApplicationError("gone", type=MISSING, non_retryable=True)

    result = await _run(temporal_client, _stand_in_worker(temporal_client, parse, calls), "m3")
    assert result.status == "missing"  # type: ignore[attr-defined]
    assert calls == []


async def test_store_errors_are_retried_until_the_store_answers(temporal_client: Client) -> None:
    attempts: list[int] = []
    calls: list[object] = []

    @activity.defn(name="parse_message")
    async def parse(params: ParseInput) -> ParsedMessage:
        attempts.append(activity.info().attempt)
        if len(attempts) < 3:
            raise ConnectionError("database is restarting")
        return parse_message(RAW)

    result = await _run(temporal_client, _stand_in_worker(temporal_client, parse, calls), "m4")
    assert result.status == "processed"  # type: ignore[attr-defined]
    assert attempts == [1, 2, 3]
    assert calls == [("persist", "m4"), ("mark", "processed", None)]


async def test_an_unexpected_error_type_still_fails_loudly(temporal_client: Client) -> None:
    @activity.defn(name="parse_message")
    async def parse(params: ParseInput) -> ParsedMessage:
        raise ApplicationError("bug", type="SomethingElse", non_retryable=True)

    with pytest.raises(WorkflowFailureError):
        await _run(temporal_client, _stand_in_worker(temporal_client, parse, []), "m5")


async def test_replay_of_a_recorded_history_is_deterministic() -> None:
    """A change to EmailPipeline that breaks running histories fails here, not in production.
    Re-record with `python -m tests.histories.record` only for a deliberate, versioned change."""
    from temporalio.client import WorkflowHistory

    history = WorkflowHistory.from_json(workflow_id="email-recorded",
                                        history=json.loads(HISTORY.read_text()))
    await Replayer(workflows=[EmailPipeline]).replay_workflow(history)
