"""Who may use the SMTP gateway, and how much of it: required AUTH and STARTTLS, the implicit
TLS port, the cap on open sessions, the bound on command lines and on the spool, replies that
never carry a client's control bytes or Pat's internals, and tenants named by AUTH.

Each test talks to a gateway alone (SMTP listeners and spool on a real store, no Temporal) with
a real client: smtplib, swaks or a raw socket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import smtplib
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from pat.domain import SpooledMessage
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.harness import make_settings
from tests.support.postgres import free_port

T = TypeVar("T")

SIMPLE = (b"From: App <app@example.test>\r\nTo: dev@example.test\r\nSubject: Hello\r\n\r\n"
          b"Plain body\r\n")


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, store_url: str | None = None,
                  **overrides: object) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings(tmp_path, store_url, **overrides)) as running:
        yield running


def trusting_the_generated_certificate(gw: RunningGateway) -> ssl.SSLContext:
    """A client context that verifies the self-signed certificate the gateway made."""
    return ssl.create_default_context(cafile=str(gw.settings.data_dir / "tls-cert.pem"))


async def smtp(port: int, talk: Callable[[smtplib.SMTP], T]) -> T:
    """Run a blocking smtplib dialogue off the event loop that serves the gateway."""
    def run() -> T:
        with smtplib.SMTP("localhost", port, timeout=20) as client:
            return talk(client)
    return await asyncio.to_thread(run)


async def smtps(port: int, context: ssl.SSLContext, talk: Callable[[smtplib.SMTP], T]) -> T:
    def run() -> T:
        with smtplib.SMTP_SSL("localhost", port, timeout=20, context=context) as client:
            return talk(client)
    return await asyncio.to_thread(run)


async def swaks(port: int, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "swaks", "--server", "localhost", "--port", str(port), "--from", "app@example.test",
        "--to", "dev@example.test", "--timeout", "20", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", "replace")


async def stored(gw: RunningGateway) -> list[tuple[str, str, bytes]]:
    """(tenant, envelope sender, raw bytes) of every stored message, oldest first."""
    _, messages = await gw.store.list(limit=1000)
    raws = await gw.store.get_many_raw([m.id for m in messages])
    return [(m.tenant, m.mail_from, raws[m.id]) for m in reversed(messages)]


class Session:
    """A hand-driven SMTP session over a raw socket: writes exactly what it is given, and
    returns each reply's raw lines so that their bytes can be checked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Session:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    @classmethod
    async def open(cls, port: int) -> Session:
        session = await cls.connect(port)
        greeting = await session.reply()
        assert greeting.startswith(b"220 "), greeting
        return session

    async def reply(self) -> bytes:
        lines = b""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            assert line, f"connection closed after {lines!r}"
            lines += line
            if line[3:4] != b"-":
                return lines

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def rest_until_closed(self) -> bytes:
        """Whatever the server still sends before it closes the connection."""
        with contextlib.suppress(ConnectionError):
            return await asyncio.wait_for(self.reader.read(), 10)
        return b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def deliver(client: smtplib.SMTP) -> tuple[int, bytes]:
    client.ehlo()
    client.mail("app@example.test")
    client.rcpt("dev@example.test")
    return client.data(SIMPLE)


# --- AUTH required ------------------------------------------------------------------------------

def _mail_without_auth(client: smtplib.SMTP) -> tuple[int, bytes]:
    client.ehlo()
    return client.mail("app@example.test")


def _login_and_deliver(user: str, password: str) -> Callable[[smtplib.SMTP], tuple[int, bytes]]:
    def talk(client: smtplib.SMTP) -> tuple[int, bytes]:
        client.ehlo()
        client.login(user, password)
        return deliver(client)
    return talk


async def test_with_an_auth_file_mail_without_auth_is_refused_530(tmp_path: Path) -> None:
    auth_file = tmp_path / "users"
    auth_file.write_text("alice:s3cret\n")
    async with gateway(tmp_path, auth_file=auth_file) as gw:
        assert await smtp(gw.smtp_port, _mail_without_auth) == (
            530, b"5.7.0 Authentication required")
        assert (await smtp(gw.smtp_port, _login_and_deliver("alice", "s3cret")))[0] == 250
        assert len(await stored(gw)) == 1


