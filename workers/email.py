"""The worker that runs EmailPipeline and its activities."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Worker

from activities.checks import CheckActivities
from activities.parse import EmailActivities
from pat.settings import Settings
from pat.store.repository import MessageStore
from workers.plugins import PLUGIN_WORKFLOWS, plugin_activities
from workflows.email_pipeline import EmailPipeline


def email_worker(client: Client, store: MessageStore, task_queue: str,
                 settings: Settings | None = None) -> Worker:
    """``settings`` configure the checks (resolver, spamd, ...); the defaults otherwise."""
    settings = settings or Settings()
    activities = EmailActivities(store, settings.smtp_hostname)
    checks = CheckActivities(settings, store)
    return Worker(client, task_queue=task_queue, workflows=[EmailPipeline, *PLUGIN_WORKFLOWS],
                  activities=[activities.parse_and_store, activities.parse_message,
                              activities.persist_parsed, activities.mark_message,
                              checks.run_checks, checks.check_authentication, checks.check_spam,
                              checks.check_content,
                              checks.check_html_compatibility, checks.check_links,
                              checks.check_blocklists, checks.save_checks,
                              *plugin_activities(store, settings)],
                  # Bounded so that a backlog waits in Temporal's task queue, not in this
                  # process: tasks held here past their timeouts are retried late and pile up.
                  max_concurrent_activities=settings.worker_activity_slots,
                  max_concurrent_local_activities=settings.worker_activity_slots,
                  max_concurrent_workflow_tasks=settings.worker_workflow_task_slots)
