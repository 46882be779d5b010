"""Activities of the EmailPipeline: parse the raw message and store the parsed view, mark it
done or failed.

They are methods of ``EmailActivities`` so that the worker hands them one store, built once.
``parse_and_store`` keeps the parsed view in the store and returns only a small summary: the
workflow history then holds nothing that grows with the message (a message of 100,000 parts
would otherwise exceed Temporal's payload limit). ``parse_message`` and ``persist_parsed``,
which carried the whole view through the history, serve runs started before that change."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError

from pat.mailhog_json import StoredEnvelope, build_message_or_minimal, encode_stored
from pat.parsing import MalformedMessage, MessageReading, ParsedMessage, read_message
from pat.search import SearchDocument, of_message
from pat.store.models import MessageStatus
from pat.store.repository import ArtifactSummary, MessageStore, StoredArtifact
from plugins.manifest import EMAIL_HOOKS
from plugins.store import PluginStore

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
    # The tenant's active plugins for each email hook (onEmailReceived, onEmailValidated,
    # onEmailStored), in execution order; hooks without any are left out.
    plugins: dict[str, list[str]] = field(default_factory=dict)


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


def _summary(view: ParsedMessage) -> ArtifactSummary:
    return ArtifactSummary(subject=view.subject, from_header=_joined(view, "from"),
                           to_header=_joined(view, "to"), snippet=view.snippet,
                           attachment_count=len(view.attachments))


def _missing(message_id: str) -> ApplicationError:
    return ApplicationError(f"message {message_id} is not in the store (deleted?)",
                            type=MISSING, non_retryable=True)


async def _read(raw: bytes) -> MessageReading:
    try:
        # CPU work (a large header section takes a while): off the worker's event loop,
        # which must keep serving workflow tasks meanwhile.
        return await asyncio.to_thread(read_message, raw)
    except MalformedMessage as exc:
        raise ApplicationError(str(exc), type=MALFORMED, non_retryable=True) from exc


def _mailhog_and_search(envelope: StoredEnvelope, raw: bytes, reading: MessageReading,
                        hostname: str) -> tuple[bytes, SearchDocument]:
    """MailHog's JSON of the message, stored, and its search text, which includes the header
    values and body as MailHog shows them (its ``containing`` search looks there)."""
    mailhog = build_message_or_minimal(envelope, raw, hostname)
    search = of_message(envelope.mail_from, envelope.recipients, reading, mailhog)
    return encode_stored(mailhog), search


class EmailActivities:
    """``hostname`` is the name MailHog's JSON says received the message (PAT_SMTP_HOSTNAME)."""

    def __init__(self, store: MessageStore, hostname: str = "pat.localhost") -> None:
        self._store = store
        self._hostname = hostname
        self._plugins = PluginStore(store.engine)

    async def _raw(self, message_id: str) -> bytes:
        raw = await self._store.get_raw(message_id)
        if raw is None:
            raise _missing(message_id)
        return raw

    async def _parse(self, message_id: str) -> ParsedMessage:
        raw = await self._raw(message_id)
        return (await _read(raw)).view

    @activity.defn(name="parse_and_store")
    async def parse_and_store(self, params: ParseInput) -> ParseSummary:
        """Parse the message once and store all that readers need of it (the artifact)."""
        message = await self._store.get(params.message_id)
        raw = await self._raw(params.message_id)
        if message is None:
            raise _missing(params.message_id)
        reading = await _read(raw)
        envelope = StoredEnvelope(message_id=message.id, created_ns=message.created_ns,
                                  mail_from=message.mail_from, recipients=message.recipients,
                                  helo=message.helo)
        mailhog, search = await asyncio.to_thread(_mailhog_and_search, envelope, raw, reading,
                                                  self._hostname)
        view = reading.view
        artifact = StoredArtifact(view=view.to_dict(), text=reading.text, html=reading.html,
                                  mailhog=mailhog)
        if not await self._store.save_artifact(params.message_id, artifact, _summary(view),
                                               search):
            raise _missing(params.message_id)
        return ParseSummary(subject=view.subject[:1000], parts=len(view.parts),
                            attachments=len(view.attachments), defects=len(view.defects),
                            plugins=await self._active_plugins(message.tenant))

    async def _active_plugins(self, tenant: str) -> dict[str, list[str]]:
        """Looked up here, with the parse, so that a message with no plugin to run costs the
        workflow no step of its own."""
        active = await self._plugins.list(tenant, active_only=True)
        found = {hook: [p.id for p in active if hook in p.manifest.hooks]
                 for hook in EMAIL_HOOKS}
        return {hook: ids for hook, ids in found.items() if ids}

    @activity.defn(name="parse_message")
    async def parse_message(self, params: ParseInput) -> ParsedMessage:
        return await self._parse(params.message_id)

    @activity.defn(name="persist_parsed")
    async def persist_parsed(self, params: PersistInput) -> bool:
        return await self._store.save_artifact(
            params.message_id, StoredArtifact(view=params.parsed.to_dict()),
            _summary(params.parsed))

    @activity.defn(name="mark_message")
    async def mark_message(self, params: MarkInput) -> bool:
        return await self._store.set_status(params.message_id, MessageStatus(params.status),
                                            params.reason, run=params.run)