async def test_auth_can_be_required_without_an_auth_file_or_waived_with_one(
        tmp_path: Path) -> None:
    async with gateway(tmp_path / "required", smtp_require_auth=True) as gw:
        assert (await smtp(gw.smtp_port, _mail_without_auth))[0] == 530
        assert (await smtp(gw.smtp_port, _login_and_deliver("anyone", "anything")))[0] == 250
    auth_file = tmp_path / "users"
    auth_file.write_text("alice:s3cret\n")
    async with gateway(tmp_path / "waived", auth_file=auth_file,
                       smtp_require_auth=False) as gw:
        assert (await smtp(gw.smtp_port, deliver))[0] == 250


async def test_swaks_without_auth_is_refused_and_with_it_delivers(tmp_path: Path) -> None:
    auth_file = tmp_path / "users"
    auth_file.write_text("alice:s3cret\n")
    async with gateway(tmp_path, auth_file=auth_file) as gw:
        status, output = await swaks(gw.smtp_port)
        assert status != 0
        assert "<** 530 5.7.0 Authentication required" in output, output
        status, output = await swaks(gw.smtp_port, "--auth", "PLAIN", "--auth-user", "alice",
                                     "--auth-password", "s3cret")
        assert status == 0, output
        assert len(await stored(gw)) == 1


# --- STARTTLS required --------------------------------------------------------------------------

async def test_with_tls_required_every_command_but_ehlo_noop_starttls_quit_waits_for_starttls(
        tmp_path: Path) -> None:
    refused = b"530 5.7.0 Must issue a STARTTLS command first\r\n"
    async with gateway(tmp_path, smtp_require_tls=True) as gw:
        session = await Session.open(gw.smtp_port)
        ehlo = await session.command(b"EHLO client.example.test")
        assert b"250-STARTTLS" in ehlo
        assert b"AUTH" not in ehlo  # no credentials in clear text
        assert (await session.command(b"NOOP")).startswith(b"250 ")
        for command in (b"AUTH PLAIN AGFsaWNlAHMzY3JldA==", b"MAIL FROM:<app@example.test>",
                        b"RCPT TO:<dev@example.test>", b"DATA", b"HELO client.example.test",
                        b"RSET", b"VRFY dev", b"HELP", b"FROBNICATE"):
            assert await session.command(command) == refused, command
        assert (await session.command(b"QUIT")).startswith(b"221 ")
        await session.close()
        assert await stored(gw) == []


async def test_with_tls_required_smtplib_delivers_after_starttls(tmp_path: Path) -> None:
    async with gateway(tmp_path, smtp_require_tls=True) as gw:
        context = trusting_the_generated_certificate(gw)

        def talk(client: smtplib.SMTP) -> tuple[int, bytes, bool, tuple[int, bytes]]:
            client.ehlo()
            refused = client.mail("app@example.test")
            client.starttls(context=context)
            client.ehlo()
            offers_auth = client.has_extn("auth")
            client.login("anyone", "anything")
            return (*refused, offers_auth, deliver(client))

        code, text, offers_auth, delivered = await smtp(gw.smtp_port, talk)
        assert (code, text) == (530, b"5.7.0 Must issue a STARTTLS command first")
        assert offers_auth
        assert delivered[0] == 250
        assert len(await stored(gw)) == 1


async def test_with_tls_required_swaks_must_use_tls(tmp_path: Path) -> None:
    async with gateway(tmp_path, smtp_require_tls=True) as gw:
        status, output = await swaks(gw.smtp_port)
        assert status != 0
        assert "<** 530 5.7.0 Must issue a STARTTLS command first" in output, output
        ca_file = gw.settings.data_dir / "tls-cert.pem"
        status, output = await swaks(gw.smtp_port, "--tls", "--tls-verify",
                                     "--tls-ca-path", str(ca_file))
        assert status == 0, output
        assert len(await stored(gw)) == 1


