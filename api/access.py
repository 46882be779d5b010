"""Who may call Pat's HTTP port, and from where.

Every request and websocket passes three checks, in this order:

1. **Host.** The ``Host`` header must name Pat: a localhost name, the address Pat listens on,
   or one of ``PAT_HTTP_ALLOWED_HOSTS``. A page on ``evil.example`` whose name an attacker
   re-points at 127.0.0.1 (DNS rebinding) sends ``Host: evil.example`` and gets 421.
2. **Origin.** A browser says which page a request comes from. A websocket, an event stream,
   a change (any method but GET and HEAD) or a script's read (``Sec-Fetch-Mode: cors``) whose
   ``Origin`` is not Pat's own — including ``null``, the origin of sandboxed frames — gets
   403. This is what keeps a page the developer happens to visit from opening
   ``/api/v2/websocket`` and reading every captured mail, or from deleting messages. Plain
   loads of images and links (``no-cors``, ``navigate``) pass: a message's sandboxed body
   (origin ``null``) shows its inline images that way, and nothing a page loads like that can
   be read by its script.
3. **Credentials**, once access control is on (``PAT_UI_AUTH_FILE`` is set or an API key
   exists; off otherwise, as MailHog and Mailpit are by default): HTTP Basic auth against the
   htpasswd file, or an API key (``Authorization: Bearer <key>``, or as the Basic password).
   A missing or wrong one gets 401; a key without the scope a route needs gets 403 naming it.

``/healthz`` and ``/readyz`` are exempt from all three, so that probes from anywhere work.
The caller is left in the ASGI scope's state as a ``Principal``; a key bound to a tenant
makes every route show that tenant's messages only."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bcrypt

from pat.settings import Settings
from pat.store.keys import ApiKeyStore, Scope, looks_like_key

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})
EVENT_STREAM_PATHS = frozenset({"/api/v1/events", "/api/v3/events", "/api/events"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# A verified Basic password is remembered this long: bcrypt costs ~0.1-0.3 s per check, and a
# UI page makes several requests.
_VERIFIED_SECONDS = 300.0
_KEYS_EXIST_SECONDS = 2.0


class AccessConfigError(ValueError):
    """The access settings cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``open`` when access control is off, else a Basic user or a key."""

    kind: str
    name: str
    scope: Scope
    tenant: str | None = None


OPEN = Principal(kind="open", name="anonymous", scope=Scope.admin)


def load_htpasswd(path: Path) -> dict[str, bytes]:
    """``user:bcrypt-hash`` per line (``htpasswd -B``); blank lines and ``#`` comments are
    skipped. Other hash kinds (MD5, SHA-1, crypt) are refused: they are weak."""
    users: dict[str, bytes] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise AccessConfigError(f"cannot read PAT_UI_AUTH_FILE {path}: {exc.strerror}") from exc
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise AccessConfigError(f"{path}:{number}: expected 'user:hash'")
        if not hashed.startswith(_BCRYPT_PREFIXES):
            raise AccessConfigError(f"{path}:{number}: the password of {user!r} is not a bcrypt "
                                    "hash; make it with `htpasswd -B`")
        users[user] = hashed.encode()
    if not users:
        raise AccessConfigError(f"PAT_UI_AUTH_FILE {path} names no user")
    return users


def allowed_host_names(settings: Settings) -> frozenset[str] | None:
    """The names the Host header may carry; None means any (``PAT_HTTP_ALLOWED_HOSTS=*``)."""
    configured = {h.strip().lower().strip("[]") for h in settings.http_allowed_hosts.split(",")
                  if h.strip()}
    if "*" in configured:
        return None
    names = set(LOCAL_NAMES) | configured
    bind = settings.http_host.strip().lower().strip("[]")
    if bind and not _is_wildcard(bind):
        names.add(bind)
    return frozenset(names)


def _is_wildcard(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name in a ``Host`` header, without the port, lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def required_scope(method: str, path: str) -> Scope:
    """The scope a request needs: plugin changes need admin, every other change write, every
    read (and the live streams) read."""
    if method in SAFE_METHODS:
        return Scope.read
    if path.startswith("/api/v3/plugins"):
        return Scope.admin
    return Scope.write


class AccessPolicy:
    """The checks; ``keys`` is set once the store is open (the app's lifespan)."""

    def __init__(self, settings: Settings) -> None:
        self.hosts = allowed_host_names(settings)
        self.users = load_htpasswd(settings.ui_auth_file) if settings.ui_auth_file else None
        self.keys: ApiKeyStore | None = None
        self._verified: dict[tuple[str, str], float] = {}
        self._keys_exist = False
        self._keys_checked = -_KEYS_EXIST_SECONDS

    def host_allowed(self, host_header: str | None) -> bool:
        if self.hosts is None:
            return True
        return bool(host_header) and host_name(host_header or "") in self.hosts

    async def enforced(self) -> bool:
        if self.users is not None:
            return True
        now = time.monotonic()
        if self.keys is not None and now - self._keys_checked > _KEYS_EXIST_SECONDS:
            self._keys_exist = await self.keys.any_active()
            self._keys_checked = now
        return self._keys_exist

    async def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller named by an ``Authorization`` header, or None."""
        if not authorization:
            return None
        kind, _, credentials = authorization.strip().partition(" ")
        credentials = credentials.strip()
        if kind.lower() == "bearer":
            return await self._key(credentials)
        if kind.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(credentials, validate=True).decode(
                "utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep:
            return None
        if self.users is not None and user in self.users:
            if await self._password_ok(user, password):
                return Principal(kind="basic", name=user, scope=Scope.admin)
            return None
        return await self._key(password) if looks_like_key(password) else None

    async def _key(self, key: str) -> Principal | None:
        if self.keys is None or not looks_like_key(key):
            return None
        info = await self.keys.lookup(key)
        if info is None:
            return None
        return Principal(kind="key", name=info.id, scope=info.scope, tenant=info.tenant)

    async def _password_ok(self, user: str, password: str) -> bool:
        assert self.users is not None
        remembered = (user, hashlib.sha256(password.encode()).hexdigest())
        now = time.monotonic()
        if self._verified.get(remembered, 0.0) > now:
            return True
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), self.users[user])
        if ok:
            if len(self._verified) > 1000:
                self._verified.clear()
            self._verified[remembered] = now + _VERIFIED_SECONDS
        return ok


def _headers(scope: MutableMapping[str, Any]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", [])}


def _origin_matters(scope: MutableMapping[str, Any], path: str, headers: dict[str, str]) -> bool:
    """Whether a foreign Origin must be refused: for what could read or change mail."""
    return (scope["type"] == "websocket" or scope.get("method") not in ("GET", "HEAD")
            or path in EVENT_STREAM_PATHS or headers.get("sec-fetch-mode") == "cors")


def _same_origin(origin: str, host_header: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()


class AccessMiddleware:
    """Applies an ``AccessPolicy`` to every HTTP request and websocket."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive,
                       send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host", "")
        if not self.policy.host_allowed(host):
            await _refuse(scope, send, 421, f"this server does not answer to the host name "
                          f"{host_name(host)!r}; add it to PAT_HTTP_ALLOWED_HOSTS if it is Pat's")
            return
        origin = headers.get("origin")
        if origin is not None and not _same_origin(origin, host) and _origin_matters(
                scope, path, headers):
            await _refuse(scope, send, 403, f"requests from other origins ({origin[:200]}) are "
                          "refused: Pat's API is not for other web pages")
            return
        principal = OPEN
        if await self.policy.enforced():
            found = await self.policy.authenticate(headers.get("authorization"))
            if found is None:
                await _refuse(scope, send, 401, "authentication required: HTTP Basic auth "
                              "(PAT_UI_AUTH_FILE) or an API key (Authorization: Bearer <key>)",
                              challenge=True)
                return
            method = "GET" if scope["type"] == "websocket" else scope.get("method", "GET")
            needed = required_scope(method, path)
            if not found.scope.allows(needed):
                await _refuse(scope, send, 403, f"this needs the {needed.value!r} scope; the "
                              f"key has {found.scope.value!r}")
                return
            principal = found
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _refuse(scope: MutableMapping[str, Any], send: Send, status: int, error: str, *,
                  challenge: bool = False) -> None:
    if scope["type"] == "websocket":
        # Closing before the handshake is accepted answers it with 403.
        await send({"type": "websocket.close", "code": 1008, "reason": error[:120]})
        return
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", b'Basic realm="Pat", charset="UTF-8"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
