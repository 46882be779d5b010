"""What a search looks in (pat.search): the text of a message, bounded, and how a query is
read into terms."""

from __future__ import annotations

from pat.parsing import read_message
from pat.search import ALL_TEXT_LIMIT, FIELD_LIMIT, Term, of_message, parse_query


def test_a_message_of_megabytes_of_headers_keeps_its_body_searchable_within_the_bound() -> None:
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"x" * 5000) for i in range(1000))
    raw = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: big\r\n" + headers
           + b"\r\nthe needle is in the body\r\n")
    found = of_message("a@example.test", ["b@example.test"], read_message(raw))
    assert len(found.all_text) <= ALL_TEXT_LIMIT
    assert "the needle is in the body" in found.all_text
    assert found.subject_text == "big" and "b@example.test" in found.to_text


def test_one_huge_value_is_cut_at_the_field_limit() -> None:
    raw = b"Subject: s\r\n\r\n" + b"y" * (FIELD_LIMIT * 2)
    found = of_message("", [], read_message(raw))
    assert found.all_text.count("y") == FIELD_LIMIT


def test_a_query_is_read_into_words_phrases_and_fields() -> None:
    assert parse_query('to:ann invoice "due friday" subject:"big sale" https://x.test') == [
        Term("to_text", "ann"), Term("all_text", "invoice"), Term("all_text", "due friday"),
        Term("subject_text", "big sale"), Term("all_text", "https://x.test")]
    assert parse_query("   ") == []
    assert parse_query('"unclosed phrase') == [Term("all_text", "unclosed phrase")]
