"""The SMTP gateway: aiosmtpd sessions served on the application's own event loop.

Policy (size, recipients, authentication) lives here; aiosmtpd parses the protocol. A message is
answered 250 only once the spool has committed it; any store failure answers 451 so the sender
retries and nothing is lost."""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from pat.domain import SpooledMessage, new_message_id
from pat.settings import Settings
from pat.spool import Spool
from pat.tls import ensure_self_signed, server_context

log = logging.getLogger(__name__)


def load_credentials(path: Path) -> dict[str, str]:
    """``user:password`` per line; blank lines and ``#`` comments are skipped."""
    credentials: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep:
            raise ValueError(f"{path}:{number}: expected 'user:password'")
        credentials[user] = password
    return credentials


class Authenticator:
    """Accept any credentials (as MailHog does) unless a credentials file was configured."""

    def __init__(self, credentials: dict[str, str] | None) -> None:
        self._credentials = credentials

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        if self._credentials is None:
            return AuthResult(success=True, auth_data=user)
        password = auth_data.password.decode("utf-8", "replace")
        ok = self._credentials.get(user) == password
        # handled=False: aiosmtpd must send the 535 itself; with its default (True) it sends
        # nothing and the client waits for a reply that never comes.
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)


def address_problem(address: str) -> str | None:
    """Why the store could not hold ``address``, or None. aiosmtpd decodes command arguments
    with surrogateescape, so bytes that are not UTF-8 arrive as lone surrogates; neither they
    nor control characters (PostgreSQL refuses NUL) can be stored, and one such message in a
    group commit would fail the whole batch."""
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return "553 5.6.7 Address is not valid UTF-8"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in address):
        return "553 5.1.3 Address contains control characters"
    return None


def storable_text(text: str) -> str:
    """``text`` with undecodable bytes and NULs replaced, for informational fields (HELO)."""
    return (text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            .replace("\x00", "\ufffd"))


class SpoolingHandler:
    def __init__(self, spool: Spool, settings: Settings) -> None:
        self._spool = spool
        self._settings = settings

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads pipelined commands in order but does not say so in EHLO.
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        problem = address_problem(address)
        if problem:
            return problem
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        problem = address_problem(address)
        if problem:
            return problem
        if len(envelope.rcpt_tos) >= self._settings.max_recipients:
            return f"452 4.5.3 Too many recipients (at most {self._settings.max_recipients})"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        message = SpooledMessage(
            id=new_message_id(self._settings.smtp_hostname), tenant=self._settings.tenant,
            mail_from=envelope.mail_from or "", recipients=list(envelope.rcpt_tos),
            helo=storable_text(session.host_name or ""),
            peer=str(session.peer[0]) if session.peer else "",
            data=bytes(data))
        try:
            await self._spool.spool_message(message)
        except Exception:
            return "451 4.3.0 Message not stored: the store is unavailable, try again later"
        return f"250 2.0.0 OK: queued as {message.id}"


class CapturingSMTP(SMTP):
    """aiosmtpd's session with lines as long as the message itself.

    aiosmtpd refuses any line over RFC 5321's 1000 octets with "500 Line too long", and a body
    with bare LF line endings is one long line to it. Applications under test send both (minified
    HTML, ``\\n`` joined templates), and MailHog takes them; a test server must capture what the
    application really sends, so the only bound is the message size limit."""

    def __init__(self, handler: SpoolingHandler, *, data_size_limit: int, **options: Any) -> None:
        # Read by SMTP.__init__ to size its stream reader, so it must be set first. The slack
        # lets a line somewhat over the size limit still be answered 552 (too much data); one
        # longer than that gets aiosmtpd's 500, refused either way.
        self.line_length_limit = data_size_limit + 1024
        super().__init__(handler, data_size_limit=data_size_limit, **options)


def tls_context(settings: Settings) -> ssl.SSLContext:
    if settings.tls_cert_file and settings.tls_key_file:
        return server_context(settings.tls_cert_file, settings.tls_key_file)
    cert, key = ensure_self_signed(settings.data_dir, settings.smtp_hostname)
    return server_context(cert, key)


async def serve_smtp(spool: Spool, settings: Settings) -> asyncio.Server:
    handler = SpoolingHandler(spool, settings)
    credentials = load_credentials(settings.auth_file) if settings.auth_file else None
    context = tls_context(settings)
    authenticator = Authenticator(credentials)

    def session() -> SMTP:
        return CapturingSMTP(handler, data_size_limit=settings.max_message_size,
                             enable_SMTPUTF8=True, decode_data=False,
                             hostname=settings.smtp_hostname, ident="Pat", tls_context=context,
                             require_starttls=False, auth_require_tls=False,
                             auth_required=False, authenticator=authenticator)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(session, settings.smtp_host, settings.smtp_port)
    log.info("SMTP listening on %s:%d", settings.smtp_host, settings.smtp_port)
    return server
