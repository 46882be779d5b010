"""MailHog's JSON, rebuilt from what Pat stores per message (raw bytes + envelope columns).

Everything here follows MailHog's Go code, not its swagger:

- mailhog/data ``message.go``: ``SMTPMessage.Parse`` (the message shape, the ``Message-ID``,
  ``Received`` and ``Return-Path`` headers MailHog adds), ``ContentFromString`` (headers split on
  ``": "``, folded lines glued on with their leading whitespace, a repeated header keeps its last
  value, nothing RFC 2047-decoded), ``ParseMIMEBody`` (parts split on ``--boundary``) and
  ``PathFromString``;
- mailhog/smtp ``protocol.go``: ``Raw.Data`` is the DATA section without the CRLF that precedes the
  terminating dot;
- mailhog/storage ``memory.go``: what ``kind=from|to|containing`` searches match;
- Go's ``encoding/json``: struct fields in declaration order, map keys sorted, ``<``, ``>`` and
  ``&`` written as ``\\u003c``..., invalid UTF-8 as ``\\ufffd``, times as RFC 3339 with trimmed
  nanoseconds.

Strings are handled as Go handles them, as bytes: raw bytes are decoded with ``surrogateescape``
so that sizes are byte counts and undecodable bytes survive until the JSON encoder writes them as
``\\ufffd``, exactly as Go does.

Where MailHog breaks on hostile mail, Pat does not, and says so here:

- line endings: MailHog finds headers and parts only between CRLFs, so a message sent with bare
  LF (PHP's ``mail()``, many scripts) shows no headers at all. Pat reads bare LF, bare CR and
  mixed endings as CRLF for the JSON view; ``Raw.Data`` stays what was received;
- nesting: MailHog recurses once per nested multipart. Pat splits parts without recursion, at
  most ``MAX_MIME_DEPTH`` levels deep and while the bodies of the tree stay within
  ``MIME_BODY_BUDGET`` (each level repeats the bodies of the levels below it, so a deep
  message would otherwise answer gigabytes); a part not split is shown as any non-multipart
  part is, headers and body;
- a message whose JSON still cannot be built is shown as a minimal message (``minimal_message``)
  instead of failing the page it is on."""

from __future__ import annotations

import base64
import binascii
import logging
import re
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

DEFAULT_LIMIT = 50
MAX_LIMIT = 250  # MailHog caps v2 ``limit`` here
V1_LIST_LIMIT = 1000  # MailHog's v1 list answers at most this many
SEARCH_KINDS = ("from", "to", "containing")
# Multipart levels split into parts; real mail nests a handful.
MAX_MIME_DEPTH = 100
# Parts are split while the bodies in the MIME tree total at most this many characters, or
# this many times the message's body if that is more (a message's parts repeat its body once
# per level: nested deep around a large body, one message would answer gigabytes).
MIME_BODY_BUDGET = 32 * 1024 * 1024
MIME_BODY_BUDGET_FACTOR = 4

JsonValue = Any
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredEnvelope:
    """The columns of one stored message that MailHog's JSON needs besides its bytes."""

    message_id: str
    created_ns: int
    mail_from: str
    recipients: Sequence[str]
    helo: str


# --- Go's encoding/json ------------------------------------------------------------------------

_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
               "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029\udc80-\udcff]')


def _go_escape(match: re.Match[str]) -> str:
    char = match.group()
    escaped = _GO_ESCAPES.get(char)
    if escaped is not None:
        return escaped
    if "\udc80" <= char <= "\udcff":  # a byte that is not UTF-8: Go writes U+FFFD
        return "\\ufffd"
    return f"\\u{ord(char):04x}"  # other control characters, as Go before 1.22 (\b -> \u0008)


def go_string(value: str) -> str:
    return '"' + _GO_NEEDS_ESCAPE.sub(_go_escape, value) + '"'


def go_json(value: JsonValue, indent: str | None = None) -> str:
    """``json.Marshal(value)``, or ``json.MarshalIndent(value, "", indent)``, as Go writes it.

    Dicts are written in their own order: build struct-like dicts in Go's field order and
    sort map-like ones (``go_map``). Written without recursion: however deep the value, the
    encoder's own stack is a list."""
    out: list[str] = []
    # Each item is either text to write as it is, or a value and its depth, to encode.
    pending: list[str | tuple[JsonValue, int]] = [(value, 0)]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        current, depth = item
        scalar = _go_scalar(current)
        if scalar is not None:
            out.append(scalar)
        elif isinstance(current, dict):
            pending.extend(reversed(_container_items(
                "{", "}", [(go_string(k) + (": " if indent is not None else ":"), v)
                           for k, v in current.items()], indent, depth)))
        elif isinstance(current, list | tuple):
            pending.extend(reversed(_container_items(
                "[", "]", [("", v) for v in current], indent, depth)))
        else:
            raise TypeError(f"cannot write {type(current).__name__} as MailHog JSON")
    return "".join(out)


