"""Pat's REST API for plugins: /api/v3/plugins.

Installing starts the PluginInstall workflow (scan, compile, register, activate) and answers
with its result; the other operations act on the registry directly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from temporalio.client import Client

from api.deps import StateDep, TenantDep
from pat import temporal
from pat.settings import Settings
from plugins.host import PluginHost
from plugins.manifest import ManifestError, parse_manifest
from plugins.registry import PluginRegistry, RegistryError
from plugins.store import InstalledPlugin, PluginRun, PluginStore

router = APIRouter(prefix="/api/v3/plugins", tags=["plugins"])

PLUGIN_INSTALL = "PluginInstall"  # workflows.plugin_install

TenantQuery = Annotated[str | None, Query(description="Tenant; the server's own by default.")]


class PluginOut(BaseModel):
    id: str
    name: str
    version: str
    description: str
    hooks: list[str]
    permissions: list[str]
    hosts: list[str]
    active: bool
    position: int
    settings: dict[str, Any]
    settings_schema: dict[str, Any]
    scan_report: dict[str, Any]
    installed: datetime
    updated: datetime


class RunOut(BaseModel):
    id: int
    plugin_id: str
    plugin_version: str
    hook: str
    message_id: str | None
    status: str
    error: str | None
    duration_ms: float
    logs: list[dict[str, str]]
    changes: dict[str, Any]
    effects: list[dict[str, Any]]
    created: datetime


class PluginSourceIn(BaseModel):
    manifest: dict[str, Any] = Field(description="The plugin's manifest.json as an object.")
    code: str = Field(description="The plugin's JavaScript source.")
    settings: dict[str, Any] = Field(default_factory=dict)
    activate: bool = True


class PluginUpdateIn(BaseModel):
    active: bool | None = None
    position: int | None = None
    settings: dict[str, Any] | None = None


class ScanOut(BaseModel):
    passed: bool
    findings: list[dict[str, Any]]
    problems: list[str]


class MessageViewOut(BaseModel):
    message_id: str
    header_changes: list[dict[str, str | None]]
    metadata: dict[str, Any]
    runs: list[RunOut]


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _plugin_out(plugin: InstalledPlugin) -> PluginOut:
    manifest = plugin.manifest
    return PluginOut(
        id=plugin.id, name=plugin.name, version=plugin.version,
        description=manifest.description, hooks=manifest.hooks,
        permissions=manifest.permissions, hosts=manifest.hosts, active=plugin.active,
        position=plugin.position, settings=plugin.settings,
        settings_schema={k: v.model_dump() for k, v in manifest.settings.items()},
        scan_report=plugin.scan_report, installed=_time(plugin.installed_ns),
        updated=_time(plugin.updated_ns))


def _run_out(run: PluginRun) -> RunOut:
    return RunOut(id=run.id, plugin_id=run.plugin_id, plugin_version=run.plugin_version,
                  hook=run.hook, message_id=run.message_id, status=run.status, error=run.error,
                  duration_ms=run.duration_ms, logs=run.logs, changes=run.changes,
                  effects=run.effects, created=_time(run.created_ns))


def _registry(state: Any) -> PluginRegistry:
    store = PluginStore(state.store.engine)
    return PluginRegistry(store, PluginHost(store, state.store, state.settings), state.settings)


def _tenant(settings: Settings, tenant: str | None, bound: str | None) -> str:
    """The tenant a request is about: the one asked for, else the server's; a key bound to a
    tenant may ask for that tenant only."""
    if bound is not None and tenant not in (None, bound):
        raise HTTPException(403, detail=f"this key may manage the plugins of tenant {bound!r} "
                                        "only")
    return tenant or bound or settings.tenant


async def _temporal_client(request: Request, settings: Settings) -> Client:
    """Connected on first use, so the API starts (and serves everything else) without
    Temporal."""
    client: Client | None = getattr(request.app.state, "plugin_temporal_client", None)
    if client is None:
        try:
            client = await temporal.connect(settings)
        except Exception as exc:
            raise HTTPException(503, detail=f"cannot reach Temporal at "
                                f"{settings.temporal_address} to run the install: {exc}") from exc
        request.app.state.plugin_temporal_client = client
    return client


@router.get("", response_model=list[PluginOut])
async def list_plugins(state: StateDep, bound: TenantDep,
                       tenant: TenantQuery = None) -> list[PluginOut]:
    """Installed plugins in execution order."""
    plugins = await _registry(state).store.list(_tenant(state.settings, tenant, bound))
    return [_plugin_out(p) for p in plugins]


@router.post("/scan", response_model=ScanOut)
async def scan_plugin(source: PluginSourceIn, state: StateDep) -> ScanOut:
    """The security scan and the compile check, without installing anything."""
    try:
        manifest = parse_manifest(source.manifest)
    except ManifestError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    registry = _registry(state)
    report = registry.scan(manifest, source.code).to_dict()
    return ScanOut(passed=report["passed"], findings=report["findings"],
                   problems=await registry.compile(manifest, source.code))


@router.post("", status_code=201, responses={422: {"description": "The plugin was refused."}})
async def install_plugin(source: PluginSourceIn, state: StateDep, request: Request,
                         bound: TenantDep, tenant: TenantQuery = None) -> dict[str, Any]:
    """Install or upgrade a plugin through the PluginInstall workflow."""
    try:
        manifest = parse_manifest(source.manifest)
    except ManifestError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    client = await _temporal_client(request, state.settings)
    owner = _tenant(state.settings, tenant, bound)
    # By name and as plain JSON: the API does not import the workflow packages.
    result: dict[str, Any] = await client.execute_workflow(
        PLUGIN_INSTALL,
        {"source": {"tenant": owner, "manifest": source.manifest, "code": source.code,
                    "settings": source.settings}, "activate": source.activate},
        id=f"plugin-install-{owner}-{manifest.id}-{uuid.uuid4().hex[:8]}",
        task_queue=state.settings.temporal_task_queue, result_type=dict)
    if result["status"] == "rejected":
        raise HTTPException(422, detail=result)
    return result


@router.get("/runs", response_model=list[RunOut])
async def list_runs(state: StateDep, bound: TenantDep, tenant: TenantQuery = None,
                    plugin_id: Annotated[str | None, Query()] = None,
                    message_id: Annotated[str | None, Query()] = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[RunOut]:
    """Hook runs, newest first: status, error, duration, logs, changes, effects."""
    runs = await _registry(state).store.runs(_tenant(state.settings, tenant, bound),
                                             plugin_id=plugin_id, message_id=message_id,
                                             limit=limit)
    return [_run_out(r) for r in runs]


@router.get("/view/{message_id}", response_model=MessageViewOut)
async def message_view(message_id: str, state: StateDep,
                       bound: TenantDep, tenant: TenantQuery = None) -> MessageViewOut:
    """What plugins changed in Pat's view of one message (the stored bytes never change)."""
    registry = _registry(state)
    owner = _tenant(state.settings, tenant, bound)
    headers, metadata = await registry.host.recorded_changes(owner, message_id)
    runs = await registry.store.runs(owner, message_id=message_id)
    return MessageViewOut(message_id=message_id, header_changes=headers, metadata=metadata,
                          runs=[_run_out(r) for r in runs])


