"""EmailPipeline in a real Temporal dev server, with real and stand-in activities."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

from activities.checks import CHECK_NAMES, ChecksSummary, RunChecksInput
from activities.parse import MALFORMED, MISSING, MarkInput, ParseInput, ParseSummary
from activities.plugins import ActivePluginsInput, HookResult, RunHookInput
from pat.domain import EmailPipelineInput, SpooledMessage, workflow_id_for
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from workers.email import email_worker
from workflows.email_pipeline import EmailPipeline

HISTORIES = Path(__file__).parent.parent / "histories"
HISTORY = HISTORIES / "email_pipeline.json"
CHECKS_HISTORY = HISTORIES / "email_pipeline_checks.json"
PLUGINS_HISTORY = HISTORIES / "email_pipeline_plugins.json"
LOCAL_HISTORY = HISTORIES / "email_pipeline_local.json"
TWO_STEPS_HISTORY = HISTORIES / "email_pipeline_two_steps.json"
SUMMARY = ParseSummary(subject="Hi", parts=1, attachments=0, defects=0)
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


def _stand_in_worker(client: Client, parse: object, calls: list[object],
                     *replacements: object) -> Worker:
    """Stand-ins for every activity but ``parse``; ``replacements`` take the place of the
    stand-ins registered under the same activity names."""
    @activity.defn(name="mark_message")
    async def mark(params: MarkInput) -> bool:
        calls.append(("mark", params.status, params.reason))
        return True

    replaced = {_activity_name(r) for r in replacements}
    @activity.defn(name="active_plugins")
    async def no_plugins(params: ActivePluginsInput) -> list[str]:
        calls.append(("plugins", params.hook))
        return []

    stand_ins = [a for a in [mark, no_plugins, *_stand_in_checks(calls)]
                 if _activity_name(a) not in replaced]
    return Worker(client, task_queue=str(uuid.uuid4()), workflows=[EmailPipeline],
                  activities=[parse, *stand_ins, *replacements])


def _activity_name(fn: object) -> str:
    definition = activity._Definition.must_from_callable(fn)  # type: ignore[arg-type]
    return str(definition.name)


def _stand_in_checks(calls: list[object]) -> list[object]:
    """Checks that record whether they were asked to mark the message processed too."""
    @activity.defn(name="run_checks")
    async def run_checks(params: RunChecksInput) -> ChecksSummary:
        calls.append(("checks", params.mark_processed))
        return ChecksSummary(verdicts={name: "none" for name in CHECK_NAMES}, score=100)

    return [run_checks]


async def test_malformed_message_is_marked_failed_without_retrying(
        temporal_client: Client) -> None:
    attempts: list[int] = []
    calls: list[object] = []

    @activity.defn(name="parse_and_store")
    async def parse(params: ParseInput) -> ParseSummary:
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

    @activity.defn(name="parse_and_store")
    async def parse(params: ParseInput) -> ParseSummary:
        raise ApplicationError("gone", type=MISSING, non_retryable=True)

    result = await _run(temporal_client, _stand_in_worker(temporal_client, parse, calls), "m3")
    assert result.status == "missing"  # type: ignore[attr-defined]
    assert calls == []


async def test_store_errors_are_retried_until_the_store_answers(temporal_client: Client) -> None:
    attempts: list[int] = []
    calls: list[object] = []

    @activity.defn(name="parse_and_store")
    async def parse(params: ParseInput) -> ParseSummary:
        attempts.append(activity.info().attempt)
        if len(attempts) < 3:
            raise ConnectionError("database is restarting")
        return SUMMARY

    result = await _run(temporal_client, _stand_in_worker(temporal_client, parse, calls), "m4")
    assert result.status == "processed"  # type: ignore[attr-defined]
    assert attempts == [1, 2, 3]
    # No plugin is active: parse, then the checks, which mark the message processed.
    assert calls == [("checks", True)]


async def test_an_unexpected_error_fails_the_run_and_marks_the_message_failed_with_it(
        temporal_client: Client) -> None:
    calls: list[object] = []

    @activity.defn(name="parse_and_store")
    async def parse(params: ParseInput) -> ParseSummary:
        raise ApplicationError("bug", type="SomethingElse", non_retryable=True)

    with pytest.raises(WorkflowFailureError) as failure:
        await _run(temporal_client, _stand_in_worker(temporal_client, parse, calls), "m5")
    assert "bug" in str(failure.value.cause)
    assert calls == [("mark", "failed", "the pipeline stopped: bug")]


async def test_a_step_whose_retries_run_out_marks_the_message_failed(
        temporal_client: Client) -> None:
    calls: list[object] = []

    @activity.defn(name="parse_and_store")
    async def parse(params: ParseInput) -> ParseSummary:
        return SUMMARY

    @activity.defn(name="run_checks")
    async def run_checks(params: RunChecksInput) -> ChecksSummary:
        raise ApplicationError("the store refused the results", non_retryable=True)

    worker = _stand_in_worker(temporal_client, parse, calls, run_checks)
    with pytest.raises(WorkflowFailureError):
        await _run(temporal_client, worker, "m7")
    assert calls[-1] == ("mark", "failed", "the pipeline stopped: the store refused the results")


async def test_replay_of_a_recorded_history_is_deterministic() -> None:
    """A change to EmailPipeline that breaks running histories fails here, not in production.
    Re-record with `python -m tests.histories.record` only for a deliberate, versioned change."""
    from temporalio.client import WorkflowHistory

    history = WorkflowHistory.from_json(workflow_id="email-recorded",
                                        history=json.loads(HISTORY.read_text()))
    await Replayer(workflows=[EmailPipeline]).replay_workflow(history)


async def test_replay_of_a_recorded_run_with_the_checks_is_deterministic() -> None:
    from temporalio.client import WorkflowHistory

    history = WorkflowHistory.from_json(workflow_id="email-recorded-checks",
                                        history=json.loads(CHECKS_HISTORY.read_text()))
    await Replayer(workflows=[EmailPipeline]).replay_workflow(history)


async def test_with_active_plugins_their_hooks_run_between_the_steps(
        temporal_client: Client) -> None:
    calls: list[object] = []

    @activity.defn(name="parse_and_store")
    async def parse(params: ParseInput) -> ParseSummary:
        return ParseSummary(subject="Hi", parts=1, attachments=0, defects=0,
                            plugins={"onEmailReceived": ["tagger"], "onEmailValidated": ["judge"],
                                     "onEmailStored": ["exporter"]})

    @activity.defn(name="run_plugin_hook")
    async def hook(params: RunHookInput) -> HookResult:
        calls.append(("hook", params.plugin_id, params.hook))
        return HookResult(plugin_id=params.plugin_id, hook=params.hook, status="ok")

    result = await _run(temporal_client,
                        _stand_in_worker(temporal_client, parse, calls, hook), "m6")
    assert result.status == "processed"  # type: ignore[attr-defined]
    assert calls == [("hook", "tagger", "onEmailReceived"), ("checks", False),
                     ("hook", "judge", "onEmailValidated"), ("mark", "processed", None),
                     ("hook", "exporter", "onEmailStored")]


async def test_replay_of_a_recorded_run_with_plugin_hooks_is_deterministic() -> None:
    from temporalio.client import WorkflowHistory

    recorded = json.loads(PLUGINS_HISTORY.read_text())
    activities = [e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                  for e in recorded["events"] if "activityTaskScheduledEventAttributes" in e]
    assert activities.count("run_plugin_hook") == 1  # the spam scorer hooks onEmailReceived only
    history = WorkflowHistory.from_json(workflow_id="email-recorded", history=recorded)
    await Replayer(workflows=[EmailPipeline]).replay_workflow(history)


async def test_replay_of_a_recorded_run_with_local_steps_is_deterministic() -> None:
    from temporalio.client import WorkflowHistory

    recorded = json.loads(LOCAL_HISTORY.read_text())
    scheduled = [e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                 for e in recorded["events"] if "activityTaskScheduledEventAttributes" in e]
    assert scheduled == ["run_plugin_hook"]  # every other step ran as a local activity
    history = WorkflowHistory.from_json(workflow_id="email-recorded", history=recorded)
    await Replayer(workflows=[EmailPipeline]).replay_workflow(history)


async def test_replay_of_a_recorded_two_step_run_is_deterministic() -> None:
    from temporalio.client import WorkflowHistory

    recorded = json.loads(TWO_STEPS_HISTORY.read_text())
    markers = [base64.b64decode(payload["data"]).decode()
               for e in recorded["events"] if "markerRecordedEventAttributes" in e
               for detail in e["markerRecordedEventAttributes"]["details"].values()
               for payload in detail["payloads"]]
    assert any('"two-steps"' in m for m in markers)
    assert any('"run_checks"' in m for m in markers)
    history = WorkflowHistory.from_json(workflow_id="email-recorded", history=recorded)
    await Replayer(workflows=[EmailPipeline]).replay_workflow(history)