def _go_scalar(value: JsonValue) -> str | None:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return go_string(value)
    return None


def _container_items(opening: str, closing: str, members: list[tuple[str, JsonValue]],
                     indent: str | None, depth: int) -> list[str | tuple[JsonValue, int]]:
    """What a dict or list writes, in order: its brackets, separators and line breaks as text,
    its members as values still to encode (one level deeper)."""
    if not members:
        return [opening + closing]
    items: list[str | tuple[JsonValue, int]] = []
    for position, (prefix, member) in enumerate(members):
        separator = "," if position else opening
        items.append(separator + _newline(indent, depth + 1) + prefix)
        items.append((member, depth + 1))
    items.append(_newline(indent, depth) + closing)
    return items


def go_map(mapping: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """A Go map as ``encoding/json`` writes it: keys in byte order."""
    return dict(sorted(mapping.items(),
                       key=lambda item: item[0].encode("utf-8", "surrogateescape")))


def _newline(indent: str | None, depth: int) -> str:
    return "" if indent is None else "\n" + indent * depth


def go_time(created_ns: int) -> str:
    """A Go ``time.Time`` in UTC as ``encoding/json`` writes it (RFC 3339, nanoseconds with
    trailing zeros trimmed)."""
    seconds, nanos = divmod(created_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc1123z(created_ns: int) -> str:
    """Go's ``time.RFC1123Z`` in UTC, in English whatever the process locale."""
    when = datetime.fromtimestamp(created_ns // 1_000_000_000, tz=UTC)
    return (f"{_DAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} {when.year:04d} "
            f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} +0000")


# --- mailhog/data message.go -------------------------------------------------------------------

def path_from_string(path: str) -> dict[str, JsonValue]:
    relays: list[str] | None = None
    email = path
    if ":" in path:
        route, email = path.split(":", 1)
        relays = route.split(",")
    mailbox, domain = email.split("@", 1) if "@" in email else (email, "")
    return {"Relays": relays, "Mailbox": mailbox, "Domain": domain, "Params": ""}


def content_from_string(data: str) -> dict[str, JsonValue]:
    """``ContentFromString``: a ``Content`` with ``MIME`` null (the caller parses parts).
    ``data`` has CRLF line endings (``crlf_lines``)."""
    headers: dict[str, list[str]] = {}
    split = data.split("\r\n\r\n", 1)
    if len(split) == 2:
        head, body = split
        last = ""
        value: list[str] = []  # the last field's value, folded lines glued on at the end
        for line in head.split("\r\n"):
            if last and line.startswith((" ", "\t")):
                value.append(line)
            elif ": " in line:
                if last:
                    headers[last] = ["".join(value)]
                last, first = line.split(": ", 1)
                value = [first]  # MailHog keeps only the last of repeated fields
        if last:
            headers[last] = ["".join(value)]
    else:
        body = split[0]
    return {"Headers": headers, "Body": body, "Size": _size(data), "MIME": None}


_BARE_LINE_ENDING = re.compile("\r(?!\n)|(?<!\r)\n")


def crlf_lines(data: str) -> str:
    """``data`` with bare LF and bare CR line endings written as CRLF, so that a message sent by
    a script with ``\\n`` lines shows its headers and parts as the same message sent with CRLF
    would (MailHog itself finds none)."""
    return _BARE_LINE_ENDING.sub("\r\n", data)


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def is_mime(content: Mapping[str, JsonValue]) -> bool:
    values = content["Headers"].get("Content-Type")
    return bool(values) and str(values[0]).startswith("multipart/")


def parse_mime_body(content: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """``ParseMIMEBody``: the parts between ``--boundary`` markers, and theirs in turn.

    MailHog recurses; here a queue holds the parts still to split, shallowest first, so that
    neither depth nor size can exhaust a stack. A part deeper than ``MAX_MIME_DEPTH``, or met
    once the bodies in the tree exceed the budget, is not split: it keeps ``MIME`` null, as
    any non-multipart part."""
    root: dict[str, JsonValue] = {"Parts": None}
    budget = max(MIME_BODY_BUDGET, MIME_BODY_BUDGET_FACTOR * len(str(content["Body"])))
    pending: deque[tuple[Mapping[str, JsonValue], dict[str, JsonValue], int]] = deque(
        [(content, root, 1)])
    while pending:
        current, mime, depth = pending.popleft()
        parts: list[dict[str, JsonValue]] = []
        for piece in _mime_pieces(current):
            part = content_from_string(piece.strip("\r\n"))
            budget -= len(part["Body"])
            if depth < MAX_MIME_DEPTH and budget >= 0 and is_mime(part):
                part["MIME"] = {"Parts": None}
                pending.append((part, part["MIME"], depth + 1))
            parts.append(_content_json(part))
        mime["Parts"] = parts or None
    return root


def _mime_pieces(content: Mapping[str, JsonValue]) -> list[str]:
    values = content["Headers"].get("Content-Type")
    boundary = extract_boundary(values[0]) if values else ""
    pieces = str(content["Body"]).split("--" + boundary) if boundary else []
    # MailHog drops the preamble and whatever follows the last marker. (When the body has no
    # marker at all, MailHog's slice p[1:0] panics; here the message has no parts.)
    return [piece for piece in pieces[1:-1] if piece]


def _content_json(content: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    return {"Headers": go_map(content["Headers"]), "Body": content["Body"],
            "Size": content["Size"], "MIME": content["MIME"]}


# Go's mime.ParseMediaType, as far as extractBoundary needs it. Positions, not slices: a
# Content-Type of thousands of parameters is read in one pass.
_TSPECIALS = set('()<>@,;:\\"/[]?=')
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z{}]*")


def _token_end(text: str, start: int) -> int:
    found = _TOKEN.match(text, start)
    return found.end() if found else start


def _space_end(text: str, start: int) -> int:
    while start < len(text) and text[start].isspace():
        start += 1
    return start


def _consume_value(text: str, start: int) -> tuple[str, int]:
    """A token or a quoted string at ``start``: its value and where it ends; ("", start) when
    there is none."""
    if not text.startswith('"', start):
        end = _token_end(text, start)
        return text[start:end], end
    value: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(value), index + 1
        if char == "\\" and index + 1 < len(text) and text[index + 1] in _TSPECIALS:
            value.append(text[index + 1])
            index += 2
            continue
        if char in "\r\n":
            return "", start
        value.append(char)
        index += 1
    return "", start  # unterminated quoted string


def _media_type_ok(media_type: str) -> bool:
    kind_end = _token_end(media_type, 0)
    if not kind_end:
        return False
    if kind_end == len(media_type):
        return True
    if media_type[kind_end] != "/":
        return False
    subtype_end = _token_end(media_type, kind_end + 1)
    return subtype_end > kind_end + 1 and subtype_end == len(media_type)


def extract_boundary(content_type: str) -> str:
    """The ``boundary`` parameter, or "" when Go's ``mime.ParseMediaType`` would fail."""
    base = content_type.split(";", 1)[0]
    if not _media_type_ok(base.lower().strip()):
        return ""
    params: dict[str, str] = {}
    text = content_type
    position = len(base)
    while position < len(text):
        position = _space_end(text, position)
        if position == len(text):
            break
        if text[position] != ";":
            return ""
        key_start = _space_end(text, position + 1)
        key_end = _token_end(text, key_start)
        key = text[key_start:key_end].lower()
        after = _space_end(text, key_end)
        if not key or not text.startswith("=", after):
            if text[position:].strip() == ";":  # a trailing semicolon is allowed
                break
            return ""
        value_start = _space_end(text, after + 1)
        value, position = _consume_value(text, value_start)
        if not value and position == value_start:
            return ""
        if key in params and params[key] != value:
            return ""  # "mime: duplicate parameter name"
        params[key] = value
    return params.get("boundary", "")


# --- the message -------------------------------------------------------------------------------

def smtp_data(raw: bytes) -> str:
    """MailHog's ``Raw.Data``: the DATA section without the CRLF before the final dot (Pat's
    gateway keeps that CRLF), decoded byte for byte."""
    data = raw[:-2] if raw.endswith(b"\r\n") else raw
    return data.decode("utf-8", "surrogateescape")


def build_message(envelope: StoredEnvelope, raw: bytes, hostname: str) -> dict[str, JsonValue]:
    """MailHog's ``data.Message`` for one stored message, as ``SMTPMessage.Parse`` builds it."""
    data = smtp_data(raw)
    content = content_from_string(crlf_lines(data))
    mime = parse_mime_body(content) if is_mime(content) else None
    return _message(envelope, hostname, content, mime, data)


def build_message_or_minimal(envelope: StoredEnvelope, raw: bytes,
                             hostname: str) -> dict[str, JsonValue]:
    """``build_message``, or, for a message whose JSON cannot be built, ``minimal_message``
    (and a log line saying which): one message never fails a page of many."""
    try:
        return build_message(envelope, raw, hostname)
    except Exception:
        log.exception("the MailHog JSON of message %s cannot be built; it is listed with its "
                      "headers and raw data only", envelope.message_id)
        return minimal_message(envelope, raw, hostname)


def minimal_message(envelope: StoredEnvelope, raw: bytes, hostname: str) -> dict[str, JsonValue]:
    """A valid ``data.Message`` with what can always be shown: the envelope, the headers if
    they can be read, no body or parts, and ``Raw`` as received."""
    data = smtp_data(raw)
    try:
        headers: dict[str, list[str]] = content_from_string(crlf_lines(data))["Headers"]
    except Exception:
        log.exception("the headers of message %s cannot be read for its MailHog JSON",
                      envelope.message_id)
        headers = {}
    content = {"Headers": headers, "Body": "", "Size": _size(data), "MIME": None}
    return _message(envelope, hostname, content, None, data)


def _message(envelope: StoredEnvelope, hostname: str, content: dict[str, JsonValue],
             mime: dict[str, JsonValue] | None, data: str) -> dict[str, JsonValue]:
    headers: dict[str, list[str]] = content["Headers"]
    names = {name.lower(): name for name in headers}
    if "message-id" not in names:
        headers["Message-ID"] = [envelope.message_id]
    received = (f"from {envelope.helo} by {hostname} (MailHog)\r\n          id "
                f"{envelope.message_id}; {rfc1123z(envelope.created_ns)}")
    headers.setdefault(names.get("received", "Received"), []).append(received)
    headers.setdefault(names.get("return-path", "Return-Path"), []).append(
        f"<{envelope.mail_from}>")
    recipients = list(envelope.recipients)
    return {
        "ID": envelope.message_id,
        "From": path_from_string(envelope.mail_from),
        "To": [path_from_string(r) for r in recipients] or None,
        "Content": _content_json(content),
        "Created": go_time(envelope.created_ns),
        "MIME": mime,
        "Raw": {"From": envelope.mail_from, "To": recipients or None, "Data": data,
                "Helo": envelope.helo},
    }


def messages_result(total: int, start: int, items: list[dict[str, JsonValue]]
                    ) -> dict[str, JsonValue]:
    """The v2 ``messagesResult``."""
    return {"total": total, "count": len(items), "start": start, "items": items}


# --- stored JSON -------------------------------------------------------------------------------
# The parse step stores each message's JSON, Go-encoded and compressed, so that the API serves
# lists by joining stored text instead of rebuilding every message from its bytes per request.

def stored_message(envelope: StoredEnvelope, raw: bytes, hostname: str) -> bytes:
    """The message's MailHog JSON as stored with its artifact."""
    return encode_stored(build_message_or_minimal(envelope, raw, hostname))


def encode_stored(message: JsonValue) -> bytes:
    """A message's MailHog JSON (``build_message``) as stored with its artifact."""
    return zlib.compress(go_json(message).encode("utf-8", "surrogateescape"), 6)


def stored_text(stored: bytes) -> str:
    """The Go-encoded JSON text of a stored message (``stored_message``)."""
    return zlib.decompress(stored).decode("utf-8", "surrogateescape")


def go_array(items: Sequence[str]) -> str:
    """A JSON array of already encoded items, as Go writes it (``[]`` when empty)."""
    return "[" + ",".join(items) + "]"


def messages_result_text(total: int, start: int, items: Sequence[str]) -> str:
    """The v2 ``messagesResult`` of already encoded items."""
    return (f'{{"total":{total},"count":{len(items)},"start":{start},'
            f'"items":{go_array(items)}}}')


# --- mailhog/storage memory.go Search ----------------------------------------------------------

def _path_address(path: Mapping[str, JsonValue]) -> str:
    return f"{path['Mailbox']}@{path['Domain']}".lower()


def matches(message: Mapping[str, JsonValue], kind: str, query: str) -> bool:
    """Whether MailHog's in-memory ``Search(kind, query)`` would return ``message``."""
    query = query.lower()
    headers: Mapping[str, list[str]] = message["Content"]["Headers"]
    if kind == "to":
        if any(query in _path_address(path) for path in message["To"] or []):
            return True
        return any(query in value.lower() for value in headers.get("To", []))
    if kind == "from":
        if query in _path_address(message["From"]):
            return True
        return any(query in value.lower() for value in headers.get("From", []))
    if kind == "containing":
        if query in str(message["Content"]["Body"]).lower():
            return True
        return any(query in value.lower() for values in headers.values() for value in values)
    raise ValueError(f"unknown search kind {kind!r}; expected one of {', '.join(SEARCH_KINDS)}")


# --- live events and part downloads ------------------------------------------------------------

def event_stream_frame(event: str, payload: str) -> str:
    """One event as goose's ``EventStream.Notify`` writes it: every line of the payload behind
    ``<event>: ``, then a blank line. MailHog sends ``data`` events carrying the message as
    ``json.MarshalIndent(msg, "", "  ")``, and an empty ``keepalive`` event every minute."""
    return "".join(f"{event}: {line}\n" for line in payload.split("\n")) + "\n"


def event_stream_message(message: JsonValue) -> str:
    return event_stream_frame("data", go_json(message, indent="  "))


def websocket_message(message: JsonValue) -> str:
    """What gorilla/websocket's ``WriteJSON`` sends: ``json.Encoder.Encode``, so a newline ends
    the compact JSON."""
    return go_json(message) + "\n"


@dataclass(frozen=True)
class PartDownload:
    """One top-level MIME part as MailHog's ``downloadPart`` sends it. Only these two facts of
    the part's headers reach the response, and only through ``api.safe_content``: MailHog
    copies every header of the part into its response, so a part could make itself a page
    with script on the API's origin."""

    media_type: str | None  # as declared, unchecked
    filename: str
    body: bytes


def part_download(message: Mapping[str, JsonValue], index: int) -> PartDownload | None:
    """Part ``index`` of the top-level ``MIME.Parts``: its body, base64-decoded when the part
    says base64 and sent as it is otherwise, its declared media type and its filename (from
    its Content-Disposition or Content-Type, else MailHog's ``<id>-part-<index>``). None when
    the message has no such part (MailHog panics there)."""
    mime = message["MIME"]
    parts = mime["Parts"] if mime else None
    if not parts or not 0 <= index < len(parts):
        return None
    headers: Mapping[str, list[str]] = parts[index]["Headers"]
    body = str(parts[index]["Body"]).encode("utf-8", "surrogateescape")
    if _first_value(headers, "Content-Transfer-Encoding").strip().lower() == "base64":
        body = _base64_or_as_is(body)
    declared = _first_value(headers, "Content-Type").split(";", 1)[0].strip()
    return PartDownload(media_type=declared or None,
                        filename=_part_filename(headers) or f"{message['ID']}-part-{index}",
                        body=body)


def _first_value(headers: Mapping[str, list[str]], name: str) -> str:
    for key, values in headers.items():
        if key.lower() == name.lower() and values:
            return values[0]
    return ""


def _part_filename(headers: Mapping[str, list[str]]) -> str | None:
    """The filename a part gives itself, RFC 2231 and RFC 2047 decoded; None if it gives none
    or none can be read."""
    holder = Message()  # compat32: parameters are read as text, nothing recursive
    for name in ("Content-Disposition", "Content-Type"):
        value = _first_value(headers, name)
        if value:
            holder[name] = value
    try:
        found = holder.get_filename()
        if found is None:
            return None
        readable = found.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return str(make_header(decode_header(readable)))
    except Exception:  # a name that cannot be decoded is no name; MailHog's default is used
        return None


def _base64_or_as_is(body: bytes) -> bytes:
    # Go's StdEncoding rejects line breaks only where they are not CR/LF, which it skips.
    try:
        return base64.b64decode(re.sub(rb"[\r\n]", b"", body), validate=True)
    except (binascii.Error, ValueError):
        return body  # MailHog logs the failure and sends what it has
