"""Parsing raw messages into Pat's parsed view (stdlib ``email`` with ``policy.default``).

The parsed view holds headers (RFC 2047 words and charsets decoded), addresses and a descriptor
of every MIME part; bodies stay in the raw bytes and are decoded on demand by part index
(``part_text``, ``part_bytes``), so the view stays small enough to travel through workflow
histories.

Messages come from strangers, so reading one must end, soon and in bounded memory, whatever the
bytes: the parser enters at most ``MAX_NESTING`` levels of multiparts and attached messages (the
stdlib parser recurses once per level and dies near a thousand), nothing here recurses, a header
the stdlib cannot parse is read as plain text, and no NUL or undecodable byte reaches the view
(PostgreSQL's text and JSON columns refuse both).

No ``from __future__ import annotations`` here: Temporal's converter resolves these dataclasses'
field types inside the workflow sandbox, where string annotations do not resolve."""

import codecs
import email.policy
import functools
import io
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from email.generator import BytesGenerator
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from typing import Any, Self

_ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply_to", "sender")
SNIPPET_LENGTH = 200
# Levels of multiparts and attached messages the parser enters. Real mail nests a handful; the
# stdlib parser and generator recurse once per level (a few frames each) and hit Python's
# recursion limit near a thousand, so a part deeper than this is kept whole, as one opaque body.
MAX_NESTING = 100
# Header values up to this length are parsed once per distinct value and name (the same
# Content-Type is read several times per part while parsing); longer ones are rare and not kept.
_REMEMBERED_HEADER_CHARS = 1024
_REMEMBERED_HEADERS = 4096
# The stdlib's parse tree of a header costs about a kilobyte a word, and each encoded word in it
# keeps the rest of the value alive (a 130 KB header of 5,000 encoded words held 330 MB). Longer
# values, or values whose encoded words times length pass the second bound, are kept as text,
# their encoded words decoded a short piece at a time. 128 KB still reads a To of 4,000
# addresses as addresses (35 MB at the peak).
_MAX_PARSED_HEADER_CHARS = 128 * 1024
_MAX_ENCODED_WORD_COST = 4 * 1024 * 1024
_DECODED_PIECE_CHARS = 256
_WHITESPACE_RUNS = re.compile(r"(\s+)")


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


def _storable(value: str) -> str:
    """``value`` fit for the view and the store: undecodable bytes decoded as a reader means
    them, and NUL, which PostgreSQL's text and JSON columns refuse, as U+FFFD so that the
    reader sees something was there."""
    return _undo_surrogates(value).replace("\x00", "\ufffd")


def storable_text(value: str) -> str:
    """Any text (bytes read with ``surrogateescape``, a stranger's header) fit for a UTF-8
    column: as ``_storable``, and any other lone surrogate replaced."""
    try:
        return _storable(value)
    except UnicodeEncodeError:
        return _storable(value.encode("utf-8", "replace").decode("utf-8"))


def _too_costly_to_parse(value: str) -> bool:
    return (len(value) > _MAX_PARSED_HEADER_CHARS
            or value.count("=?") * len(value) > _MAX_ENCODED_WORD_COST)


class _TextOnlyHeader(UnstructuredHeader):
    """A header kept as its text, without the stdlib's parse tree (see ``_too_costly_to_parse``).
    Its tree is empty, so folding it would write nothing: Pat never folds a header it read, it
    writes parts out from their stored raw values."""

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        kwds["parse_tree"] = cls.value_parser("")
        kwds["decoded"] = value


