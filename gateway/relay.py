"""The outbox relay: publishes an event for every spooled message, at least once.

It scans the outbox for rows not yet published (at start-up too, so whatever was spooled while
nothing was relaying gets its pipeline), hands each to the ``EventPublisher`` and marks it
published. The gateway wakes it after each commit; otherwise it scans every poll interval."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from pat import temporal
from pat.domain import EmailPipelineInput, EmailReceived, workflow_id_for
from pat.events import EventPublisher, EventRefused
from pat.store.models import MessageStatus
from pat.store.repository import MessageStore

log = logging.getLogger(__name__)


class TemporalStarter:
    """Embedded publisher: starts ``EmailPipeline`` with id ``email-<message id>`` (a
    reprocess: ``email-<message id>-r<n>``). A second start of the same id is refused by
    Temporal and counts as done, so redelivery is harmless."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    async def publish(self, event: EmailReceived) -> None:
        try:
            await self._client.start_workflow(
                temporal.EMAIL_PIPELINE,
                EmailPipelineInput(message_id=event.message_id, tenant=event.tenant,
                                   run=event.run),
                id=workflow_id_for(event.message_id, event.run), task_queue=self._task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                memo={temporal.MEMO_MESSAGE_ID: event.message_id, temporal.MEMO_RUN: event.run},
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(temporal.SENDER, temporal.bounded(event.mail_from)),
                    SearchAttributePair(temporal.RECIPIENTS,
                                        temporal.bounded_list(event.recipients)),
                    SearchAttributePair(temporal.TENANT, event.tenant),
                    # Known from the header section at arrival: set at the start, so that
                    # the run does not have to write it to Temporal's visibility again.
                    *([SearchAttributePair(temporal.SUBJECT, temporal.bounded(event.subject))]
                      if event.subject else []),
                ]))
        except WorkflowAlreadyStartedError:
            pass
        except RPCError as exc:
            if exc.status == RPCStatusCode.INVALID_ARGUMENT:  # retrying cannot help
                raise EventRefused(f"Temporal refused to start its pipeline: {exc}") from exc
            raise


class OutboxRelay:
    def __init__(self, store: MessageStore, publisher: EventPublisher, *,
                 poll_interval: float = 1.0, concurrency: int = 64) -> None:
        self._store = store
        self._publisher = publisher
        self._poll_interval = poll_interval
        self._concurrency = concurrency
        self._limit = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _publish(self, entry: tuple[int, EmailReceived]) -> int | None:
        outbox_id, event = entry
        async with self._limit:
            try:
                await self._publisher.publish(event)
            except EventRefused as refused:
                # Never retried, never silent: the message says why it has no pipeline.
                log.warning("the pipeline of %s cannot start: %s", event.message_id, refused)
                await self._store.set_status(event.message_id, MessageStatus.failed,
                                             str(refused)[:2000], run=event.run,
                                             only_if=MessageStatus.received)
            except Exception as exc:
                log.warning("could not publish %s, will retry: %s", event.message_id, exc)
                return None
            return outbox_id

    async def relay_pending(self) -> int:
        """Publish everything pending now; return how many events were published."""
        published = 0
        while True:
            pending = await self._store.unpublished(self._concurrency * 4)
            if not pending:
                return published
            done = [i for i in await asyncio.gather(*(self._publish(e) for e in pending))
                    if i is not None]
            await self._store.mark_published(done)
            published += len(done)
            if len(done) < len(pending):
                return published

    async def _run(self) -> None:
        while True:
            try:
                await self.relay_pending()
            except Exception as exc:
                log.warning("outbox scan failed, retrying: %s", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()