# --- implicit TLS (SMTPS) -----------------------------------------------------------------------

async def test_the_implicit_tls_port_delivers_with_the_generated_certificate(
        tmp_path: Path) -> None:
    async with gateway(tmp_path, smtp_tls_port=free_port()) as gw:
        assert gw.settings.smtp_tls_port is not None

        def talk(client: smtplib.SMTP) -> tuple[bool, bool, tuple[int, bytes]]:
            client.ehlo()
            return client.has_extn("starttls"), client.has_extn("auth"), deliver(client)

        offers_starttls, offers_auth, delivered = await smtps(
            gw.settings.smtp_tls_port, trusting_the_generated_certificate(gw), talk)
        assert not offers_starttls  # encrypted already
        assert offers_auth
        assert delivered[0] == 250
        assert await stored(gw) == [("default", "app@example.test", SIMPLE)]


async def test_the_implicit_tls_port_keeps_the_auth_policy_and_satisfies_the_tls_one(
        tmp_path: Path) -> None:
    async with gateway(tmp_path, smtp_tls_port=free_port(), smtp_require_tls=True,
                       smtp_require_auth=True) as gw:
        assert gw.settings.smtp_tls_port is not None
        context = trusting_the_generated_certificate(gw)
        assert (await smtps(gw.settings.smtp_tls_port, context, _mail_without_auth))[0] == 530
        delivered = await smtps(gw.settings.smtp_tls_port, context,
                                _login_and_deliver("anyone", "anything"))
        assert delivered[0] == 250
        assert len(await stored(gw)) == 1


async def test_the_implicit_tls_port_refuses_a_client_that_does_not_speak_tls(
        tmp_path: Path) -> None:
    async with gateway(tmp_path, smtp_tls_port=free_port()) as gw:
        assert gw.settings.smtp_tls_port is not None
        session = await Session.connect(gw.settings.smtp_tls_port)
        session.writer.write(b"EHLO client.example.test\r\n")
        assert b"220" not in await session.rest_until_closed()  # a TLS alert at most
        await session.close()


# --- connections --------------------------------------------------------------------------------

async def test_one_connection_over_the_limit_gets_421_and_a_closed_session_frees_its_slot(
        tmp_path: Path) -> None:
    async with gateway(tmp_path, smtp_max_connections=3, smtp_tls_port=free_port()) as gw:
        assert gw.settings.smtp_tls_port is not None
        admitted = [await Session.open(gw.smtp_port) for _ in range(3)]
        refused = await Session.connect(gw.smtp_port)
        assert await refused.reply() == b"421 4.7.0 Too many connections, try again later\r\n"
        assert await refused.rest_until_closed() == b""
        await refused.close()

        context = trusting_the_generated_certificate(gw)
        with pytest.raises(smtplib.SMTPConnectError) as over:  # both ports share the limit
            await smtps(gw.settings.smtp_tls_port, context, lambda client: None)
        assert over.value.smtp_code == 421

        assert (await admitted[0].command(b"QUIT")).startswith(b"221 ")
        await admitted[0].close()
        assert (await smtp(gw.smtp_port, deliver))[0] == 250
        for session in admitted[1:]:
            assert (await session.command(b"NOOP")).startswith(b"250 ")
            await session.close()


async def test_a_starttls_pipelined_after_the_goodbye_does_not_keep_the_slot(
        tmp_path: Path) -> None:
    async with gateway(tmp_path, smtp_max_connections=1) as gw:
        session = await Session.open(gw.smtp_port)
        session.writer.write(b"EHLO client.example.test\r\n" + b"FROBNICATE\r\n" * 5
                             + b"STARTTLS\r\nNOOP\r\n")
        rest = await session.rest_until_closed()
        assert rest.endswith(b"502 5.5.1 Too many unrecognized commands, goodbye.\r\n"), rest
        await session.close()
        assert (await smtp(gw.smtp_port, deliver))[0] == 250


