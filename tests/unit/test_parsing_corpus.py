"""Every message in tests/corpus/ against the parsed view written by hand next to it.

``<name>.expected.json`` says what a reader of ``<name>.eml`` should see: subject, addresses,
the text and HTML bodies, attachments and inline parts, and whether defects are reported; or,
for bytes that are no email at all, ``{"malformed": "<part of the reason>"}``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pat.parsing import MalformedMessage, ParsedMessage, parse_message, part_bytes, part_text

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
