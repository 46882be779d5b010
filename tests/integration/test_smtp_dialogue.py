"""SMTP dialogues with the gateway, spoken by smtplib, by swaks and over raw sockets.

Each test checks both what the client is told and what the store holds afterwards, because a
reply code alone cannot show that a refused message left nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme
from temporalio.client import Client

from pat.domain import SpooledMessage
from tests.support.harness import RunningPat, make_settings, running_pat

T = TypeVar("T")

SIMPLE = (b"From: App <app@example.test>\r\nTo: dev@example.test\r\nSubject: Hello\r\n\r\n"
          b"Plain body\r\n")


@contextlib.asynccontextmanager
async def custom_pat(tmp_path: Path, client: Client, store_url: str | None = None,
                     **overrides: object) -> AsyncIterator[RunningPat]:
    async with running_pat(make_settings(tmp_path, store_url, **overrides), client) as running:
        yield running


async def in_thread(port: int, talk: Callable[[smtplib.SMTP], T], host: str = "127.0.0.1") -> T:
    """Run a blocking smtplib dialogue off the event loop that serves the gateway."""
    def run() -> T:
        with smtplib.SMTP(host, port, timeout=20) as client:
            return talk(client)
    return await asyncio.to_thread(run)


async def swaks(port: int, *args: str, server: str = "127.0.0.1") -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "swaks", "--server", server, "--port", str(port), "--from", "app@example.test",
        "--timeout", "20", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", "replace")


async def stored(pat: RunningPat) -> list[tuple[str, list[str], bytes]]:
    """(envelope sender, envelope recipients, raw bytes) of every stored message, oldest first."""
    _, messages = await pat.store.list(limit=1000)
    raws = await pat.store.get_many_raw([m.id for m in messages])
    return [(m.mail_from, m.recipients, raws[m.id]) for m in reversed(messages)]


class Session:
    """A hand-driven SMTP session over a raw socket: writes exactly what it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Session:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = cls(reader, writer)
        greeting = await session.reply()
        assert greeting[0] == 220, greeting
        return session

    async def reply(self) -> tuple[int, str]:
        lines: list[str] = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 10)).decode()
            assert line, f"connection closed after {lines!r}"
            lines.append(line[4:].rstrip("\r\n"))
            if line[3:4] != "-":
                return int(line[:3]), "\n".join(lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, line: str) -> tuple[int, str]:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def queued_id(reply: str) -> str:
    assert "queued as " in reply, reply
    return reply.rsplit("queued as ", 1)[1].strip()


# --- EHLO -------------------------------------------------------------------------------------

async def test_ehlo_lists_the_extensions_to_smtplib(pat_sqlite: RunningPat) -> None:
    def talk(client: smtplib.SMTP) -> tuple[int, dict[str, str]]:
        code, _ = client.ehlo("client.example.test")
        return code, dict(client.esmtp_features)

    code, features = await in_thread(pat_sqlite.smtp_port, talk)
    assert code == 250
    assert features["size"] == str(pat_sqlite.settings.max_message_size)
    assert {"8bitmime", "smtputf8", "pipelining", "starttls"} <= features.keys()
    assert set(features["auth"].split()) == {"PLAIN", "LOGIN"}


async def test_ehlo_lists_the_extensions_to_swaks(pat_sqlite: RunningPat) -> None:
    status, output = await swaks(pat_sqlite.smtp_port, "--quit-after", "EHLO")
    assert status == 0, output
    for extension in (f"SIZE {pat_sqlite.settings.max_message_size}", "8BITMIME", "SMTPUTF8",
                      "PIPELINING", "STARTTLS", "AUTH LOGIN PLAIN"):
        assert f"<-  250-{extension}" in output or f"<-  250 {extension}" in output, output


# --- SIZE ---------------------------------------------------------------------------------------

async def test_declared_size_over_the_limit_is_refused_at_mail_from(
        tmp_path: Path, temporal_client: Client) -> None:
    async with custom_pat(tmp_path, temporal_client, max_message_size=2000) as pat:
        def talk(client: smtplib.SMTP) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            client.ehlo()
            too_big = client.mail("app@example.test", ["SIZE=2001"])
            client.rset()
            fits = client.mail("app@example.test", ["SIZE=2000"])
            return too_big, fits

        too_big, fits = await in_thread(pat.smtp_port, talk)
        assert too_big[0] == 552
        assert fits[0] == 250
        assert await stored(pat) == []


