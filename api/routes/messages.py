"""Pat's own REST API for messages: /api/v3/messages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from api.deps import StateDep, StoreDep, TenantDep
from api.safe_content import message_bytes_headers
from pat.domain import workflow_id_for
from pat.parsing import MessageReading, Part
from pat.settings import Settings
from pat.store.models import Message, MessageStatus
from pat.store.repository import MessageFilter, MessageStore
from pat.temporal import workflow_ui_url

router = APIRouter(prefix="/api/v3/messages", tags=["messages"])

FINISHED = (MessageStatus.processed, MessageStatus.failed)


class AddressOut(BaseModel):
    name: str
    address: str


class PartOut(BaseModel):
    index: int
    content_type: str
    filename: str | None
    content_id: str | None
    disposition: str | None
    size: int
    url: str


class MessageSummary(BaseModel):
    id: str
    status: MessageStatus
    created: datetime
    mail_from: str
    recipients: list[str]
    subject: str | None
    from_header: str | None
    to_header: str | None
    size: int
    snippet: str
    attachments: int
    failure_reason: str | None
    workflow_id: str
    workflow_url: str


class CheckOut(BaseModel):
    name: str
    verdict: str
    reason: str
    details: dict[str, Any]


class DeductionOut(BaseModel):
    check: str
    points: float
    reason: str


class ReportOut(BaseModel):
    score: int
    out_of: int
    method: str
    deductions: list[DeductionOut]
    not_scored: list[str]
    recommendations: list[str]


class ChecksOut(BaseModel):
    """The deliverability checks: each check's verdict and reason, and the report."""

    results: dict[str, CheckOut]
    report: ReportOut


class MessageDetail(MessageSummary):
    helo: str
    peer: str
    addresses: dict[str, list[AddressOut]]
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    parts: list[PartOut]
    defects: list[str]
    raw_url: str
    checks: ChecksOut | None = None


