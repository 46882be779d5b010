"""Parsing raw messages into Pat's parsed view (stdlib ``email`` with ``policy.default``).

The parsed view holds headers (RFC 2047 words and charsets decoded), addresses and a descriptor
of every MIME part; bodies stay in the raw bytes and are decoded on demand by part index
(``part_content``), so the view stays small enough to travel through workflow histories.

No ``from __future__ import annotations`` here: Temporal's converter resolves these dataclasses'
field types inside the workflow sandbox, where string annotations do not resolve."""

import email.policy
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

_PARSER = BytesParser(policy=email.policy.default)
_ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply_to", "sender")
SNIPPET_LENGTH = 200


class MalformedMessage(ValueError):
    """The bytes cannot be read as an email at all; the reason says why."""


@dataclass
class Address:
    name: str
    address: str


@dataclass
class Part:
    index: int
    content_type: str
    charset: str | None
    disposition: str | None
    filename: str | None
    content_id: str | None
    size: int
    is_attachment: bool
    is_inline: bool


@dataclass
class ParsedMessage:
    subject: str
    message_id: str | None
    date: str | None
    addresses: dict[str, list[Address]]
    headers: list[tuple[str, str]]
    parts: list[Part]
    text_part: int | None
    html_part: int | None
    snippet: str
    defects: list[str] = field(default_factory=list)

    @property
    def attachments(self) -> list[Part]:
        return [p for p in self.parts if p.is_attachment]

    @property
    def inline(self) -> list[Part]:
        return [p for p in self.parts if p.is_inline]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ParsedMessage":
        return cls(
            subject=data["subject"], message_id=data.get("message_id"), date=data.get("date"),
            addresses={k: [Address(**a) for a in v] for k, v in data["addresses"].items()},
            headers=[(n, v) for n, v in data["headers"]],
            parts=[Part(**p) for p in data["parts"]], text_part=data.get("text_part"),
            html_part=data.get("html_part"), snippet=data.get("snippet", ""),
            defects=list(data.get("defects", [])))


def _header_text(message: EmailMessage, name: str) -> str | None:
    try:
        value = message.get(name)
    except Exception:  # a header the policy cannot parse: fall back to its raw text
        raw = message.get_all(name, failobj=None)
        return None if raw is None else str(raw[0])
    return None if value is None else str(value)


def _addresses(message: EmailMessage, name: str) -> list[Address]:
    header = name.replace("_", "-")
    try:
        value = message.get(header)
        if value is None:
            return []
        return [Address(name=a.display_name, address=a.addr_spec)
                for a in getattr(value, "addresses", ())]
    except Exception:
        text = _header_text(message, header) or ""
        return [Address(name="", address=text.strip())] if text.strip() else []


def _decoded_headers(message: EmailMessage) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for name, raw in message.raw_items():
        try:
            headers.append((name, str(message.policy.header_fetch_parse(name, raw))))
        except Exception:
            headers.append((name, str(raw)))
    return headers


def _payload_bytes(part: EmailMessage) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _describe(index: int, part: EmailMessage) -> Part:
    disposition = part.get_content_disposition()
    try:
        filename = part.get_filename()
    except Exception:
        filename = None
    content_id = _header_text(part, "Content-ID")
    if content_id:
        content_id = content_id.strip().strip("<>")
    maintype = part.get_content_maintype()
    is_body_text = maintype == "text" and disposition != "attachment" and not filename
    is_attachment = not part.is_multipart() and not is_body_text and (
        disposition == "attachment" or (disposition != "inline" and not content_id)
        or bool(filename and disposition != "inline"))
    is_inline = not part.is_multipart() and not is_body_text and not is_attachment
    return Part(index=index, content_type=part.get_content_type(),
                charset=part.get_param("charset") if maintype == "text" else None,  # type: ignore[arg-type]
                disposition=disposition, filename=filename, content_id=content_id,
                size=0 if part.is_multipart() else len(_payload_bytes(part)),
                is_attachment=is_attachment, is_inline=is_inline)


def _text_of(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, AssertionError, KeyError):
        # Unknown charset or a broken transfer encoding: show what can be shown.
        content = _payload_bytes(part).decode("utf-8", errors="replace")
    text = content if isinstance(content, str) else bytes(content).decode("utf-8", "replace")
    return text.replace("\r\n", "\n")  # wire line endings are not part of the text


def parse_bytes(raw: bytes) -> EmailMessage:
    if not raw.strip():
        raise MalformedMessage("the message is empty")
    try:
        message = _PARSER.parsebytes(raw)
    except Exception as exc:
        raise MalformedMessage(f"the message cannot be parsed: {exc}") from exc
    if not message.keys():
        raise MalformedMessage("the message has no header section")
    return message


def parse_message(raw: bytes) -> ParsedMessage:
    """The parsed view of ``raw``; ``MalformedMessage`` if it is not an email at all."""
    message = parse_bytes(raw)
    parts: list[Part] = []
    text_part: int | None = None
    html_part: int | None = None
    snippet = ""
    defects = [f"{type(d).__name__}: {d}" for d in message.defects]
    for index, part in enumerate(message.walk()):
        described = _describe(index, part)
        parts.append(described)
        defects += [f"part {index}: {type(d).__name__}: {d}" for d in part.defects if index]
        if described.is_attachment or described.is_inline or part.is_multipart():
            continue
        if described.content_type == "text/plain" and text_part is None:
            text_part = index
            snippet = " ".join(_text_of(part).split())[:SNIPPET_LENGTH]
        elif described.content_type == "text/html" and html_part is None:
            html_part = index
    return ParsedMessage(
        subject=_header_text(message, "Subject") or "",
        message_id=_header_text(message, "Message-ID"), date=_header_text(message, "Date"),
        addresses={name: _addresses(message, name) for name in _ADDRESS_HEADERS},
        headers=_decoded_headers(message), parts=parts, text_part=text_part,
        html_part=html_part, snippet=snippet, defects=defects)


def part_of(raw: bytes, index: int) -> EmailMessage | None:
    for position, part in enumerate(parse_bytes(raw).walk()):
        if position == index:
            return part
    return None


def part_text(raw: bytes, index: int | None) -> str | None:
    """The decoded text of part ``index`` (a text body), or None."""
    if index is None:
        return None
    part = part_of(raw, index)
    return None if part is None else _text_of(part)


def part_bytes(raw: bytes, index: int) -> tuple[bytes, str] | None:
    """The decoded content of part ``index`` and its content type, or None."""
    part = part_of(raw, index)
    if part is None or part.is_multipart():
        return None
    return _payload_bytes(part), part.get_content_type()