async def test_data_over_the_limit_is_refused_and_nothing_is_stored(
        tmp_path: Path, temporal_client: Client, store_url: str) -> None:
    body = b"".join(b"line %04d of a message that is far too long\r\n" % n for n in range(100))
    async with custom_pat(tmp_path, temporal_client, store_url, max_message_size=2000) as pat:
        def talk(client: smtplib.SMTP) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            client.ehlo()
            client.mail("app@example.test")  # no SIZE=: the limit must hold during DATA
            client.rcpt("dev@example.test")
            refused = client.data(SIMPLE + body)
            client.mail("app@example.test")
            client.rcpt("dev@example.test")
            return refused, client.data(SIMPLE)

        refused, accepted = await in_thread(pat.smtp_port, talk)
        assert refused[0] == 552
        assert accepted[0] == 250  # the session is still usable after the refusal
        assert await stored(pat) == [("app@example.test", ["dev@example.test"], SIMPLE)]


async def test_swaks_over_the_size_limit_is_refused(tmp_path: Path,
                                                    temporal_client: Client) -> None:
    async with custom_pat(tmp_path, temporal_client, max_message_size=2000) as pat:
        status, output = await swaks(pat.smtp_port, "--to", "dev@example.test",
                                     "--body", "x" * 60 + "\n" + ("y" * 70 + "\n") * 40)
        assert status != 0
        assert "<** 552" in output, output
        assert await stored(pat) == []


# --- recipients ---------------------------------------------------------------------------------

async def test_recipients_over_the_limit_get_452_and_the_rest_are_kept(
        tmp_path: Path, temporal_client: Client, store_url: str) -> None:
    async with custom_pat(tmp_path, temporal_client, store_url, max_recipients=3) as pat:
        def talk(client: smtplib.SMTP) -> list[int]:
            client.ehlo()
            client.mail("app@example.test")
            codes = [client.rcpt(f"r{n}@example.test")[0] for n in range(5)]
            codes.append(client.data(SIMPLE)[0])
            return codes

        assert await in_thread(pat.smtp_port, talk) == [250, 250, 250, 452, 452, 250]
        assert await stored(pat) == [
            ("app@example.test", ["r0@example.test", "r1@example.test", "r2@example.test"],
             SIMPLE)]


async def test_swaks_sees_452_for_one_recipient_too_many(tmp_path: Path,
                                                        temporal_client: Client) -> None:
    async with custom_pat(tmp_path, temporal_client, max_recipients=2) as pat:
        status, output = await swaks(pat.smtp_port, "--to",
                                     "a@example.test,b@example.test,c@example.test")
        assert "<** 452" in output, output
        assert status == 0, output  # swaks delivers to the recipients that were accepted
        [(_, recipients, _)] = await stored(pat)
        assert recipients == ["a@example.test", "b@example.test"]


# --- wrong commands -------------------------------------------------------------------------

async def test_unknown_and_out_of_order_commands_are_refused_and_the_session_goes_on(
        pat: RunningPat) -> None:
    def talk(client: smtplib.SMTP) -> list[int]:
        client.ehlo()
        codes = [client.docmd("FROBNICATE")[0], client.docmd("DATA")[0],
                 client.docmd("RCPT", "TO:<dev@example.test>")[0]]
        codes.append(client.mail("app@example.test")[0])
        codes.append(client.docmd("MAIL", "FROM:<again@example.test>")[0])
        codes.append(client.docmd("DATA")[0])
        codes.append(client.rcpt("dev@example.test")[0])
        codes.append(client.data(SIMPLE)[0])
        return codes

    codes = await in_thread(pat.smtp_port, talk)
    assert codes[0] in (500, 502)
    assert codes[1:] == [503, 503, 250, 503, 503, 250, 250]
    assert await stored(pat) == [("app@example.test", ["dev@example.test"], SIMPLE)]


# --- PIPELINING -----------------------------------------------------------------------------

