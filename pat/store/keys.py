"""API keys: made, listed, revoked and looked up. A key is ``pat_<id>_<secret>``; the store
keeps its id, scope, tenant and the SHA-256 of the whole key."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pat.domain import now_ns
from pat.store.models import api_keys


class Scope(StrEnum):
    """What a key may do; each scope includes the ones before it."""

    read = "read"  # every GET
    write = "write"  # deletes, reprocess
    admin = "admin"  # plugins and keys

    def allows(self, needed: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    scope: Scope
    tenant: str | None
    created_ns: int
    revoked_ns: int | None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def looks_like_key(text: str) -> bool:
    return text.startswith("pat_") and text.count("_") >= 2


class ApiKeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, scope: Scope, *, tenant: str | None = None,
                     name: str = "") -> tuple[str, KeyInfo]:
        """A new key and what is stored of it; the key itself is not stored."""
        key_id = secrets.token_hex(6)
        key = f"pat_{key_id}_{secrets.token_urlsafe(32)}"
        info = KeyInfo(id=key_id, name=name, scope=scope, tenant=tenant, created_ns=now_ns(),
                       revoked_ns=None)
        async with self.engine.begin() as conn:
            await conn.execute(api_keys.insert().values(
                id=info.id, name=info.name, key_hash=key_hash(key), scope=info.scope.value,
                tenant=info.tenant, created_ns=info.created_ns))
        return key, info

    async def list(self) -> list[KeyInfo]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(api_keys).order_by(api_keys.c.created_ns))).all()
        return [KeyInfo(id=r.id, name=r.name, scope=Scope(r.scope), tenant=r.tenant,
                        created_ns=r.created_ns, revoked_ns=r.revoked_ns) for r in rows]

    async def revoke(self, key_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(api_keys).where(api_keys.c.id == key_id,
                                       api_keys.c.revoked_ns.is_(None))
                .values(revoked_ns=now_ns()))
        return bool(result.rowcount)

    async def lookup(self, key: str) -> KeyInfo | None:
        """The active key ``key`` is, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(api_keys).where(
                api_keys.c.key_hash == key_hash(key), api_keys.c.revoked_ns.is_(None)))).first()
        if row is None:
            return None
        return KeyInfo(id=row.id, name=row.name, scope=Scope(row.scope), tenant=row.tenant,
                       created_ns=row.created_ns, revoked_ns=None)

    async def any_active(self) -> bool:
        async with self.engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(api_keys)
                                      .where(api_keys.c.revoked_ns.is_(None)))
        return bool(count)
