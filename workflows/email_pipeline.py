"""EmailPipeline: one run per received message, id ``email-<message id>``.

parse -> persist the parsed view -> mark processed. A message that cannot be parsed is not
retried: it is marked ``failed`` with the reason and kept. Store hiccups are retried with
backoff; a message deleted before its pipeline ran ends the run quietly."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.parse import (
        MALFORMED,
        MISSING,
        EmailActivities,
        MarkInput,
        ParseInput,
        PersistInput,
    )
    from pat import temporal
    from pat.domain import EmailPipelineInput, EmailPipelineResult

# Store writes are idempotent, so retrying them is safe; a minute of attempts rides out a
# database restart, and the backoff keeps a down store from being hammered.
STORE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                          maximum_interval=timedelta(seconds=10), maximum_attempts=20,
                          non_retryable_error_types=[MALFORMED, MISSING])
TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=temporal.EMAIL_PIPELINE)
class EmailPipeline:
    @workflow.run
    async def run(self, params: EmailPipelineInput) -> EmailPipelineResult:
        try:
            parsed = await workflow.execute_activity_method(
                EmailActivities.parse_message, ParseInput(params.message_id),
                start_to_close_timeout=TIMEOUT, retry_policy=STORE_RETRY)
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == MISSING:
                return EmailPipelineResult(params.message_id, "missing", cause.message)
            if isinstance(cause, ApplicationError) and cause.type == MALFORMED:
                await workflow.execute_activity_method(
                    EmailActivities.mark_message,
                    MarkInput(params.message_id, "failed", cause.message),
                    start_to_close_timeout=TIMEOUT, retry_policy=STORE_RETRY)
                return EmailPipelineResult(params.message_id, "failed", cause.message)
            raise
        workflow.upsert_search_attributes([temporal.SUBJECT.value_set(parsed.subject[:1000])])
        await workflow.execute_activity_method(
            EmailActivities.persist_parsed, PersistInput(params.message_id, parsed),
            start_to_close_timeout=TIMEOUT, retry_policy=STORE_RETRY)
        await workflow.execute_activity_method(
            EmailActivities.mark_message, MarkInput(params.message_id, "processed"),
            start_to_close_timeout=TIMEOUT, retry_policy=STORE_RETRY)
        return EmailPipelineResult(params.message_id, "processed")