async def test_pipelined_commands_are_answered_in_order(pat: RunningPat) -> None:
    session = await Session.open(pat.smtp_port)
    ehlo = await session.command("EHLO client.example.test")
    assert "PIPELINING" in ehlo[1]
    await session.send(b"MAIL FROM:<app@example.test>\r\nRCPT TO:<one@example.test>\r\n"
                       b"RCPT TO:<three@example.test> NOTIFY=NEVER\r\n"
                       b"RCPT TO:<two@example.test>\r\nDATA\r\n")
    codes = [(await session.reply())[0] for _ in range(5)]
    assert codes == [250, 250, 555, 250, 354]  # the refused RCPT does not derail the rest
    await session.send(SIMPLE + b".\r\nQUIT\r\n")
    done = await session.reply()
    assert done[0] == 250
    assert (await session.reply())[0] == 221
    await session.close()
    assert await stored(pat) == [
        ("app@example.test", ["one@example.test", "two@example.test"], SIMPLE)]


async def test_swaks_pipelines_a_message(pat_sqlite: RunningPat) -> None:
    status, output = await swaks(pat_sqlite.smtp_port, "--pipeline", "--to",
                                 "one@example.test,two@example.test", "--header",
                                 "Subject: piped")
    assert status == 0, output
    assert "PIPELINING" in output
    [(sender, recipients, raw)] = await stored(pat_sqlite)
    assert (sender, recipients) == ("app@example.test", ["one@example.test", "two@example.test"])
    assert b"Subject: piped" in raw


# --- STARTTLS -------------------------------------------------------------------------------

@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[trustme.CA, Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file = tmp_path / "server-cert.pem", tmp_path / "server-key.pem"
    for number, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(cert_file), append=number > 0)
    cert.private_key_pem.write_to_path(str(key_file))
    return ca, cert_file, key_file


async def test_starttls_with_the_operators_certificate_verified_by_smtplib(
        tmp_path: Path, temporal_client: Client, store_url: str,
        tls_files: tuple[trustme.CA, Path, Path]) -> None:
    ca, cert_file, key_file = tls_files
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with custom_pat(tmp_path, temporal_client, store_url, tls_cert_file=cert_file,
                          tls_key_file=key_file) as pat:
        def talk(client: smtplib.SMTP) -> tuple[int, dict[str, str], Any, tuple[int, bytes]]:
            client.ehlo()
            code, _ = client.starttls(context=trusting)
            client.ehlo()
            features = dict(client.esmtp_features)
            peer = client.sock.getpeercert() if isinstance(client.sock, ssl.SSLSocket) else None
            client.mail("app@example.test")
            client.rcpt("dev@example.test")
            return code, features, peer, client.data(SIMPLE)

        code, features, peer, sent = await in_thread(pat.smtp_port, talk, host="localhost")
        assert code == 220
        assert "starttls" not in features  # already secured
        assert "auth" in features
        assert peer is not None and ("DNS", "localhost") in peer["subjectAltName"]
        assert sent[0] == 250
        assert await stored(pat) == [("app@example.test", ["dev@example.test"], SIMPLE)]


async def test_starttls_is_refused_by_a_client_that_trusts_another_ca(
        tmp_path: Path, temporal_client: Client,
        tls_files: tuple[trustme.CA, Path, Path]) -> None:
    _, cert_file, key_file = tls_files
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)
    async with custom_pat(tmp_path, temporal_client, tls_cert_file=cert_file,
                          tls_key_file=key_file) as pat:
        def talk(client: smtplib.SMTP) -> None:
            client.ehlo()
            client.starttls(context=other)

        with pytest.raises(ssl.SSLCertVerificationError):
            await in_thread(pat.smtp_port, talk, host="localhost")


async def test_swaks_verifies_the_starttls_certificate(
        tmp_path: Path, temporal_client: Client,
        tls_files: tuple[trustme.CA, Path, Path]) -> None:
    ca, cert_file, key_file = tls_files
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with custom_pat(tmp_path, temporal_client, tls_cert_file=cert_file,
                          tls_key_file=key_file) as pat:
        status, output = await swaks(pat.smtp_port, "--to", "dev@example.test", "--tls",
                                     "--tls-verify", "--tls-ca-path", str(ca_file),
                                     server="localhost")
        assert status == 0, output
        assert "TLS started" in output, output
        [(_, recipients, _)] = await stored(pat)
        assert recipients == ["dev@example.test"]

        stranger = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(stranger))
        status, output = await swaks(pat.smtp_port, "--to", "dev@example.test", "--tls",
                                     "--tls-verify", "--tls-ca-path", str(stranger),
                                     server="localhost")
        assert status != 0, output
        assert len(await stored(pat)) == 1


