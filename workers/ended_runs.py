"""The sweep of ended runs: marks ``failed`` every message whose current EmailPipeline run has
ended without finishing it.

EmailPipeline marks its message itself when a step gives up, its own code fails or it is
cancelled. What no workflow code sees — termination, a timeout, a failure while the store was
down — is found here: the worker asks Temporal's visibility for EmailPipeline runs that closed
as failed, terminated, cancelled or timed out, and marks each one's message ``failed`` with the
reason, if that run is still the message's current one and the message is still ``received``.
Marking is conditional, so several workers sweeping at once do no harm."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.client import WorkflowHistoryEventFilterType as EventFilter

from pat import temporal
from pat.store.models import MessageStatus
from pat.store.repository import MessageStore

log = logging.getLogger(__name__)

# Runs that closed this long before the previous sweep are looked at again: visibility is
# eventually consistent, a run may show up a little after it closed.
OVERLAP = timedelta(minutes=2)

_ENDINGS = {
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.TERMINATED: "was terminated",
    WorkflowExecutionStatus.CANCELED: "was cancelled",
    WorkflowExecutionStatus.TIMED_OUT: "timed out",
}


@dataclass(frozen=True)
class EndedRun:
    workflow_id: str
    run_id: str
    message_id: str
    run: int
    reason: str


def _close_detail(event: HistoryEvent) -> str:
    if event.HasField("workflow_execution_terminated_event_attributes"):
        return event.workflow_execution_terminated_event_attributes.reason
    if event.HasField("workflow_execution_failed_event_attributes"):
        return event.workflow_execution_failed_event_attributes.failure.message
    return ""


class EndedRunSweep:
    def __init__(self, client: Client, store: MessageStore, *, interval: float = 5.0) -> None:
        self._client = client
        self._store = store
        self._interval = interval
        self._since: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ended-run-sweep")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _ended_run(self, execution: WorkflowExecution) -> EndedRun | None:
        ending = _ENDINGS.get(execution.status) if execution.status else None
        if ending is None:
            return None
        memo = await execution.memo()
        message_id = memo.get(temporal.MEMO_MESSAGE_ID)
        run = memo.get(temporal.MEMO_RUN, 0)
        if not isinstance(message_id, str):  # started before runs carried a memo: run 0
            if not execution.id.startswith("email-"):
                return None
            message_id, run = execution.id[len("email-"):], 0
        detail = ""
        handle = self._client.get_workflow_handle(execution.id, run_id=execution.run_id)
        async for event in handle.fetch_history_events(event_filter_type=EventFilter.CLOSE_EVENT):
            detail = _close_detail(event)
        reason = f"the pipeline run {execution.id} {ending}" + (f": {detail}" if detail else "")
        return EndedRun(execution.id, execution.run_id, message_id, int(run), reason[:2000])

    async def sweep_once(self) -> int:
        """Mark the messages of runs that ended unfinished; how many were marked."""
        started = datetime.now(UTC)
        query = (f"WorkflowType = '{temporal.EMAIL_PIPELINE}' "
                 "AND ExecutionStatus != 'Running' AND ExecutionStatus != 'Completed'")
        if self._since is not None:
            query += f" AND CloseTime >= '{(self._since - OVERLAP).isoformat()}'"
        marked = 0
        async for execution in self._client.list_workflows(query):
            ended = await self._ended_run(execution)
            if ended and await self._store.set_status(
                    ended.message_id, MessageStatus.failed, ended.reason, run=ended.run,
                    only_if=MessageStatus.received):
                log.info("marked %s failed: %s", ended.message_id, ended.reason)
                marked += 1
        self._since = started
        return marked

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception as exc:  # Temporal or the store away: try again next round
                log.warning("sweep of ended pipeline runs failed, retrying: %s", exc)
            await asyncio.sleep(self._interval)
