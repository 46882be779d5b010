"""Activities for plugins: one hook call is one activity, so each attempt, its duration and its
failure show in the Temporal UI; installing is four activities (scan, compile, register,
activate) driven by the PluginInstall workflow.

A plugin that misbehaves fails its activity with a non-retryable ``PluginHookFailed`` whose
details are the recorded ``HookResult``: red in the UI, never retried (the hook already ran and
its failure is recorded), and the workflow carries on. Nothing a plugin returns can make the
activity raise anything else (see ``plugins.host``); a store that cannot be reached raises an
ordinary error and is retried. A retried attempt does not repeat what an earlier one did: its
hook call is named by the activity (``call_key``), under which each effect is claimed.

No ``from __future__ import annotations``: Temporal resolves these dataclasses' field types
inside the workflow sandbox."""

from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pat.settings import Settings
from pat.store.repository import MessageStore
from plugins.host import HookRun, PluginHost
from plugins.manifest import ManifestError, parse_manifest
from plugins.registry import PluginRegistry, RegistryError
from plugins.runtime import HookStatus
from plugins.store import PluginStore

PLUGIN_HOOK_FAILED = "PluginHookFailed"
PLUGIN_REJECTED = "PluginRejected"
MESSAGE_GONE = "PluginMessageMissing"


@dataclass
class HookResult:
    plugin_id: str
    hook: str
    status: str
    error: str | None = None
    duration_ms: float = 0.0
    changes: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None


@dataclass
class ActivePluginsInput:
    tenant: str
    hook: str


@dataclass
class RunHookInput:
    tenant: str
    plugin_id: str
    hook: str
    message_id: str | None = None
    payload: Any = None


@dataclass
class PluginSource:
    tenant: str
    manifest: dict[str, Any]
    code: str
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScanResult:
    passed: bool
    report: dict[str, Any]


@dataclass
class RegisterInput:
    source: PluginSource
    scan_report: dict[str, Any]


@dataclass
class RegisterResult:
    plugin_id: str
    version: str
    active: bool


@dataclass
class ActivateInput:
    tenant: str
    plugin_id: str


def call_key() -> str:
    """The same for every attempt of this activity, and for no other activity: a rerun of the
    workflow (a new run id) is a new call, a retry of this activity is not."""
    info = activity.info()
    return f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"


def hook_result(run: HookRun) -> HookResult:
    return HookResult(plugin_id=run.plugin_id, hook=run.hook, status=str(run.status),
                      error=run.error, duration_ms=run.duration_ms, changes=run.changes,
                      run_id=run.run_id)


class PluginActivities:
    def __init__(self, messages: MessageStore, settings: Settings) -> None:
        self._store = PluginStore(messages.engine)
        self._host = PluginHost(self._store, messages, settings)
        self._registry = PluginRegistry(self._store, self._host, settings)

    @activity.defn(name="active_plugins")
    async def active_plugins(self, params: ActivePluginsInput) -> list[str]:
        """Ids of the tenant's active plugins that implement ``hook``, in execution order."""
        return [p.id for p in await self._store.list(params.tenant, active_only=True)
                if params.hook in p.manifest.hooks]

    @activity.defn(name="run_plugin_hook")
    async def run_plugin_hook(self, params: RunHookInput) -> HookResult:
        try:
            run = await self._host.run_hook(params.tenant, params.plugin_id, params.hook,
                                            message_id=params.message_id,
                                            payload=params.payload, call_key=call_key())
        except LookupError as exc:
            raise ApplicationError(str(exc), type=MESSAGE_GONE, non_retryable=True) from exc
        result = hook_result(run)
        if run.status is not HookStatus.ok:
            raise ApplicationError(f"{run.plugin_id}.{run.hook}: {run.status}: {run.error}",
                                   result, type=PLUGIN_HOOK_FAILED, non_retryable=True)
        return result

    def _manifest(self, source: PluginSource) -> Any:
        try:
            return parse_manifest(source.manifest)
        except ManifestError as exc:
            raise ApplicationError(str(exc), type=PLUGIN_REJECTED, non_retryable=True) from exc

    @activity.defn(name="scan_plugin")
    async def scan_plugin(self, source: PluginSource) -> ScanResult:
        report = self._registry.scan(self._manifest(source), source.code)
        return ScanResult(passed=report.passed, report=report.to_dict())

    @activity.defn(name="compile_plugin")
    async def compile_plugin(self, source: PluginSource) -> list[str]:
        """Problems found loading the source in an isolate; empty when it is fine."""
        return await self._registry.compile(self._manifest(source), source.code)

    @activity.defn(name="register_plugin")
    async def register_plugin(self, params: RegisterInput) -> RegisterResult:
        source = params.source
        try:
            plugin, _ = await self._registry.register(
                source.tenant, self._manifest(source), source.code, source.settings,
                params.scan_report, call_key=call_key())
        except RegistryError as exc:
            raise ApplicationError(str(exc), type=PLUGIN_REJECTED, non_retryable=True) from exc
        return RegisterResult(plugin_id=plugin.id, version=plugin.version, active=plugin.active)

    @activity.defn(name="activate_plugin")
    async def activate_plugin(self, params: ActivateInput) -> None:
        try:
            await self._registry.activate(params.tenant, params.plugin_id, call_key=call_key())
        except RegistryError as exc:
            raise ApplicationError(str(exc), type=PLUGIN_REJECTED, non_retryable=True) from exc
