"""The MailHog-compatible API over a whole running Pat: messages sent over SMTP come back from
/api/v1 and /api/v2 in MailHog's shapes (compared with golden files), live over the event stream
and the websocket, and bad requests are refused with a reason."""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from websockets.asyncio.client import connect

from api.routes import mailhog as mailhog_routes
from api.safe_content import MESSAGE_BYTES_POLICY, content_disposition
from pat.domain import SpooledMessage
from pat.mailhog_json import V1_LIST_LIMIT, rfc1123z
from tests.hostile import corpus as hostile
from tests.hostile import smtp as hostile_smtp
from tests.support.harness import RunningPat, make_settings, running_pat

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "mailhog"
HELO = "client.example.test"
UPDATE = os.environ.get("PAT_UPDATE_GOLDEN") == "1"  # rewrite the golden files, then review them

SINGLE = (b"From: =?utf-8?Q?Jos=C3=A9?= <jose@example.test>\r\n"
          b"To: Dev <dev@example.test>\r\n"
          b"Subject: Quarterly =?utf-8?Q?r=C3=A9port?= for\r\n"
          b" the <team> & friends\r\n"
          b"Message-ID: <single@example.test>\r\n"
          b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
          b"MIME-Version: 1.0\r\n"
          b"Content-Type: text/plain; charset=utf-8\r\n"
          b"\r\n"
          b"Hello team,\r\n"
          b"..a line that SMTP dot-stuffs\r\n"
          b"Bye\r\n")

MULTIPART = (b"From: Billing <billing@shop.example>\r\n"
             b"To: Alice <alice@example.test>\r\n"
             b"Subject: Your invoice\r\n"
             b"MIME-Version: 1.0\r\n"
             b'Content-Type: multipart/mixed; boundary="b1"\r\n'
             b"\r\n"
             b"--b1\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n"
             b"\r\n"
             b"Total: 42 EUR\r\n"
             b"--b1\r\n"
             b'Content-Type: application/pdf; name="invoice.pdf"\r\n'
             b'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
             b"Content-Transfer-Encoding: base64\r\n"
             b"\r\n"
             b"JVBERi0xLjQgZmFrZQ==\r\n"
             b"--b1--\r\n")


def _send(port: int, sender: str, recipients: list[str], data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname=HELO) as client:
        client.sendmail(sender, recipients, data)


async def _send_both(pat: RunningPat) -> tuple[str, str]:
    """The single-part message, then the multipart one; their ids, in that order."""
    await asyncio.to_thread(_send, pat.smtp_port, "jose@example.test",
                            ["dev@example.test", "ops@example.test"], SINGLE)
    await asyncio.to_thread(_send, pat.smtp_port, "bounce@shop.example",
                            ["alice@example.test"], MULTIPART)
    listing = (await pat.http.get("/api/v2/messages")).json()
    newest, oldest = (item["ID"] for item in listing["items"])
    return oldest, newest


def _normalise_message(item: Any) -> Any:
    """Replace what differs per run, ID and Created, and so the Received header's id and date
    that MailHog derives from them, by placeholders."""
    created = datetime.fromisoformat(item["Created"].replace("Z", "+00:00"))
    text = (json.dumps(item, ensure_ascii=False).replace(item["ID"], "<ID>")
            .replace(item["Created"], "<CREATED>")
            .replace(rfc1123z(int(created.timestamp()) * 10**9), "<RECEIVED DATE>"))
    return json.loads(text)


def _normalise(value: Any) -> Any:
    if isinstance(value, list):
        value = [_normalise_message(item) for item in value]
    elif "items" in value:
        value = {**value, "items": [_normalise_message(item) for item in value["items"]]}
    else:
        value = _normalise_message(value)
    # Compared as key/value pairs, so the order of every key counts.
    return json.loads(json.dumps(value), object_pairs_hook=lambda pairs: pairs)


def _assert_golden(name: str, value: Any) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(json.dumps(_plain(_normalise(value)), indent=2, ensure_ascii=False)
                        + "\n")
    expected = json.loads(path.read_text(), object_pairs_hook=lambda pairs: pairs)
    assert _normalise(value) == expected  # values and the order of every key


def _plain(pairs: Any) -> Any:
    if isinstance(pairs, list) and all(isinstance(p, tuple) for p in pairs) and pairs:
        return {k: _plain(v) for k, v in pairs}
    if isinstance(pairs, list):
        return [_plain(p) for p in pairs]
    return pairs


