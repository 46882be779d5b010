"""Activities of the EmailPipeline: parse the raw message and store the parsed view, mark it
done or failed.

They are methods of ``EmailActivities`` so that the worker hands them one store, built once.
``parse_and_store`` keeps the parsed view in the store and returns only a small summary: the
workflow history then holds nothing that grows with the message (a message of 100,000 parts
would otherwise exceed Temporal's payload limit). ``parse_message`` and ``persist_parsed``,
which carried the whole view through the history, serve runs started before that change."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pat.parsing import MalformedMessage, ParsedMessage, parse_message
from pat.store.models import MessageStatus
from pat.store.repository import MessageStore

MALFORMED = "MalformedMessage"
MISSING = "MessageMissing"


@dataclass
class ParseInput:
    message_id: str


@dataclass
class ParseSummary:
    """What the workflow learns of a parsed message: small and bounded."""

    subject: str
    parts: int
    attachments: int
    defects: int


@dataclass
class PersistInput:
    message_id: str
    parsed: ParsedMessage


@dataclass
class MarkInput:
    message_id: str
    status: str
    reason: str | None = None
    # The pipeline run making the mark; a superseded run's marks are ignored.
    run: int | None = None


def _joined(parsed: ParsedMessage, header: str) -> str:
    return ", ".join(f"{a.name} <{a.address}>" if a.name else a.address
                     for a in parsed.addresses.get(header, []))


class EmailActivities:
    def __init__(self, store: MessageStore) -> None:
        self._store = store

    async def _parse(self, message_id: str) -> ParsedMessage:
        raw = await self._store.get_raw(message_id)
        if raw is None:
            raise ApplicationError(f"message {message_id} is not in the store (deleted?)",
                                   type=MISSING, non_retryable=True)
        try:
            # CPU work (a large header section takes a while): off the worker's event loop,
            # which must keep serving workflow tasks meanwhile.
            return await asyncio.to_thread(parse_message, raw)
        except MalformedMessage as exc:
            raise ApplicationError(str(exc), type=MALFORMED, non_retryable=True) from exc

    @activity.defn(name="parse_and_store")
    async def parse_and_store(self, params: ParseInput) -> ParseSummary:
        parsed = await self._parse(params.message_id)
        if not await self._save(params.message_id, parsed):
            raise ApplicationError(f"message {params.message_id} is not in the store (deleted?)",
                                   type=MISSING, non_retryable=True)
        return ParseSummary(subject=parsed.subject[:1000], parts=len(parsed.parts),
                            attachments=len(parsed.attachments), defects=len(parsed.defects))

    async def _save(self, message_id: str, parsed: ParsedMessage) -> bool:
        return await self._store.save_parsed(
            message_id, parsed.to_dict(), subject=parsed.subject,
            from_header=_joined(parsed, "from"), to_header=_joined(parsed, "to"))

    @activity.defn(name="parse_message")
    async def parse_message(self, params: ParseInput) -> ParsedMessage:
        return await self._parse(params.message_id)

    @activity.defn(name="persist_parsed")
    async def persist_parsed(self, params: PersistInput) -> bool:
        return await self._save(params.message_id, params.parsed)

    @activity.defn(name="mark_message")
    async def mark_message(self, params: MarkInput) -> bool:
        return await self._store.set_status(params.message_id, MessageStatus(params.status),
                                            params.reason, run=params.run)
