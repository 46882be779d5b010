"""PluginInstall: scan -> compile in an isolate -> register -> activate, each an activity, so
an install and the reason it was refused are visible in the Temporal UI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.plugins import (
        PLUGIN_REJECTED,
        ActivateInput,
        PluginActivities,
        PluginSource,
        RegisterInput,
    )

PLUGIN_INSTALL = "PluginInstall"
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=10), maximum_attempts=10,
                    non_retryable_error_types=[PLUGIN_REJECTED])
TIMEOUT = timedelta(seconds=60)


@dataclass
class PluginInstallInput:
    source: PluginSource
    activate: bool = True


@dataclass
class PluginInstallResult:
    plugin_id: str
    status: str  # "active", "installed" (not activated) or "rejected"
    version: str = ""
    reason: str | None = None
    scan_report: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def install_workflow_id(tenant: str, plugin_id: str) -> str:
    return f"plugin-install-{tenant}-{plugin_id}"


@workflow.defn(name=PLUGIN_INSTALL)
class PluginInstall:
    @workflow.run
    async def run(self, params: PluginInstallInput) -> PluginInstallResult:
        source = params.source
        plugin_id = str(source.manifest.get("id", ""))
        try:
            scanned = await workflow.execute_activity_method(
                PluginActivities.scan_plugin, source, start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY)
            if not scanned.passed:
                return PluginInstallResult(plugin_id, "rejected", reason="the security scan "
                                           "found blocking problems", scan_report=scanned.report)
            problems = await workflow.execute_activity_method(
                PluginActivities.compile_plugin, source, start_to_close_timeout=TIMEOUT,
                retry_policy=RETRY)
            if problems:
                return PluginInstallResult(plugin_id, "rejected", reason="the plugin does not "
                                           "load", scan_report=scanned.report, problems=problems)
            registered = await workflow.execute_activity_method(
                PluginActivities.register_plugin, RegisterInput(source, scanned.report),
                start_to_close_timeout=TIMEOUT, retry_policy=RETRY)
            if params.activate:
                await workflow.execute_activity_method(
                    PluginActivities.activate_plugin,
                    ActivateInput(source.tenant, registered.plugin_id),
                    start_to_close_timeout=TIMEOUT, retry_policy=RETRY)
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == PLUGIN_REJECTED:
                return PluginInstallResult(plugin_id, "rejected", reason=cause.message)
            raise
        return PluginInstallResult(registered.plugin_id,
                                   "active" if params.activate else "installed",
                                   version=registered.version, scan_report=scanned.report)