async def test_list_get_and_search_answer_as_mailhog(pat: RunningPat) -> None:
    oldest, newest = await _send_both(pat)

    listing = await pat.http.get("/api/v2/messages")
    assert listing.status_code == 200
    assert listing.headers["content-type"] == "text/json"
    assert b"\\u003cjose@example.test\\u003e" in listing.content  # Go escapes < > &
    _assert_golden("v2_messages.json", listing.json())

    one = await pat.http.get(f"/api/v1/messages/{oldest}")
    assert one.headers["content-type"] == "text/json"
    _assert_golden("v1_message.json", one.json())

    v1 = (await pat.http.get("/api/v1/messages")).json()
    assert [m["ID"] for m in v1] == [newest, oldest]
    assert v1 == listing.json()["items"]

    search = await pat.http.get("/api/v2/search", params={"kind": "to", "query": "ALICE"})
    assert search.headers["content-type"] == "application/json"
    _assert_golden("v2_search_to.json", search.json())


async def test_search_kinds_and_paging(pat: RunningPat) -> None:
    oldest, newest = await _send_both(pat)

    async def ids(**params: Any) -> tuple[int, int, list[str]]:
        answer = (await pat.http.get("/api/v2/search", params=params)).json()
        assert answer["count"] == len(answer["items"])
        return answer["total"], answer["start"], [m["ID"] for m in answer["items"]]

    assert await ids(kind="from", query="jose@") == (1, 0, [oldest])
    assert await ids(kind="from", query="Billing") == (1, 0, [newest])  # From header
    assert await ids(kind="to", query="ops@example") == (1, 0, [oldest])  # envelope only
    assert await ids(kind="containing", query="42 eur") == (1, 0, [newest])
    assert await ids(kind="containing", query="example.test") == (2, 0, [newest, oldest])
    assert await ids(kind="containing", query="example.test", start=1, limit=1) == (
        2, 1, [oldest])
    assert await ids(kind="containing", query="nothing like it") == (0, 0, [])

    page = (await pat.http.get("/api/v2/messages", params={"start": 1, "limit": 1})).json()
    assert (page["total"], page["count"], page["start"]) == (2, 1, 1)
    assert page["items"][0]["ID"] == oldest
    beyond = (await pat.http.get("/api/v2/messages", params={"start": 5})).json()
    assert beyond == {"total": 2, "count": 0, "start": 5, "items": []}


async def test_limits_default_and_cap_as_mailhog(pat_sqlite: RunningPat) -> None:
    for number in range(3):
        await asyncio.to_thread(_send, pat_sqlite.smtp_port, "a@example.test",
                                ["b@example.test"], f"Subject: {number}\r\n\r\nx\r\n".encode())
    for params in ({"limit": 0}, {"limit": 1000}, {"limit": ""}, {"start": ""}):
        answer = await pat_sqlite.http.get("/api/v2/messages", params=params)
        assert answer.status_code == 200, params
        assert answer.json()["count"] == 3


async def test_delete_one_and_all(pat: RunningPat) -> None:
    oldest, newest = await _send_both(pat)

    deleted = await pat.http.delete(f"/api/v1/messages/{oldest}")
    assert (deleted.status_code, deleted.content) == (200, b"")
    assert (await pat.http.get(f"/api/v1/messages/{oldest}")).status_code == 404
    again = await pat.http.delete(f"/api/v1/messages/{oldest}")
    assert again.status_code == 404
    assert again.json() == {"error": f"no message with id {oldest}"}
    assert [m["ID"] for m in (await pat.http.get("/api/v1/messages")).json()] == [newest]

    assert (await pat.http.delete("/api/v1/messages")).status_code == 200
    assert (await pat.http.get("/api/v1/messages")).content == b"[]"
    assert (await pat.http.get("/api/v2/messages")).json() == {
        "total": 0, "count": 0, "start": 0, "items": []}


