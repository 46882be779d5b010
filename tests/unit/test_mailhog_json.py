"""MailHog's JSON built from stored bytes: checked against a real MailHog answer and against what
MailHog's Go code (mailhog/data message.go, encoding/json) produces for multipart, folded,
repeated and encoded headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pat import mailhog_json as mh

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "mailhog"
HOST = "pat.example"
CREATED_NS = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z, a Tuesday


def _envelope(**overrides: Any) -> mh.StoredEnvelope:
    values: dict[str, Any] = {
        "message_id": "abc=@pat.example", "created_ns": CREATED_NS,
        "mail_from": "app@example.test", "recipients": ["dev@example.test"],
        "helo": "client.example.test"}
    return mh.StoredEnvelope(**{**values, **overrides})


def _pairs(text: str) -> Any:
    """JSON with the order of every object's keys kept, so order is compared too."""
    return json.loads(text, object_pairs_hook=lambda pairs: pairs)


def test_a_real_mailhog_answer_is_reproduced_exactly() -> None:
    """The reference is what a running MailHog answered to GET /api/v2/messages. Its message is
    rebuilt from what Pat stores: the DATA bytes as aiosmtpd keeps them (Raw.Data plus the CRLF
    before the final dot) and the envelope. ID and Created are per instance, so they are taken
    from the reference as the stored id and created_ns; every other value, and the order of
    every key, is MailHog's own."""
    text = (REFERENCE / "v2_messages_single_part.json").read_text()
    reference = json.loads(text)["items"][0]
    created = datetime(2020, 9, 6, 18, 24, 56, tzinfo=UTC)
    envelope = mh.StoredEnvelope(
        message_id=reference["ID"], created_ns=int(created.timestamp()) * 10**9 + 587_547_220,
        mail_from=reference["Raw"]["From"], recipients=reference["Raw"]["To"],
        helo=reference["Raw"]["Helo"])
    stored_raw = (reference["Raw"]["Data"] + "\r\n").encode()

    built = mh.build_message(envelope, stored_raw, "mailhog.example")
    answer = mh.go_json(mh.messages_result(1, 0, [built]))

    assert _pairs(answer) == _pairs(text)
    assert built["Created"] == "2020-09-06T18:24:56.58754722Z"


def test_headers_stay_encoded_folded_lines_are_glued_and_mailhog_adds_its_own() -> None:
    raw = (b"Received: from relay.example by mx.example\r\n"
           b"Subject: =?utf-8?B?w6k=?= weekly\r\n"
           b"  report\r\n"
           b"X-Long: one\r\n"
           b"\ttwo\r\n"
           b"X-Tag: first\r\n"
           b"X-Tag: second\r\n"
           b"X-No-Space:value\r\n"
           b"From: =?utf-8?Q?Jos=C3=A9?= <app@example.test>\r\n"
           b"\r\n"
           b"body line\r\n")
    message = mh.build_message(_envelope(), raw, HOST)
    headers = message["Content"]["Headers"]

    assert headers["Subject"] == ["=?utf-8?B?w6k=?= weekly  report"]  # leading blanks kept
    assert headers["X-Long"] == ["one\ttwo"]
    assert headers["X-Tag"] == ["second"]  # MailHog keeps the last of repeated fields
    assert "X-No-Space" not in headers  # MailHog splits on ": " and drops the line
    assert headers["From"] == ["=?utf-8?Q?Jos=C3=A9?= <app@example.test>"]
    assert headers["Message-ID"] == ["abc=@pat.example"]  # added when missing
    assert headers["Received"] == [
        "from relay.example by mx.example",
        "from client.example.test by pat.example (MailHog)\r\n"
        "          id abc=@pat.example; Tue, 14 Nov 2023 22:13:20 +0000"]
    assert headers["Return-Path"] == ["<app@example.test>"]
    assert list(headers) == sorted(headers)  # a Go map: keys in byte order
    assert message["Content"]["Body"] == "body line"
    assert message["Content"]["Size"] == len(raw) - 2
    assert message["Content"]["MIME"] is None
    assert message["MIME"] is None
    assert message["Raw"] == {"From": "app@example.test", "To": ["dev@example.test"],
                              "Data": raw[:-2].decode(), "Helo": "client.example.test"}
    assert message["Created"] == "2023-11-14T22:13:20.123456789Z"