class MessageList(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[MessageSummary]


def _created(message: Message) -> datetime:
    return datetime.fromtimestamp(message.created_ns / 1e9, tz=UTC)


def summarize(message: Message, settings: Settings) -> MessageSummary:
    workflow_id = workflow_id_for(message.id, message.pipeline_run)
    return MessageSummary(
        id=message.id, status=MessageStatus(message.status), created=_created(message),
        mail_from=message.mail_from, recipients=message.recipients, subject=message.subject,
        from_header=message.from_header, to_header=message.to_header, size=message.size,
        snippet=message.snippet, attachments=message.attachment_count,
        failure_reason=message.failure_reason, workflow_id=workflow_id,
        workflow_url=workflow_ui_url(settings, workflow_id))


def detail(message: Message, reading: MessageReading | None,
           settings: Settings) -> MessageDetail:
    """The whole message as the parse step stored it (only the envelope and the headers
    read at arrival while its pipeline has not parsed it yet)."""
    view = reading.view if reading else None
    base = f"/api/v3/messages/{message.id}"
    parts = [PartOut(index=p.index, content_type=p.content_type, filename=p.filename,
                     content_id=p.content_id, disposition=p.disposition, size=p.size,
                     url=f"{base}/parts/{p.index}")
             for p in (view.parts if view else []) if p.is_attachment or p.is_inline]
    return MessageDetail(
        **summarize(message, settings).model_dump(), helo=message.helo, peer=message.peer,
        addresses={k: [AddressOut(name=a.name, address=a.address) for a in v]
                   for k, v in (view.addresses if view else {}).items()},
        headers=view.headers if view else [],
        text=reading.text if reading else None, html=reading.html if reading else None,
        parts=parts, defects=view.defects if view else [], raw_url=f"{base}/raw",
        checks=ChecksOut.model_validate(message.checks) if message.checks else None)


def _filter(to: str | None, sender: str | None, subject: str | None,
            status: MessageStatus | None, since: datetime | None,
            tenant: str | None, q: str | None = None) -> MessageFilter:
    since_ns = None
    if since is not None:
        aware = since if since.tzinfo else since.replace(tzinfo=UTC)
        since_ns = int(aware.timestamp() * 1e9)
    return MessageFilter(to=to, sender=sender, subject=subject,
                         status=status.value if status else None, since_ns=since_ns,
                         tenant=tenant, q=q)


ToQuery = Annotated[str | None, Query(description="Substring of a recipient (envelope or To).")]
FromQuery = Annotated[str | None, Query(alias="from",
                                        description="Substring of the sender (envelope or From).")]
SubjectQuery = Annotated[str | None, Query(description="Substring of the subject.")]
SearchQuery = Annotated[str | None, Query(
    max_length=1000,
    description='Search: words and "quoted phrases", each of which must occur (whatever the '
                "case) in the message's headers, addresses, subject, text or HTML; to:, from: "
                'or subject: before one looks only there (to:"ann lee").')]
SinceQuery = Annotated[datetime | None, Query(description="Only messages received at or after "
                                              "this ISO 8601 time (UTC if no offset).")]


@router.get("", response_model=MessageList)
async def list_messages(
    state: StateDep, tenant: TenantDep, to: ToQuery = None, sender: FromQuery = None,
    subject: SubjectQuery = None, q: SearchQuery = None,
    status: Annotated[MessageStatus | None, Query()] = None, since: SinceQuery = None,
    offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> MessageList:
    total, found = await state.store.list(
        _filter(to, sender, subject, status, since, tenant, q), offset=offset, limit=limit)
    return MessageList(total=total, offset=offset, limit=limit,
                       items=[summarize(m, state.settings) for m in found])


@router.get("/wait", response_model=MessageSummary,
            responses={408: {"description": "The newest matching message did not finish its "
                                            "pipeline in time."}})
async def wait_for_message(
    state: StateDep, tenant: TenantDep, to: ToQuery = None, sender: FromQuery = None,
    subject: SubjectQuery = None, q: SearchQuery = None,
    since: SinceQuery = None,
    timeout: Annotated[float, Query(gt=0, le=300, description="Seconds to wait.")] = 30.0,
) -> MessageSummary | JSONResponse:
    """The newest message matching the filters (received at or after ``since`` when given),
    as soon as its pipeline has finished, processed or failed alike. While the newest match
    is still in its pipeline, no older match is returned: this waits for it. 408 if it has
    not finished within ``timeout`` seconds. Send first, then wait with ``since`` set to a
    moment before the send."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    flt = _filter(to, sender, subject, None, since, tenant, q)
    async with state.bus.subscribe() as changes:
        while True:
            _, found = await state.store.list(flt, limit=1)
            if found and found[0].status in FINISHED:
                return summarize(found[0], state.settings)
            remaining = deadline - loop.time()
            if remaining <= 0:
                waiting = (f"message {found[0].id} is still in its pipeline" if found
                           else "no message matches the filters")
                return JSONResponse(status_code=408, content={
                    "error": f"no matching message finished its pipeline within {timeout:g} "
                             f"seconds: {waiting}"})
            try:
                await asyncio.wait_for(changes.get(), remaining)
            except TimeoutError:
                pass


def _not_found(message_id: str) -> HTTPException:
    return HTTPException(404, detail=f"no message with id {message_id}")


async def _load(store: MessageStore, message_id: str, tenant: str | None) -> Message:
    message = await store.get(message_id, tenant=tenant)
    if message is None:
        raise _not_found(message_id)
    return message


@router.get("/{message_id}", response_model=MessageDetail)
async def get_message(message_id: str, state: StateDep, tenant: TenantDep) -> MessageDetail:
    message = await _load(state.store, message_id, tenant)
    return detail(message, await state.store.get_reading(message_id), state.settings)


@router.get("/{message_id}/raw", response_class=Response,
            responses={200: {"content": {"message/rfc822": {}}}})
async def get_raw(message_id: str, store: StoreDep, tenant: TenantDep,
                  download: Annotated[bool, Query(description="Accepted for compatibility: "
                                                  "the message is always a download.")] = False,
                  ) -> Response:
    """The message exactly as received, always as a download (``message.eml``): a message is
    never rendered on Pat's origin. Streamed from the store a chunk at a time."""
    size = await store.raw_size(message_id, tenant=tenant)
    if size is None:
        raise _not_found(message_id)
    headers = message_bytes_headers("message/rfc822", "message.eml")
    headers["Content-Length"] = str(size)
    return StreamingResponse(store.iter_raw(message_id, size), headers=headers)


@router.get("/{message_id}/parts/{index}", response_class=Response)
async def get_part(message_id: str, index: int, store: StoreDep,
                   tenant: TenantDep) -> Response:
    """One decoded MIME part: a download, except raster images (PNG, JPEG, GIF, WebP, AVIF,
    BMP), which are shown inline where the UI embeds them."""
    message = await _load(store, message_id, tenant)
    reading = await store.get_reading(message_id)
    if reading is None and message.status == MessageStatus.received:
        raise HTTPException(409, detail="the message has not been parsed yet; try again shortly")
    if reading is None:
        raise HTTPException(404, detail=f"message {message_id} could not be read as an email "
                                        f"({message.failure_reason}); it has no parts")
    parts = reading.view.parts
    part = parts[index] if 0 <= index < len(parts) else None
    content = (await store.get_part_content(message_id, part)
               if part and not _is_container(part) else None)
    if part is None or content is None:
        raise HTTPException(404, detail=f"message {message_id} has no leaf part {index}")
    return Response(content, headers=message_bytes_headers(part.content_type, part.filename))


def _is_container(part: Part) -> bool:
    return part.content_type.startswith("multipart/")


class ReprocessOut(BaseModel):
    id: str
    run: int
    status: MessageStatus
    workflow_id: str
    workflow_url: str


@router.post("/{message_id}/reprocess", status_code=202, response_model=ReprocessOut)
async def reprocess_message(message_id: str, state: StateDep,
                            tenant: TenantDep) -> ReprocessOut:
    """Run the stored message through today's pipeline again, as a new EmailPipeline run
    (``email-<id>-r<n>``); the message is ``received`` until that run ends. Earlier runs stay
    in the Temporal UI; whatever they still do no longer changes the message."""
    run = await state.store.request_reprocess(message_id, tenant=tenant)
    if run is None:
        raise _not_found(message_id)
    workflow_id = workflow_id_for(message_id, run)
    return ReprocessOut(id=message_id, run=run, status=MessageStatus.received,
                        workflow_id=workflow_id,
                        workflow_url=workflow_ui_url(state.settings, workflow_id))


@router.delete("/{message_id}", status_code=204)
async def delete_message(message_id: str, state: StateDep, tenant: TenantDep) -> Response:
    deleted = await state.store.delete(message_id, tenant=tenant)
    if deleted is None:
        raise _not_found(message_id)
    state.watcher.forget(deleted)
    return Response(status_code=204)


@router.delete("", status_code=204)
async def delete_all_messages(state: StateDep, tenant: TenantDep) -> Response:
    """Delete every message (a key bound to a tenant: every one of that tenant's)."""
    for deleted in await state.store.delete_all(tenant=tenant):
        state.watcher.forget(deleted)
    return Response(status_code=204)