async def test_a_second_starttls_is_refused_503(tmp_path: Path) -> None:
    async with gateway(tmp_path) as gw:
        context = trusting_the_generated_certificate(gw)

        def talk(client: smtplib.SMTP) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            client.ehlo()
            client.starttls(context=context)
            return client.docmd("STARTTLS"), deliver(client)

        again, delivered = await smtp(gw.smtp_port, talk)
        assert again == (503, b"5.5.1 TLS is already active")
        assert delivered[0] == 250


# --- command lines ------------------------------------------------------------------------------

async def test_a_command_line_over_the_limit_gets_500_and_the_session_goes_on(
        pat_gateway: RunningGateway) -> None:
    session = await Session.open(pat_gateway.smtp_port)
    assert (await session.command(b"EHLO client.example.test")).startswith(b"250-")
    too_long = b"500 5.5.2 Line too long\r\n"
    assert await session.command(b"NOOP " + b"x" * 600) == too_long
    assert await session.command(b"MAIL FROM:<" + b"a" * 20_000 + b"@example.test>") == too_long
    # Sent in pieces with no line end for 8 MB: refused once it ends, the session still usable.
    session.writer.write(b"RCPT TO:<")
    for _ in range(128):
        session.writer.write(b"y" * 65536)
        await session.writer.drain()
    assert await session.command(b">") == too_long
    assert (await session.command(b"MAIL FROM:<app@example.test>")).startswith(b"250 ")
    assert (await session.command(b"RCPT TO:<dev@example.test>")).startswith(b"250 ")
    assert (await session.command(b"DATA")).startswith(b"354 ")
    long_line = b"Subject: long\r\n\r\n" + b"z" * 100_000 + b"\r\n"  # inside DATA: captured
    assert (await session.command(long_line + b".")).startswith(b"250 ")
    await session.close()
    assert await stored(pat_gateway) == [("default", "app@example.test", long_line)]


async def test_an_auth_answer_over_the_limit_gets_500(pat_gateway: RunningGateway) -> None:
    session = await Session.open(pat_gateway.smtp_port)
    assert (await session.command(b"EHLO client.example.test")).startswith(b"250-")
    assert (await session.command(b"AUTH LOGIN")).startswith(b"334 ")
    assert await session.command(b"QUFB" * 5000) == b"500 5.5.2 Line too long\r\n"
    assert (await session.command(b"NOOP")).startswith(b"250 ")
    await session.close()


@pytest.fixture
async def pat_gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with gateway(tmp_path) as gw:
        yield gw


# --- the spool's bound --------------------------------------------------------------------------

async def test_when_the_spool_is_full_new_mail_gets_452_and_nothing_accepted_is_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with gateway(tmp_path, spool_max_bytes=len(SIMPLE)) as gw:
        commit = asyncio.Event()
        insert_batch = gw.store.insert_batch

        async def held_insert_batch(batch: list[SpooledMessage]) -> None:
            await commit.wait()
            await insert_batch(batch)

        monkeypatch.setattr(gw.store, "insert_batch", held_insert_batch)
        first, second = await Session.open(gw.smtp_port), await Session.open(gw.smtp_port)
        for session in (first, second):
            for line in (b"EHLO client.example.test", b"MAIL FROM:<app@example.test>",
                         b"RCPT TO:<dev@example.test>", b"DATA"):
                await session.command(line)
        first.writer.write(SIMPLE + b".\r\n")
        first_reply = asyncio.create_task(first.reply())
        await asyncio.sleep(0.2)  # the first message now waits for its commit
        full = b"452 4.3.1 Insufficient system storage, try again later\r\n"
        assert await second.command(SIMPLE + b".") == full
        assert await second.command(b"MAIL FROM:<app@example.test>") == full

        commit.set()
        assert (await first_reply).startswith(b"250 ")
        assert (await second.command(b"MAIL FROM:<app@example.test>")).startswith(b"250 ")
        assert (await second.command(b"RCPT TO:<dev@example.test>")).startswith(b"250 ")
        assert (await second.command(b"DATA")).startswith(b"354 ")
        assert (await second.command(SIMPLE + b".")).startswith(b"250 ")
        for session in (first, second):
            await session.close()
        assert len(await stored(gw)) == 2


# --- what replies may carry ---------------------------------------------------------------------