async def _found(registry: PluginRegistry, tenant: str, plugin_id: str) -> InstalledPlugin:
    plugin = await registry.store.get(tenant, plugin_id)
    if plugin is None:
        raise HTTPException(404, detail=f"no plugin {plugin_id} is installed")
    return plugin


@router.get("/{plugin_id}", response_model=PluginOut)
async def get_plugin(plugin_id: str, state: StateDep, bound: TenantDep,
                     tenant: TenantQuery = None) -> PluginOut:
    return _plugin_out(await _found(_registry(state), _tenant(state.settings, tenant, bound),
                                    plugin_id))


@router.patch("/{plugin_id}", response_model=PluginOut)
async def update_plugin(plugin_id: str, update: PluginUpdateIn, state: StateDep,
                        bound: TenantDep, tenant: TenantQuery = None) -> PluginOut:
    """Activate or deactivate (running onActivate/onDeactivate), move, or configure."""
    registry = _registry(state)
    owner = _tenant(state.settings, tenant, bound)
    await _found(registry, owner, plugin_id)
    try:
        if update.settings is not None:
            await registry.configure(owner, plugin_id, update.settings)
        if update.position is not None:
            await registry.move(owner, plugin_id, update.position)
        if update.active is True:
            await registry.activate(owner, plugin_id)
        elif update.active is False:
            await registry.deactivate(owner, plugin_id)
    except RegistryError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    return _plugin_out(await _found(registry, owner, plugin_id))


@router.delete("/{plugin_id}", status_code=204)
async def remove_plugin(plugin_id: str, state: StateDep, bound: TenantDep,
                        tenant: TenantQuery = None) -> Response:
    """Deactivate (running onDeactivate), then delete the plugin, its storage and its runs."""
    registry = _registry(state)
    owner = _tenant(state.settings, tenant, bound)
    await _found(registry, owner, plugin_id)
    await registry.remove(owner, plugin_id)
    return Response(status_code=204)
