"""EmailPipeline: one run per received message, id ``email-<message id>``.

parse -> persist the parsed view -> deliverability checks in parallel -> store their results
and report -> mark processed. A message that cannot be parsed is not retried: it is marked
``failed`` with the reason and kept. Store hiccups are retried with backoff; a message deleted
before its pipeline ran ends the run quietly. A check that fails, even one whose activity
gives up, is a result with verdict ``error``: it never fails the pipeline.

Plugins' hooks run around them: ``onEmailReceived`` after the parsed view is stored,
``onEmailValidated`` with the check results, ``onEmailStored`` once the message is processed.
A plugin's failure is its own recorded result; the pipeline carries on.

The checks and the plugin hooks came after runs were already recorded: they sit behind
``workflow.patched(...)`` so that those histories still replay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.checks import CheckActivities, CheckInput, SaveChecksInput
    from activities.parse import (
        MALFORMED,
        MISSING,
        EmailActivities,
        MarkInput,
        ParseInput,
        PersistInput,
    )
    from compliance.result import CheckResult, Verdict
    from pat import temporal
    from pat.domain import EmailPipelineInput, EmailPipelineResult
    from workflows.plugin_hooks import run_hooks

# Store writes are idempotent, so retrying them is safe; a minute of attempts rides out a
# database restart, and the backoff keeps a down store from being hammered.
STORE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                          maximum_interval=timedelta(seconds=10), maximum_attempts=20,
                          non_retryable_error_types=[MALFORMED, MISSING])
TIMEOUT = timedelta(seconds=30)
CHECKS_PATCH = "deliverability-checks"
PLUGINS_PATCH = "plugin-hooks"
# Checks catch their own failures; a retry covers a worker lost mid-check or a store hiccup
# while loading the message.
CHECK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
CHECK_TIMEOUT = timedelta(minutes=2)
CHECKS: list[tuple[str, Callable[[CheckActivities, CheckInput], Awaitable[CheckResult]]]] = [
    ("auth", CheckActivities.check_authentication),
    ("spam", CheckActivities.check_spam),
    ("content", CheckActivities.check_content),
    ("html_compatibility", CheckActivities.check_html_compatibility),
    ("links", CheckActivities.check_links),
    ("blocklists", CheckActivities.check_blocklists),
]


async def _run_check(name: str,
                     method: Callable[[CheckActivities, CheckInput], Awaitable[CheckResult]],
                     message_id: str) -> CheckResult:
    try:
        return await workflow.execute_activity_method(
            method, CheckInput(message_id), start_to_close_timeout=CHECK_TIMEOUT,
            retry_policy=CHECK_RETRY)
    except ActivityError as err:
        cause = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause)
        return CheckResult(name=name, verdict=Verdict.error.value,
                           reason=f"the check did not complete: {cause}")


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
        plugins = workflow.patched(PLUGINS_PATCH)
        if plugins:
            await run_hooks("onEmailReceived", params.message_id, tenant=params.tenant)
        if workflow.patched(CHECKS_PATCH):
            results = await asyncio.gather(*(_run_check(name, method, params.message_id)
                                             for name, method in CHECKS))
            await workflow.execute_activity_method(
                CheckActivities.save_checks, SaveChecksInput(params.message_id, list(results)),
                start_to_close_timeout=TIMEOUT, retry_policy=STORE_RETRY)
            if plugins:
                await run_hooks("onEmailValidated", params.message_id, tenant=params.tenant,
                                payload={r.name: r.to_dict() for r in results})
        await workflow.execute_activity_method(
            EmailActivities.mark_message, MarkInput(params.message_id, "processed"),
            start_to_close_timeout=TIMEOUT, retry_policy=STORE_RETRY)
        if plugins:
            await run_hooks("onEmailStored", params.message_id, tenant=params.tenant)
        return EmailPipelineResult(params.message_id, "processed")
