"""EmailPipeline: one run per received message, id ``email-<message id>`` (a reprocess:
``email-<message id>-r<n>``).

Two steps, each a local activity (a marker in the Temporal UI with its type, attempt and
result, and no round trip through a task queue):

1. ``parse_and_store``: parse the message once and store all that readers need of it (the
   parsed view, the decoded bodies, MailHog's JSON); it returns a small summary and the
   tenant's active plugins per hook, so nothing in the history grows with the message;
2. ``run_checks``: the six deliverability checks at once on what was stored; their results,
   the report and the status ``processed`` in one write.

Active plugins' hooks run as activities of their own around them: ``onEmailReceived`` after
the parse, ``onEmailValidated`` after the checks (and then a third local step marks the
message processed), ``onEmailStored`` at the end. A plugin's failure is its own recorded
result; the pipeline carries on. A message that is not an email is marked ``failed`` with the
reason, without retrying; one deleted before its pipeline ran ends the run quietly; a check
that fails is a result with verdict ``error``.

Every run ends in a state the user can see on the message: whatever stops a run other than
success (a step whose retries are exhausted, an error in this code, cancellation) marks the
message ``failed`` with the reason before the run fails; what no workflow code can see
(termination, a timeout) is marked by the worker's sweep of ended runs
(``workers/ended_runs.py``). Each run carries its number (``run``), and the store ignores the
marks of a run that a newer one has superseded.

Runs started before the "two-steps" patch go on step by step as they were recorded (each
check its own step; local steps, checks and plugin hooks behind their own, older patches), so
that those histories replay."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.checks import (
        CheckActivities,
        CheckInput,
        ChecksSummary,
        RunChecksInput,
        SaveChecksInput,
    )
    from activities.parse import (
        MALFORMED,
        MISSING,
        EmailActivities,
        MarkInput,
        ParseInput,
        ParseSummary,
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
LOCAL_STEPS_PATCH = "local-steps"
TWO_STEPS_PATCH = "two-steps"
PIPELINE_FAILED = "PipelineFailed"
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


def _step(local: bool, method: Callable[[Any, Any], Awaitable[Any]], arg: Any, *,
          timeout: timedelta = TIMEOUT, retry: RetryPolicy = STORE_RETRY) -> Awaitable[Any]:
    """Run one step of the pipeline, as a local activity or (runs from before the
    "local-steps" patch) a regular one."""
    if local:
        return workflow.execute_local_activity_method(
            method, arg, start_to_close_timeout=timeout, retry_policy=retry)
    return workflow.execute_activity_method(method, arg, start_to_close_timeout=timeout,
                                            retry_policy=retry)


async def _run_check(name: str,
                     method: Callable[[CheckActivities, CheckInput], Awaitable[CheckResult]],
                     message_id: str, local: bool) -> CheckResult:
    try:
        found: CheckResult = await _step(local, method, CheckInput(message_id),
                                         timeout=CHECK_TIMEOUT, retry=CHECK_RETRY)
        return found
    except (ActivityError, ApplicationError) as err:
        cause = _application_error(err)
        reason = cause.message if cause else str(err.cause)
        return CheckResult(name=name, verdict=Verdict.error.value,
                           reason=f"the check did not complete: {reason}")


def _application_error(err: ActivityError | ApplicationError) -> ApplicationError | None:
    """The application error a step failed with: a regular activity's comes wrapped in an
    ActivityError, a local activity's is raised as it is."""
    if isinstance(err, ApplicationError):
        return err
    return err.cause if isinstance(err.cause, ApplicationError) else None


