"""What a hook may ask Pat to do: HTTP requests, SMTP messages and CSV rows.

The isolate has no network and no file system; a hook only records effects, and its record is
data from code the plugin controls. Each effect is parsed here into a typed value (exactly its
fields, each bounded), checked against the manifest's permissions and hosts and the operator's
``plugin_allowed_hosts``, and only then carried out, after the hook has returned.

``perform`` is given an idempotency key with each effect (``PluginHost`` records it in the store
before and after), and HTTP requests send it as ``Idempotency-Key`` so that the receiver can
deduplicate too. Redirects are never followed: the allowlist names the hosts a plugin may reach,
and a 3xx would lead anywhere."""

from __future__ import annotations

import asyncio
import csv
import re
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pat.settings import Settings
from plugins.manifest import Manifest

NETWORK_TIMEOUT = 10.0
MAX_HEADERS = 50
MAX_HEADER_CHARS = 998  # RFC 5322's line length
MAX_URL_CHARS = 2048
MAX_BODY_CHARS = 256 * 1024
MAX_RECIPIENTS = 50
MAX_MAIL_TEXT_CHARS = 256 * 1024
MAX_CSV_VALUES = 200
MAX_CSV_CHARS = 10_000
# Fields that only Pat or the connection itself may set: Host would aim a request at a host the
# allowlist does not name, the framing fields would let a plugin smuggle a second request.
FORBIDDEN_HTTP_HEADERS = ("host", "content-length", "transfer-encoding", "connection",
                          "keep-alive", "te", "trailer", "upgrade", "expect", "idempotency-key")
FORBIDDEN_HTTP_PREFIXES = ("proxy-",)
# Pat writes these from the effect's own fields; recipients are only ever the effect's `to`.
FORBIDDEN_MAIL_HEADERS = ("from", "to", "cc", "bcc", "subject", "date", "message-id",
                          "mime-version", "content-type", "content-transfer-encoding")

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,76}$")
_HTTP_URL = re.compile(r"^(https?)://([a-z0-9.-]+)(?::([0-9]{1,5}))?(?:[/?#]|$)", re.IGNORECASE)
_UNSAFE_URL = re.compile(r"[\s\\\x00-\x1f\x7f]")
_HOST = re.compile(r"^[a-z0-9.-]{1,253}$")
_EXPORT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class EffectDenied(Exception):
    """The effect is not allowed; nothing was done."""


class EffectFailed(Exception):
    """An allowed effect was tried and did not succeed; the message says what happened."""


