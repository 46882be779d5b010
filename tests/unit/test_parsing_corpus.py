"""Every message in tests/corpus/ against the parsed view written by hand next to it, and every
message of the hostile corpus (tests/hostile/) read without failing.

``<name>.expected.json`` says what a reader of ``<name>.eml`` should see: subject, addresses,
the text and HTML bodies, attachments and inline parts, and whether defects are reported; or,
for bytes that are no email at all, ``{"malformed": "<part of the reason>"}``."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pat.parsing import (
    MAX_NESTING,
    MalformedMessage,
    ParsedMessage,
    parse_message,
    part_bytes,
    part_text,
)
from tests.hostile import corpus as hostile

CORPUS = Path(__file__).parent.parent / "corpus"
MESSAGES = sorted(CORPUS.glob("*.eml"))
ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply_to", "sender")


def test_the_corpus_is_complete() -> None:
    assert len(MESSAGES) >= 15
    for path in MESSAGES:
        assert path.with_suffix(".expected.json").exists(), f"{path.name} has no expectation"


@pytest.mark.parametrize("path", MESSAGES, ids=[p.stem for p in MESSAGES])
def test_parsed_view_matches_the_expectation(path: Path) -> None:
    raw = path.read_bytes()
    expected: dict[str, Any] = json.loads(path.with_suffix(".expected.json").read_text("utf-8"))
    if "malformed" in expected:
        with pytest.raises(MalformedMessage, match=expected["malformed"]):
            parse_message(raw)
        return

    parsed = parse_message(raw)
    assert parsed.subject == expected["subject"]
    for key in ("date", "message_id", "snippet"):
        if key in expected:
            assert getattr(parsed, key) == expected[key], key
    for header in ADDRESS_HEADERS:
        found = [{"name": a.name, "address": a.address} for a in parsed.addresses[header]]
        assert found == expected["addresses"].get(header, []), header

    assert part_text(raw, parsed.text_part) == expected["text"]
    assert part_text(raw, parsed.html_part) == expected["html"]

    attachments = [{"filename": p.filename, "content_type": p.content_type, "size": p.size}
                   for p in parsed.attachments]
    assert attachments == expected["attachments"]
    inline = [{"content_id": p.content_id, "filename": p.filename,
               "content_type": p.content_type, "size": p.size} for p in parsed.inline]
    assert inline == expected["inline"]
    for part in [*parsed.attachments, *parsed.inline]:
        content = part_bytes(raw, part.index)
        assert content is not None, f"part {part.index} cannot be downloaded"
        assert (len(content[0]), content[1]) == (part.size, part.content_type)

    assert bool(parsed.defects) == expected["defects"], parsed.defects
    for name, count in expected.get("header_counts", {}).items():
        assert sum(1 for n, _ in parsed.headers if n.lower() == name.lower()) == count, name


@pytest.mark.parametrize("path", MESSAGES, ids=[p.stem for p in MESSAGES])
def test_parsed_view_survives_json_and_the_store(path: Path) -> None:
    """The view travels through Temporal (JSON) and into the store's JSON column (UTF-8)."""
    try:
        parsed = parse_message(path.read_bytes())
    except MalformedMessage:
        return
    encoded = json.dumps(parsed.to_dict(), ensure_ascii=False).encode("utf-8")
    assert ParsedMessage.from_dict(json.loads(encoded)) == parsed


# --- the hostile corpus (tests/hostile/) --------------------------------------------------------

HOSTILE = hostile.corpus()


def test_the_hostile_corpus_is_complete_and_its_files_are_what_the_generator_makes() -> None:
    assert len(HOSTILE) >= 50
    for entry in hostile.committed():
        assert hostile.path_of(entry).read_bytes() == entry.build(), (
            f"{entry.name}.eml differs from what tests/hostile/corpus.py makes: "
            "run python -m tests.hostile.corpus")
    assert (hostile.HERE / "README.md").read_text() == hostile.readme()


@pytest.mark.parametrize(("name", "raw"), HOSTILE, ids=[name for name, _ in HOSTILE])
def test_a_hostile_message_is_read_into_a_storable_view_or_refused_with_a_reason(
        name: str, raw: bytes) -> None:
    """No RecursionError, no traceback: a view whose every string the store's UTF-8 text and
    JSON columns take (no NUL, no lone surrogate), or MalformedMessage saying why not."""
    try:
        parsed = parse_message(raw)
    except MalformedMessage as refused:
        assert str(refused)
        return
    stored = json.dumps(parsed.to_dict(), ensure_ascii=False)
    assert "\\u0000" not in stored  # json.dumps writes NUL so
    stored.encode("utf-8")  # a lone surrogate raises here
    if len(raw) > 1_000_000:
        return  # each call below reads the whole message again; the integration test does
    assert isinstance(part_text(raw, parsed.text_part) or "", str)
    assert isinstance(part_text(raw, parsed.html_part) or "", str)
    for part in [*parsed.attachments, *parsed.inline][:20]:
        content = part_bytes(raw, part.index)
        assert content is not None, f"part {part.index} cannot be downloaded"
        assert len(content[0]) == part.size