# Not in the sandbox: the sandbox re-imports and recompiles the workflow's modules for every
# run, which was the largest part of the worker's time per email (measured with py-spy; see
# the README's performance section). This workflow is Pat's own code: it touches no clock,
# random source or I/O but Temporal's, keeps no state in its modules, and its replay tests
# (tests/histories) catch a change that breaks determinism. Users' own workflows keep the
# sandbox.
@workflow.defn(name=temporal.EMAIL_PIPELINE, sandboxed=False)
class EmailPipeline:
    @workflow.run
    async def run(self, params: EmailPipelineInput) -> EmailPipelineResult:
        if not workflow.patched(TWO_STEPS_PATCH):
            return await self._stepwise(params)
        try:
            return await self._two_steps(params)
        except asyncio.CancelledError:
            await self._mark_failed(params, "the pipeline run was cancelled")
            raise
        except Exception as err:
            reason = f"the pipeline stopped: {_reason(err)}"
            await self._mark_failed(params, reason)
            raise ApplicationError(reason, type=PIPELINE_FAILED, non_retryable=True) from err

    async def _mark_failed(self, params: EmailPipelineInput, reason: str) -> None:
        """Say why on the message. If even that cannot be stored, the run fails all the same
        and the worker's sweep of ended runs marks the message later."""
        try:
            await _step(True, EmailActivities.mark_message,
                        MarkInput(params.message_id, "failed", reason, run=params.run))
        except (ActivityError, ApplicationError) as err:
            workflow.logger.warning("could not mark %s failed: %s", params.message_id, err)

    async def _two_steps(self, params: EmailPipelineInput) -> EmailPipelineResult:
        """Parse and store; run the checks and store their results with the new status. Two
        local activities when no plugin is active; each active plugin's hooks in between."""
        try:
            summary: ParseSummary = await _step(True, EmailActivities.parse_and_store,
                                                ParseInput(params.message_id))
        except (ActivityError, ApplicationError) as err:
            ended = await _unparsed(err, params, params.run)
            if ended is None:
                raise
            return ended
        # The subject is a search attribute from the start (the relay read it at arrival).
        hooks = summary.plugins
        if hooks.get("onEmailReceived"):
            await run_hooks("onEmailReceived", params.message_id, tenant=params.tenant,
                            plugin_ids=hooks["onEmailReceived"])
        validated = hooks.get("onEmailValidated")
        checked: ChecksSummary = await _step(
            True, CheckActivities.run_checks,
            RunChecksInput(params.message_id, run=params.run, mark_processed=not validated),
            timeout=CHECK_TIMEOUT, retry=CHECK_RETRY)
        if validated:
            await run_hooks("onEmailValidated", params.message_id, tenant=params.tenant,
                            plugin_ids=validated)
            await _step(True, EmailActivities.mark_message,
                        MarkInput(params.message_id, "processed", run=params.run))
        if hooks.get("onEmailStored"):
            await run_hooks("onEmailStored", params.message_id, tenant=params.tenant,
                            plugin_ids=hooks["onEmailStored"])
        return EmailPipelineResult(params.message_id, "processed",
                                   None if checked.stored else "superseded or deleted")

    async def _stepwise(self, params: EmailPipelineInput) -> EmailPipelineResult:
        """Runs started before the "two-steps" patch, step by step as they were recorded."""
        local = workflow.patched(LOCAL_STEPS_PATCH)
        try:
            parsed = await _step(local, EmailActivities.parse_message,
                                 ParseInput(params.message_id))
        except (ActivityError, ApplicationError) as err:
            cause = _application_error(err)
            if cause is not None and cause.type == MISSING:
                return EmailPipelineResult(params.message_id, "missing", cause.message)
            if cause is not None and cause.type == MALFORMED:
                await _step(local, EmailActivities.mark_message,
                            MarkInput(params.message_id, "failed", cause.message))
                return EmailPipelineResult(params.message_id, "failed", cause.message)
            raise
        workflow.upsert_search_attributes([temporal.SUBJECT.value_set(parsed.subject[:1000])])
        await _step(local, EmailActivities.persist_parsed, PersistInput(params.message_id, parsed))
        plugins = workflow.patched(PLUGINS_PATCH)
        if plugins:
            await run_hooks("onEmailReceived", params.message_id, tenant=params.tenant)
        if workflow.patched(CHECKS_PATCH):
            results = await asyncio.gather(*(_run_check(name, method, params.message_id, local)
                                             for name, method in CHECKS))
            await _step(local, CheckActivities.save_checks,
                        SaveChecksInput(params.message_id, list(results)))
            if plugins:
                await run_hooks("onEmailValidated", params.message_id, tenant=params.tenant,
                                payload={r.name: r.to_dict() for r in results})
        await _step(local, EmailActivities.mark_message,
                    MarkInput(params.message_id, "processed"))
        if plugins:
            await run_hooks("onEmailStored", params.message_id, tenant=params.tenant)
        return EmailPipelineResult(params.message_id, "processed")


async def _unparsed(err: ActivityError | ApplicationError, params: EmailPipelineInput,
                    run: int | None) -> EmailPipelineResult | None:
    """How a run ends whose message could not be parsed: quietly for a message deleted in the
    meantime, ``failed`` with the reason for one that is not an email; None otherwise."""
    cause = _application_error(err)
    if cause is not None and cause.type == MISSING:
        return EmailPipelineResult(params.message_id, "missing", cause.message)
    if cause is not None and cause.type == MALFORMED:
        await _step(True, EmailActivities.mark_message,
                    MarkInput(params.message_id, "failed", cause.message, run=run))
        return EmailPipelineResult(params.message_id, "failed", cause.message)
    return None


def _reason(err: BaseException) -> str:
    """What stopped the run, in a sentence: the innermost failure's message."""
    cause: BaseException | None = err
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    message = getattr(cause, "message", None) or str(cause) or type(cause).__name__
    return str(message)[:2000]
