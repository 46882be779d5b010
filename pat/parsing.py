"""Parsing raw messages into Pat's parsed view (stdlib ``email`` with ``policy.default``).

The parsed view holds headers (RFC 2047 words and charsets decoded), addresses and a descriptor
of every MIME part; bodies stay in the raw bytes and are decoded on demand by part index
(``part_text``, ``part_bytes``), so the view stays small enough to travel through workflow
histories.

No ``from __future__ import annotations`` here: Temporal's converter resolves these dataclasses'
field types inside the workflow sandbox, where string annotations do not resolve."""

import codecs
import email.policy
import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

_ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply_to", "sender")
SNIPPET_LENGTH = 200


def _undo_surrogates(value: str) -> str:
    """Header text as a reader means it. The parser reads headers as ASCII and keeps any other
    byte as a lone surrogate; such bytes are UTF-8 (RFC 6532, SMTPUTF8 mail) or, from old
    mailers, a Windows or Latin-1 charset. Surrogates must not survive: JSON and the store's
    UTF-8 columns refuse them."""
    if value.isascii() or not any("\udc80" <= c <= "\udcff" for c in value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    for charset in ("utf-8", "cp1252"):
        try:
            return data.decode(charset)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


class _ReadingPolicy(email.policy.EmailPolicy):
    """``policy.default`` that decodes 8-bit header bytes when a header is read. Stored values
    keep their surrogates, so that a part written back out (an attached message) is the bytes
    that came in."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if isinstance(value, str) and not hasattr(value, "name"):  # not yet a header object
            value = _undo_surrogates(value)
        return super().header_fetch_parse(name, value)


_POLICY = _ReadingPolicy()
_PARSER = BytesParser(policy=_POLICY)
# Text bodies: what a reader sees; other text/* (calendar invites, CSV, vCards) are files.
_BODY_TYPES = ("text/plain", "text/html")
# Labels that mail software puts on UTF-8 text by mistake (a template's default header).
_MISLABEL_CANDIDATES = {"us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "iso-8859-15",
                        "windows-1252", "cp1252"}


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
        return None if raw is None else _undo_surrogates(str(raw[0]))
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
            headers.append((name, _undo_surrogates(str(raw))))
    return headers


def _walk(part: EmailMessage) -> Iterator[EmailMessage]:
    """Every part in order, as ``Message.walk`` but without entering attached messages: an
    attached email is one attachment, its own body and files are not the outer message's."""
    yield part
    if part.is_multipart() and not _is_attached_message(part):
        for subpart in part.iter_parts():
            yield from _walk(subpart)  # type: ignore[arg-type]


def _is_attached_message(part: EmailMessage) -> bool:
    return part.get_content_maintype() == "message" and part.is_multipart()


def _is_unreadable_multipart(part: EmailMessage) -> bool:
    """A multipart whose boundary is missing or never occurs: the parser keeps its body as one
    string, which is all there is to show."""
    return part.get_content_maintype() == "multipart" and not part.is_multipart()


def _content_type(part: EmailMessage) -> str:
    return "text/plain" if _is_unreadable_multipart(part) else part.get_content_type()


def _linesep(raw: bytes) -> str:
    return "\r\n" if b"\r\n" in raw else "\n"


def _attached_message_bytes(part: EmailMessage, linesep: str) -> bytes:
    inner = part.get_payload(0)
    assert isinstance(inner, Message)  # a message/* part that is_multipart() holds messages
    out = io.BytesIO()
    policy = _POLICY.clone(linesep=linesep, refold_source="none")
    BytesGenerator(out, mangle_from_=False, policy=policy).flatten(inner)
    return out.getvalue()


def _payload_bytes(part: EmailMessage, linesep: str = "\r\n") -> bytes:
    if _is_attached_message(part):
        return _attached_message_bytes(part, linesep)
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _describe(index: int, part: EmailMessage, linesep: str) -> Part:
    disposition = part.get_content_disposition()
    try:
        filename = part.get_filename()
    except Exception:
        filename = None
    content_id = _header_text(part, "Content-ID")
    if content_id:
        content_id = content_id.strip().strip("<>")
    content_type = _content_type(part)
    container = part.is_multipart() and not _is_attached_message(part)
    is_body_text = (not container and content_type in _BODY_TYPES
                    and disposition != "attachment" and not filename)
    leaf = not container and not is_body_text
    is_attachment = leaf and (
        disposition == "attachment" or (disposition != "inline" and not content_id)
        or bool(filename and disposition != "inline"))
    is_inline = leaf and not is_attachment
    return Part(index=index, content_type=content_type,
                charset=part.get_content_charset() if content_type.startswith("text/") else None,
                disposition=disposition, filename=filename, content_id=content_id,
                size=0 if container else len(_payload_bytes(part, linesep)),
                is_attachment=is_attachment, is_inline=is_inline)


def _decode_text(data: bytes, declared: str | None) -> tuple[str, str | None]:
    """The text of a body, and what was wrong with its charset label, if anything.

    What the user expects to read wins over the label: a label that names no known charset,
    a missing label on 8-bit text, and a Latin-1 or ASCII label on bytes that are valid UTF-8
    (a template default nobody updated) are all read as UTF-8, and reported."""
    if data.isascii():
        return data.decode("ascii"), None
    try:
        as_utf8: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        as_utf8 = None
    if declared is None:
        if as_utf8 is not None:
            return as_utf8, "8-bit text without a charset parameter, read as UTF-8"
        return data.decode("cp1252", "replace"), ("8-bit text without a charset parameter, "
                                                  "read as windows-1252")
    try:
        codecs.lookup(declared)
    except LookupError:
        if as_utf8 is not None:
            return as_utf8, f"unknown charset {declared!r}, read as UTF-8"
        return data.decode("latin-1"), f"unknown charset {declared!r}, read as Latin-1"
    if as_utf8 is not None and declared in _MISLABEL_CANDIDATES:
        return as_utf8, f"text labelled {declared} is UTF-8, read as UTF-8"
    text = data.decode(declared, "replace")
    if "\ufffd" in text and "\ufffd" not in data.decode(declared, "ignore"):
        return text, f"bytes that are not {declared} were replaced"
    return text, None


def _text_and_problem(part: EmailMessage) -> tuple[str, str | None]:
    text, problem = _decode_text(_payload_bytes(part), part.get_content_charset())
    return text.replace("\r\n", "\n"), problem  # wire line endings are not part of the text


def _text_of(part: EmailMessage) -> str:
    return _text_and_problem(part)[0]


def parse_bytes(raw: bytes) -> EmailMessage:
    if not raw.strip():
        raise MalformedMessage("the message is empty")
    try:
        message = _PARSER.parsebytes(raw)
    except Exception as exc:
        raise MalformedMessage(f"the message cannot be parsed: {exc}") from exc
    if not message.keys():
        raise MalformedMessage("the message has no header section")
    return message  # type: ignore[return-value]


def parse_message(raw: bytes) -> ParsedMessage:
    """The parsed view of ``raw``; ``MalformedMessage`` if it is not an email at all."""
    message = parse_bytes(raw)
    linesep = _linesep(raw)
    parts: list[Part] = []
    text_part: int | None = None
    html_part: int | None = None
    snippet = ""
    defects = [f"{type(d).__name__}: {d}" for d in message.defects]
    for index, part in enumerate(_walk(message)):
        described = _describe(index, part, linesep)
        parts.append(described)
        defects += [f"part {index}: {type(d).__name__}: {d}" for d in part.defects if index]
        if described.is_attachment or described.is_inline:
            continue
        if described.content_type == "text/plain" and text_part is None:
            text_part = index
            text, problem = _text_and_problem(part)
            snippet = " ".join(text.split())[:SNIPPET_LENGTH]
        elif described.content_type == "text/html" and html_part is None:
            html_part = index
            problem = _text_and_problem(part)[1]
        else:
            continue
        if problem:
            defects.append(f"part {index}: {problem}")
    return ParsedMessage(
        subject=_header_text(message, "Subject") or "",
        message_id=_header_text(message, "Message-ID"), date=_header_text(message, "Date"),
        addresses={name: _addresses(message, name) for name in _ADDRESS_HEADERS},
        headers=_decoded_headers(message), parts=parts, text_part=text_part,
        html_part=html_part, snippet=snippet, defects=defects)


def part_of(raw: bytes, index: int) -> EmailMessage | None:
    for position, part in enumerate(_walk(parse_bytes(raw))):
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
    if part is None or (part.is_multipart() and not _is_attached_message(part)):
        return None
    return _payload_bytes(part, _linesep(raw)), _content_type(part)
