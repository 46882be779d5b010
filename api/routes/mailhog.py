"""MailHog-compatible API: /api/v1 and /api/v2, answering as MailHog's own Go code does
(MailHog-Server ``api/v1.go`` and ``api/v2.go``), so that MailHog clients work unchanged.

The JSON is built by ``pat.mailhog_json`` from the raw bytes and envelope of each message when
its pipeline parses it, and stored: lists join stored text. A message not parsed yet is built
from its bytes on the spot, so that it is listed from the moment it is accepted.
Where MailHog answers a bad request with a panic, a wrong deletion or an empty body, Pat answers
with a status and a JSON ``{"error": ...}`` that says what was wrong."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse

from api.deps import AppState, StateDep, TenantDep, get_state, get_tenant
from api.safe_content import message_bytes_headers
from pat import mailhog_json as mh
from pat.bus import MessageChange
from pat.store.models import Message
from pat.store.repository import MessageFilter, MessageStore

router = APIRouter(tags=["mailhog"])

KEEPALIVE_SECONDS = 60.0  # MailHog's keepalive ticker on /api/v1/events


class BadRequest(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def _error(status: int, error: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error})


def _envelope(message: Message) -> mh.StoredEnvelope:
    return mh.StoredEnvelope(message_id=message.id, created_ns=message.created_ns,
                             mail_from=message.mail_from, recipients=message.recipients,
                             helo=message.helo)


async def _texts(store: MessageStore, messages: Sequence[Message],
                 hostname: str) -> list[str]:
    """Each message's JSON text: the one its parse step stored, or, for a message whose
    pipeline has not parsed it yet, built from its bytes."""
    ids = [m.id for m in messages]
    stored = await store.get_many_mailhog(ids)
    unparsed = [m for m in messages if m.id not in stored]
    raws = await store.get_many_raw([m.id for m in unparsed]) if unparsed else {}
    texts: list[str] = []
    for message in messages:
        if message.id in stored:
            texts.append(mh.stored_text(stored[message.id]))
        elif message.id in raws:  # one deleted between the reads is left out, as it soon would
            texts.append(mh.go_json(mh.build_message_or_minimal(
                _envelope(message), raws[message.id], hostname)))
    return texts


async def _text_one(state: AppState, message_id: str, tenant: str | None) -> str | None:
    message = await state.store.get(message_id, tenant=tenant)
    if message is None:
        return None
    found = await _texts(state.store, [message], state.settings.smtp_hostname)
    return found[0] if found else None


async def _build_one(state: AppState, message_id: str,
                     tenant: str | None) -> dict[str, Any] | None:
    text = await _text_one(state, message_id, tenant)
    return None if text is None else dict(json.loads(text))


def _text_response(text: str, content_type: str) -> Response:
    return Response(text.encode("utf-8", "surrogateescape"), media_type=None,
                    headers={"Content-Type": content_type})


def _not_found(message_id: str) -> JSONResponse:
    return _error(404, f"no message with id {message_id}")


def _start_limit(request: Request) -> tuple[int, int]:
    """``getStartLimit``: start 0 and limit 50 by default, limit capped at 250, and an empty or
    zero value meaning the default, as in MailHog; values that are not whole numbers at or
    above zero are refused (MailHog silently ignores them)."""
    values: dict[str, int] = {}
    for name in ("start", "limit"):
        text = request.query_params.get(name, "").strip()
        if not text:
            continue
        try:
            number = int(text)
        except ValueError:
            number = -1
        if number < 0:
            raise BadRequest(400, f"{name} must be a whole number, 0 or more (got {text!r})")
        values[name] = number
    limit = values.get("limit") or mh.DEFAULT_LIMIT
    return values.get("start", 0), min(limit, mh.MAX_LIMIT)


# --- API v1 ------------------------------------------------------------------------------------

@router.get("/api/v1/messages", response_class=Response)
async def v1_list_messages(state: StateDep, tenant: TenantDep) -> Response:
    """The newest 1000 messages, newest first, as a JSON array."""
    _, found = await state.store.list(MessageFilter(tenant=tenant), limit=mh.V1_LIST_LIMIT)
    texts = await _texts(state.store, found, state.settings.smtp_hostname)
    return _text_response(mh.go_array(texts), "text/json")


@router.delete("/api/v1/messages", response_class=Response)
async def v1_delete_all(state: StateDep, tenant: TenantDep) -> Response:
    for deleted in await state.store.delete_all(tenant=tenant):
        state.watcher.forget(deleted)
    return Response(status_code=200, media_type=None, headers={"Content-Type": "text/json"})


@router.get("/api/v1/messages/{message_id}", response_class=Response)
async def v1_get_message(message_id: str, state: StateDep, tenant: TenantDep) -> Response:
    # MailHog's in-memory store answers 200 "null" for an unknown id; Pat says 404.
    text = await _text_one(state, message_id, tenant)
    if text is None:
        return _not_found(message_id)
    return _text_response(text, "text/json")


@router.delete("/api/v1/messages/{message_id}", response_class=Response)
async def v1_delete_message(message_id: str, state: StateDep, tenant: TenantDep) -> Response:
    # MailHog's in-memory store deletes its oldest message when the id is unknown; Pat says 404.
    deleted = await state.store.delete(message_id, tenant=tenant)
    if deleted is None:
        return _not_found(message_id)
    state.watcher.forget(deleted)
    return Response(status_code=200, media_type=None, headers={"Content-Type": "text/json"})


@router.get("/api/v1/messages/{message_id}/download", response_class=Response,
            responses={200: {"content": {"message/rfc822": {}}}})
async def v1_download(message_id: str, state: StateDep, tenant: TenantDep) -> Response:
    """The message as received, streamed, with the safe headers of every message download.
    (MailHog rebuilds the file from its header map instead, which reorders headers at random
    and keeps one value per repeated header.)"""
    size = await state.store.raw_size(message_id, tenant=tenant)
    if size is None:
        return _not_found(message_id)
    headers = message_bytes_headers("message/rfc822", f"{message_id}.eml")
    headers["Content-Length"] = str(size)
    return StreamingResponse(state.store.iter_raw(message_id, size), headers=headers)


@router.get("/api/v1/messages/{message_id}/mime/part/{index}/download", response_class=Response)
async def v1_download_part(message_id: str, index: str, state: StateDep,
                           tenant: TenantDep) -> Response:
    """Top-level part ``index``, always as a download. MailHog copies the part's own headers
    into the response; Pat takes only its media type (checked) and filename, so that no part
    can become a page on this origin (``api.safe_content``)."""
    if not index.isdigit():
        return _error(400, f"the part index must be a whole number, 0 or more (got {index!r})")
    message = await _build_one(state, message_id, tenant)
    if message is None:
        return _not_found(message_id)
    found = mh.part_download(message, int(index))
    if found is None:
        count = len((message["MIME"] or {}).get("Parts") or [])
        return _error(404, f"message {message_id} has no MIME part {index} "
                           f"(it has {count} top-level part{'s' if count != 1 else ''})")
    return Response(found.body, media_type=None, headers=message_bytes_headers(
        found.media_type, found.filename, inline_images=False))


@router.get("/api/v1/events")
async def v1_events(request: Request, tenant: TenantDep) -> StreamingResponse:
    """Server-sent events: each new message as ``data:`` lines, a ``keepalive`` every minute."""
    state = get_state(request)

    async def frames() -> AsyncIterator[str]:
        async for message in _new_messages(state, tenant, KEEPALIVE_SECONDS):
            if message is None:
                yield mh.event_stream_frame("keepalive", "")
            else:
                yield mh.event_stream_message(message)

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


# --- API v2 ------------------------------------------------------------------------------------

@router.get("/api/v2/messages", response_class=Response)
async def v2_list_messages(request: Request, state: StateDep, tenant: TenantDep) -> Response:
    try:
        start, limit = _start_limit(request)
    except BadRequest as bad:
        return _error(bad.status, bad.error)
    total, found = await state.store.list(MessageFilter(tenant=tenant), offset=start,
                                          limit=limit)
    texts = await _texts(state.store, found, state.settings.smtp_hostname)
    return _text_response(mh.messages_result_text(total, start, texts), "text/json")


@router.get("/api/v2/search", response_class=Response)
async def v2_search(request: Request, state: StateDep, tenant: TenantDep) -> Response:
    try:
        start, limit = _start_limit(request)
    except BadRequest as bad:
        return _error(bad.status, bad.error)
    kind = request.query_params.get("kind", "")
    if kind not in mh.SEARCH_KINDS:
        return _error(400, f"kind must be one of {', '.join(mh.SEARCH_KINDS)} (got {kind!r})")
    query = request.query_params.get("query", "")
    if not query:
        return _error(400, "query must not be empty")
    total, items = await _search(state, tenant, kind, query, start, limit)
    return _text_response(mh.messages_result_text(total, start, items), "application/json")




async def _search(state: AppState, tenant: str | None, kind: str, query: str, start: int,
                  limit: int) -> tuple[int, list[str]]:
    """MailHog matched each message's JSON in memory; Pat asks the store's search index
    (``pat.search``), which holds the same text, so a search reads only the page it answers."""
    # to: the recipients (envelope and To header); from: the sender (envelope and From);
    # containing: any header value or the body.
    flt = MessageFilter(tenant=tenant, to=query if kind == "to" else None,
                        sender=query if kind == "from" else None,
                        text=query if kind == "containing" else None)
    total, found = await state.store.list(flt, offset=start, limit=limit)
    return total, await _texts(state.store, found, state.settings.smtp_hostname)


@router.websocket("/api/v2/websocket")
async def v2_websocket(websocket: WebSocket) -> None:
    """Each new message as one text frame of compact JSON, as MailHog's websocket hub sends."""
    state: AppState = websocket.app.state.pat
    tenant = get_tenant(websocket)
    await websocket.accept()

    async def until_closed() -> None:
        # MailHog reads and ignores what the client sends; a close ends the subscription.
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    reader = asyncio.create_task(until_closed())
    try:
        async for message in _new_messages(state, tenant, None, stop=reader):
            if message is not None:
                await websocket.send_text(mh.websocket_message(message))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


# --- live messages -----------------------------------------------------------------------------

async def _new_messages(state: AppState, tenant: str | None, keepalive: float | None,
                        stop: asyncio.Task[None] | None = None
                        ) -> AsyncIterator[dict[str, Any] | None]:
    """MailHog JSON of each message (of ``tenant``, if given) that arrives from now on, once
    each; None when ``keepalive`` seconds passed without one. Ends when ``stop`` finishes."""
    async with state.bus.subscribe() as changes:
        while stop is None or not stop.done():
            getter = asyncio.ensure_future(changes.get())
            waiting: set[asyncio.Future[Any]] = {getter}
            if stop is not None:
                waiting.add(stop)
            try:
                done, _ = await asyncio.wait(waiting, timeout=keepalive,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()  # also when the client went away while we waited
            if getter not in done:
                if not done:
                    yield None
                continue
            change: MessageChange = getter.result()
            # The bus announces each arrival exactly once.
            if change.kind != "received" or not change.visible_to(tenant):
                continue
            message = await _build_one(state, change.message_id, tenant)
            if message is not None:
                yield message

