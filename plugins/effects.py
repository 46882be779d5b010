"""Carrying out what a hook asked for: HTTP requests, SMTP messages and CSV rows.

The isolate has no network and no file system; a hook only records effects. Here Python checks
each one again (the plugin's own checks ran in its isolate, which it controls) against the
manifest's permissions and hosts and the operator's ``plugin_allowed_hosts``, then does it."""

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
from typing import Any
from urllib.parse import urlsplit

from pat.settings import Settings
from plugins.manifest import Manifest

NETWORK_TIMEOUT = 10.0
_EXPORT_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")


class EffectDenied(Exception):
    """The effect is not allowed; nothing was done."""


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
    host = host.lower()
    if not _matches(manifest.hosts, host, port):
        raise EffectDenied(f"{host}:{port} is not declared in the manifest's hosts")
    if not _matches(operator_hosts(settings), host, port):
        raise EffectDenied(f"{host}:{port} is not allowed by the operator "
                           "(PAT_PLUGIN_ALLOWED_HOSTS)")


def _need(manifest: Manifest, permission: str) -> None:
    if permission not in manifest.permissions:
        raise EffectDenied(f"the manifest does not declare the {permission!r} permission")


def _http(effect: dict[str, Any]) -> str:
    data = effect.get("body")
    headers = {str(k): str(v) for k, v in (effect.get("headers") or {}).items()}
    if data is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        str(effect["url"]), method=str(effect.get("method", "POST")), headers=headers,
        data=None if data is None else str(data).encode())
    try:
        with urllib.request.urlopen(request, timeout=NETWORK_TIMEOUT) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code} from {effect['url']}") from exc


def _smtp(effect: dict[str, Any]) -> str:
    message = EmailMessage()
    message["From"] = effect["from"] or "pat-plugin@localhost"
    message["To"] = ", ".join(effect["to"])
    message["Subject"] = effect["subject"]
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="pat.localhost")
    for name, value in (effect.get("headers") or {}).items():
        if not _HEADER_NAME.match(str(name)) or "\n" in str(value) or "\r" in str(value):
            raise EffectDenied(f"header {name!r} is not a valid header")
        message[str(name)] = str(value)
    message.set_content(effect["text"])
    with smtplib.SMTP(effect["host"], int(effect["port"]), timeout=NETWORK_TIMEOUT) as client:
        client.send_message(message)
    return f"sent to {', '.join(effect['to'])}"


def export_path(settings: Settings, tenant: str, plugin_id: str, name: str) -> Path:
    safe_tenant = re.sub(r"[^A-Za-z0-9_-]", "_", tenant) or "_"
    return settings.data_dir / "exports" / safe_tenant / plugin_id / f"{name}.csv"


def _csv(path: Path, row: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="", encoding="utf-8") as out:
        csv.writer(out).writerow(row)
    return f"row appended to {path.name}"


async def perform(effect: dict[str, Any], manifest: Manifest, settings: Settings,
                  tenant: str) -> str:
    """Carry out one effect; ``EffectDenied`` if it is not allowed, ``OSError`` if it failed."""
    kind = effect.get("kind")
    if kind == "http":
        _need(manifest, "http")
        url = urlsplit(str(effect.get("url", "")))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise EffectDenied(f"not an http(s) URL: {effect.get('url')!r}")
        _check_host(manifest, settings, url.hostname,
                    url.port or (443 if url.scheme == "https" else 80))
        return await asyncio.to_thread(_http, effect)
    if kind == "smtp":
        _need(manifest, "smtp")
        _check_host(manifest, settings, str(effect.get("host", "")), int(effect.get("port", 25)))
        return await asyncio.to_thread(_smtp, effect)
    if kind == "csv":
        _need(manifest, "export")
        name = str(effect.get("name", ""))
        if not _EXPORT_NAME.match(name):
            raise EffectDenied(f"export name {name!r} must be 1-64 of A-Z, a-z, 0-9, _ and -")
        path = export_path(settings, tenant, manifest.id, name)
        return await asyncio.to_thread(_csv, path, [str(v) for v in effect.get("row", [])])
    raise EffectDenied(f"unknown effect {kind!r}")
