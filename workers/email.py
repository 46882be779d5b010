"""The worker that runs EmailPipeline and its activities."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from activities.parse import EmailActivities
from pat.store.repository import MessageStore
from workflows.email_pipeline import EmailPipeline


def email_worker(client: Client, store: MessageStore, task_queue: str) -> Worker:
    activities = EmailActivities(store)
    return Worker(client, task_queue=task_queue, workflows=[EmailPipeline],
                  activities=[activities.parse_message, activities.persist_parsed,
                              activities.mark_message],
                  max_concurrent_activities=64)