# --- AUTH -----------------------------------------------------------------------------------

def _authenticate(mechanism: str, user: str,
                  password: str) -> Callable[[smtplib.SMTP], tuple[int, int]]:
    """The AUTH verdict, then MAIL's: a session goes on whatever the verdict, and delivers if
    MAIL is accepted."""
    def talk(client: smtplib.SMTP) -> tuple[int, int]:
        client.ehlo()
        client.user, client.password = user, password
        authobject = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        try:
            code, _ = client.auth(mechanism, authobject, initial_response_ok=False)
        except smtplib.SMTPAuthenticationError as refused:
            code = refused.smtp_code
        mail = client.mail("app@example.test")[0]
        if mail == 250:
            client.rcpt("dev@example.test")
            assert client.data(SIMPLE)[0] == 250
        return code, mail
    return talk


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_any_credentials_are_accepted_without_an_auth_file(
        pat_sqlite: RunningPat, mechanism: str) -> None:
    assert await in_thread(pat_sqlite.smtp_port,
                           _authenticate(mechanism, "whoever", "whatever")) == (235, 250)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_with_an_auth_file_only_its_credentials_are_accepted(
        tmp_path: Path, temporal_client: Client, mechanism: str) -> None:
    auth_file = tmp_path / "users"
    auth_file.write_text("# test users\nalice:s3cret:with:colons\n\nbob:hunter2\n")
    async with custom_pat(tmp_path, temporal_client, auth_file=auth_file) as pat:
        verdicts = [await in_thread(pat.smtp_port, _authenticate(mechanism, user, password))
                    for user, password in [("alice", "s3cret:with:colons"), ("bob", "hunter2"),
                                           ("bob", "hunter3"), ("mallory", "hunter2"),
                                           ("alice", "")]]
        # With an auth file AUTH is required: a refused sender cannot go on without it.
        assert verdicts == [(235, 250), (235, 250), (535, 530), (535, 530), (535, 530)]
        assert len(await stored(pat)) == 2


async def test_swaks_authenticates_with_plain_and_login(tmp_path: Path,
                                                      temporal_client: Client) -> None:
    auth_file = tmp_path / "users"
    auth_file.write_text("alice:s3cret\n")
    async with custom_pat(tmp_path, temporal_client, auth_file=auth_file) as pat:
        for mechanism in ("PLAIN", "LOGIN"):
            status, output = await swaks(pat.smtp_port, "--to", "dev@example.test", "--auth",
                                         mechanism, "--auth-user", "alice",
                                         "--auth-password", "s3cret")
            assert status == 0, output
            assert "<-  235" in output, output
            status, output = await swaks(pat.smtp_port, "--to", "dev@example.test", "--auth",
                                         mechanism, "--auth-user", "alice",
                                         "--auth-password", "wrong")
            assert status != 0
            assert "<** 535" in output, output
        assert len(await stored(pat)) == 2


# --- 8BITMIME and SMTPUTF8 ------------------------------------------------------------------

UTF8_MESSAGE = ("From: Jörg Müller <jörg@exämple.test>\r\nTo: Zoë <zoë@exämple.test>\r\n"
                "Subject: Grüße aus Köln\r\nMIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
                "\r\nGrüße, 你好, привет\r\n").encode()


