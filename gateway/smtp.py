"""The SMTP gateway: aiosmtpd sessions served on the application's own event loop.

Policy (size, recipients, authentication, TLS, connections, tenants) lives here; aiosmtpd parses
the protocol. A message is answered 250 only once the spool has committed it; any store failure
answers 451 so the sender retries and nothing is lost."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from pathlib import Path
from typing import Any, AnyStr, cast

from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
)

from pat.domain import SpooledMessage, new_message_id
from pat.settings import Settings
from pat.spool import Spool, SpoolFull
from pat.tls import ensure_self_signed, server_context

log = logging.getLogger(__name__)

AUTH_REQUIRED = "530 5.7.0 Authentication required"
LINE_TOO_LONG = "500 5.5.2 Line too long"
SPOOL_FULL = "452 4.3.1 Insufficient system storage, try again later"
INTERNAL_ERROR = "451 4.3.0 Internal error, try again later"
TOO_MANY_CONNECTIONS = b"421 4.7.0 Too many connections, try again later\r\n"

# The longest line read outside DATA. RFC 5321 allows 512 octets for a command (aiosmtpd
# refuses longer ones), but RFC 4954 lets an answer to an AUTH challenge run to 12,288: this
# leaves room for long credentials while a line without end costs at most a few KB to refuse.
COMMAND_LINE_LIMIT = 4096

# aiosmtpd's own wording of two refusals, given Pat's (with an RFC 3463 enhanced status code,
# as every other reply of the gateway has).
_PAT_WORDING = {
    "500 Command line too long": LINE_TOO_LONG,
    "530 Must issue a STARTTLS command first": "530 5.7.0 Must issue a STARTTLS command first",
}
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")

TENANT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
NOT_A_TENANT = ("535 5.7.8 User name is not a valid tenant name (1 to 64 letters, digits, '.', "
                "'_' or '-')")


def printable_reply(status: str | bytes) -> bytes:
    """``status`` as one line of printable ASCII, in Pat's wording.

    aiosmtpd puts client text in some replies (the unknown command, VRFY's argument): a NUL, a
    bare CR or LF, a terminal escape or an undecodable byte sent by a client must not come back
    to it, and must not split the reply line. Each is replaced by ``?``."""
    text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
    text = _PAT_WORDING.get(text, text)
    if not (text.isascii() and text.isprintable()):
        text = _NOT_PRINTABLE_ASCII.sub("?", text)
    return text.encode("ascii")


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


def auth_required(settings: Settings) -> bool:
    """Whether MAIL waits for a successful AUTH: as configured, else as soon as there is a
    credentials file (checking credentials that a sender may skip would protect nothing)."""
    if settings.smtp_require_auth is not None:
        return settings.smtp_require_auth
    return settings.auth_file is not None


class Authenticator:
    """Accept any credentials (as MailHog does) unless a credentials file was configured. When
    the user name is the tenant, a name that cannot be one is refused whatever the password."""

    def __init__(self, credentials: dict[str, str] | None, *, user_is_tenant: bool) -> None:
        self._credentials = credentials
        self._user_is_tenant = user_is_tenant

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        # handled=False: aiosmtpd must send the 535 itself; with its default (True) it sends
        # nothing and the client waits for a reply that never comes.
        if self._user_is_tenant and not TENANT_NAME.match(user):
            return AuthResult(success=False, handled=False, message=NOT_A_TENANT)
        if self._credentials is None:
            return AuthResult(success=True, auth_data=user)
        password = auth_data.password.decode("utf-8", "replace")
        ok = self._credentials.get(user) == password
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
        self._auth_required = auth_required(settings)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads pipelined commands in order but does not say so in EHLO.
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self._auth_required and not session.authenticated:
            return AUTH_REQUIRED
        problem = address_problem(address)
        if problem:
            return problem
        if self._spool.is_full():
            return SPOOL_FULL  # refused before the client spends the time to send the data
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
            id=new_message_id(self._settings.smtp_hostname), tenant=self._tenant_of(session),
            mail_from=envelope.mail_from or "", recipients=list(envelope.rcpt_tos),
            helo=storable_text(session.host_name or ""),
            peer=str(session.peer[0]) if session.peer else "",
            data=bytes(data))
        try:
            await self._spool.spool_message(message)
        except SpoolFull:
            return SPOOL_FULL
        except Exception:
            return "451 4.3.0 Message not stored: the store is unavailable, try again later"
        return f"250 2.0.0 OK: queued as {message.id}"

    def _tenant_of(self, session: Session) -> str:
        if (self._settings.smtp_tenant_from_auth and session.authenticated
                and isinstance(session.auth_data, str)):
            return session.auth_data
        return self._settings.tenant


class ConnectionSlots:
    """The SMTP sessions open at once, across the gateway's listeners."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open = 0

    def take(self) -> bool:
        if self._open >= self._limit:
            return False
        self._open += 1
        return True

    def release(self) -> None:
        self._open -= 1


class CapturingSMTP(SMTP):
    """aiosmtpd's session, with message lines as long as the message itself, command lines
    bounded, replies that never carry a client's control bytes, and a cap on open sessions.

    aiosmtpd refuses any line over RFC 5321's 1000 octets with "500 Line too long", and a body
    with bare LF line endings is one long line to it. Applications under test send both (minified
    HTML, ``\\n`` joined templates), and MailHog takes them; a test server must capture what the
    application really sends, so inside DATA the only bound is the message size limit. Outside
    DATA a line is a command, and one longer than ``COMMAND_LINE_LIMIT`` is refused after
    reading at most that much of it at a time."""

    # Read by SMTP.__init__ to size its stream reader: the command line bound.
    line_length_limit = COMMAND_LINE_LIMIT

    def __init__(self, handler: SpoolingHandler, *, slots: ConnectionSlots,
                 data_size_limit: int, **options: Any) -> None:
        super().__init__(handler, data_size_limit=data_size_limit, **options)
        self._slots = slots
        self._holds_slot = False
        # The slack lets a line somewhat over the size limit still be answered 552 (too much
        # data); one longer than that gets aiosmtpd's 500, refused either way.
        self._data_line_limit = data_size_limit + 1024

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd calls this again on the same connection once STARTTLS has succeeded.
        if self._original_transport is None:
            if not self._slots.take():
                cast(asyncio.WriteTransport, transport).write(TOO_MANY_CONNECTIONS)
                transport.close()
                return
            self._holds_slot = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if not self._holds_slot:  # refused at connection_made: aiosmtpd never saw it
            return
        # aiosmtpd calls this itself after a failed STARTTLS, so it may come twice.
        self._holds_slot = False
        self._slots.release()
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        # On the implicit TLS port the TLS layer still hands on a refused client's EOF after
        # close(), and aiosmtpd's handler of it needs the session that was never made.
        if not self._holds_slot:
            return False
        return super().eof_received()

    async def push(self, status: AnyStr) -> None:
        # A closing session gets no more replies. aiosmtpd goes on with the commands a client
        # pipelined after it closed the connection (too many unknown commands), and asyncio's
        # TLS transport logs a warning for each such write, or raises once closed twice.
        if self._writer.transport.is_closing():
            return
        await super().push(printable_reply(status))

    async def smtp_STARTTLS(self, arg: str) -> None:
        # aiosmtpd would start a second TLS layer inside the first (RFC 3207 forbids a second
        # STARTTLS), which asyncio's TLS transport cannot tear down when the client goes.
        if self._tls_protocol is not None:
            await self.push("503 5.5.1 TLS is already active")
            return
        # After "too many unrecognized commands" aiosmtpd closes the connection but goes on
        # with the commands the client had pipelined. Starting TLS then would hand the closing
        # connection to a TLS layer that never reports its end to this session: the session,
        # and its connection slot, would never be released.
        if self._writer.transport.is_closing():
            return
        await super().smtp_STARTTLS(arg)

    async def handle_exception(self, error: Exception) -> str:
        """The reply to whatever went wrong inside a session: the client learns only to try
        again, the operator reads the cause in the log."""
        if isinstance(error, TLSSetupException):
            log.info("STARTTLS handshake failed: %r", error.__cause__)
        elif self._writer.transport.is_closing():
            # The client has gone, or the session was ended (too many unknown commands) while
            # the rest of a burst was being read: asyncio's TLS transport then fails the read.
            log.info("SMTP session ended while reading: %r", error)
        else:
            log.error("SMTP session failed", exc_info=error)
        return INTERNAL_ERROR

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        try:
            return super()._getaddr(arg)
        except Exception:
            # aiosmtpd expects HeaderParseError for an address it cannot parse, but the email
            # package's parser also fails with IndexError or AttributeError (on '"' or '<a@[>').
            return None, None

    async def smtp_DATA(self, arg: str) -> None:
        self._read_lines_up_to(self._data_line_limit)
        try:
            await super().smtp_DATA(arg)
        finally:
            self._read_lines_up_to(COMMAND_LINE_LIMIT)

    def _read_lines_up_to(self, limit: int) -> None:
        # StreamReader has no public way to change its limit; aiosmtpd itself reaches into
        # the reader's state (its buffer, on STARTTLS) the same way.
        self._reader._limit = limit  # type: ignore[attr-defined]
        self.line_length_limit = limit

    async def challenge_auth(self, challenge: str | bytes, encode_to_b64: bool = True,
                             log_client_response: bool = False) -> Any:
        try:
            return await super().challenge_auth(challenge, encode_to_b64, log_client_response)
        except ValueError:  # StreamReader.readline: the answer is longer than a command line
            await self.push(LINE_TOO_LONG)
            return MISSING


class SmtpListeners:
    """The gateway's listening sockets: plain SMTP (with STARTTLS) and, if configured,
    implicit TLS."""

    def __init__(self, servers: list[asyncio.Server]) -> None:
        self._servers = servers

    def close(self) -> None:
        for server in self._servers:
            server.close()

    async def wait_closed(self) -> None:
        for server in self._servers:
            await server.wait_closed()


def tls_context(settings: Settings) -> ssl.SSLContext:
    if settings.tls_cert_file and settings.tls_key_file:
        return server_context(settings.tls_cert_file, settings.tls_key_file)
    cert, key = ensure_self_signed(settings.data_dir, settings.smtp_hostname)
    return server_context(cert, key)


async def serve_smtp(spool: Spool, settings: Settings) -> SmtpListeners:
    handler = SpoolingHandler(spool, settings)
    credentials = load_credentials(settings.auth_file) if settings.auth_file else None
    context = tls_context(settings)
    authenticator = Authenticator(credentials, user_is_tenant=settings.smtp_tenant_from_auth)
    slots = ConnectionSlots(settings.smtp_max_connections)

    def session(*, implicit_tls: bool) -> SMTP:
        # On the implicit TLS port the connection is encrypted from its first byte: STARTTLS
        # is neither offered nor required there, and AUTH is always offered.
        must_starttls = settings.smtp_require_tls and not implicit_tls
        return CapturingSMTP(handler, slots=slots, data_size_limit=settings.max_message_size,
                             enable_SMTPUTF8=True, decode_data=False,
                             hostname=settings.smtp_hostname, ident="Pat",
                             tls_context=None if implicit_tls else context,
                             require_starttls=must_starttls, auth_require_tls=must_starttls,
                             auth_required=False, authenticator=authenticator)

    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(lambda: session(implicit_tls=False),
                                        settings.smtp_host, settings.smtp_port)]
    log.info("SMTP listening on %s:%d", settings.smtp_host, settings.smtp_port)
    if settings.smtp_tls_port is not None:
        servers.append(await loop.create_server(lambda: session(implicit_tls=True),
                                                settings.smtp_host, settings.smtp_tls_port,
                                                ssl=context))
        log.info("SMTP over TLS listening on %s:%d", settings.smtp_host, settings.smtp_tls_port)
    return SmtpListeners(servers)