def test_nesting_beyond_the_cap_is_kept_as_one_part_and_reported() -> None:
    raw = hostile.nested_1500()
    parsed = parse_message(raw)
    assert len(parsed.parts) == MAX_NESTING + 2  # the message, 100 levels, the part cut off
    cut = parsed.parts[-1]
    assert (cut.content_type, cut.is_attachment) == ("application/octet-stream", True)
    assert any(f"nested deeper than {MAX_NESTING} levels" in d for d in parsed.defects)
    content = part_bytes(raw, cut.index)
    assert content is not None and b"the innermost text" in content[0]


def test_an_attached_message_nested_deep_is_still_downloadable() -> None:
    raw = hostile.nested_rfc822_150()
    parsed = parse_message(raw)
    [attached] = parsed.attachments
    assert (attached.content_type, attached.filename) == ("message/rfc822", "fw.eml")
    content = part_bytes(raw, attached.index)
    assert content is not None and content[0].startswith(b"From: Hostile")


@pytest.mark.parametrize("builder", [hostile.bare_lf, hostile.bare_cr,
                                     hostile.mixed_line_endings])
def test_bare_and_mixed_line_endings_read_as_crlf(builder: Callable[[], bytes]) -> None:
    expected = parse_message(hostile.bare_endings_source())
    parsed = parse_message(builder())
    assert parsed.headers == expected.headers
    assert [p.content_type for p in parsed.parts] == [p.content_type for p in expected.parts]
    assert part_text(builder(), parsed.text_part) == "plain\nsecond line"


def test_headers_show_what_was_sent_with_encoded_words_decoded() -> None:
    raw = (b'From: "Doe, John" <john@example.test> (the boss)\r\n'
           b"To: =?utf-8?Q?Jos=C3=A9?= <jose@example.test>\r\n"
           b"Subject: =?utf-8?Q?caf=C3=A9?= time\r\n"
           b"Date: Mon, 9 Sep 2024 10:00:00 +0000\r\n"
           b"X-Folded: one\r\n two\r\n\r\nbody\r\n")
    assert parse_message(raw).headers == [
        ("From", '"Doe, John" <john@example.test> (the boss)'),
        ("To", "José <jose@example.test>"),
        ("Subject", "café time"),
        ("Date", "Mon, 9 Sep 2024 10:00:00 +0000"),
        ("X-Folded", "one two")]


def test_a_header_the_stdlib_cannot_parse_is_read_as_text() -> None:
    parsed = parse_message(hostile.nested_comments())
    [sender] = parsed.addresses["from"]
    assert sender.address.startswith("a@example.test (((")
    [attachment] = parsed.attachments
    assert (attachment.filename or "").startswith("x.txt")


def test_bytes_that_are_not_utf8_are_read_as_a_reader_means_them() -> None:
    parsed = parse_message(hostile.eight_bit_headers())
    assert parsed.subject == "\u201cQuoted\u201d \u20ac price \u00e0 la carte"
    assert parsed.addresses["from"][0].name == "Fran\u00e7ois M\u00fcller"


def _peak_bytes(raw: bytes) -> tuple[ParsedMessage, int]:
    tracemalloc.start()
    try:
        parsed = parse_message(raw)
        return parsed, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_thousands_of_encoded_words_are_decoded_in_bounded_memory() -> None:
    """The stdlib's tree keeps the rest of the value alive for every encoded word: read whole,
    this 130 KB header held 330 MB."""
    parsed, peak = _peak_bytes(hostile.encoded_words_abuse())
    assert peak < 64 * 1024 * 1024
    many = dict(parsed.headers)["X-Many"]
    assert many.startswith("w\u00f6rd0") and "w\u00f6rd4999" in many and "=?" not in many
    assert parsed.subject == "\u00fcn\u00efc\u00f8d\u00e9 " * 200


def test_a_subject_of_a_million_words_is_kept_as_text_in_bounded_memory() -> None:
    words = b"x " * 1_000_000
    parsed, peak = _peak_bytes(b"From: a@example.test\r\nSubject: " + words + b"\r\n\r\nbody\r\n")
    assert parsed.subject == words.decode()
    assert peak < 256 * 1024 * 1024