MULTIPART = (
    "From: App <app@example.test>\r\n"
    "Message-ID: <m1@example.test>\r\n"
    "Content-Type: multipart/mixed;\r\n"
    '\tboundary="outer"\r\n'
    "\r\n"
    "preamble\r\n"
    "--outer\r\n"
    "Content-Type: multipart/alternative; boundary=inner\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Plain body\r\n"
    "--inner\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<p>HTML body</p>\r\n"
    "--inner--\r\n"
    "\r\n"
    "--outer\r\n"
    'Content-Type: application/pdf; name="r.pdf"\r\n'
    'Content-Disposition: attachment; filename="r.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0xLjQg\r\n"
    "ZmFrZQ==\r\n"
    "--outer--\r\n")


def test_multipart_parts_nest_as_mailhog_splits_them() -> None:
    message = mh.build_message(_envelope(), MULTIPART.encode(), HOST)
    alternative = ("Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
                   "--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain body\r\n"
                   "--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
                   "<p>HTML body</p>\r\n--inner--")
    plain = "Content-Type: text/plain; charset=utf-8\r\n\r\nPlain body"
    html = "Content-Type: text/html; charset=utf-8\r\n\r\n<p>HTML body</p>"
    pdf = ('Content-Type: application/pdf; name="r.pdf"\r\n'
           'Content-Disposition: attachment; filename="r.pdf"\r\n'
           "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQg\r\nZmFrZQ==")

    assert message["Content"]["MIME"] is None  # MailHog fills the top-level MIME only
    assert message["Content"]["Headers"]["Content-Type"] == ['multipart/mixed;\tboundary="outer"']
    assert message["MIME"] == {"Parts": [
        {"Headers": {"Content-Type": ["multipart/alternative; boundary=inner"]},
         "Body": alternative.split("\r\n\r\n", 1)[1], "Size": len(alternative),
         "MIME": {"Parts": [
             {"Headers": {"Content-Type": ["text/plain; charset=utf-8"]}, "Body": "Plain body",
              "Size": len(plain), "MIME": None},
             {"Headers": {"Content-Type": ["text/html; charset=utf-8"]},
              "Body": "<p>HTML body</p>", "Size": len(html), "MIME": None}]}},
        {"Headers": {"Content-Disposition": ['attachment; filename="r.pdf"'],
                     "Content-Transfer-Encoding": ["base64"],
                     "Content-Type": ['application/pdf; name="r.pdf"']},
         "Body": "JVBERi0xLjQg\r\nZmFrZQ==", "Size": len(pdf), "MIME": None}]}
    written = mh.go_json(message)
    assert list(_pairs(written)[5][1][0][1][1]) == [  # MIME.Parts[1]: Go's field order
        ("Headers", [("Content-Disposition", ['attachment; filename="r.pdf"']),
                     ("Content-Transfer-Encoding", ["base64"]),
                     ("Content-Type", ['application/pdf; name="r.pdf"'])]),
        ("Body", "JVBERi0xLjQg\r\nZmFrZQ=="), ("Size", len(pdf)), ("MIME", None)]


def test_part_download_decodes_base64_and_takes_only_type_and_filename_from_the_part() -> None:
    message = mh.build_message(_envelope(), MULTIPART.encode(), HOST)
    found = mh.part_download(message, 1)
    assert found == mh.PartDownload(media_type="application/pdf", filename="r.pdf",
                                    body=b"%PDF-1.4 fake")
    alternative = mh.part_download(message, 0)
    assert alternative is not None
    assert alternative.body.startswith(b"--inner\r\n")
    assert alternative.media_type == "multipart/alternative"
    assert alternative.filename == "abc=@pat.example-part-0"  # MailHog's name for it
    assert mh.part_download(message, 2) is None
    assert mh.part_download(message, -1) is None
    single = mh.build_message(_envelope(), b"Subject: x\r\n\r\nbody\r\n", HOST)
    assert mh.part_download(single, 0) is None


