"""Pat's live events: GET /api/v3/events, message changes as Server-Sent Events.

Every change the bus carries (a message received, its status or parsed view updated, a message
deleted) is sent as one JSON event ``{kind, id, status, summary}``. FastAPI's SSE support sends
a keepalive comment every 15 seconds and cancels this generator when the client goes away, which
leaves the bus subscription through ``subscribe()``'s own cleanup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel

from api.deps import StateDep, TenantDep
from api.routes.messages import MessageSummary, summarize
from pat.bus import MessageChange
from pat.settings import Settings
from pat.store.models import MessageStatus

router = APIRouter(prefix="/api/v3", tags=["events"])

# How long a browser waits before reconnecting after the stream drops.
RECONNECT_MS = 2000


class MessageEvent(BaseModel):
    kind: Literal["received", "updated", "deleted"]
    id: str
    status: MessageStatus | None
    summary: MessageSummary | None


def message_event(change: MessageChange, settings: Settings) -> MessageEvent:
    kind: Literal["received", "updated", "deleted"] = (
        "received" if change.kind == "received"
        else "deleted" if change.kind == "deleted" else "updated")
    if change.message is None:
        return MessageEvent(kind=kind, id=change.message_id, status=None, summary=None)
    summary = summarize(change.message, settings)
    return MessageEvent(kind=kind, id=change.message_id, status=summary.status, summary=summary)


@router.get("/events", response_class=EventSourceResponse)
async def stream_events(state: StateDep, tenant: TenantDep) -> AsyncIterator[ServerSentEvent]:
    """Message changes as they happen. The first event, named ``ready``, says the subscription
    is in place: a client that lists messages after it cannot miss one in between. Every other
    event is unnamed (``message``) with the JSON data ``{kind, id, status, summary}``, where
    ``kind`` is ``received``, ``updated`` or ``deleted`` (``status`` and ``summary`` are null
    for ``deleted``)."""
    async with state.bus.subscribe() as changes:
        yield ServerSentEvent(event="ready", raw_data="subscribed", retry=RECONNECT_MS)
        while True:
            change = await changes.get()
            if not change.visible_to(tenant):
                continue
            yield ServerSentEvent(data=message_event(change, state.settings))
