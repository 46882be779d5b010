"""The messages ``store_scale.py`` seeds: a few hundred template messages, each run once
through the parse step's own code, then stamped per message with its own id, time, sender,
recipient and order number.

A template is written with fixed-width placeholders where those go (``QSQ`` for the sender's
three digits, ``QRQR`` for the recipient's four, ``QOQOQOQOQ`` for the nine of the order number,
and the message id and arrival time of ``TEMPLATE_NS``). ``pat.parsing.read_message``,
``pat.mailhog_json.build_message_or_minimal`` and ``pat.search.of_message`` read it once; each
message then gets the template's bytes, artifact, summary columns and search text with every
placeholder replaced the same way. The replacements have the placeholders' widths, so the byte
offsets and sizes the parsed view records still hold; ``verify`` proves it on a sample by
running the real code on the stamped bytes and comparing with what was stamped.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import textwrap
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from activities.parse import _summary as parse_summary
from compliance import html as html_checks
from compliance import links
from compliance.report import build_report
from compliance.result import Verdict, result
from pat.mailhog_json import (
    StoredEnvelope,
    build_message_or_minimal,
    go_json,
    go_time,
    rfc1123z,
)
from pat.parsing import read_message
from pat.search import SearchDocument, of_message
from pat.settings import Settings

SENDERS = 1_000
RECIPIENTS = 10_000
FIRST_ORDER = 100_000_000
TENANT = "default"
HELO = "mta.shop.example"
PEER = "192.0.2.25"
# Every message arrives this far apart, from START_NS on: 1,000,000 span about 12 days.
START_NS = 1_735_689_600 * 10**9  # 2025-01-01T00:00:00Z
STEP_NS = 1_000_000_010
PROCESSED_AFTER_NS = 480_000_000  # updated_ns - created_ns: when its pipeline marked it

# Placeholders: letters that occur nowhere else in a template, as wide as what replaces them.
TEMPLATE_NS = 978_307_200_000_000_001  # 2001-01-01T00:00:00.000000001Z, a Monday
_ID = "QIDQ" * 11  # the 44 characters of urlsafe base64 of 32 bytes
_SENDER = "QSQ"
_RECIPIENT = "QRQR"
_ORDER = "QOQOQOQOQ"
_DATE = rfc1123z(TEMPLATE_NS)
_CREATED = go_time(TEMPLATE_NS)
PLACEHOLDERS = (_ID, _SENDER, _RECIPIENT, _ORDER, _DATE, _CREATED)


def sender_address(n: int) -> str:
    return f"news{n:03d}@shop{n:03d}.example"


def recipient_address(n: int) -> str:
    return f"user{n:04d}@customers.test"


def order_number(index: int) -> str:
    return f"{FIRST_ORDER + index:09d}"


_WORDS = """
account activity added address after all amazing analytics annual app april arrival august
available basket before benefit best billing blue bonus brand browse bundle business cart
catalog checkout choose city classic collection color comfort community confirm contact cotton
coupon customer daily deal delivery design details digital discount dispatch early easy edition
estimate exclusive express family fast favorite feature fee free fresh friday garden gift green
guarantee guide happy help holiday home hours include invoice item january july june kitchen
latest leather light limited list local loyalty march market member message method monday month
morning new next notice offer online order outdoor package paid parcel partner payment plan
points popular premium price priority product profile purchase quality quick receipt recommended
refund region reminder renewal reply report request reserve return review reward saturday
savings schedule season secure select service shipping shop signature size special spring
standard status store style subscription summer sunday support team thank thursday ticket today
total track tracking tuesday update upgrade value warehouse warranty website wednesday week
weekend welcome winter wishlist
""".split()
_ACCENTED = "café crème brûlée Grüße Zürich naïve résumé façade jalapeño smörgåsbord Ærø".split()
_BRANDS = """Acme Northwind Globex Initech Umbrella Hooli Soylent Vandelay Wonka Stark Wayne
Tyrell Cyberdyne Aperture Gringotts Monarch Oceanic Pied Piper Dunder Prestige""".split()
_MAILERS = ("Mailchimp Mandrill", "Amazon SES", "PHPMailer 6.9.1", "Postmark",
            "Django EmailMessage", "nodemailer 6.9.9")
_SYLLABLES = ("ka", "lo", "mir", "ven", "zu", "tra", "bel", "qui", "dor", "fen", "ga", "lix",
              "nor", "pel", "ros", "sul", "tev", "ul", "vor", "wen", "xa", "yel", "zor", "bri")


def _markers(count: int, rng: random.Random, vocabulary: str) -> list[str]:
    """One made-up product name per template, none inside another or inside a common word:
    searching one finds the messages of its template only."""
    found: list[str] = []
    while len(found) < count:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(4))
        if (word in vocabulary or any(word in other or other in word for other in found)
                or any(p.lower() in word for p in PLACEHOLDERS)):
            continue
        found.append(word)
    return found


def _q_encoded(phrase: str) -> str:
    """``phrase`` as one RFC 2047 encoded word, Q encoding."""
    encoded = "".join(c if c.isascii() and c.isalnum() else "_" if c == " "
                      else "".join(f"={b:02X}" for b in c.encode()) for c in phrase)
    return f"=?utf-8?q?{encoded}?="


@dataclass(frozen=True)
class _Design:
    """What one template is made of, before it is written out."""

    index: int
    brand: str
    marker: str
    subject: str
    shape: str  # plain, alternative, mixed (with a PDF), html
    encoding: str  # 7bit, 8bit, quoted-printable
    paragraphs: list[str]
    to_name: str
    mailer: str | None
    newsletter: bool


_SUBJECTS = (
    "Your order #{order} has shipped",
    "Invoice {order} from {brand}",
    "{brand} weekly: {w1} and {w2}",
    "Reset your {brand} password",
    "Welcome to {brand}, your {w1} awaits",
    "Receipt for order {order}",
    "{Marker} is back in stock",
    "Your {w1} {w2} report for {month}",
    "Action required: confirm your {w1}",
    "{brand} {w1} sale ends {day}",
    "Order {order}: {Marker} is on its way",
    "Re: question about {Marker}",
)
_MONTHS = ("January", "February", "March", "April", "May", "June")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _sentence(rng: random.Random, accented: bool) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 16))]
    if accented and rng.random() < 0.4:
        words[rng.randrange(len(words))] = rng.choice(_ACCENTED)
    return " ".join(words).capitalize() + rng.choice(".....!?")


def _design(index: int, marker: str, rng: random.Random) -> _Design:
    brand = rng.choice(_BRANDS)
    pattern = _SUBJECTS[index % len(_SUBJECTS)]
    subject = pattern.format(order=_ORDER, brand=brand, w1=rng.choice(_WORDS),
                             w2=rng.choice(_WORDS), Marker=marker.capitalize(),
                             month=rng.choice(_MONTHS), day=rng.choice(_DAYS))
    accented = index % 5 == 0
    shape = ("plain", "alternative", "alternative", "alternative", "mixed", "html")[index % 6]
    # Bodies of a few hundred bytes to about 2 KB: a text alternative and its HTML share it.
    target = rng.randint(200, 1800) if shape == "plain" else rng.randint(100, 800)
    paragraphs: list[str] = []
    size = 0
    while size < target:
        paragraph = " ".join(_sentence(rng, accented) for _ in range(rng.randint(1, 4)))
        paragraphs.append(paragraph)
        size += len(paragraph)
    encoding = ("quoted-printable" if index % 7 == 3
                else "8bit" if accented else "7bit")
    return _Design(index=index, brand=brand, marker=marker, subject=subject, shape=shape,
                   encoding=encoding, paragraphs=paragraphs,
                   to_name=rng.choice(("", "Customer", "Valued Member", "Ann Lee")),
                   mailer=rng.choice((None, *_MAILERS)), newsletter=index % 3 == 0)


def _text_body(d: _Design) -> str:
    lines = [f"Hello {d.to_name or 'there'},", ""]
    width = 40 if d.encoding == "quoted-printable" else 72
    for paragraph in d.paragraphs:
        lines += [*textwrap.wrap(paragraph, width), ""]
    lines += [f"Featured this week: {d.marker.capitalize()}.",
              f"Order number: {_ORDER}",
              f"Track it: https://shop{_SENDER}.example/orders/{_ORDER}",
              "", f"The {d.brand} team"]
    return "\r\n".join(lines) + "\r\n"


def _html_body(d: _Design) -> str:
    width = 40 if d.encoding == "quoted-printable" else 72
    lines = ["<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\">",
             f"<title>{d.brand}</title></head>",
             "<body style=\"font-family: Arial, sans-serif; background: #f4f4f4\">",
             f"<img src=\"https://shop{_SENDER}.example/logo.png\" alt=\"{d.brand}\"",
             "  width=\"120\" height=\"40\">",
             f"<p>Hello {d.to_name or 'there'},</p>"]
    for paragraph in d.paragraphs:
        lines += textwrap.wrap(f"<p>{paragraph}</p>", width)
    lines += ["<table role=\"presentation\" cellpadding=\"4\">",
              f"<tr><td>Featured</td><td><b>{d.marker.capitalize()}</b></td></tr>",
              f"<tr><td>Order</td><td>{_ORDER}</td></tr></table>",
              f"<p><a href=\"https://shop{_SENDER}.example/orders/{_ORDER}\"",
              "  style=\"color: #0b5fff\">Track your order</a></p>",
              f"<p>The {d.brand} team</p></body></html>"]
    return "\r\n".join(lines) + "\r\n"


def _encoded(body: str, encoding: str) -> bytes:
    data = body.encode()
    if encoding != "quoted-printable":
        return data
    out: list[str] = []
    for line in data.split(b"\r\n"):
        encoded = "".join(chr(b) if (33 <= b <= 126 and b != 61) or b == 32 else f"={b:02X}"
                          for b in line)
        if encoded.endswith(" "):
            encoded = encoded[:-1] + "=20"
        if len(encoded) > 76:
            raise ValueError(f"a quoted-printable line is too long: {encoded!r}")
        out.append(encoded)
    return "\r\n".join(out).encode()


def _leaf(content_type: str, body: str, encoding: str) -> bytes:
    return (f"Content-Type: {content_type}; charset=\"utf-8\"\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode() + _encoded(body, encoding)


def _pdf(d: _Design, rng: random.Random) -> bytes:
    """A small attachment whose base64 holds no placeholder."""
    while True:
        content = (b"%PDF-1.4\n% invoice\n" + bytes(rng.randrange(256) for _ in range(900))
                   + b"\n%%EOF\n")
        encoded = base64.encodebytes(content).replace(b"\n", b"\r\n")
        if not any(p.encode() in encoded for p in PLACEHOLDERS):
            return (b"Content-Type: application/pdf; name=\"invoice.pdf\"\r\n"
                    b"Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n"
                    b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded)


def _multipart(subtype: str, boundary: str, parts: Sequence[bytes]) -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return (f"Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n\r\n".encode()
            + b"This is a multi-part message in MIME format.\r\n\r\n" + body
            + b"--" + boundary.encode() + b"--\r\n")


def _raw(d: _Design, rng: random.Random) -> bytes:
    accented_subject = d.index % 10 == 5
    subject = (f"{_q_encoded('Grüße aus Zürich:')} {d.subject}" if accented_subject
               else d.subject)
    to = (f"{d.to_name} <user{_RECIPIENT}@customers.test>" if d.to_name
          else f"user{_RECIPIENT}@customers.test")
    headers = [f"Date: {_DATE}", f"From: {d.brand} <news{_SENDER}@shop{_SENDER}.example>",
               f"To: {to}", f"Subject: {subject}",
               f"Message-ID: <{_ORDER}.{d.index}@mail.shop{_SENDER}.example>",
               "MIME-Version: 1.0"]
    if d.mailer:
        headers.append(f"X-Mailer: {d.mailer}")
    if d.newsletter:
        headers.append(f"List-Unsubscribe: <https://shop{_SENDER}.example/unsubscribe/"
                       f"user{_RECIPIENT}>")
    text, html = _text_body(d), _html_body(d)
    if d.shape == "plain":
        body = _leaf("text/plain", text, d.encoding)
    elif d.shape == "html":
        body = _leaf("text/html", html, d.encoding)
    else:
        body = _multipart("alternative", f"==alt-{d.index}==",
                          [_leaf("text/plain", text, d.encoding),
                           _leaf("text/html", html, d.encoding)])
        if d.shape == "mixed":
            body = _multipart("mixed", f"==mixed-{d.index}==", [body, _pdf(d, rng)])
    return "\r\n".join(headers).encode() + b"\r\n" + body


@dataclass(frozen=True)
class Template:
    """One template message and what the parse step made of it, placeholders and all."""

    index: int
    marker: str
    raw: bytes
    subject: str
    from_header: str
    to_header: str
    snippet: str
    attachment_count: int
    view_json: str
    text: str | None
    html: str | None
    mailhog_json: str
    search: SearchDocument
    checks_json: str


def _checks(reading: Any) -> dict[str, Any]:
    """The results the offline checks give (content, HTML compatibility against caniemail's
    data when it is installed, links listed without the network, no spam engine); the checks
    that need DNS say they were not run."""
    settings = Settings()
    found = [
        result("auth", Verdict.none, "not run: store_scale.py seeds offline results only"),
        result("spam", Verdict.none, "the spam check is turned off (PAT_SPAM_ENGINE=none)"),
        html_checks.content_issues(reading.html, reading.text, reading.view.headers),
        html_checks.compatibility(reading.html, settings.caniemail_data),
        asyncio.run(links.check_links(reading.html, reading.text, links.LinkCheckConfig())),
        result("blocklists", Verdict.none, "not run: store_scale.py seeds offline results only"),
    ]
    return {"results": {r.name: r.to_dict() for r in found}, "report": build_report(found)}


def template_envelope(hostname: str) -> StoredEnvelope:
    return StoredEnvelope(message_id=f"{_ID}@{hostname}", created_ns=TEMPLATE_NS,
                          mail_from=sender_address(0).replace("000", _SENDER),
                          recipients=[recipient_address(0).replace("0000", _RECIPIENT)],
                          helo=HELO)


def build_templates(count: int, seed: int, hostname: str) -> list[Template]:
    rng = random.Random(seed)
    markers = _markers(count, rng, " ".join(_WORDS + _BRANDS + _ACCENTED).lower())
    envelope = template_envelope(hostname)
    templates: list[Template] = []
    for index, marker in enumerate(markers):
        design = _design(index, marker, rng)
        raw = _raw(design, rng)
        reading = read_message(raw)
        mailhog = build_message_or_minimal(envelope, raw, hostname)
        search = of_message(envelope.mail_from, envelope.recipients, reading, mailhog)
        summary = parse_summary(reading.view)
        templates.append(Template(
            index=index, marker=marker, raw=raw, subject=summary.subject,
            from_header=summary.from_header, to_header=summary.to_header,
            snippet=summary.snippet, attachment_count=summary.attachment_count,
            view_json=json.dumps(reading.view.to_dict()), text=reading.text,
            html=reading.html, mailhog_json=go_json(mailhog), search=search,
            checks_json=json.dumps(_checks(reading))))
    return templates


# --- one message of the store ----------------------------------------------------------------

@dataclass(frozen=True)
class Identity:
    """What makes message ``index`` of a seeded store its own."""

    index: int
    message_id: str
    created_ns: int
    template: int
    sender: int
    recipient: int

    @property
    def mail_from(self) -> str:
        return sender_address(self.sender)

    @property
    def rcpt_to(self) -> str:
        return recipient_address(self.recipient)

    @property
    def order(self) -> str:
        return order_number(self.index)


def identity(index: int, seed: int, templates: int, hostname: str) -> Identity:
    key = seed.to_bytes(8, "little")
    digest = hashlib.blake2b(index.to_bytes(8, "little"), key=key, digest_size=44).digest()
    pick = int.from_bytes(digest[32:], "little")
    return Identity(
        index=index,
        message_id=base64.urlsafe_b64encode(digest[:32]).decode() + "@" + hostname,
        created_ns=START_NS + index * STEP_NS + 7, template=pick % templates,
        sender=(pick >> 24) % SENDERS, recipient=(pick >> 48) % RECIPIENTS)


@dataclass(frozen=True)
class Rows:
    """One message's rows, as tuples in the column order of ``COLUMNS``."""

    message: tuple[Any, ...]
    raw: tuple[Any, ...]
    artifact: tuple[Any, ...]
    search: tuple[Any, ...]
    outbox: tuple[Any, ...]


