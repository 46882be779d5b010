"""The spam check against a real spamd: GTUBE is spam, a plain note is not, and a spamd that
is gone or breaks mid-answer gives a verdict with the reason, not an exception."""

from __future__ import annotations

import asyncio
import socket

from compliance.report import build_report
from compliance.spam import SpamdConfig, check_spam, parse_rules
from tests.support.check_fixtures import Spamd

GTUBE = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: test\r\n"
         b"Message-ID: <g@example.test>\r\nDate: Mon, 23 Nov 2026 05:00:00 +0000\r\n\r\n"
         b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n")
NOTE = (b"From: Ann <ann@example.test>\r\nTo: bob@example.test\r\nSubject: lunch\r\n"
        b"Message-ID: <n@example.test>\r\nDate: Mon, 23 Nov 2026 05:00:00 +0000\r\n\r\n"
        b"Hi Bob, shall we meet for lunch on Thursday at noon? Ann\r\n")


async def test_gtube_is_spam_with_the_rule_and_its_description(spamd: Spamd) -> None:
    found = await check_spam(GTUBE, SpamdConfig(spamd.host, spamd.port, 20))
    assert found.verdict == "fail"
    assert found.details["is_spam"] is True
    assert found.details["score"] >= 1000 and found.details["threshold"] == 5.0
    gtube = next(r for r in found.details["rules"] if r["rule"] == "GTUBE")
    assert gtube["points"] == 1000 and "Generic Test for Unsolicited Bulk Email" in \
        gtube["description"]
    assert build_report([found])["score"] == 70


async def test_a_plain_note_is_not_spam(spamd: Spamd) -> None:
    found = await check_spam(NOTE, SpamdConfig(spamd.host, spamd.port, 20))
    assert found.verdict == "pass", found.reason
    assert found.details["is_spam"] is False
    assert found.details["score"] < found.details["threshold"]


async def test_spamd_not_running_is_unavailable_with_what_to_do() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        found = await check_spam(NOTE, SpamdConfig("127.0.0.1", port, 5))
    assert found.verdict == "unavailable"
    assert "PAT_SPAMD_PORT" in found.reason
    assert build_report([found])["not_scored"][0].startswith("spam:")


async def test_spamd_dying_mid_answer_is_an_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        found = await check_spam(NOTE, SpamdConfig("127.0.0.1", port, 5))
    assert found.verdict == "error", found.reason
    assert f"127.0.0.1:{port}" in found.reason


async def test_spamd_that_never_answers_times_out_as_an_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        found = await check_spam(NOTE, SpamdConfig("127.0.0.1", port, 0.5))
    assert found.verdict == "error" and "did not answer" in found.reason


def test_wrapped_rule_descriptions_are_joined() -> None:
    report = ("Content analysis details:   (6.1 points, 5.0 required)\n\n"
              " pts rule name              description\n"
              "---- ---------------------- ------------------------------------\n"
              " 2.5 URIBL_BLACK            Contains an URL listed in the URIBL blacklist\n"
              "                            [URIs: spammy.test]\n"
              "-0.1 DKIM_VALID             Message has at least one valid DKIM\n")
    assert parse_rules(report) == [
        {"rule": "URIBL_BLACK", "points": 2.5,
         "description": "Contains an URL listed in the URIBL blacklist [URIs: spammy.test]"},
        {"rule": "DKIM_VALID", "points": -0.1,
         "description": "Message has at least one valid DKIM"}]