async def test_download_raw_and_mime_part(pat_sqlite: RunningPat) -> None:
    single, multipart = await _send_both(pat_sqlite)
    http = pat_sqlite.http

    raw = await http.get(f"/api/v1/messages/{single}/download")
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "message/rfc822"
    # The raw download carries the same safe headers as every response with message bytes.
    assert raw.headers["content-disposition"] == content_disposition("attachment",
                                                                     f"{single}.eml")
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in raw.headers["content-security-policy"]
    assert raw.content == SINGLE  # as sent, dot-stuffing undone

    part = await http.get(f"/api/v1/messages/{multipart}/mime/part/1/download")
    assert part.status_code == 200
    assert part.content == b"%PDF-1.4 fake"
    assert part.headers["content-type"] == "application/pdf"  # the type, not its parameters
    assert part.headers["content-disposition"] == content_disposition("attachment",
                                                                      "invoice.pdf")
    assert part.headers["x-content-type-options"] == "nosniff"
    assert part.headers["content-security-policy"] == MESSAGE_BYTES_POLICY
    assert "content-transfer-encoding" not in part.headers
    text = await http.get(f"/api/v1/messages/{multipart}/mime/part/0/download")
    assert text.content == b"Total: 42 EUR"
    assert text.headers["content-type"] == "text/plain"
    assert text.headers["content-disposition"] == content_disposition(
        "attachment", f"{multipart}-part-0")  # MailHog's name for a part without one

    missing = await http.get(f"/api/v1/messages/{multipart}/mime/part/2/download")
    assert missing.status_code == 404
    assert missing.json()["error"] == (f"message {multipart} has no MIME part 2 "
                                       "(it has 2 top-level parts)")
    not_multipart = await http.get(f"/api/v1/messages/{single}/mime/part/0/download")
    assert not_multipart.status_code == 404
    assert "has 0 top-level parts" in not_multipart.json()["error"]
    bad_index = await http.get(f"/api/v1/messages/{multipart}/mime/part/-1/download")
    assert bad_index.status_code == 400
    assert "whole number" in bad_index.json()["error"]
    assert (await http.get("/api/v1/messages/nope/download")).status_code == 404
    assert (await http.get("/api/v1/messages/nope/mime/part/0/download")).status_code == 404


async def test_a_part_download_never_carries_the_parts_own_headers(
        pat_sqlite: RunningPat) -> None:
    """MailHog copies every header of a part into the download: a part could make itself an
    inline page with script on the API's origin, set cookies or redirect. Pat answers with its
    own headers only."""
    await asyncio.to_thread(_send, pat_sqlite.smtp_port, "hostile@example.test",
                            ["dev@example.test"], hostile.active_attachments())
    [message] = (await pat_sqlite.http.get("/api/v1/messages")).json()
    parts = message["MIME"]["Parts"]
    assert "Set-Cookie" in parts[0]["Headers"]
    for index in range(len(parts)):
        answer = await pat_sqlite.http.get(
            f"/api/v1/messages/{message['ID']}/mime/part/{index}/download")
        assert answer.status_code == 200
        assert answer.headers["content-disposition"].startswith("attachment")
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in answer.headers["content-security-policy"]
        for injected in ("set-cookie", "location", "access-control-allow-origin",
                         "x-injected", "content-transfer-encoding"):
            assert injected not in answer.headers, (index, injected)
    svg = await pat_sqlite.http.get(f"/api/v1/messages/{message['ID']}/mime/part/1/download")
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.headers["content-disposition"] == content_disposition("attachment", "logo.svg")


async def test_v1_lists_at_most_the_newest_1000_as_mailhog(tmp_path: Path,
                                                           temporal_client: Client) -> None:
    settings = make_settings(tmp_path)
    async with running_pat(settings, temporal_client, worker=False, gateway=False) as pat:
        await pat.store.insert_batch([
            SpooledMessage(id=f"m{number:04d}@pat.example", tenant="default",
                           mail_from="a@example.test", recipients=["b@example.test"],
                           helo="client", peer="127.0.0.1",
                           data=f"Subject: {number}\r\n\r\nx\r\n".encode(),
                           created_ns=1_700_000_000_000_000_000 + number)
            for number in range(V1_LIST_LIMIT + 1)])
        listed = (await pat.http.get("/api/v1/messages")).json()
    assert V1_LIST_LIMIT == 1000
    assert len(listed) == 1000
    assert listed[0]["ID"] == "m1000@pat.example"  # newest first; the oldest is left out
    assert listed[-1]["ID"] == "m0001@pat.example"