class _HeaderFactory(HeaderRegistry):
    """``HeaderRegistry`` made fit for hostile and huge messages.

    - A header the stdlib parser cannot read (nested comments past the recursion limit, or
      whatever else a stranger finds) is read as unstructured text rather than failing the
      message: its text is all there is to show.
    - The stdlib builds a new header class on every lookup and parses the same Content-Type
      several times per part; classes are built once and short values parsed once, which made
      a message of 100,000 parts several times faster to read.
    - A value too costly to parse is kept as its text (``_TextOnlyHeader``). Nothing is lost
      for MIME headers: ``Message`` reads parameters from the text anyway."""

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[type, type[BaseHeader]] = {}
        self._remembered = functools.lru_cache(maxsize=_REMEMBERED_HEADERS)(self._parse)

    def __getitem__(self, name: str) -> type[BaseHeader]:
        return self._built(self.registry.get(name.lower(), self.default_class))

    def _built(self, kind: type) -> type[BaseHeader]:
        found = self._classes.get(kind)
        if found is None:  # as the stdlib builds it: the specialised class on the base class
            found = self._classes[kind] = type("_" + kind.__name__, (kind, self.base_class), {})
        return found

    def text(self, name: str, value: str) -> str:
        """``value`` read as unstructured text: encoded words decoded, nothing else touched."""
        if not _too_costly_to_parse(value):
            return str(self._built(self.default_class)(name, value))
        # In pieces cut at whitespace: encoded words hold no whitespace, so none is cut, and
        # the tree of one piece is small and short-lived.
        unstructured = self._built(self.default_class)
        pieces: list[str] = []
        piece: list[str] = []
        size = 0
        for chunk in [*_WHITESPACE_RUNS.split(value), ""]:
            if (size + len(chunk) > _DECODED_PIECE_CHARS or not chunk) and piece:
                text = "".join(piece)
                pieces.append(str(unstructured(name, text)) if "=?" in text else text)
                piece, size = [], 0
            piece.append(chunk)
            size += len(chunk)
        return "".join(pieces)

    def __call__(self, name: str, value: str) -> BaseHeader:
        if len(value) <= _REMEMBERED_HEADER_CHARS:
            return self._remembered(name, value)
        if _too_costly_to_parse(value):
            return self._built(_TextOnlyHeader)(name, self.text(name, value))
        return self._parse(name, value)

    def _parse(self, name: str, value: str) -> BaseHeader:
        try:
            return self[name](name, value)
        except Exception:  # any failure to parse leaves the text, which is enough to show
            return self._built(self.default_class)(name, value)