async def test_replies_never_echo_control_or_undecodable_bytes(
        pat_gateway: RunningGateway) -> None:
    session = await Session.open(pat_gateway.smtp_port)
    assert (await session.command(b"EHLO client.example.test")).startswith(b"250-")
    for hostile in (b"FRO\x00B\rNICATE\x1b[31m", b"VRFY @\xfe", b"VRFY <\x07@\xc3>",
                    b"\xe2\x80\xae\x7f", b"MAIL FROM:<\x00> \x0b", b"HELP \x1b]0;owned\x07"):
        reply = await session.command(hostile)
        assert reply.endswith(b"\r\n") and reply.count(b"\r\n") == 1, (hostile, reply)
        assert all(0x20 <= byte <= 0x7E for byte in reply[:-2]), (hostile, reply)
        assert b"Error: (" not in reply, (hostile, reply)  # no exception text
    await session.close()


async def test_an_address_the_parser_chokes_on_is_malformed_not_an_internal_error(
        pat_gateway: RunningGateway, caplog: pytest.LogCaptureFixture) -> None:
    session = await Session.open(pat_gateway.smtp_port)
    assert (await session.command(b"EHLO client.example.test")).startswith(b"250-")
    for address in (b'"', b"<a@[>"):
        assert await session.command(b"MAIL FROM:" + address) == (
            b"553 5.1.3 Error: malformed address\r\n")
    assert (await session.command(b"MAIL FROM:<app@example.test>")).startswith(b"250 ")
    assert await session.command(b'RCPT TO:"') == b"553 5.1.3 Error: malformed address\r\n"
    await session.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_internal_error_answers_451_without_its_text_and_is_logged(
        pat_gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(hostname: str) -> str:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("gateway.smtp.new_message_id", broken)
    with caplog.at_level(logging.ERROR, logger="gateway.smtp"):
        def talk(client: smtplib.SMTP) -> tuple[int, bytes]:
            client.ehlo()
            client.mail("app@example.test")
            client.rcpt("dev@example.test")
            return client.data(SIMPLE)

        assert await smtp(pat_gateway.smtp_port, talk) == (
            451, b"4.3.0 Internal error, try again later")
    assert "secret internal detail" in caplog.text
    assert await stored(pat_gateway) == []


# --- tenants ------------------------------------------------------------------------------------

async def test_the_auth_user_name_is_the_tenant_and_mail_without_auth_gets_the_default(
        tmp_path: Path, store_url: str) -> None:
    async with gateway(tmp_path, store_url, smtp_tenant_from_auth=True, tenant="house") as gw:
        assert (await smtp(gw.smtp_port, _login_and_deliver("acme.eu_1-a", "x")))[0] == 250
        assert (await smtp(gw.smtp_port, deliver))[0] == 250
        assert [tenant for tenant, _, _ in await stored(gw)] == ["acme.eu_1-a", "house"]


@pytest.mark.parametrize("user", ["two words", "a/b", "t" * 65, "zoë", "", "x\ty"])
async def test_a_user_name_that_cannot_be_a_tenant_is_refused_535(tmp_path: Path,
                                                                  user: str) -> None:
    async with gateway(tmp_path, smtp_tenant_from_auth=True) as gw:
        session = await Session.open(gw.smtp_port)
        assert (await session.command(b"EHLO client.example.test")).startswith(b"250-")
        credentials = base64.b64encode(b"\0" + user.encode() + b"\0secret")
        assert await session.command(b"AUTH PLAIN " + credentials) == (
            b"535 5.7.8 User name is not a valid tenant name (1 to 64 letters, digits, '.', "
            b"'_' or '-')\r\n")
        assert (await session.command(b"MAIL FROM:<app@example.test>")).startswith(b"250 ")
        await session.close()


async def test_without_tenant_from_auth_the_user_name_is_not_the_tenant(
        pat_gateway: RunningGateway) -> None:
    assert (await smtp(pat_gateway.smtp_port, _login_and_deliver("acme", "x")))[0] == 250
    assert [tenant for tenant, _, _ in await stored(pat_gateway)] == ["default"]