@pytest.mark.parametrize(("part_headers", "filename"), [
    ('Content-Type: text/plain; name="from-type.txt"', "from-type.txt"),
    ("Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf", "résumé.pdf"),
    ('Content-Disposition: attachment; filename="=?utf-8?B?w6l0w6kucGRm?="', "été.pdf"),
    ("Content-Disposition: attachment; filename*=bogus-charset''x%E9.bin", "x\u00e9.bin"),
    ("Content-Disposition: attachment", "abc=@pat.example-part-0"),
])
def test_part_download_names_the_file_as_the_part_does(part_headers: str, filename: str) -> None:
    raw = (f"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n{part_headers}\r\n\r\n"
           "data\r\n--b--\r\n").encode()
    found = mh.part_download(mh.build_message(_envelope(), raw, HOST), 0)
    assert found is not None
    assert found.filename == filename


def test_a_multipart_type_without_its_boundary_in_the_body_has_no_parts() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=zzz\r\n\r\nno markers here\r\n"
    assert mh.build_message(_envelope(), raw, HOST)["MIME"] == {"Parts": None}
    lowercase_key = (b"Content-type: multipart/mixed; boundary=zzz\r\n\r\n"
                     b"--zzz\r\n\r\nx\r\n--zzz--\r\n")
    assert mh.build_message(_envelope(), lowercase_key, HOST)["MIME"] is None  # as MailHog


@pytest.mark.parametrize(("content_type", "boundary"), [
    ('multipart/alternative; boundary="_----------=_MCPart_498914860"',
     "_----------=_MCPart_498914860"),  # both cases from mailhog/data message_test.go
    ("multipart/alternative; boundary=047d7bd74a2049b624050d805118",
     "047d7bd74a2049b624050d805118"),
    ('multipart/mixed;\tBOUNDARY="a\\"b";', 'a"b'),
    ("multipart/mixed; boundary=a; boundary=b", ""),  # Go: duplicate parameter name
    ("multipart/mixed; boundary", ""),
    ("multipart mixed; boundary=a", ""),
    ('multipart/mixed; boundary="open', ""),
])
def test_boundary_is_read_as_go_mime_parse_media_type_reads_it(content_type: str,
                                                               boundary: str) -> None:
    assert mh.extract_boundary(content_type) == boundary


def test_a_message_without_a_header_section_is_all_body() -> None:
    message = mh.build_message(_envelope(), b"just a body\r\n", HOST)
    assert message["Content"]["Body"] == "just a body"
    assert sorted(message["Content"]["Headers"]) == ["Message-ID", "Received", "Return-Path"]


def test_envelope_paths_as_path_from_string() -> None:
    message = mh.build_message(
        _envelope(mail_from="@relay1,@relay2:bounce@example.test",
                  recipients=["plain", "a@b@c"]), b"S: x\r\n\r\n\r\n", HOST)
    assert message["From"] == {"Relays": ["@relay1", "@relay2"], "Mailbox": "bounce",
                               "Domain": "example.test", "Params": ""}
    assert message["To"] == [
        {"Relays": None, "Mailbox": "plain", "Domain": "", "Params": ""},
        {"Relays": None, "Mailbox": "a", "Domain": "b@c", "Params": ""}]
    no_recipients = mh.build_message(_envelope(recipients=[]), b"S: x\r\n\r\n\r\n", HOST)
    assert no_recipients["To"] is None
    assert no_recipients["Raw"]["To"] is None


def test_json_is_written_as_go_writes_it() -> None:
    value = {"B": "<a & b>\u2028\x08\x1f\u00e9\"\\\n", "A": [1, None, True], "C": {}, "D": []}
    assert mh.go_json(value) == (
        '{"B":"\\u003ca \\u0026 b\\u003e\\u2028\\u0008\\u001f\u00e9\\"\\\\\\n",'
        '"A":[1,null,true],"C":{},"D":[]}')
    assert mh.go_json({"A": [1], "B": {}, "C": [], "D": {"E": "f"}}, indent="  ") == (
        '{\n  "A": [\n    1\n  ],\n  "B": {},\n  "C": [],\n  "D": {\n    "E": "f"\n  }\n}')
    with pytest.raises(TypeError):
        mh.go_json({"A": 1.5})