class _ReadingPolicy(email.policy.EmailPolicy):
    """``policy.default`` that decodes 8-bit header bytes when a header is read. Stored values
    keep their surrogates, so that a part written back out (an attached message) is the bytes
    that came in."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if isinstance(value, str) and not hasattr(value, "name"):  # not yet a header object
            value = _undo_surrogates(value)
        return super().header_fetch_parse(name, value)


class _MessagePart(EmailMessage):
    """A message or part as Pat's parser reads it: it knows how deep it sits, and a container
    deeper than ``MAX_NESTING`` says it is opaque data, so that the stdlib parser (which asks
    the type before reading a body) reads it, with all it holds, as one body instead of
    recursing into it."""

    nesting = 0

    # Self, as typeshed's own MIMEPart.attach says (a part holds parts of its own kind).
    def attach(self, payload: Self) -> None:  # type: ignore[override]
        payload.nesting = self.nesting + 1  # the parser attaches a part before reading it
        super().attach(payload)

    @property
    def beyond_nesting(self) -> bool:
        """A container the parser did not enter: its body is its unparsed MIME source."""
        return (self.nesting > MAX_NESTING
                and super().get_content_type().startswith(("multipart/", "message/")))

    def get_content_type(self) -> str:
        return "application/octet-stream" if self.beyond_nesting else super().get_content_type()


_HEADER_FACTORY = _HeaderFactory()
_POLICY = _ReadingPolicy(header_factory=_HEADER_FACTORY, message_factory=_MessagePart)
_LINE_BREAK = re.compile("[\r\n]")
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
    # Where the part's body (still transfer-encoded) lies in the raw bytes, [start, end), and
    # its transfer encoding: a download decodes that slice and parses nothing. None where the
    # slice could not be located with certainty (an attached message, odd line endings), and
    # in views stored before spans were recorded; such parts are read by parsing the message.
    body_span: list[int] | None = None
    transfer_encoding: str | None = None


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
    value = message.get(name)
    return None if value is None else _storable(str(value))


def _addresses(message: EmailMessage, name: str) -> list[Address]:
    value = message.get(name.replace("_", "-"))
    if value is None:
        return []
    found = getattr(value, "addresses", None)
    if found is None:  # read as plain text: the text is the one address there is to show
        text = _storable(str(value)).strip()
        return [Address(name="", address=text)] if text else []
    return [Address(name=_storable(a.display_name), address=_storable(a.addr_spec))
            for a in found]


def _decoded_header(name: str, raw: str) -> str:
    """A header's text as sent, unfolded, with RFC 2047 encoded words decoded.

    Not ``policy.default``'s structured reading: that re-renders addresses and dates (dropping
    comments, changing quotes), which is not what was sent, and parsing an address list costs
    about half a millisecond a field, so a section of 5 MB of headers took 10 s to show."""
    text = _LINE_BREAK.sub("", _undo_surrogates(raw))
    return _HEADER_FACTORY.text(name, text) if "=?" in text else text


def _decoded_headers(message: EmailMessage) -> list[tuple[str, str]]:
    return [(_storable(name), _storable(_decoded_header(name, raw)))
            for name, raw in message.raw_items()]


def _walk(message: _MessagePart) -> Iterator[_MessagePart]:
    """Every part in order, as ``Message.walk`` but without entering attached messages (an
    attached email is one attachment, its own body and files are not the outer message's) and
    without recursion: a message of 100,000 parts is a list, not a stack. Depth needs no bound
    here, the parser bounds it (``MAX_NESTING``)."""
    pending = [message]
    while pending:
        part = pending.pop()
        yield part
        if part.is_multipart() and not _is_attached_message(part):
            # Every part is a _MessagePart: the parser's message factory made it.
            pending.extend(p for p in reversed(list(part.iter_parts()))
                           if isinstance(p, _MessagePart))


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


def _optional(value: str | None) -> str | None:
    return None if value is None else _storable(value)


def _describe(index: int, part: EmailMessage, linesep: str) -> Part:
    disposition = _optional(part.get_content_disposition())
    try:
        filename = _optional(part.get_filename())
    except Exception:  # RFC 2231 abuse can break the stdlib here; the part has no name then
        filename = None
    content_id = _header_text(part, "Content-ID")
    if content_id:
        content_id = content_id.strip().strip("<>")
    content_type = _storable(_content_type(part))
    container = part.is_multipart() and not _is_attached_message(part)
    is_body_text = (not container and content_type in _BODY_TYPES
                    and disposition != "attachment" and not filename)
    leaf = not container and not is_body_text
    is_attachment = leaf and (
        disposition == "attachment" or (disposition != "inline" and not content_id)
        or bool(filename and disposition != "inline"))
    is_inline = leaf and not is_attachment
    return Part(index=index, content_type=content_type,
                charset=(_optional(part.get_content_charset())
                         if content_type.startswith("text/") else None),
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
    # Wire line endings (CRLF, or bare CR from old Mac mailers) are not part of the text.
    return text.replace("\r\n", "\n").replace("\r", "\n"), problem


def _text_of(part: EmailMessage) -> str:
    return _text_and_problem(part)[0]


def parse_bytes(raw: bytes) -> _MessagePart:
    if not raw.strip():
        raise MalformedMessage("the message is empty")
    try:
        message = _PARSER.parsebytes(raw)
    except Exception as exc:
        raise MalformedMessage(f"the message cannot be parsed: {exc}") from exc
    if not isinstance(message, _MessagePart) or not message.keys():
        raise MalformedMessage("the message has no header section")
    return message


@dataclass
class MessageReading:
    """What one parse of a message yields: the parsed view and the decoded bodies."""

    view: ParsedMessage
    text: str | None
    html: str | None


def parse_message(raw: bytes) -> ParsedMessage:
    """The parsed view of ``raw``; ``MalformedMessage`` if it is not an email at all."""
    return read_message(raw).view


def read_message(raw: bytes) -> MessageReading:
    """The parsed view of ``raw`` and its decoded text and HTML bodies, from one parse;
    ``MalformedMessage`` if it is not an email at all."""
    message = parse_bytes(raw)
    linesep = _linesep(raw)
    parts: list[Part] = []
    text_part: int | None = None
    html_part: int | None = None
    text: str | None = None
    html: str | None = None
    snippet = ""
    defects = [_storable(f"{type(d).__name__}: {d}") for d in message.defects]
    boundaries: dict[int, str | None] = {}  # id of a part -> the boundary that precedes it
    cursor = 0
    for index, part in enumerate(_walk(message)):
        described = _describe(index, part, linesep)
        if part.is_multipart():
            if not _is_attached_message(part):
                boundary = part.get_boundary()
                boundaries.update((id(child), boundary) for child in part.iter_parts())
        else:
            span = _body_span(raw, part, boundaries.get(id(part)), cursor, root=index == 0)
            if span is not None:
                described.body_span, cursor = span, span[1]
                described.transfer_encoding = _optional(
                    str(part.get("content-transfer-encoding", "")).strip().lower() or None)
        parts.append(described)
        defects += [_storable(f"part {index}: {type(d).__name__}: {d}")
                    for d in part.defects if index]
        if part.beyond_nesting:
            defects.append(f"part {index}: nested deeper than {MAX_NESTING} levels; kept "
                           "unparsed, as one part")
        if described.is_attachment or described.is_inline:
            continue
        if described.content_type == "text/plain" and text_part is None:
            text_part = index
            text, problem = _text_and_problem(part)
            text = _storable(text)
            snippet = " ".join(text.split())[:SNIPPET_LENGTH]
        elif described.content_type == "text/html" and html_part is None:
            html_part = index
            html, problem = _text_and_problem(part)
            html = _storable(html)
        else:
            continue
        if problem:
            defects.append(f"part {index}: {problem}")
    view = ParsedMessage(
        subject=_header_text(message, "Subject") or "",
        message_id=_header_text(message, "Message-ID"), date=_header_text(message, "Date"),
        addresses={name: _addresses(message, name) for name in _ADDRESS_HEADERS},
        headers=_decoded_headers(message), parts=parts, text_part=text_part,
        html_part=html_part, snippet=snippet, defects=defects)
    return MessageReading(view=view, text=text, html=html)


# The empty line that ends a header section, whatever the line endings.
_BLANK_LINE = re.compile(rb"\n\r?\n")


def _body_span(raw: bytes, part: _MessagePart, boundary: str | None, cursor: int, *,
               root: bool) -> list[int] | None:
    """Where ``part``'s body lies in ``raw``, searching from ``cursor`` (the end of the body
    before it): after the boundary line that opens the part (the message itself has none),
    past the part's headers. Only a slice that holds exactly the body the parser read is
    returned; anything else is None."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        return None
    try:
        body = payload.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return None
    if root:
        start = 0
    elif boundary is None:
        return None
    else:
        start = raw.find(b"--" + boundary.encode("utf-8", "surrogateescape"), cursor)
        if start < 0:
            return None
    blank = _BLANK_LINE.search(raw, start)
    if blank is None or not raw.startswith(body, blank.end()):
        return None
    return [blank.end(), blank.end() + len(body)]


