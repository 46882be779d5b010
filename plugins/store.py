"""The plugins' part of Pat's store: installed plugins per tenant, each plugin's own key-value
space, the record of every hook run, and the effects hooks asked for, each under its
idempotency key. Tables are created by migrations 0002_plugins and 0003_plugin_effects.

Errors are sorted in two: ``store_unavailable`` says whether an error means the store could not
be reached (worth retrying) rather than that it refused what it was given."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from pat.domain import now_ns
from plugins.manifest import Manifest
from plugins.runtime import StoredValue

metadata = MetaData()

plugins_table = Table(
    "plugins", metadata,
    Column("tenant", String(255), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("version", String(64), nullable=False),
    Column("manifest", JSON, nullable=False),
    Column("code", Text, nullable=False),
    Column("code_sha256", String(64), nullable=False),
    Column("scan_report", JSON, nullable=False),
    Column("settings", JSON, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("position", Integer, nullable=False),
    Column("installed_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
)

storage_table = Table(
    "plugin_storage", metadata,
    Column("tenant", String(255), primary_key=True),
    Column("plugin_id", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
)

runs_table = Table(
    "plugin_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(255), nullable=False),
    Column("plugin_id", String(64), nullable=False),
    Column("plugin_version", String(64), nullable=False),
    Column("hook", String(64), nullable=False),
    Column("message_id", String(255)),
    Column("status", String(32), nullable=False),
    Column("error", Text),
    Column("duration_ms", Float, nullable=False),
    Column("logs", JSON, nullable=False),
    Column("changes", JSON, nullable=False),
    Column("effects", JSON, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
)

effects_table = Table(
    "plugin_effects", metadata,
    Column("key", String(64), primary_key=True),
    Column("origin", Text, nullable=False),
    Column("tenant", String(255), nullable=False),
    Column("plugin_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("target", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
)

MAX_KEYS = 10_000


class StorageQuotaError(ValueError):
    """A plugin's storage writes break its quota; nothing was written."""


def store_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the store could not be reached or could not answer (a lost
    connection, a locked or full SQLite file, an exhausted pool), which a retry may cure, rather
    than that it refused what it was given."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError, DisconnectionError,
                            PoolTimeoutError, OSError))


@dataclass(frozen=True)
class EffectClaim:
    """One effect of one hook call, about to be carried out. ``key`` is the idempotency key
    (a digest of ``origin``, which says which workflow, activity, plugin, hook and position it
    is): the same effect of a retried call has the same key."""

    key: str
    origin: str
    tenant: str
    plugin_id: str
    kind: str
    target: str


@dataclass(frozen=True)
class EffectRecord:
    state: str  # "started", "done" or "failed"
    detail: str


@dataclass
class InstalledPlugin:
    tenant: str
    id: str
    name: str
    version: str
    manifest: Manifest
    code: str
    code_sha256: str
    scan_report: dict[str, Any]
    settings: dict[str, Any]
    active: bool
    position: int
    installed_ns: int
    updated_ns: int


@dataclass
class PluginRun:
    id: int
    tenant: str
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
    created_ns: int


def _plugin(row: Any) -> InstalledPlugin:
    values = dict(row._mapping)
    values["manifest"] = Manifest.model_validate(values["manifest"])
    return InstalledPlugin(**values)


class PluginStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, tenant: str, plugin_id: str) -> InstalledPlugin | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(plugins_table).where(
                plugins_table.c.tenant == tenant, plugins_table.c.id == plugin_id))).first()
        return _plugin(row) if row else None

    async def list(self, tenant: str, *, active_only: bool = False) -> builtins.list[
            InstalledPlugin]:
        """In execution order."""
        query = select(plugins_table).where(plugins_table.c.tenant == tenant)
        if active_only:
            query = query.where(plugins_table.c.active.is_(True))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(plugins_table.c.position,
                                                      plugins_table.c.id))).all()
        return [_plugin(r) for r in rows]

    async def register(self, tenant: str, manifest: Manifest, code: str, code_sha256: str,
                       scan_report: dict[str, Any], settings: dict[str, Any]) -> InstalledPlugin:
        """Install, or upgrade in place keeping position, activation and storage."""
        stamp = now_ns()
        values = {"name": manifest.name, "version": manifest.version,
                  "manifest": manifest.model_dump(mode="json"), "code": code,
                  "code_sha256": code_sha256, "scan_report": scan_report, "settings": settings,
                  "updated_ns": stamp}
        async with self.engine.begin() as conn:
            exists = await conn.scalar(select(func.count()).select_from(plugins_table).where(
                plugins_table.c.tenant == tenant, plugins_table.c.id == manifest.id))
            if exists:
                await conn.execute(update(plugins_table).where(
                    plugins_table.c.tenant == tenant, plugins_table.c.id == manifest.id)
                    .values(**values))
            else:
                last = await conn.scalar(select(func.max(plugins_table.c.position))
                                         .where(plugins_table.c.tenant == tenant))
                await conn.execute(plugins_table.insert().values(
                    tenant=tenant, id=manifest.id, active=False,
                    position=(last or 0) + 10, installed_ns=stamp, **values))
        registered = await self.get(tenant, manifest.id)
        assert registered is not None
        return registered

    async def update(self, tenant: str, plugin_id: str, **values: Any) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(update(plugins_table).where(
                plugins_table.c.tenant == tenant, plugins_table.c.id == plugin_id)
                .values(updated_ns=now_ns(), **values))
        return bool(result.rowcount)

    async def remove(self, tenant: str, plugin_id: str) -> bool:
        """The plugin, its storage, its run records and its effect records."""
        async with self.engine.begin() as conn:
            for table, column in ((storage_table, storage_table.c.plugin_id),
                                  (runs_table, runs_table.c.plugin_id),
                                  (effects_table, effects_table.c.plugin_id)):
                await conn.execute(delete(table).where(table.c.tenant == tenant,
                                                       column == plugin_id))
            result = await conn.execute(delete(plugins_table).where(
                plugins_table.c.tenant == tenant, plugins_table.c.id == plugin_id))
        return bool(result.rowcount)

    async def storage(self, tenant: str, plugin_id: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(storage_table.c.key, storage_table.c.value).where(
                storage_table.c.tenant == tenant, storage_table.c.plugin_id == plugin_id))).all()
        return {r.key: r.value for r in rows}

    async def apply_storage_writes(self, claim: EffectClaim,
                                   writes: dict[str, StoredValue | None]) -> bool:
        """Apply a hook's writes (key -> value, or None to delete) all or nothing, under the
        claim's idempotency key. False if an earlier attempt of the same hook call committed
        its writes already: a retried call must not apply them twice."""
        stamp = now_ns()
        owner = (storage_table.c.tenant == claim.tenant,
                 storage_table.c.plugin_id == claim.plugin_id)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(effects_table.insert().values(
                    key=claim.key, origin=claim.origin, tenant=claim.tenant,
                    plugin_id=claim.plugin_id, kind=claim.kind, target=claim.target,
                    state="done", detail=f"{len(writes)} keys written",
                    created_ns=stamp, updated_ns=stamp))
                await conn.execute(delete(storage_table).where(
                    *owner, storage_table.c.key.in_(list(writes))))
                rows = [{"tenant": claim.tenant, "plugin_id": claim.plugin_id, "key": key,
                         "value": write.value, "updated_ns": stamp}
                        for key, write in writes.items() if write is not None]
                if rows:
                    await conn.execute(storage_table.insert(), rows)
                count = await conn.scalar(select(func.count()).select_from(storage_table)
                                          .where(*owner))
                if (count or 0) > MAX_KEYS:
                    raise StorageQuotaError(f"a plugin may keep at most {MAX_KEYS} keys")
        except IntegrityError:
            if await self.effect(claim.key) is None:
                raise
            return False
        return True

    async def claim_effect(self, claim: EffectClaim) -> EffectRecord | None:
        """Record that an effect is about to be carried out. None when this call made the
        claim; the earlier attempt's record when one had claimed it already."""
        stamp = now_ns()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(effects_table.insert().values(
                    key=claim.key, origin=claim.origin, tenant=claim.tenant,
                    plugin_id=claim.plugin_id, kind=claim.kind, target=claim.target,
                    state="started", detail="", created_ns=stamp, updated_ns=stamp))
        except IntegrityError:
            earlier = await self.effect(claim.key)
            if earlier is None:
                raise
            return earlier
        return None

    async def finish_effect(self, key: str, *, done: bool, detail: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(effects_table).where(effects_table.c.key == key).values(
                state="done" if done else "failed", detail=detail, updated_ns=now_ns()))

    async def effect(self, key: str) -> EffectRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(effects_table.c.state, effects_table.c.detail)
                                      .where(effects_table.c.key == key))).first()
        return EffectRecord(state=row.state, detail=row.detail) if row else None

    async def record_run(self, run: dict[str, Any]) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(runs_table.insert().values(created_ns=now_ns(), **run))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    async def runs(self, tenant: str, *, plugin_id: str | None = None,
                   message_id: str | None = None, limit: int = 100) -> builtins.list[PluginRun]:
        """Newest first."""
        query = select(runs_table).where(runs_table.c.tenant == tenant)
        if plugin_id:
            query = query.where(runs_table.c.plugin_id == plugin_id)
        if message_id:
            query = query.where(runs_table.c.message_id == message_id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(runs_table.c.id.desc()).limit(limit))).all()
        return [PluginRun(**dict(r._mapping)) for r in rows]
