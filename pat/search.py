"""What a search looks in, and how a query is read.

Every message has one row of search text in the store (``message_search``), indexed for
substrings: SQLite's FTS5 with the trigram tokenizer, PostgreSQL's ``pg_trgm`` GIN indexes.
Both answer "contains this text, whatever the case" from the index for any term of three
characters or more; shorter terms are matched by reading the text. The row is written with the
message (envelope and the headline read at 250, so a message is found from its first moment)
and rewritten by the parse step with all of it:

- ``to_text``: the envelope recipients and the To header, as sent and decoded;
- ``from_text``: the envelope sender and the From header, as sent and decoded;
- ``subject_text``: the decoded subject;
- ``all_text``: every header value (decoded, and as MailHog shows them), the decoded text and
  HTML bodies and the body as MailHog's JSON carries it, each cut at ``FIELD_LIMIT`` characters.

MailHog's ``kind=to|from|containing`` search these three columns, ``/api/v3/messages``'s ``to``,
``from`` and ``subject`` filters the first three, and its ``q`` parameter (``parse_query``) any
of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pat.parsing import Headline, MessageReading, storable_text

# Characters of one piece of text (a body, a header) that a search looks in. A search finds
# what a reader sees; the base64 of a 10 MB attachment is not worth an index ten times its size.
FIELD_LIMIT = 256 * 1024
# Characters of a message's whole ``all_text``: what a reader sees first (subject, addresses,
# bodies), then header values, then the body as MailHog shows it. A hostile message of 5 MB
# of headers would otherwise put ten times that in the index.
ALL_TEXT_LIMIT = 1024 * 1024

COLUMNS = ("to_text", "from_text", "subject_text", "all_text")


@dataclass(frozen=True)
class SearchDocument:
    """One message's row of search text."""

    to_text: str
    from_text: str
    subject_text: str
    all_text: str

    def row(self) -> dict[str, str]:
        return {"to_text": self.to_text, "from_text": self.from_text,
                "subject_text": self.subject_text, "all_text": self.all_text}


def _joined(values: Iterable[str | None], limit: int = ALL_TEXT_LIMIT) -> str:
    """The distinct values, one per line, each cut at ``FIELD_LIMIT`` characters, all of
    them at ``limit``."""
    seen: dict[str, None] = {}
    size = 0
    for value in values:
        if not value:
            continue
        text = storable_text(value[:min(FIELD_LIMIT, limit - size)])
        if text not in seen:
            seen[text] = None
            size += len(text) + 1
            if size >= limit:
                break
    return "\n".join(seen)[:limit]


def on_arrival(mail_from: str, recipients: Iterable[str], found: Headline) -> SearchDocument:
    """What is known of a message at 250: its envelope and headline."""
    to_text = _joined([*recipients, found.to_header])
    from_text = _joined([mail_from, found.from_header])
    subject = _joined([found.subject])
    return SearchDocument(to_text=to_text, from_text=from_text, subject_text=subject,
                          all_text=_joined([subject, from_text, to_text]))


def _mailhog_headers(mailhog: Mapping[str, Any] | None) -> dict[str, list[str]]:
    if not mailhog:
        return {}
    headers = (mailhog.get("Content") or {}).get("Headers") or {}
    return {str(name).lower(): [str(v) for v in values] for name, values in headers.items()}


def of_message(mail_from: str, recipients: Iterable[str], reading: MessageReading,
               mailhog: Mapping[str, Any] | None = None) -> SearchDocument:
    """All a search looks in, from the parse step's reading and MailHog's JSON of it."""
    view = reading.view
    recipients = list(recipients)
    raw_headers = _mailhog_headers(mailhog)

    def header(name: str) -> list[str]:
        decoded = [value for key, value in view.headers if key.lower() == name]
        return decoded + raw_headers.get(name, [])

    def addresses(name: str) -> list[str]:
        return [a.address for a in view.addresses.get(name, [])]

    to_text = _joined([*recipients, *addresses("to"), *header("to")])
    from_text = _joined([mail_from, *addresses("from"), *header("from")])
    body = str(((mailhog or {}).get("Content") or {}).get("Body") or "")
    all_text = _joined([
        view.subject, from_text, to_text, reading.text, reading.html,
        *(value for _, value in view.headers),
        *(value for values in raw_headers.values() for value in values), body])
    return SearchDocument(to_text=to_text, from_text=from_text,
                          subject_text=_joined([view.subject]), all_text=all_text)


# --- queries -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Term:
    """Text that must occur in ``column``, whatever the case."""

    column: str
    text: str


_FIELDS = {"to": "to_text", "from": "from_text", "subject": "subject_text"}
_TOKEN = re.compile(r'(?:(\w+):)?(?:"([^"]*)"?|(\S+))')


def parse_query(query: str) -> list[Term]:
    """The terms of a ``q`` search: words and "quoted phrases", each of which must occur
    somewhere in the message (its headers, addresses, subject, text or HTML); ``to:``,
    ``from:`` and ``subject:`` before one limit it to that field (``to:"ann lee"``). A prefix
    Pat does not know is part of the word (``https://...`` is searched as written)."""
    terms: list[Term] = []
    for match in _TOKEN.finditer(query):
        prefix, quoted, word = match.group(1), match.group(2), match.group(3)
        column = _FIELDS.get(prefix.lower()) if prefix else None
        if prefix and column is None:  # not a field: the whole token is the text
            text = match.group(0).strip('"') if quoted is None else f"{prefix}:{quoted}"
            terms.append(Term("all_text", text))
            continue
        text = quoted if quoted is not None else word
        if text:
            terms.append(Term(column or "all_text", text))
    return terms