def _header_name(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise ValueError(f"{name[:80]!r} is not a header name")
    return name


def _one_line(value: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError("must be one line without NUL characters")
    return value


def _latin1(value: str) -> str:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError("HTTP header values must be ISO-8859-1 text") from exc
    return value


def _http_url(url: str) -> str:
    found = _HTTP_URL.match(url)
    if found is None or _UNSAFE_URL.search(url):
        raise ValueError("not an absolute http:// or https:// URL without credentials, spaces "
                         "or backslashes")
    if found.group(3) is not None and not 1 <= int(found.group(3)) <= 65535:
        raise ValueError("the port must be from 1 to 65535")
    return url


def _host(host: str) -> str:
    if not _HOST.match(host):
        raise ValueError("not a lower-case host name")
    return host


def _export_name(name: str) -> str:
    if not _EXPORT_NAME.match(name):
        raise ValueError("export names are 1-64 of A-Z, a-z, 0-9, _ and -")
    return name


HeaderName = Annotated[str, AfterValidator(_header_name)]
OneLine = Annotated[str, Field(max_length=MAX_HEADER_CHARS), AfterValidator(_one_line)]
HttpHeaderValue = Annotated[OneLine, AfterValidator(_latin1)]


class StrictModel(BaseModel):
    """A value parsed from an isolate's output: exactly these fields, of exactly these types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class HttpEffect(StrictModel):
    kind: Literal["http"]
    method: Literal["GET", "POST"]
    url: Annotated[str, Field(max_length=MAX_URL_CHARS), AfterValidator(_http_url)]
    headers: dict[HeaderName, HttpHeaderValue] = Field(max_length=MAX_HEADERS)
    body: Annotated[str, Field(max_length=MAX_BODY_CHARS)] | None

    @property
    def target(self) -> str:
        return self.url


class SmtpEffect(StrictModel):
    kind: Literal["smtp"]
    host: Annotated[str, AfterValidator(_host)]
    port: int = Field(ge=1, le=65535)
    sender: OneLine = Field(alias="from")
    to: list[OneLine] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    subject: OneLine
    text: str = Field(max_length=MAX_MAIL_TEXT_CHARS)
    headers: dict[HeaderName, OneLine] = Field(max_length=MAX_HEADERS)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


class CsvEffect(StrictModel):
    kind: Literal["csv"]
    name: Annotated[str, AfterValidator(_export_name)]
    row: list[Annotated[str, Field(max_length=MAX_CSV_CHARS)]] = Field(max_length=MAX_CSV_VALUES)

    @property
    def target(self) -> str:
        return self.name


Effect = Annotated[HttpEffect | SmtpEffect | CsvEffect, Field(discriminator="kind")]

# What the isolate's own checks are told, so that they refuse what Python would refuse.
SANDBOX_RULES: dict[str, Any] = {
    "forbidden_http_headers": list(FORBIDDEN_HTTP_HEADERS),
    "forbidden_http_prefixes": list(FORBIDDEN_HTTP_PREFIXES),
    "forbidden_mail_headers": list(FORBIDDEN_MAIL_HEADERS),
}
SANDBOX_LIMITS: dict[str, int] = {
    "headers": MAX_HEADERS, "header_chars": MAX_HEADER_CHARS, "url_chars": MAX_URL_CHARS,
    "body_chars": MAX_BODY_CHARS, "recipients": MAX_RECIPIENTS, "csv_values": MAX_CSV_VALUES,
    "csv_chars": MAX_CSV_CHARS,
}


def operator_hosts(settings: Settings) -> list[str]:
    return [h.strip().lower() for h in settings.plugin_allowed_hosts.split(",") if h.strip()]


def _matches(entries: list[str], host: str, port: int) -> bool:
    return any(entry in (host, f"{host}:{port}") for entry in entries)


def reachable_hosts(manifest: Manifest, settings: Settings) -> list[str]:
    """Hosts a plugin may reach: declared by its manifest and allowed by the operator."""
    allowed = operator_hosts(settings)
    result: list[str] = []
    for declared in manifest.hosts:
        host, _, port = declared.partition(":")
        if declared in allowed or (port and host in allowed):
            result.append(declared)
        elif not port:
            result += [entry for entry in allowed if entry.partition(":")[0] == host]
    return result


def _check_host(manifest: Manifest, settings: Settings, host: str, port: int) -> None:
    if not _matches(manifest.hosts, host, port):
        raise EffectDenied(f"{host}:{port} is not declared in the manifest's hosts")
    if not _matches(operator_hosts(settings), host, port):
        raise EffectDenied(f"{host}:{port} is not allowed by the operator "
                           "(PAT_PLUGIN_ALLOWED_HOSTS)")


def _need(manifest: Manifest, permission: str) -> None:
    if permission not in manifest.permissions:
        raise EffectDenied(f"the manifest does not declare the {permission!r} permission")


def _check_fields(names: list[str], forbidden: tuple[str, ...], prefixes: tuple[str, ...],
                  what: str) -> None:
    for name in names:
        lowered = name.lower()
        if lowered in forbidden or lowered.startswith(prefixes):
            raise EffectDenied(f"{what} may not set the {name} header: Pat sets it, or it is not "
                               "the plugin's to set")


def authorize(effect: HttpEffect | SmtpEffect | CsvEffect, manifest: Manifest,
              settings: Settings) -> None:
    """Raise ``EffectDenied`` unless the plugin may ask for ``effect``."""
    if isinstance(effect, HttpEffect):
        _need(manifest, "http")
        url = urlsplit(effect.url)
        assert url.hostname is not None  # _http_url made sure of it
        _check_host(manifest, settings, url.hostname,
                    url.port or (443 if url.scheme == "https" else 80))
        _check_fields(list(effect.headers), FORBIDDEN_HTTP_HEADERS, FORBIDDEN_HTTP_PREFIXES,
                      "pat.http")
    elif isinstance(effect, SmtpEffect):
        _need(manifest, "smtp")
        _check_host(manifest, settings, effect.host, effect.port)
        _check_fields(list(effect.headers), FORBIDDEN_MAIL_HEADERS, (), "pat.email.send")
    else:
        _need(manifest, "export")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx, which is reported


_OPENER = urllib.request.build_opener(_NoRedirects)


def _http(effect: HttpEffect, idempotency_key: str) -> str:
    headers = dict(effect.headers)
    if effect.body is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    headers["Idempotency-Key"] = idempotency_key
    request = urllib.request.Request(
        effect.url, method=effect.method, headers=headers,
        data=None if effect.body is None else effect.body.encode())
    try:
        with _OPENER.open(request, timeout=NETWORK_TIMEOUT) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            location = (exc.headers.get("Location") or "")[:200]
            raise EffectFailed(f"HTTP {exc.code} from {effect.url}: redirects are not followed"
                               + (f" (Location: {location})" if location else "")) from exc
        raise EffectFailed(f"HTTP {exc.code} from {effect.url}") from exc


def _smtp(effect: SmtpEffect) -> str:
    message = EmailMessage()
    message["From"] = effect.sender or "pat-plugin@localhost"
    message["To"] = ", ".join(effect.to)
    message["Subject"] = effect.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="pat.localhost")
    for name, value in effect.headers.items():
        message[name] = value
    message.set_content(effect.text)
    with smtplib.SMTP(effect.host, effect.port, timeout=NETWORK_TIMEOUT) as client:
        client.send_message(message)
    return f"sent to {', '.join(effect.to)}"


def export_path(settings: Settings, tenant: str, plugin_id: str, name: str) -> Path:
    safe_tenant = re.sub(r"[^A-Za-z0-9_-]", "_", tenant) or "_"
    return settings.data_dir / "exports" / safe_tenant / plugin_id / f"{name}.csv"


def _csv(path: Path, row: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="", encoding="utf-8") as out:
        csv.writer(out).writerow(row)
    return f"row appended to {path.name}"


async def perform(effect: HttpEffect | SmtpEffect | CsvEffect, manifest: Manifest,
                  settings: Settings, tenant: str, idempotency_key: str) -> str:
    """Carry out one authorized effect and say what it did; ``EffectFailed`` if it did not."""
    try:
        if isinstance(effect, HttpEffect):
            return await asyncio.to_thread(_http, effect, idempotency_key)
        if isinstance(effect, SmtpEffect):
            return await asyncio.to_thread(_smtp, effect)
        path = export_path(settings, tenant, manifest.id, effect.name)
        return await asyncio.to_thread(_csv, path, effect.row)
    except EffectFailed:
        raise
    except Exception as exc:
        # The network and the file system fail in many ways (OSError, http.client's and
        # smtplib's own errors, an encoding a server refuses...): each is this effect's result.
        raise EffectFailed(f"{type(exc).__name__}: {exc}") from exc