def test_bytes_that_are_not_utf8_count_as_bytes_and_are_written_as_replacement_chars() -> None:
    raw = b"Subject: caf\xe9\r\n\r\n\xff\xfebody\r\n"
    message = mh.build_message(_envelope(), raw, HOST)
    assert message["Content"]["Size"] == len(raw) - 2
    written = json.loads(mh.go_json(message))
    assert written["Content"]["Headers"]["Subject"] == ["caf\ufffd"]
    assert written["Content"]["Body"] == "\ufffd\ufffdbody"


def test_created_trims_trailing_zeros_like_go_rfc3339nano() -> None:
    assert mh.go_time(1_600_000_000_000_000_000) == "2020-09-13T12:26:40Z"
    assert mh.go_time(1_600_000_000_500_000_000) == "2020-09-13T12:26:40.5Z"
    assert mh.go_time(1_600_000_000_000_000_001) == "2020-09-13T12:26:40.000000001Z"


def test_search_matches_what_mailhog_memory_search_matches() -> None:
    raw = (b"From: Billing <billing@shop.example>\r\nTo: Alice <alice@example.test>\r\n"
           b"Cc: carol@example.test\r\nSubject: Your INVOICE\r\n\r\nTotal: 42 EUR\r\n")
    message = mh.build_message(
        _envelope(mail_from="bounce@shop.example", recipients=["bob@example.test"]), raw, HOST)

    assert mh.matches(message, "to", "BOB@")  # envelope recipient, any case
    assert mh.matches(message, "to", "alice")  # the To header
    assert not mh.matches(message, "to", "carol")  # MailHog looks at To only
    assert mh.matches(message, "from", "bounce@shop")
    assert mh.matches(message, "from", "billing")
    assert not mh.matches(message, "from", "alice")
    assert mh.matches(message, "containing", "42 eur")  # body
    assert mh.matches(message, "containing", "invoice")  # a header value
    assert mh.matches(message, "containing", "(mailhog)")  # even MailHog's own Received
    assert not mh.matches(message, "containing", "nowhere")
    with pytest.raises(ValueError, match="unknown search kind"):
        mh.matches(message, "subject", "x")


def test_live_event_framing_follows_goose_and_gorilla() -> None:
    message = {"ID": "a<b", "To": None}
    frame = mh.event_stream_message(message)
    assert frame == 'data: {\ndata:   "ID": "a\\u003cb",\ndata:   "To": null\ndata: }\n\n'
    assert mh.event_stream_frame("keepalive", "") == "keepalive: \n\n"
    assert mh.websocket_message(message) == '{"ID":"a\\u003cb","To":null}\n'


def _nested(depth: int, line_ending: str = "\r\n", leaf: str = "deepest") -> str:
    # No boundary is a prefix of another: MailHog splits on the text "--boundary".
    opening = "".join(f'Content-Type: multipart/mixed; boundary="={level}="\r\n\r\n--={level}=\r\n'
                      for level in range(depth))
    closing = "".join(f"--={level}=--\r\n" for level in reversed(range(depth)))
    text = f"Subject: nested\r\n{opening}Content-Type: text/plain\r\n\r\n{leaf}\r\n{closing}"
    return text.replace("\r\n", line_ending)


def _depth(mime: Any) -> int:
    depth = 0
    while mime and mime["Parts"]:
        depth += 1
        mime = mime["Parts"][0]["MIME"]
    return depth