async def test_bare_lf_message_shows_its_headers_and_parts(pat_sqlite: RunningPat) -> None:
    """As PHP's mail() sends: MailHog shows no header of such a message; Pat shows the same
    headers and parts as for the message sent with CRLF, and Raw.Data as received."""
    sent = hostile.bare_lf()
    await asyncio.to_thread(_send, pat_sqlite.smtp_port, "hostile@example.test",
                            ["dev@example.test"], hostile.bare_endings_source())
    await asyncio.to_thread(hostile_smtp.send_raw, pat_sqlite.smtp_port, sent)
    bare, crlf = (await pat_sqlite.http.get("/api/v2/messages")).json()["items"]

    assert bare["Content"]["Headers"]["Subject"] == ["line endings"]
    assert bare["Content"]["Headers"]["Content-Type"] == crlf["Content"]["Headers"][
        "Content-Type"]
    assert bare["MIME"] == crlf["MIME"]
    assert bare["Raw"]["Data"] == sent.decode()


async def test_bad_parameters_are_refused_with_a_reason(pat_sqlite: RunningPat) -> None:
    http = pat_sqlite.http
    cases = [
        ("/api/v2/messages", {"limit": "lots"}, "limit must be a whole number"),
        ("/api/v2/messages", {"start": "-1"}, "start must be a whole number"),
        ("/api/v2/search", {"kind": "subject", "query": "x"},
         "kind must be one of from, to, containing (got 'subject')"),
        ("/api/v2/search", {"query": "x"}, "kind must be one of"),
        ("/api/v2/search", {"kind": "to"}, "query must not be empty"),
        ("/api/v2/search", {"kind": "to", "query": "x", "limit": "1.5"}, "limit must be"),
    ]
    for path, params, reason in cases:
        answer = await http.get(path, params=params)
        assert answer.status_code == 400, (path, params)
        assert reason in answer.json()["error"], (path, params, answer.text)
    unknown = await http.get("/api/v1/messages/no-such-id@pat.localhost")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no message with id no-such-id@pat.localhost"}


async def test_event_stream_delivers_a_new_message(pat_sqlite: RunningPat,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mailhog_routes, "KEEPALIVE_SECONDS", 0.3)
    async with pat_sqlite.http.stream("GET", "/api/v1/events") as events:
        assert events.status_code == 200
        assert events.headers["content-type"].startswith("text/event-stream")
        lines = events.aiter_lines()
        assert await asyncio.wait_for(anext(lines), 10) == "keepalive: "  # MailHog's keepalive
        assert await asyncio.wait_for(anext(lines), 10) == ""
        sender = asyncio.create_task(asyncio.to_thread(
            _send, pat_sqlite.smtp_port, "jose@example.test", ["dev@example.test"], SINGLE))

        data: list[str] = []
        async def next_event() -> None:
            async for line in lines:
                if line.startswith("data: "):
                    data.append(line.removeprefix("data: "))
                elif line == "" and data:
                    return
        await asyncio.wait_for(next_event(), 20)
        await sender

    assert data[0] == "{" and data[1].startswith('  "ID": ')  # json.MarshalIndent, 2 spaces
    message = json.loads("\n".join(data))
    stored = (await pat_sqlite.http.get("/api/v1/messages")).json()
    assert message == stored[0]
    assert message["Raw"]["Helo"] == HELO


async def test_websocket_delivers_a_new_message(pat_sqlite: RunningPat) -> None:
    url = f"ws://127.0.0.1:{pat_sqlite.settings.http_port}/api/v2/websocket"
    async with connect(url) as websocket:
        await asyncio.sleep(0.2)  # the subscription starts once the handshake is done
        await asyncio.to_thread(_send, pat_sqlite.smtp_port, "bounce@shop.example",
                                ["alice@example.test"], MULTIPART)
        frame = await asyncio.wait_for(websocket.recv(), 20)
        await websocket.send("ignored, as MailHog ignores what clients send")
        assert isinstance(frame, str)
        assert frame.endswith("}\n")  # gorilla's WriteJSON: compact JSON and a newline
        message = json.loads(frame)
        with pytest.raises(TimeoutError):  # each message is announced once
            await asyncio.wait_for(websocket.recv(), 1.0)

    stored = (await pat_sqlite.http.get("/api/v1/messages")).json()
    assert message == stored[0]
    assert message["MIME"]["Parts"][1]["Body"] == "JVBERi0xLjQgZmFrZQ=="
