"""The web UI: the message list at ``/`` and one message at ``/view/<id>``.

Pages are rendered by Jinja with autoescaping, so nothing a message carries becomes markup; the
script in api/static only swaps in fragments this module renders and reacts to /api/v3/events.
A message's HTML body is served as its own document (``/view/<id>/body.html``) under a
Content-Security-Policy that sandboxes it (no scripts, no forms, no same-origin access) and
blocks remote content unless the reader asks for it."""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.deps import StateDep, TenantDep
from api.routes.messages import MessageDetail, PartOut, detail, summarize
from pat.store.models import Message
from pat.store.repository import MessageFilter

_HERE = Path(__file__).resolve().parent.parent
PAGE_SIZE = 50

router = APIRouter(include_in_schema=False)
router.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
templates = Jinja2Templates(directory=_HERE / "templates")

# The UI's own pages: no inline script or style at all, so that markup smuggled past escaping
# could still not run.
_PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                "frame-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                "form-action 'self'; frame-ancestors 'self'")
_PAGE_HEADERS = {"Content-Security-Policy": _PAGE_POLICY, "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

_CID_REFERENCE = re.compile(r"cid:([^\"'\s)>]+)", re.IGNORECASE)
_REMOTE_REFERENCE = re.compile(
    r"""(?:\b(?:src|srcset|background|poster)\s*=\s*["']?\s*|url\(\s*["']?\s*)(?:https?:)?//""",
    re.IGNORECASE)


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    exponent = min(int(math.log(size, 1024)), 3)
    return f"{size / 1024 ** exponent:.1f} {'BKMG'[exponent]}B"


def utc_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["human_size"] = human_size
templates.env.filters["utc"] = utc_text


def _page(request: Request, name: str, context: dict[str, Any]) -> HTMLResponse:
    response: HTMLResponse = templates.TemplateResponse(request, name, context,
                                                        headers=_PAGE_HEADERS)
    return response


async def _listing(state: StateDep, tenant: str | None, page: int) -> dict[str, Any]:
    total, found = await state.store.list(MessageFilter(tenant=tenant),
                                          offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return {"items": [summarize(m, state.settings) for m in found], "total": total,
            "page": page, "pages": pages, "first": (page - 1) * PAGE_SIZE + 1,
            "last": (page - 1) * PAGE_SIZE + len(found),
            "smtp": f"{state.settings.smtp_host}:{state.settings.smtp_port}"}


PageQuery = Annotated[int, Query(ge=1)]


@router.get("/", response_class=HTMLResponse)
async def message_list_page(request: Request, state: StateDep, tenant: TenantDep,
                            page: PageQuery = 1) -> HTMLResponse:
    return _page(request, "index.html", await _listing(state, tenant, page))


@router.get("/fragments/messages", response_class=HTMLResponse)
async def message_list_fragment(request: Request, state: StateDep, tenant: TenantDep,
                                page: PageQuery = 1) -> HTMLResponse:
    """The list alone, swapped in by the page's script when the events say it changed."""
    return _page(request, "_list.html", await _listing(state, tenant, page))


async def _load(state: StateDep, message_id: str,
                tenant: str | None) -> tuple[Message, MessageDetail, bool]:
    """The message, its detail, and whether it has been parsed."""
    message = await state.store.get(message_id, tenant=tenant)
    if message is None:
        raise HTTPException(404, detail=f"no message with id {message_id}")
    reading = await state.store.get_reading(message_id)
    return message, detail(message, reading, state.settings), reading is not None


def _header(found: MessageDetail, name: str) -> str | None:
    return next((value for key, value in found.headers if key.lower() == name), None)


@router.get("/view/{message_id}", response_class=HTMLResponse)
async def message_page(request: Request, message_id: str, state: StateDep,
                       tenant: TenantDep) -> HTMLResponse:
    message, found, parsed = await _load(state, message_id, tenant)
    return _page(request, "message.html", {
        "m": found, "quoted_id": quote(message.id, safe=""), "date": _header(found, "date"),
        "remote_content": bool(found.html and _REMOTE_REFERENCE.search(found.html)),
        "parsed": parsed})


def resolve_cid_references(html: str, parts: list[PartOut]) -> str:
    """Point ``cid:`` references at the URLs of the inline parts they name."""
    urls = {p.content_id: p.url for p in parts if p.content_id}

    def part_url(match: re.Match[str]) -> str:
        return urls.get(unquote(match.group(1)), match.group(0))

    return _CID_REFERENCE.sub(part_url, html)


def body_policy(origin: str, remote: bool) -> str:
    """The CSP of a message's HTML body: the ``sandbox`` directive makes it a unique origin
    without scripts even when opened outside the UI's sandboxed iframe; images come only from
    Pat itself (the cid: parts) unless ``remote``."""
    anywhere = " https: http:" if remote else ""
    return "; ".join([
        "default-src 'none'", f"img-src {origin} data:{anywhere}",
        f"style-src 'unsafe-inline'{anywhere}", f"font-src data:{anywhere}",
        f"media-src {origin} data:{anywhere}", "base-uri 'none'", "form-action 'none'",
        f"frame-ancestors {origin}", "sandbox allow-popups allow-popups-to-escape-sandbox"])


@router.get("/view/{message_id}/body.html", response_class=HTMLResponse)
async def message_html_body(request: Request, message_id: str, state: StateDep,
                            tenant: TenantDep, remote: bool = False) -> HTMLResponse:
    message, found, _ = await _load(state, message_id, tenant)
    if found.html is None:
        raise HTTPException(404, detail=f"message {message_id} has no HTML body")
    origin = f"{request.url.scheme}://{request.url.netloc}"
    parts = [p.model_copy(update={"url": f"/api/v3/messages/{quote(message.id, safe='')}"
                                         f"/parts/{p.index}"}) for p in found.parts]
    document = with_links_in_new_tabs(resolve_cid_references(found.html, parts))
    return HTMLResponse(document, headers={
        "Content-Security-Policy": body_policy(origin, remote),
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store"})


def with_links_in_new_tabs(html: str) -> str:
    """``html`` with ``<base target="_blank">`` first: links open in a new tab, since
    navigating the frame itself would load the target sandboxed. It goes after the message's
    own doctype, if any, so that the document keeps the standards mode its author chose, as
    mail clients render it; before any base of the message's own, so that ours wins."""
    cut = _doctype_end(html)
    return html[:cut] + '<base target="_blank">' + html[cut:]


def _doctype_end(html: str) -> int:
    """Where a leading doctype ends (byte order mark, whitespace and comments may precede
    it), or 0. A scan, not a regular expression: a message can be built to make one
    backtrack for ever."""
    position = 0
    while position < len(html):
        if html[position] == "\ufeff" or html[position].isspace():
            position += 1
        elif html.startswith("<!--", position):
            end = html.find("-->", position + 4)
            if end < 0:
                return 0
            position = end + 3
        else:
            break
    if html[position:position + 9].lower() != "<!doctype":
        return 0
    end = html.find(">", position)
    return end + 1 if end >= 0 else 0