def test_a_message_nested_1200_deep_is_split_to_the_depth_cap_and_written() -> None:
    message = mh.build_message(_envelope(), _nested(1200).encode(), HOST)
    depth = _depth(message["MIME"])
    assert depth == mh.MAX_MIME_DEPTH
    deepest = message["MIME"]
    for _ in range(depth - 1):
        deepest = deepest["Parts"][0]["MIME"]
    # The first part not split is shown as any non-multipart part: headers and body.
    unsplit = deepest["Parts"][0]
    assert unsplit["MIME"] is None
    assert unsplit["Headers"]["Content-Type"][0].startswith("multipart/mixed")
    assert "deepest" in unsplit["Body"]
    assert json.loads(mh.go_json(message))["ID"] == message["ID"]


def test_nesting_within_the_cap_is_split_to_the_bottom() -> None:
    message = mh.build_message(_envelope(), _nested(30, leaf="x" * 5000).encode(), HOST)
    assert _depth(message["MIME"]) == 30  # thirty multiparts split, down to the text part


def test_deep_nesting_cannot_multiply_the_answer_beyond_the_budget() -> None:
    """Each level repeats the bodies below it: nested deep around a large body, the JSON would
    grow as depth times size (here 100 MB). Splitting stops once the tree holds the budget."""
    raw = _nested(mh.MAX_MIME_DEPTH, leaf="x" * 1_000_000).encode()
    message = mh.build_message(_envelope(), raw, HOST)
    assert 1 < _depth(message["MIME"]) < mh.MAX_MIME_DEPTH
    written = mh.go_json(message)
    assert len(written) < mh.MIME_BODY_BUDGET + 4 * len(raw)


@pytest.mark.parametrize("line_ending", ["\n", "\r", "mixed"])
def test_bare_and_mixed_line_endings_read_as_crlf(line_ending: str) -> None:
    crlf = MULTIPART
    if line_ending == "mixed":
        lines = crlf.split("\r\n")
        sent = "".join(line + ("\r\n", "\n", "\r")[n % 3] for n, line in enumerate(lines[:-1]))
    else:
        sent = crlf.replace("\r\n", line_ending)
    expected = mh.build_message(_envelope(), crlf.encode(), HOST)
    message = mh.build_message(_envelope(), sent.encode(), HOST)

    assert message["Content"]["Headers"] == expected["Content"]["Headers"]
    assert message["Content"]["Headers"]["From"] == ["App <app@example.test>"]
    assert message["MIME"] == expected["MIME"]
    assert message["Raw"]["Data"] == mh.smtp_data(sent.encode())  # as received


def test_a_message_whose_json_cannot_be_built_is_listed_minimally(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(content: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(mh, "parse_mime_body", broken)
    message = mh.build_message_or_minimal(_envelope(), MULTIPART.encode(), HOST)

    assert message["ID"] == "abc=@pat.example"
    assert message["From"]["Mailbox"] == "app"
    assert message["Content"]["Headers"]["From"] == ["App <app@example.test>"]
    assert message["Content"]["Body"] == ""
    assert message["MIME"] is None
    assert message["Raw"]["Data"] == mh.smtp_data(MULTIPART.encode())
    assert mh.matches(message, "from", "app@")
    assert json.loads(mh.go_json(message))["Content"]["MIME"] is None
    assert "abc=@pat.example" in caplog.text


def test_json_nested_far_beyond_any_recursion_limit_is_written() -> None:
    value: Any = "bottom"
    for _ in range(20_000):
        value = {"A": [value]}
    written = mh.go_json(value)
    assert written == '{"A":[' * 20_000 + '"bottom"' + "]}" * 20_000


def test_a_header_folded_into_many_lines_and_a_content_type_of_many_parameters() -> None:
    folded = "X-Long: start\r\n" + "".join(f" piece{n}\r\n" for n in range(50_000))
    params = "".join(f"; p{n}=v{n}" for n in range(5_000))
    raw = (f"{folded}Content-Type: multipart/mixed{params}; boundary=zz\r\n\r\n"
           "--zz\r\n\r\npart\r\n--zz--\r\n").encode()
    message = mh.build_message(_envelope(), raw, HOST)
    assert message["Content"]["Headers"]["X-Long"] == [
        "start" + "".join(f" piece{n}" for n in range(50_000))]
    assert message["MIME"]["Parts"][0]["Body"] == "part"
