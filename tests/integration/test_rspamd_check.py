"""The spam check against a real rspamd, configured as ``pat up`` configures it and resolving
through the tests' DNS server: GTUBE is spam, a plain note from a well set-up sender is not,
the envelope reaches rspamd's rules, and an rspamd that is gone, breaks or answers nonsense
gives a verdict with the reason, not an exception."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from activities.checks import CheckActivities, CheckInput
from compliance.dns import ResolverConfig
from compliance.report import build_report
from compliance.result import CheckResult
from compliance.rspamd import RspamdEngine
from compliance.spam import Envelope
from pat.domain import SpooledMessage
from pat.settings import Settings
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from tests.support.check_fixtures import SENDING_HOST, SENDING_IP, Rspamd, SigningDns

GTUBE = (Path(__file__).resolve().parents[1] / "checks_corpus" / "gtube.eml").read_bytes()
NOTE = (b"From: Ann <ann@example.test>\r\nTo: bob@example.test\r\nSubject: lunch\r\n"
        b"Message-ID: <n@example.test>\r\nDate: Mon, 23 Nov 2026 05:00:00 +0000\r\n\r\n"
        b"Hi Bob, shall we meet for lunch on Thursday at noon? Ann\r\n")


def _envelope(ip: str = SENDING_IP, mail_from: str = "ann@example.test") -> Envelope:
    return Envelope(ip=ip, helo=SENDING_HOST, mail_from=mail_from,
                    recipients=["bob@example.test"], message_id=f"{uuid.uuid4()}@test")


def _engine(port: int, dns: SigningDns | None = None, timeout: float = 20) -> RspamdEngine:
    resolver = ResolverConfig("127.0.0.1", dns.port if dns else 9, 1.0)
    return RspamdEngine("127.0.0.1", port, timeout, resolver)


def _rules(found: CheckResult) -> dict[str, float]:
    return {str(r["rule"]): float(r["points"]) for r in found.details["rules"]}


async def test_gtube_is_spam_rejected_by_rspamd(rspamd: Rspamd, test_dns: SigningDns) -> None:
    found = await _engine(rspamd.port, test_dns).check(GTUBE, _envelope())
    assert found.verdict == "fail", found.reason
    assert found.details["engine"] == "rspamd"
    assert found.details["action"] == "reject" and found.details["is_spam"] is True
    assert found.details["score"] >= found.details["threshold"]
    assert "GTUBE" in _rules(found)
    assert "action reject" in found.reason
    assert build_report([found])["score"] == 70


async def test_a_plain_note_from_a_well_set_up_sender_is_not_spam(
        rspamd: Rspamd, test_dns: SigningDns) -> None:
    found = await _engine(rspamd.port, test_dns).check(NOTE, _envelope())
    assert found.verdict == "pass", found.reason
    assert found.details["action"] == "no action" and found.details["is_spam"] is False
    assert found.details["score"] < found.details["threshold"]
    rules = _rules(found)
    # The envelope reached rspamd: SPF was evaluated for the IP and MAIL FROM, and the
    # client's forward-confirmed name was passed as an MTA passes it.
    assert "R_SPF_ALLOW" in rules
    assert "HFILTER_HOSTNAME_UNKNOWN" not in rules and "RDNS_NONE" not in rules
    spf = next(r for r in found.details["rules"] if r["rule"] == "R_SPF_ALLOW")
    assert SENDING_IP in str(spf["description"])  # options joined into the description


async def test_an_ip_spf_does_not_list_fails_rspamd_spf(rspamd: Rspamd,
                                                         test_dns: SigningDns) -> None:
    found = await _engine(rspamd.port, test_dns).check(NOTE, _envelope(ip="9.9.9.9"))
    assert "R_SPF_FAIL" in _rules(found), found.details["rules"]


async def test_envelope_values_an_http_header_cannot_carry_are_cleaned(
        rspamd: Rspamd, test_dns: SigningDns) -> None:
    envelope = Envelope(ip="not an ip", helo="bad\x00helo", mail_from="jörg@exämple.test",
                        recipients=["tab\tbed@example.test", ""], message_id="id\x7f@test")
    found = await _engine(rspamd.port, test_dns).check(NOTE, envelope)
    assert found.verdict in ("pass", "fail"), found.reason


async def test_rspamd_not_running_is_unavailable_with_what_to_do() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        found = await _engine(port, timeout=5).check(NOTE, _envelope())
    assert found.verdict == "unavailable"
    assert "PAT_RSPAMD_PORT" in found.reason and f"127.0.0.1:{port}" in found.reason
    assert build_report([found])["not_scored"][0].startswith("spam:")


async def _with_server(answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                        Awaitable[None]], timeout: float = 5) -> CheckResult:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await _engine(port, timeout=timeout).check(NOTE, _envelope(ip="127.0.0.1"))


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)


async def test_rspamd_hanging_up_mid_answer_is_an_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.close()

    found = await _with_server(hang_up)
    assert found.verdict == "error", found.reason
    assert "rspamd at 127.0.0.1:" in found.reason


async def test_rspamd_that_never_answers_times_out_as_an_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    found = await _with_server(silent, timeout=0.5)
    assert found.verdict == "error"
    assert "did not answer within 0.5s" in found.reason


@pytest.mark.parametrize(("status", "body", "said"), [
    (500, b'{"error": "cannot parse message"}', "HTTP 500: cannot parse message"),
    (200, b"<html>a proxy page</html>", "not a checkv2 reply"),
    (200, b'{"score": 1.0, "action": "no action"}', "required_score"),
])
async def test_an_answer_that_is_not_a_verdict_is_an_error_naming_it(
        status: int, body: bytes, said: str) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    found = await _with_server(answer)
    assert found.verdict == "error"
    assert said in found.reason


@pytest.fixture
async def stored(tmp_path: Path) -> AsyncIterator[MessageStore]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'pat.db'}")
    await migrate(engine)
    yield MessageStore(engine)
    await engine.dispose()


async def _check_stored(store: MessageStore, settings: Settings, raw: bytes) -> CheckResult:
    message_id = f"{uuid.uuid4()}@test"
    await store.insert_batch([SpooledMessage(
        id=message_id, tenant="default", mail_from="ann@example.test",
        recipients=["bob@example.test"], helo=SENDING_HOST, peer=SENDING_IP, data=raw)])
    return await CheckActivities(settings, store).check_spam(CheckInput(message_id))


async def test_the_activity_asks_rspamd_by_default_with_the_stored_envelope(
        tmp_path: Path, stored: MessageStore, rspamd: Rspamd, test_dns: SigningDns) -> None:
    settings = Settings(data_dir=tmp_path, rspamd_port=rspamd.port, dns_resolver="127.0.0.1",
                        dns_port=test_dns.port)
    assert settings.spam_engine == "rspamd"
    found = await _check_stored(stored, settings, NOTE)
    assert found.verdict == "pass", found.reason
    assert "R_SPF_ALLOW" in _rules(found)


async def test_spam_engine_none_turns_the_check_off_with_the_reason(
        tmp_path: Path, stored: MessageStore) -> None:
    found = await _check_stored(stored, Settings(data_dir=tmp_path, spam_engine="none"), GTUBE)
    assert found.verdict == "none"
    assert found.reason == "the spam check is turned off (PAT_SPAM_ENGINE=none)"