async def test_utf8_addresses_and_8bit_body_are_stored_and_parsed(pat: RunningPat) -> None:
    def talk(client: smtplib.SMTP) -> tuple[int, bytes]:
        client.ehlo()
        assert client.has_extn("smtputf8") and client.has_extn("8bitmime")
        client.mail("jörg@exämple.test", ["SMTPUTF8", "BODY=8BITMIME"])
        client.rcpt("zoë@exämple.test")
        return client.data(UTF8_MESSAGE)

    code, reply = await in_thread(pat.smtp_port, talk)
    assert code == 250
    assert await stored(pat) == [("jörg@exämple.test", ["zoë@exämple.test"], UTF8_MESSAGE)]

    message_id = queued_id(reply.decode())
    assert await pat.wait_status(message_id, "processed", "failed") == "processed"
    detail = (await pat.http.get(f"/api/v3/messages/{message_id}")).json()
    assert detail["mail_from"] == "jörg@exämple.test"
    assert detail["recipients"] == ["zoë@exämple.test"]
    assert detail["subject"] == "Grüße aus Köln"
    assert detail["addresses"]["from"] == [{"name": "Jörg Müller",
                                            "address": "jörg@exämple.test"}]
    assert detail["addresses"]["to"] == [{"name": "Zoë", "address": "zoë@exämple.test"}]
    assert detail["text"] == "Grüße, 你好, привет\n"
    assert detail["defects"] == []


async def test_swaks_sends_an_8bit_body(pat_sqlite: RunningPat, tmp_path: Path) -> None:
    data = tmp_path / "message.eml"
    data.write_bytes(UTF8_MESSAGE.replace(b"\r\n", b"\n"))
    status, output = await swaks(pat_sqlite.smtp_port, "--to", "dev@example.test",
                                 "--data", f"@{data}")
    assert status == 0, output
    [(_, _, raw)] = await stored(pat_sqlite)
    assert raw == UTF8_MESSAGE + b"\r\n"  # swaks ends the data with an empty line of its own


async def test_addresses_the_store_cannot_hold_are_refused_at_mail_and_rcpt(
        pat: RunningPat) -> None:
    session = await Session.open(pat.smtp_port)
    await session.send(b"EHLO cl\xffient\x00.example.test\r\n")
    assert (await session.reply())[0] == 250
    await session.send(b"MAIL FROM:<j\xf6rg@example.test> SMTPUTF8\r\n")
    assert (await session.reply())[0] == 553
    assert (await session.command("MAIL FROM:<nul\x00@example.test>"))[0] == 553
    assert (await session.command("MAIL FROM:<app@example.test> SMTPUTF8"))[0] == 250
    await session.send(b"RCPT TO:<z\xebe@example.test>\r\n")
    assert (await session.reply())[0] == 553
    assert (await session.command("RCPT TO:<dev@example.test>"))[0] == 250
    assert (await session.command("DATA"))[0] == 354
    await session.send(SIMPLE + b".\r\n")
    code, text = await session.reply()
    assert code == 250
    await session.close()
    assert await stored(pat) == [("app@example.test", ["dev@example.test"], SIMPLE)]
    message = await pat.store.get(queued_id(text))
    assert message is not None and message.helo == "cl\ufffdient\ufffd.example.test"


# --- line endings ---------------------------------------------------------------------------

BARE_LF = (b"From: app@example.test\r\nTo: dev@example.test\r\nSubject: bare LF\r\n\r\n"
           + b"".join(b"line %03d ends with a bare line feed\n" % n for n in range(60))
           + b"last line\r\n")


async def test_bare_line_feeds_in_the_body_are_stored_as_sent_and_parsed(
        pat: RunningPat) -> None:
    def talk(client: smtplib.SMTP) -> tuple[int, bytes]:
        client.ehlo()
        client.mail("app@example.test")
        client.rcpt("dev@example.test")
        return client.data(BARE_LF)

    code, reply = await in_thread(pat.smtp_port, talk)
    assert code == 250, reply
    assert await stored(pat) == [("app@example.test", ["dev@example.test"], BARE_LF)]
    message_id = queued_id(reply.decode())
    assert await pat.wait_status(message_id, "processed", "failed") == "processed"
    detail = (await pat.http.get(f"/api/v3/messages/{message_id}")).json()
    assert detail["subject"] == "bare LF"
    lines = detail["text"].split("\n")
    assert lines[0] == "line 000 ends with a bare line feed"
    assert lines[59:] == ["line 059 ends with a bare line feed", "last line", ""]


