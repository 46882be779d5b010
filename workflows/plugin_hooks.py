"""Running a hook of every active plugin from inside a workflow.

``run_hooks`` is called from a workflow's code (EmailPipeline): it asks for the tenant's active
plugins that implement the hook, then runs each as its own activity, in execution order. A
plugin that fails is one failed activity and one HookResult with its status; the next plugin
runs all the same, and the calling workflow carries on.

Even a hook activity that gives up for another reason (its retries spent on an unreachable
store, its time out) is that plugin's failed result, not the pipeline's: since the
"plugin-failures-contained" patch. The patch is asked for only on that path, so runs where no
hook activity gives up record no marker and replay as before."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.plugins import (
        MESSAGE_GONE,
        PLUGIN_HOOK_FAILED,
        ActivePluginsInput,
        HookResult,
        PluginActivities,
        RunHookInput,
    )

# Plugin failures are final (non-retryable); these retries are for the store and the network
# of the worker, not for the plugin.
HOOK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=5), maximum_attempts=5,
                         non_retryable_error_types=[PLUGIN_HOOK_FAILED, MESSAGE_GONE])
# Covers the hook's own limit and any effects (HTTP, SMTP) it asked for.
HOOK_TIMEOUT = timedelta(seconds=60)
CONTAINED_PATCH = "plugin-failures-contained"


async def run_hooks(hook: str, message_id: str | None, *, tenant: str = "default",
                    payload: Any = None, plugin_ids: list[str] | None = None
                    ) -> list[HookResult]:
    """Run ``hook`` of each active plugin on ``message_id``; one result per plugin, in order.
    ``payload`` is the second argument of ``onEmailValidated`` (the check results; without it
    the hook activity reads them from the store). ``plugin_ids``: the plugins to run, when
    the caller has looked them up already."""
    if plugin_ids is None:
        # A local activity: one indexed read, usually finding no plugin, so it must not cost a
        # round trip through the task queue.
        plugin_ids = await workflow.execute_local_activity_method(
            PluginActivities.active_plugins, ActivePluginsInput(tenant=tenant, hook=hook),
            start_to_close_timeout=timedelta(seconds=30), retry_policy=HOOK_RETRY)
    results: list[HookResult] = []
    for plugin_id in plugin_ids:
        try:
            results.append(await workflow.execute_activity_method(
                PluginActivities.run_plugin_hook,
                RunHookInput(tenant=tenant, plugin_id=plugin_id, hook=hook,
                             message_id=message_id, payload=payload),
                start_to_close_timeout=HOOK_TIMEOUT, retry_policy=HOOK_RETRY,
                summary=f"{plugin_id}.{hook}"))
        except ActivityError as err:
            results.append(_failed_hook(err, plugin_id, hook))
    return results


def _failed_hook(err: ActivityError, plugin_id: str, hook: str) -> HookResult:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == PLUGIN_HOOK_FAILED and cause.details:
        recorded = cause.details[0]
        return recorded if isinstance(recorded, HookResult) else HookResult(**recorded)
    if isinstance(cause, ApplicationError) and cause.type in (PLUGIN_HOOK_FAILED, MESSAGE_GONE):
        return HookResult(plugin_id=plugin_id, hook=hook, status="error", error=cause.message)
    if isinstance(cause, CancelledError) or not workflow.patched(CONTAINED_PATCH):
        raise err
    reason = cause.message if isinstance(cause, FailureError) else str(cause or err)
    return HookResult(plugin_id=plugin_id, hook=hook, status="error",
                      error=f"the hook's activity gave up: {reason}")
