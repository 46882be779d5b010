"""Every read and write of messages goes through ``MessageStore``."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import bindparam, delete, func, literal_column, select, table, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from pat.domain import EmailReceived, SpooledMessage, now_ns
from pat.parsing import (
    MalformedMessage,
    MessageReading,
    ParsedMessage,
    Part,
    decode_body,
    headline,
    part_bytes,
    part_text,
    storable_text,
)
from pat.search import SearchDocument, Term, on_arrival, parse_query
from pat.store.db import SqliteWriter
from pat.store.models import (
    Message,
    MessageStatus,
    message_artifacts,
    message_counts,
    message_raw,
    message_search,
    messages,
    outbox,
)


@dataclass(frozen=True)
class MessageFilter:
    """Which messages a list wants. ``to``, ``sender``, ``subject`` and ``text`` are each text
    that must occur (whatever the case) in the recipients, the sender, the subject, or anywhere
    (``pat.search``); ``q`` is a search query (``pat.search.parse_query``)."""

    to: str | None = None
    sender: str | None = None
    subject: str | None = None
    status: str | None = None
    since_ns: int | None = None
    tenant: str | None = None
    text: str | None = None
    q: str | None = None

    def terms(self) -> list[Term]:
        found = [Term(column, value) for column, value in (
            ("to_text", self.to), ("from_text", self.sender), ("subject_text", self.subject),
            ("all_text", self.text)) if value]
        return found + (parse_query(self.q) if self.q else [])

    def counted(self) -> bool:
        """Whether the total is the tenant's (or everyone's) number of messages."""
        return not (self.status or self.since_ns is not None or self.terms())


def _arrival_columns(message: SpooledMessage) -> tuple[dict[str, str | None], SearchDocument]:
    """Subject, From and To read from the header section, so that a list shows them (and a
    search finds them) from the moment of 250; the parse step replaces them with its own
    reading."""
    found = headline(message.data)
    return ({"subject": found.subject, "from_header": found.from_header,
             "to_header": found.to_header},
            on_arrival(message.mail_from, message.recipients, found))


# SQLite's FTS5 index over message_search (migration 0006_search). Its trigram tokenizer finds
# a term of three characters or more from the index; shorter ones are read row by row.
_FTS = table("message_fts", literal_column("rowid"))
_TRIGRAM = 3

# Newest first; migration 0008 indexes messages in this order.
_NEWEST_FIRST = (messages.c.created_ns.desc(), messages.c.id)

# Both indexes find a term by its trigrams, and a trigram that most messages have costs a read
# of an index entry per message: "user0042@customers.test" has 21 trigrams, "ers" and "est"
# among them, which every message of that domain has; at a million messages that is tens of
# milliseconds. So when part of a term has only rare trigrams, the index is asked for that part
# and the whole term is checked in the rows it finds: the same matches, for the cost of reading
# those rows. Which trigrams are rare, and how many rows a part finds, is estimated from a
# sample of the column (``_lookup_part``).
_SAMPLE_ROWS = 500
_SAMPLE_SECONDS = 600.0
_RARE = 0.05  # a trigram in more of the sampled rows than this is not looked up in a part
# What checking a term in one row the index found costs, in reads of one index entry: the
# row's text is read and searched, for all_text kilobytes of it (compressed, on PostgreSQL).
# Measured at 200,000 messages: a row of all_text ~20-100 us, an index entry ~0.01-0.1 us.
_ROW_COST = {"all_text": 3000.0}
_SHORT_ROW_COST = 200.0


@dataclass
class _ColumnSample:
    """Lower-cased text of some rows of one column of message_search, and the share of them
    that has each piece of text asked about so far."""

    taken: float
    texts: list[str]
    shares: dict[str, float] = field(default_factory=dict)

    def share(self, piece: str) -> float:
        """Half a row is added to what the sample shows: a piece it does not show is rare,
        not absent."""
        found = self.shares.get(piece)
        if found is None:
            hits = sum(piece in text for text in self.texts)
            found = self.shares[piece] = (hits + 0.5) / (len(self.texts) + 1)
        return found


def _lookup_part(text: str, share: Callable[[str], float], row_cost: float) -> str | None:
    """The part of ``text`` to ask the index for, or None for the whole of it. A part is a run
    of letters and digits whose trigrams each have a ``share`` of at most ``_RARE`` (pg_trgm
    splits words at anything else, so the part's trigrams are the index's own). It costs a
    read of the index entries of its trigrams, and ``row_cost`` for each row it finds (its
    share); it is taken if that is less than half what the whole term costs."""
    folded = text.lower()
    if len(folded) != len(text):  # lower-casing moved the positions: no part lines up
        return None
    trigrams = [folded[i:i + _TRIGRAM] for i in range(len(text) - _TRIGRAM + 1)]
    shares = [share(t) for t in trigrams]
    best, best_cost = None, sum(shares) / 2
    first = None
    for i, trigram in enumerate([*trigrams, ""]):
        if trigram.isalnum() and shares[i] <= _RARE:
            first = i if first is None else first
            continue
        if first is not None:
            part = folded[first:i - 1 + _TRIGRAM]
            cost = sum(shares[first:i]) + share(part) * row_cost
            if cost < best_cost:
                best, best_cost = text[first:i - 1 + _TRIGRAM], cost
            first = None
    return best


@dataclass(frozen=True)
class Deleted:
    message_id: str
    tenant: str


def _like(value: str) -> str:
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _row_to_message(row: Any) -> Message:
    return Message.model_validate(dict(row._mapping))


T = TypeVar("T")

# What a list, a live event or a summary needs of a message: everything but the check results.
_SUMMARY_COLUMNS = [c for c in messages.c if c.name != "checks"]


@dataclass(frozen=True)
class StoredArtifact:
    """What the parse step stored of a message (see ``MessageArtifact``)."""

    view: dict[str, Any]
    text: str | None = None
    html: str | None = None
    mailhog: bytes | None = None


@dataclass(frozen=True)
class ArtifactSummary:
    """The columns of ``messages`` that the parse step fills in."""

    subject: str
    from_header: str
    to_header: str
    snippet: str
    attachment_count: int


class MessageStore:
    # Below this many sampled rows, terms are looked up whole (a small store answers fast).
    sample_minimum = 100

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._writer = SqliteWriter.for_engine(engine)
        self._samples: dict[str, _ColumnSample] = {}

    async def _write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` (SQLAlchemy statements on a synchronous connection) as one
        transaction. On SQLite, in one call on this store's writer thread
        (``pat.store.db.SqliteWriter``); on PostgreSQL, on the async engine."""
        if self._writer is not None:
            return await self._writer.run(work)
        async with self.engine.begin() as conn:
            return await conn.run_sync(work)

    async def insert_batch(self, batch: Sequence[SpooledMessage]) -> None:
        """Write messages, their bytes and their outbox rows in ONE transaction."""
        stamp = now_ns()
        arrivals = [_arrival_columns(m) for m in batch]

        def write(conn: Connection) -> None:
            conn.execute(messages.insert(), [
                {"id": m.id, "tenant": m.tenant, "created_ns": m.created_ns,
                 "updated_ns": stamp, "mail_from": m.mail_from, "recipients": m.recipients,
                 "helo": m.helo, "peer": m.peer, "size": len(m.data),
                 "status": MessageStatus.received, **columns}
                for m, (columns, _) in zip(batch, arrivals, strict=True)])
            conn.execute(message_raw.insert(),
                         [{"message_id": m.id, "data": m.data} for m in batch])
            conn.execute(message_search.insert(), [
                {"message_id": m.id, **found.row()}
                for m, (_, found) in zip(batch, arrivals, strict=True)])
            conn.execute(outbox.insert(), [
                {"message_id": m.id, "tenant": m.tenant, "size": len(m.data),
                 "created_ns": stamp} for m in batch])

        await self._write(write)

    async def unpublished(self, limit: int) -> list[tuple[int, EmailReceived]]:
        query = (select(outbox.c.id, outbox.c.message_id, outbox.c.tenant, outbox.c.size,
                        outbox.c.run, messages.c.mail_from, messages.c.recipients,
                        messages.c.subject)
                 .join(messages, messages.c.id == outbox.c.message_id)
                 .where(outbox.c.published_ns.is_(None))
                 .order_by(outbox.c.id).limit(limit))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(r.id, EmailReceived(message_id=r.message_id, tenant=r.tenant, size=r.size,
                                     mail_from=r.mail_from, recipients=list(r.recipients),
                                     run=r.run, subject=r.subject))
                for r in rows]

    async def mark_published(self, outbox_ids: Sequence[int]) -> None:
        if not outbox_ids:
            return
        statement = (update(outbox).where(outbox.c.id.in_(list(outbox_ids)))
                     .values(published_ns=now_ns()))
        await self._write(lambda conn: conn.execute(statement))

    async def get(self, message_id: str, *, tenant: str | None = None) -> Message | None:
        """The message; with ``tenant``, only if it is that tenant's."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(messages).where(
                *self._of(message_id, tenant)))).first()
        return _row_to_message(row) if row else None

    async def get_raw(self, message_id: str, *, tenant: str | None = None) -> bytes | None:
        """The message's bytes; with ``tenant``, only if it is that tenant's."""
        query = select(message_raw.c.data).where(message_raw.c.message_id == message_id)
        if tenant is not None:
            query = query.join(messages, messages.c.id == message_raw.c.message_id).where(
                messages.c.tenant == tenant)
        async with self.engine.connect() as conn:
            data = await conn.scalar(query)
        return bytes(data) if data is not None else None

    @staticmethod
    def _of(message_id: str, tenant: str | None = None,
            run: int | None = None) -> builtins.list[Any]:
        """The message, if it is ``tenant``'s (when given) and ``run`` is its current
        pipeline run (when given)."""
        clauses: builtins.list[Any] = [messages.c.id == message_id]
        if tenant is not None:
            clauses.append(messages.c.tenant == tenant)
        if run is not None:
            clauses.append(messages.c.pipeline_run == run)
        return clauses

    async def get_many_raw(self, message_ids: Sequence[str]) -> dict[str, bytes]:
        if not message_ids:
            return {}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(message_raw.c.message_id, message_raw.c.data)
                                       .where(message_raw.c.message_id.in_(list(message_ids)))))
        return {r.message_id: bytes(r.data) for r in rows}

    async def _where(self, conn: Any, flt: MessageFilter) -> list[Any]:
        clauses: list[Any] = []
        if flt.tenant:
            clauses.append(messages.c.tenant == flt.tenant)
        if flt.status:
            clauses.append(messages.c.status == flt.status)
        if flt.since_ns is not None:
            clauses.append(messages.c.created_ns >= flt.since_ns)
        # As the search text was stored: NUL as U+FFFD, no lone surrogates.
        terms = [Term(t.column, storable_text(t.text)) for t in flt.terms()]
        if terms:
            parts = [await self._part(conn, t) for t in terms]
            clauses.append(messages.c.id.in_(self._matching(terms, parts)))
        return clauses

    async def _sample(self, conn: Any, column: str) -> _ColumnSample:
        """Some rows of ``column``, read again every ``_SAMPLE_SECONDS``."""
        sample = self._samples.get(column)
        if sample is None or time.monotonic() - sample.taken > _SAMPLE_SECONDS:
            low, high = (await conn.execute(select(func.min(message_search.c.seq),
                                                   func.max(message_search.c.seq)))).one()
            texts: builtins.list[str] = []
            if low is not None:
                picks = {random.randint(low, high) for _ in range(_SAMPLE_ROWS)}
                texts = [text.lower() for text in await conn.scalars(
                    select(message_search.c[column]).where(message_search.c.seq.in_(picks)))]
            sample = self._samples[column] = _ColumnSample(time.monotonic(), texts)
        return sample

    async def _part(self, conn: Any, term: Term) -> str | None:
        """The part of ``term`` to ask the index for (``_lookup_part``); None for the whole
        term. On SQLite only for terms of ASCII characters: there the rows found are checked
        with LIKE, which folds the case of ASCII letters only (as FTS5 folds them)."""
        if len(term.text) < _TRIGRAM or (self._sqlite and not term.text.isascii()):
            return None
        sample = await self._sample(conn, term.column)
        if len(sample.texts) < self.sample_minimum:
            return None
        return _lookup_part(term.text, sample.share,
                            _ROW_COST.get(term.column, _SHORT_ROW_COST))

    def _matching(self, terms: Sequence[Term], parts: Sequence[str | None]) -> Any:
        """The ids of messages whose search text has every term (``pat.search``): those the
        index finds for each term's part (for the whole term when it has none), in which each
        term looked up by a part is then found whole."""
        if not self._sqlite:
            return self._matching_postgres(terms, parts)
        found = select(message_search.c.message_id)
        looked_up = [(t.column, part or t.text) for t, part in zip(terms, parts, strict=True)
                     if len(part or t.text) >= _TRIGRAM]
        if looked_up:
            expression = " AND ".join(
                f'{column} : "{text.replace(chr(34), chr(34) * 2)}"' for column, text in looked_up)
            found = found.where(message_search.c.seq.in_(
                select(literal_column("rowid")).select_from(_FTS).where(
                    literal_column("message_fts").op("MATCH")(bindparam(None, expression)))))
        # Read row by row: terms too short for the index, and terms it was asked for by part.
        return found.where(*(func.lower(message_search.c[t.column]).like(
            _like(t.text), escape="\\") for t, part in zip(terms, parts, strict=True)
            if len(t.text) < _TRIGRAM or part))

    @staticmethod
    def _matching_postgres(terms: Sequence[Term], parts: Sequence[str | None]) -> Any:
        """pg_trgm's GIN indexes serve ILIKE for terms of three characters or more. A term
        looked up by a part is checked whole outside the index scan: behind OFFSET 0, which
        keeps the planner from handing the whole term's trigrams to the index as well."""
        def contains(column: Any, text: str) -> Any:
            return column.ilike(_like(text), escape="\\")

        looked_up = [contains(message_search.c[t.column], part or t.text)
                     for t, part in zip(terms, parts, strict=True)]
        checked = [t for t, part in zip(terms, parts, strict=True) if part]
        if not checked:
            return select(message_search.c.message_id).where(*looked_up)
        found = (select(message_search.c.message_id,
                        *(message_search.c[c] for c in sorted({t.column for t in checked})))
                 .where(*looked_up).offset(0).subquery())
        return select(found.c.message_id).where(
            *(contains(found.c[t.column], t.text) for t in checked))

    async def list(self, flt: MessageFilter | None = None, *, offset: int = 0,
                   limit: int = 50) -> tuple[int, list[Message]]:
        """Newest first, with the total count of matches."""
        flt = flt or MessageFilter()
        async with self.engine.connect() as conn:
            clauses = await self._where(conn, flt)
            if flt.terms():
                return await self._search(conn, clauses, offset, limit)
            total = await conn.scalar(self._total(flt, clauses))
            # The page's ids first, from the index of the order alone; only then its rows: a
            # deep page skips index entries, not whole rows.
            page = (select(messages.c.id).where(*clauses).order_by(*_NEWEST_FIRST)
                    .offset(offset).limit(limit))
            rows = (await conn.execute(
                select(*_SUMMARY_COLUMNS).where(messages.c.id.in_(page))
                .order_by(*_NEWEST_FIRST))).all()
        return int(total or 0), [_row_to_message(r) for r in rows]

    @staticmethod
    async def _search(conn: Any, clauses: Sequence[Any], offset: int,
                      limit: int) -> tuple[int, builtins.list[Message]]:
        """A list that searches: the matches found once, and both counted and paged from
        there, in one statement (a row with the total and no message if the page is empty)."""
        found = select(messages.c.id, messages.c.created_ns).where(*clauses).cte("found")
        counted = select(func.count().label("total")).select_from(found).subquery("counted")
        page = select(*_SUMMARY_COLUMNS).where(messages.c.id.in_(
            select(found.c.id).order_by(found.c.created_ns.desc(), found.c.id)
            .offset(offset).limit(limit))).subquery("page")
        rows = (await conn.execute(
            select(counted.c.total, *page.c).select_from(counted.outerjoin(page, true()))
            .order_by(page.c.created_ns.desc(), page.c.id))).all()
        names = [c.name for c in _SUMMARY_COLUMNS]
        return int(rows[0].total), [
            Message.model_validate({name: getattr(row, name) for name in names})
            for row in rows if row.id is not None]

    @staticmethod
    def _total(flt: MessageFilter, clauses: Sequence[Any]) -> Any:
        """How many messages match: without filters, the tenant's count (migration
        0007_message_counts), which costs no count of rows."""
        if not flt.counted():
            return select(func.count()).select_from(messages).where(*clauses)
        counted = select(func.coalesce(func.sum(message_counts.c.total), 0))
        if flt.tenant:
            counted = counted.where(message_counts.c.tenant == flt.tenant)
        return counted

    async def changed_since(self, since_ns: int, limit: int = 5000) -> builtins.list[Message]:
        """Messages written at or after ``since_ns``, oldest change first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(*_SUMMARY_COLUMNS).where(messages.c.updated_ns >= since_ns)
                .order_by(messages.c.updated_ns).limit(limit))).all()
        return [_row_to_message(r) for r in rows]

    async def ids(self) -> builtins.set[str]:
        async with self.engine.connect() as conn:
            return set((await conn.scalars(select(messages.c.id))).all())

    async def delete(self, message_id: str, *, tenant: str | None = None) -> Deleted | None:
        """Delete the message (with ``tenant``, only if it is that tenant's); what was
        deleted, or None."""
        def write(conn: Connection) -> Deleted | None:
            owner = conn.scalar(select(messages.c.tenant).where(*self._of(message_id, tenant)))
            if owner is None:
                return None
            conn.execute(delete(outbox).where(outbox.c.message_id == message_id))
            conn.execute(delete(message_raw).where(message_raw.c.message_id == message_id))
            conn.execute(delete(messages).where(messages.c.id == message_id))
            return Deleted(message_id, owner)

        return await self._write(write)

    async def delete_all(self, *, tenant: str | None = None) -> builtins.list[Deleted]:
        """Delete every message (with ``tenant``, every one of that tenant's); what was
        deleted."""
        owned = select(messages.c.id)
        if tenant is not None:
            owned = owned.where(messages.c.tenant == tenant)
        removed = delete(messages).returning(messages.c.id, messages.c.tenant)
        if tenant is not None:
            removed = removed.where(messages.c.tenant == tenant)

        def write(conn: Connection) -> builtins.list[Deleted]:
            conn.execute(delete(outbox).where(outbox.c.message_id.in_(owned)))
            conn.execute(delete(message_raw).where(message_raw.c.message_id.in_(owned)))
            return [Deleted(row.id, row.tenant) for row in conn.execute(removed)]

        return await self._write(write)

    async def save_artifact(self, message_id: str, artifact: StoredArtifact,
                            summary: ArtifactSummary,
                            search: SearchDocument | None = None) -> bool:
        """Store what the parse step made of the message, replacing any earlier artifact (a
        reprocess), the columns a list shows and (when given) its search text; whether the
        message is still there."""
        def write(conn: Connection) -> bool:
            result = conn.execute(
                update(messages).where(messages.c.id == message_id).values(
                    subject=summary.subject, from_header=summary.from_header,
                    to_header=summary.to_header, snippet=summary.snippet,
                    attachment_count=summary.attachment_count, updated_ns=now_ns()))
            if not result.rowcount:
                return False
            conn.execute(delete(message_artifacts)
                         .where(message_artifacts.c.message_id == message_id))
            conn.execute(message_artifacts.insert().values(
                message_id=message_id, view=artifact.view, text=artifact.text,
                html=artifact.html, mailhog=artifact.mailhog))
            if search is not None:
                changed = conn.execute(update(message_search).where(
                    message_search.c.message_id == message_id).values(**search.row()))
                if not changed.rowcount:  # a message stored before the search rows existed
                    conn.execute(message_search.insert().values(message_id=message_id,
                                                                **search.row()))
            return True

        return await self._write(write)

    async def get_artifact(self, message_id: str) -> StoredArtifact | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(message_artifacts).where(
                message_artifacts.c.message_id == message_id))).first()
        if row is None:
            return None
        return StoredArtifact(view=row.view, text=row.text, html=row.html,
                              mailhog=bytes(row.mailhog) if row.mailhog is not None else None)

    async def get_reading(self, message_id: str) -> MessageReading | None:
        """The parsed view and decoded bodies the parse step stored; None before it ran.
        Bodies of messages parsed before bodies were stored are decoded from the raw bytes."""
        artifact = await self.get_artifact(message_id)
        if artifact is None:
            return None
        view = ParsedMessage.from_dict(artifact.view)
        text, html = artifact.text, artifact.html
        if ((text is None and view.text_part is not None)
                or (html is None and view.html_part is not None)):
            raw = await self.get_raw(message_id) or b""
            with contextlib.suppress(MalformedMessage):
                text, html = part_text(raw, view.text_part), part_text(raw, view.html_part)
        return MessageReading(view=view, text=text, html=html)

    async def get_raw_slice(self, message_id: str, start: int, end: int) -> bytes | None:
        """Bytes ``start`` to ``end`` of the message, read without loading the rest."""
        async with self.engine.connect() as conn:
            data = await conn.scalar(
                select(func.substr(message_raw.c.data, start + 1, end - start))
                .where(message_raw.c.message_id == message_id))
        return bytes(data) if data is not None else None

    async def raw_size(self, message_id: str, *, tenant: str | None = None) -> int | None:
        """How many bytes the message has (with ``tenant``, if it is that tenant's)."""
        query = select(func.length(message_raw.c.data)).where(
            message_raw.c.message_id == message_id)
        if tenant is not None:
            query = query.join(messages, messages.c.id == message_raw.c.message_id).where(
                messages.c.tenant == tenant)
        async with self.engine.connect() as conn:
            size = await conn.scalar(query)
        return int(size) if size is not None else None

    async def iter_raw(self, message_id: str, size: int,
                       chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
        """The message's bytes in chunks, each read on its own: a download of a large message
        never holds it whole in memory."""
        for start in range(0, size, chunk):
            data = await self.get_raw_slice(message_id, start, min(size, start + chunk))
            if data is None:
                return
            yield data

    async def get_part_content(self, message_id: str, part: Part) -> bytes | None:
        """The decoded content of ``part``: from its slice of the raw bytes where the parse
        step located it, else by parsing the message."""
        if part.body_span is not None:
            start, end = part.body_span
            encoded = await self.get_raw_slice(message_id, start, end)
            if encoded is None:
                return None
            return await asyncio.to_thread(decode_body, encoded, part.transfer_encoding)
        raw = await self.get_raw(message_id)
        if raw is None:
            return None
        try:
            found = await asyncio.to_thread(part_bytes, raw, part.index)
        except MalformedMessage:
            return None
        return found[0] if found else None

    async def get_many_mailhog(self, message_ids: Sequence[str]) -> dict[str, bytes]:
        """The stored MailHog JSON of those messages that have one."""
        if not message_ids:
            return {}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(message_artifacts.c.message_id, message_artifacts.c.mailhog).where(
                    message_artifacts.c.message_id.in_(list(message_ids)),
                    message_artifacts.c.mailhog.is_not(None))))
        return {r.message_id: bytes(r.mailhog) for r in rows}

    async def save_checks(self, message_id: str, checks: dict[str, Any], *,
                          run: int | None = None, status: MessageStatus | None = None) -> bool:
        """Store the check results (and, when given, the new status, in the same write); with
        ``run``, only if that run is the message's current one (a superseded run must not
        overwrite a newer run's results)."""
        values: dict[str, Any] = {"checks": checks, "updated_ns": now_ns()}
        if status is not None:
            values.update(status=status, failure_reason=None)
        statement = update(messages).where(*self._of(message_id, run=run)).values(**values)
        return await self._write(lambda conn: bool(conn.execute(statement).rowcount))

    async def set_status(self, message_id: str, status: MessageStatus,
                         reason: str | None = None, *, run: int | None = None,
                         only_if: MessageStatus | None = None) -> bool:
        """Set the status; with ``run``, only if that pipeline run is the message's current
        one; with ``only_if``, only if the status is that one now. Whether a row changed."""
        clauses = self._of(message_id, run=run)
        if only_if is not None:
            clauses.append(messages.c.status == only_if)
        statement = update(messages).where(*clauses).values(
            status=status, failure_reason=reason, updated_ns=now_ns())
        return await self._write(lambda conn: bool(conn.execute(statement).rowcount))

    async def request_reprocess(self, message_id: str, *,
                                tenant: str | None = None) -> int | None:
        """Make a new pipeline run the message's current one and queue its start through the
        outbox, in one transaction: the message is ``received`` again and the relay starts
        the run. The new run's number, or None if there is no such message."""
        stamp = now_ns()
        def write(conn: Connection) -> int | None:
            row = conn.execute(
                update(messages).where(*self._of(message_id, tenant)).values(
                    pipeline_run=messages.c.pipeline_run + 1, status=MessageStatus.received,
                    failure_reason=None, updated_ns=stamp)
                .returning(messages.c.pipeline_run, messages.c.tenant, messages.c.size)).first()
            if row is None:
                return None
            conn.execute(outbox.insert().values(
                message_id=message_id, tenant=row.tenant, size=row.size, created_ns=stamp,
                run=row.pipeline_run))
            return int(row.pipeline_run)

        return await self._write(write)
