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
``\\ufffd``, exactly as Go does."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DEFAULT_LIMIT = 50
MAX_LIMIT = 250  # MailHog caps v2 ``limit`` here
V1_LIST_LIMIT = 1000  # MailHog's v1 list answers at most this many
SEARCH_KINDS = ("from", "to", "containing")

JsonValue = Any


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
    sort map-like ones (``go_map``)."""
    parts: list[str] = []
    _encode(value, indent, 0, parts)
    return "".join(parts)


def go_map(mapping: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """A Go map as ``encoding/json`` writes it: keys in byte order."""
    return dict(sorted(mapping.items(),
                       key=lambda item: item[0].encode("utf-8", "surrogateescape")))


def _encode(value: JsonValue, indent: str | None, depth: int, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, str):
        out.append(go_string(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{")
        for position, (key, item) in enumerate(value.items()):
            if position:
                out.append(",")
            _newline(indent, depth + 1, out)
            out.append(go_string(key))
            out.append(": " if indent is not None else ":")
            _encode(item, indent, depth + 1, out)
        _newline(indent, depth, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        out.append("[")
        for position, item in enumerate(value):
            if position:
                out.append(",")
            _newline(indent, depth + 1, out)
            _encode(item, indent, depth + 1, out)
        _newline(indent, depth, out)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as MailHog JSON")


def _newline(indent: str | None, depth: int, out: list[str]) -> None:
    if indent is not None:
        out.append("\n" + indent * depth)


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
    """``ContentFromString``: a ``Content`` with ``MIME`` null (the caller parses parts)."""
    headers: dict[str, list[str]] = {}
    split = data.split("\r\n\r\n", 1)
    if len(split) == 2:
        head, body = split
        last = ""
        for line in head.split("\r\n"):
            if last and line.startswith((" ", "\t")):
                headers[last][-1] += line
            elif ": " in line:
                key, value = line.split(": ", 1)
                headers[key] = [value]  # MailHog keeps only the last of repeated fields
                last = key
    else:
        body = split[0]
    return {"Headers": headers, "Body": body, "Size": _size(data), "MIME": None}


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def is_mime(content: Mapping[str, JsonValue]) -> bool:
    values = content["Headers"].get("Content-Type")
    return bool(values) and str(values[0]).startswith("multipart/")


def parse_mime_body(content: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """``ParseMIMEBody``: the parts between ``--boundary`` markers, recursively."""
    parts: list[dict[str, JsonValue]] = []
    values = content["Headers"].get("Content-Type")
    if values:
        boundary = extract_boundary(values[0])
        pieces = str(content["Body"]).split("--" + boundary) if boundary else []
        # MailHog drops the preamble and whatever follows the last marker. (When the body
        # has no marker at all, MailHog's slice p[1:0] panics; here the message has no parts.)
        for piece in pieces[1:-1]:
            if piece:
                part = content_from_string(piece.strip("\r\n"))
                if is_mime(part):
                    part["MIME"] = parse_mime_body(part)
                parts.append(_content_json(part))
    return {"Parts": parts or None}


def _content_json(content: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    return {"Headers": go_map(content["Headers"]), "Body": content["Body"],
            "Size": content["Size"], "MIME": content["MIME"]}


# Go's mime.ParseMediaType, as far as extractBoundary needs it.
_TSPECIALS = set('()<>@,;:\\"/[]?=')


def _is_token_char(char: str) -> bool:
    return "\x20" < char < "\x7f" and char not in _TSPECIALS


def _consume_token(text: str) -> tuple[str, str]:
    end = 0
    while end < len(text) and _is_token_char(text[end]):
        end += 1
    return text[:end], text[end:]


def _consume_value(text: str) -> tuple[str, str]:
    if not text.startswith('"'):
        return _consume_token(text)
    value: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(value), text[index + 1:]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in _TSPECIALS:
            value.append(text[index + 1])
            index += 2
            continue
        if char in "\r\n":
            return "", text
        value.append(char)
        index += 1
    return "", text  # unterminated quoted string


def _media_type_ok(media_type: str) -> bool:
    kind, rest = _consume_token(media_type)
    if not kind:
        return False
    if not rest:
        return True
    if not rest.startswith("/"):
        return False
    subtype, rest = _consume_token(rest[1:])
    return bool(subtype) and not rest


def extract_boundary(content_type: str) -> str:
    """The ``boundary`` parameter, or "" when Go's ``mime.ParseMediaType`` would fail."""
    base = content_type.split(";", 1)[0]
    if not _media_type_ok(base.lower().strip()):
        return ""
    params: dict[str, str] = {}
    rest = content_type[len(base):]
    while rest:
        rest = rest.lstrip()
        if not rest:
            break
        if not rest.startswith(";"):
            return ""
        after = rest[1:].lstrip()
        key, after = _consume_token(after)
        key = key.lower()
        after = after.lstrip()
        if not key or not after.startswith("="):
            if rest.strip() == ";":  # a trailing semicolon is allowed
                break
            return ""
        after = after[1:].lstrip()
        value, remainder = _consume_value(after)
        if not value and remainder == after:
            return ""
        if key in params and params[key] != value:
            return ""  # "mime: duplicate parameter name"
        params[key] = value
        rest = remainder
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
    content = content_from_string(data)
    mime = parse_mime_body(content) if is_mime(content) else None
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
    headers: list[tuple[str, str]]
    body: bytes


def part_download(message: Mapping[str, JsonValue], index: int) -> PartDownload | None:
    """``downloadPart`` of MailHog's API v1: part ``index`` of the top-level ``MIME.Parts``, its
    headers as response headers (its own ``Content-Disposition`` replacing the default one), its
    body base64-decoded when the part says base64 and sent as it is otherwise. None when the
    message has no such part (MailHog panics there)."""
    mime = message["MIME"]
    parts = mime["Parts"] if mime else None
    if not parts or not 0 <= index < len(parts):
        return None
    part = parts[index]
    headers = [("Content-Disposition",
                f'attachment; filename="{message["ID"]}-part-{index}"')]
    transfer_encoding = ""
    for name, values in part["Headers"].items():
        for value in values:
            lowered = name.lower()
            if lowered == "content-disposition":
                headers = [(n, v) for n, v in headers if n.lower() != "content-disposition"]
            elif lowered == "content-transfer-encoding" and not transfer_encoding:
                transfer_encoding = value
            headers.append((name, value))
    body = str(part["Body"]).encode("utf-8", "surrogateescape")
    if transfer_encoding.lower() == "base64":
        body = _base64_or_as_is(body)
    return PartDownload(headers=headers, body=body)


def _base64_or_as_is(body: bytes) -> bytes:
    # Go's StdEncoding rejects line breaks only where they are not CR/LF, which it skips.
    try:
        return base64.b64decode(re.sub(rb"[\r\n]", b"", body), validate=True)
    except (binascii.Error, ValueError):
        return body  # MailHog logs the failure and sends what it has


def iter_header_lines(headers: Sequence[tuple[str, str]]) -> Iterator[tuple[bytes, bytes]]:
    """Part headers as HTTP response headers: names that are not HTTP tokens are left out,
    line breaks become spaces (as Go's net/http does), the bytes go out unchanged."""
    for name, value in headers:
        if not name or not all(_is_token_char(c) for c in name):
            continue
        clean = re.sub("[\r\n\x00]", " ", value).strip()
        yield (name.lower().encode("ascii"), clean.encode("utf-8", "surrogateescape"))
