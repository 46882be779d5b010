"""Activities of the EmailPipeline: parse the raw message, persist the parsed view, mark it done.

They are methods of ``EmailActivities`` so that the worker hands them one store, built once."""

from __future__ import annotations

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
class PersistInput:
    message_id: str
    parsed: ParsedMessage


@dataclass
class MarkInput:
    message_id: str
    status: str
    reason: str | None = None


def _joined(parsed: ParsedMessage, header: str) -> str:
    return ", ".join(f"{a.name} <{a.address}>" if a.name else a.address
                     for a in parsed.addresses.get(header, []))


class EmailActivities:
    def __init__(self, store: MessageStore) -> None:
        self._store = store

    @activity.defn(name="parse_message")
    async def parse_message(self, params: ParseInput) -> ParsedMessage:
        raw = await self._store.get_raw(params.message_id)
        if raw is None:
            raise ApplicationError(f"message {params.message_id} is not in the store (deleted?)",
                                   type=MISSING, non_retryable=True)
        try:
            return parse_message(raw)
        except MalformedMessage as exc:
            raise ApplicationError(str(exc), type=MALFORMED, non_retryable=True) from exc

    @activity.defn(name="persist_parsed")
    async def persist_parsed(self, params: PersistInput) -> bool:
        return await self._store.save_parsed(
            params.message_id, params.parsed.to_dict(), subject=params.parsed.subject,
            from_header=_joined(params.parsed, "from"), to_header=_joined(params.parsed, "to"))

    @activity.defn(name="mark_message")
    async def mark_message(self, params: MarkInput) -> bool:
        return await self._store.set_status(params.message_id, MessageStatus(params.status),
                                            params.reason)