async def test_swaks_sends_bare_line_feeds_unaltered(pat_sqlite: RunningPat,
                                                    tmp_path: Path) -> None:
    data = tmp_path / "bare.eml"
    data.write_bytes(BARE_LF + b".\r\n")  # unfixed data must carry its own end of data
    status, output = await swaks(pat_sqlite.smtp_port, "--to", "dev@example.test",
                                 "--data", f"@{data}", "--no-data-fixup")
    assert status == 0, output
    [(_, _, raw)] = await stored(pat_sqlite)
    assert raw == BARE_LF


async def test_lines_longer_than_rfc_5321_allows_are_captured(pat_sqlite: RunningPat) -> None:
    minified = (b"From: app@example.test\r\nTo: dev@example.test\r\nSubject: long\r\n"
                b"Content-Type: text/html\r\n\r\n<html>" + b"<p>minified</p>" * 700
                + b"</html>\r\n")

    def talk(client: smtplib.SMTP) -> dict[str, tuple[int, bytes]]:
        return client.sendmail("app@example.test", ["dev@example.test"], minified)

    assert await in_thread(pat_sqlite.smtp_port, talk) == {}
    assert await stored(pat_sqlite) == [("app@example.test", ["dev@example.test"], minified)]


# --- durability -----------------------------------------------------------------------------

async def _start_data(port: int) -> Session:
    session = await Session.open(port)
    for line, code in [("EHLO client.example.test", 250), ("MAIL FROM:<app@example.test>", 250),
                       ("RCPT TO:<dev@example.test>", 250), ("DATA", 354)]:
        assert (await session.command(line))[0] == code
    return session


async def test_a_client_that_disconnects_mid_data_leaves_nothing(pat: RunningPat) -> None:
    dropped = await _start_data(pat.smtp_port)
    await dropped.send(SIMPLE[:40])
    await dropped.close()

    finished = await _start_data(pat.smtp_port)
    await finished.send(SIMPLE + b".\r\n")
    assert (await finished.reply())[0] == 250
    await finished.close()
    await asyncio.sleep(0.2)
    assert await stored(pat) == [("app@example.test", ["dev@example.test"], SIMPLE)]


async def test_250_is_sent_only_once_the_message_is_in_the_store(pat: RunningPat) -> None:
    session = await _start_data(pat.smtp_port)
    await session.send(SIMPLE + b".\r\n")
    code, text = await session.reply()
    message = await pat.store.get(queued_id(text))
    raw = await pat.store.get_raw(queued_id(text))
    await session.close()
    assert code == 250
    assert message is not None and message.recipients == ["dev@example.test"]
    assert raw == SIMPLE


async def test_the_reply_waits_for_the_commit(pat_sqlite: RunningPat,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    commit = asyncio.Event()
    insert_batch = pat_sqlite.store.insert_batch

    async def slow_insert_batch(batch: list[SpooledMessage]) -> None:
        await commit.wait()
        await insert_batch(batch)

    monkeypatch.setattr(pat_sqlite.store, "insert_batch", slow_insert_batch)
    session = await _start_data(pat_sqlite.smtp_port)
    await session.send(SIMPLE + b".\r\n")
    reply = asyncio.create_task(session.reply())
    done, _ = await asyncio.wait({reply}, timeout=0.5)
    assert not done, "answered before the commit"
    assert await stored(pat_sqlite) == []
    commit.set()
    code, text = await reply
    await session.close()
    assert code == 250
    assert await pat_sqlite.store.get_raw(queued_id(text)) == SIMPLE


async def test_a_store_failure_answers_451_and_the_next_try_succeeds(
        pat_sqlite: RunningPat, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(batch: list[SpooledMessage]) -> None:
        raise ConnectionError("database is down")

    def talk(client: smtplib.SMTP) -> tuple[int, int]:
        client.ehlo()
        client.mail("app@example.test")
        client.rcpt("dev@example.test")
        first = client.data(SIMPLE)[0]
        monkeypatch.undo()
        client.mail("app@example.test")
        client.rcpt("dev@example.test")
        return first, client.data(SIMPLE)[0]

    monkeypatch.setattr(pat_sqlite.store, "insert_batch", refuse)
    assert await in_thread(pat_sqlite.smtp_port, talk) == (451, 250)
    assert await stored(pat_sqlite) == [("app@example.test", ["dev@example.test"], SIMPLE)]