def decode_body(encoded: bytes, transfer_encoding: str | None) -> bytes:
    """A part's body as stored in the message (a ``Part.body_span`` slice), decoded as the
    parser decodes it: base64, quoted-printable, uuencode or as it is."""
    holder = Message()
    if transfer_encoding:
        holder["Content-Transfer-Encoding"] = transfer_encoding
    holder.set_payload(encoded.decode("ascii", "surrogateescape"))
    payload = holder.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def part_of(raw: bytes, index: int) -> _MessagePart | None:
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


@dataclass(frozen=True)
class Headline:
    """Subject, From and To as a list shows them, read from the header section alone."""

    subject: str | None
    from_header: str | None
    to_header: str | None


# A header section larger than this is read only this far for the headline; the parse step
# reads all of it.
_HEADLINE_BYTES = 64 * 1024
_HEADLINE_PARSER = BytesHeaderParser(policy=compat32)
_FOLDING = re.compile(r"\r?\n[ \t]*|\r")


def _headline_value(headers: Message, name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        text = str(make_header(decode_header(str(value))))
    except Exception:  # encoded words a stranger broke: show them as they are
        text = str(value)
    return _storable(_FOLDING.sub(" ", text)).strip()[:1000]


def headline(raw: bytes) -> Headline:
    """Subject, From and To of ``raw`` without parsing the message: cheap enough for the
    gateway to store with every message it accepts, so that a list shows them from the moment
    of 250. Never raises: what cannot be read is None."""
    end = _BLANK_LINE.search(raw, 0, _HEADLINE_BYTES)
    try:
        headers = _HEADLINE_PARSER.parsebytes(raw[:end.end() if end else _HEADLINE_BYTES])
    except Exception:
        return Headline(None, None, None)
    return Headline(subject=_headline_value(headers, "Subject"),
                    from_header=_headline_value(headers, "From"),
                    to_header=_headline_value(headers, "To"))