COLUMNS = {
    "messages": ("id", "tenant", "created_ns", "updated_ns", "mail_from", "recipients", "helo",
                 "peer", "size", "status", "failure_reason", "subject", "from_header",
                 "to_header", "snippet", "attachment_count", "checks", "pipeline_run"),
    "message_raw": ("message_id", "data"),
    "message_artifacts": ("message_id", "view", "text", "html", "mailhog"),
    "message_search": ("message_id", "to_text", "from_text", "subject_text", "all_text"),
    "outbox": ("message_id", "tenant", "size", "created_ns", "published_ns", "run"),
}


def stamp(template: Template, who: Identity) -> Rows:
    """Message ``who`` made of ``template``: every placeholder replaced, the id last (its base64
    could by chance hold letters of another placeholder)."""
    pairs = [(_DATE, rfc1123z(who.created_ns)), (_CREATED, go_time(who.created_ns)),
             (_SENDER, f"{who.sender:03d}"), (_RECIPIENT, f"{who.recipient:04d}"),
             (_ORDER, who.order), (_ID, who.message_id.partition("@")[0])]

    def text(value: str) -> str:
        for old, new in pairs:
            value = value.replace(old, new)
        return value

    def optional(value: str | None) -> str | None:
        return None if value is None else text(value)

    raw = template.raw
    for old, new in pairs:
        raw = raw.replace(old.encode(), new.encode())
    search = template.search
    size = len(raw)
    updated_ns = who.created_ns + PROCESSED_AFTER_NS
    mid = who.message_id
    return Rows(
        message=(mid, TENANT, who.created_ns, updated_ns, who.mail_from,
                 json.dumps([who.rcpt_to]), HELO, PEER, size, "processed", None,
                 text(template.subject), text(template.from_header), text(template.to_header),
                 text(template.snippet), template.attachment_count, text(template.checks_json),
                 0),
        raw=(mid, raw),
        artifact=(mid, text(template.view_json), optional(template.text),
                  optional(template.html),
                  zlib.compress(text(template.mailhog_json).encode("utf-8", "surrogateescape"),
                                6)),
        search=(mid, text(search.to_text), text(search.from_text), text(search.subject_text),
                text(search.all_text)),
        outbox=(mid, TENANT, size, who.created_ns, updated_ns - PROCESSED_AFTER_NS // 2, 0))


def recomputed(raw: bytes, who: Identity, hostname: str) -> dict[str, Any]:
    """What the parse step itself writes for message ``who`` with bytes ``raw``, by column."""
    reading = read_message(raw)
    envelope = StoredEnvelope(message_id=who.message_id, created_ns=who.created_ns,
                              mail_from=who.mail_from, recipients=[who.rcpt_to], helo=HELO)
    mailhog = build_message_or_minimal(envelope, raw, hostname)
    search = of_message(who.mail_from, [who.rcpt_to], reading, mailhog)
    summary = parse_summary(reading.view)
    return {"subject": summary.subject, "from_header": summary.from_header,
            "to_header": summary.to_header, "snippet": summary.snippet,
            "attachment_count": summary.attachment_count, "size": len(raw),
            # as stored: through JSON, where its tuples become lists
            "view": json.loads(json.dumps(reading.view.to_dict())), "text": reading.text,
            "html": reading.html,
            "mailhog": go_json(mailhog), **search.row()}


def differences(stored: dict[str, Any], raw: bytes, who: Identity, hostname: str) -> list[str]:
    """The columns of ``stored`` (one message as read back from a store) that differ from
    what the parse step writes for it, and any placeholder left anywhere."""
    expected = recomputed(raw, who, hostname)
    found = [f"{name}: stored {stored.get(name)!r:.200} but the parse step writes "
             f"{value!r:.200}" for name, value in expected.items() if stored.get(name) != value]
    for name, value in stored.items():
        if any(p in str(value) for p in PLACEHOLDERS):
            found.append(f"{name}: a placeholder is left in {value!r:.200}")
    if any(p.encode() in raw for p in PLACEHOLDERS):
        found.append("raw: a placeholder is left")
    return found
