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
        return AuthResult(success=ok, auth_data=user if ok else None)


class SpoolingHandler:
    def __init__(self, spool: Spool, settings: Settings) -> None:
        self._spool = spool
        self._settings = settings

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads pipelined commands in order but does not say so in EHLO.
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self._settings.max_recipients:
            return f"452 4.5.3 Too many recipients (at most {self._settings.max_recipients})"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        message = SpooledMessage(
            id=new_message_id(self._settings.smtp_hostname), tenant=self._settings.tenant,
            mail_from=envelope.mail_from or "", recipients=list(envelope.rcpt_tos),
            helo=session.host_name or "", peer=str(session.peer[0]) if session.peer else "",
            data=bytes(data))
        try:
            await self._spool.spool_message(message)
        except Exception:
            return "451 4.3.0 Message not stored: the store is unavailable, try again later"
        return f"250 2.0.0 OK: queued as {message.id}"


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
        return SMTP(handler, data_size_limit=settings.max_message_size, enable_SMTPUTF8=True,
                    decode_data=False, hostname=settings.smtp_hostname, ident="Pat",
                    tls_context=context, require_starttls=False, auth_require_tls=False,
                    auth_required=False, authenticator=authenticator)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(session, settings.smtp_host, settings.smtp_port)
    log.info("SMTP listening on %s:%d", settings.smtp_host, settings.smtp_port)
    return server
