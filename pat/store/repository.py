"""Every read and write of messages goes through ``MessageStore``."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, cast, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pat.domain import EmailReceived, SpooledMessage, now_ns
from pat.store.models import Message, MessageStatus, message_raw, messages, outbox


@dataclass(frozen=True)
class MessageFilter:
    to: str | None = None
    sender: str | None = None
    subject: str | None = None
    status: str | None = None
    since_ns: int | None = None
    tenant: str | None = None


def _like(value: str) -> str:
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _row_to_message(row: Any) -> Message:
    return Message.model_validate(dict(row._mapping))


class MessageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def insert_batch(self, batch: Sequence[SpooledMessage]) -> None:
        """Write messages, their bytes and their outbox rows in ONE transaction."""
        stamp = now_ns()
        async with self.engine.begin() as conn:
            await conn.execute(messages.insert(), [
                {"id": m.id, "tenant": m.tenant, "created_ns": m.created_ns,
                 "updated_ns": stamp, "mail_from": m.mail_from, "recipients": m.recipients,
                 "helo": m.helo, "peer": m.peer, "size": len(m.data),
                 "status": MessageStatus.received}
                for m in batch])
            await conn.execute(message_raw.insert(),
                               [{"message_id": m.id, "data": m.data} for m in batch])
            await conn.execute(outbox.insert(), [
                {"message_id": m.id, "tenant": m.tenant, "size": len(m.data),
                 "created_ns": stamp} for m in batch])

    async def unpublished(self, limit: int) -> list[tuple[int, EmailReceived]]:
        query = (select(outbox.c.id, outbox.c.message_id, outbox.c.tenant, outbox.c.size,
                        messages.c.mail_from, messages.c.recipients)
                 .join(messages, messages.c.id == outbox.c.message_id)
                 .where(outbox.c.published_ns.is_(None))
                 .order_by(outbox.c.id).limit(limit))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(r.id, EmailReceived(message_id=r.message_id, tenant=r.tenant, size=r.size,
                                     mail_from=r.mail_from, recipients=list(r.recipients)))
                for r in rows]

    async def mark_published(self, outbox_ids: Sequence[int]) -> None:
        if not outbox_ids:
            return
        async with self.engine.begin() as conn:
            await conn.execute(update(outbox).where(outbox.c.id.in_(list(outbox_ids)))
                               .values(published_ns=now_ns()))

    async def get(self, message_id: str) -> Message | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
        return _row_to_message(row) if row else None

    async def get_raw(self, message_id: str) -> bytes | None:
        async with self.engine.connect() as conn:
            data = await conn.scalar(select(message_raw.c.data)
                                     .where(message_raw.c.message_id == message_id))
        return bytes(data) if data is not None else None

    async def get_many_raw(self, message_ids: Sequence[str]) -> dict[str, bytes]:
        if not message_ids:
            return {}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(message_raw.c.message_id, message_raw.c.data)
                                       .where(message_raw.c.message_id.in_(list(message_ids)))))
        return {r.message_id: bytes(r.data) for r in rows}

    def _where(self, flt: MessageFilter) -> list[Any]:
        clauses: list[Any] = []
        if flt.tenant:
            clauses.append(messages.c.tenant == flt.tenant)
        if flt.status:
            clauses.append(messages.c.status == flt.status)
        if flt.since_ns is not None:
            clauses.append(messages.c.created_ns >= flt.since_ns)
        if flt.to:
            pattern = _like(flt.to)
            clauses.append(or_(
                func.lower(func.coalesce(messages.c.to_header, "")).like(pattern, escape="\\"),
                func.lower(cast(messages.c.recipients, String)).like(pattern, escape="\\")))
        if flt.sender:
            pattern = _like(flt.sender)
            clauses.append(or_(
                func.lower(messages.c.mail_from).like(pattern, escape="\\"),
                func.lower(func.coalesce(messages.c.from_header, "")).like(pattern, escape="\\")))
        if flt.subject:
            clauses.append(func.lower(func.coalesce(messages.c.subject, ""))
                           .like(_like(flt.subject), escape="\\"))
        return clauses

    async def list(self, flt: MessageFilter | None = None, *, offset: int = 0,
                   limit: int = 50) -> tuple[int, list[Message]]:
        """Newest first, with the total count of matches."""
        clauses = self._where(flt or MessageFilter())
        async with self.engine.connect() as conn:
            total = await conn.scalar(select(func.count()).select_from(messages).where(*clauses))
            rows = (await conn.execute(
                select(messages).where(*clauses)
                .order_by(messages.c.created_ns.desc(), messages.c.id)
                .offset(offset).limit(limit))).all()
        return int(total or 0), [_row_to_message(r) for r in rows]

    async def changed_since(self, since_ns: int, limit: int = 5000) -> builtins.list[Message]:
        """Messages written at or after ``since_ns``, oldest change first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(messages).where(messages.c.updated_ns >= since_ns)
                .order_by(messages.c.updated_ns).limit(limit))).all()
        return [_row_to_message(r) for r in rows]

    async def ids(self) -> builtins.set[str]:
        async with self.engine.connect() as conn:
            return set((await conn.scalars(select(messages.c.id))).all())

    async def delete(self, message_id: str) -> bool:
        async with self.engine.begin() as conn:
            await conn.execute(delete(outbox).where(outbox.c.message_id == message_id))
            await conn.execute(delete(message_raw).where(message_raw.c.message_id == message_id))
            result = await conn.execute(delete(messages).where(messages.c.id == message_id))
        return bool(result.rowcount)

    async def delete_all(self) -> builtins.list[str]:
        """Delete every message; return the ids deleted."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(outbox))
            await conn.execute(delete(message_raw))
            result = await conn.execute(delete(messages).returning(messages.c.id))
            return list(result.scalars().all())

    async def save_parsed(self, message_id: str, parsed: dict[str, Any], *, subject: str,
                          from_header: str, to_header: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(messages).where(messages.c.id == message_id).values(
                    parsed=parsed, subject=subject, from_header=from_header,
                    to_header=to_header, updated_ns=now_ns()))
        return bool(result.rowcount)

    async def save_checks(self, message_id: str, checks: dict[str, Any]) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(messages).where(messages.c.id == message_id).values(
                    checks=checks, updated_ns=now_ns()))
        return bool(result.rowcount)

    async def set_status(self, message_id: str, status: MessageStatus,
                         reason: str | None = None) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(messages).where(messages.c.id == message_id).values(
                    status=status, failure_reason=reason, updated_ns=now_ns()))
        return bool(result.rowcount)
