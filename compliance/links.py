"""Every link and image URL of a message and, when asked, each one's HTTP status.

Checking over the network is off unless the settings turn it on. When on, a URL whose host
resolves to a private, loopback, link-local or otherwise non-public address is refused unless
the settings allow it (a message must not make Pat probe the network it runs in); requests are
bounded in number, in concurrency and in time, and redirects are reported, not followed."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx

from compliance.result import CheckResult, Verdict, result

LINKS = "links"
_TEXT_URL = re.compile(r"https?://[^\s<>\"')\]]+", re.I)
_URL_ATTRIBUTES = {("a", "href"): "link", ("area", "href"): "link", ("img", "src"): "image",
                   ("td", "background"): "image", ("table", "background"): "image",
                   ("body", "background"): "image", ("link", "href"): "stylesheet",
                   ("source", "src"): "media", ("video", "poster"): "image"}


@dataclass(frozen=True)
class LinkCheckConfig:
    network: bool = False
    allow_private: bool = False
    concurrency: int = 8
    timeout: float = 5.0
    max_links: int = 100


class _Urls(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            kind = _URL_ATTRIBUTES.get((tag, name))
            if kind and value and value.strip():
                self.found.append((kind, value.strip()))


def extract_urls(html: str | None, text: str | None) -> list[dict[str, str]]:
    """Links and images in document order, each URL once (HTML first, then the text part)."""
    found: list[tuple[str, str]] = []
    if html:
        parser = _Urls()
        parser.feed(html)
        parser.close()
        found.extend(parser.found)
    if text:
        found.extend(("link", u.rstrip(".,;:!?")) for u in _TEXT_URL.findall(text))
    seen: set[str] = set()
    out: list[dict[str, str]] = []
    for kind, url in found:
        if url not in seen:
            seen.add(url)
            out.append({"url": url, "kind": kind, "scheme": urlsplit(url).scheme.lower()})
    return out


def _public(address: str) -> bool:
    return ipaddress.ip_address(address.split("%")[0]).is_global


async def _resolve(host: str) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


async def _check_one(client: httpx.AsyncClient, entry: dict[str, Any],
                     config: LinkCheckConfig) -> None:
    url = entry["url"]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        entry.update(status="skipped", reason=f"not an http(s) URL ({parts.scheme or 'none'})")
        return
    try:
        addresses = await asyncio.wait_for(_resolve(parts.hostname), config.timeout)
    except (OSError, TimeoutError) as exc:
        entry.update(status="error", reason=f"cannot resolve {parts.hostname}: {exc}")
        return
    private = [a for a in addresses if not _public(a)]
    if private and not config.allow_private:
        entry.update(status="refused", reason=f"{parts.hostname} resolves to non-public "
                     f"{', '.join(private)}; set PAT_LINK_CHECK_ALLOW_PRIVATE=true to check it")
        return
    try:
        response = await client.head(url)
        if response.status_code in (405, 501):
            response = await client.get(url)
    except httpx.HTTPError as exc:
        entry.update(status="error", reason=f"{type(exc).__name__}: {exc}".rstrip(": "))
        return
    entry.update(status=response.status_code, reason=response.reason_phrase)
    if response.is_redirect:
        entry["location"] = response.headers.get("location")


async def check_links(html: str | None, text: str | None, config: LinkCheckConfig) -> CheckResult:
    urls = extract_urls(html, text)
    details: dict[str, Any] = {"urls": urls, "checked": config.network}
    if not urls:
        return result(LINKS, Verdict.none, "the message has no links or images", **details)
    if not config.network:
        return result(LINKS, Verdict.neutral, f"{len(urls)} URL(s) listed; network checking "
                      "is off (PAT_LINK_CHECK_NETWORK)", **details)
    to_check = urls[:config.max_links]
    details["not_checked"] = len(urls) - len(to_check)
    limit = asyncio.Semaphore(config.concurrency)

    async def bounded(entry: dict[str, Any]) -> None:
        async with limit:
            try:
                await asyncio.wait_for(_check_one(client, entry, config), config.timeout * 2)
            except TimeoutError:
                entry.update(status="error", reason=f"no answer within {config.timeout * 2:g}s")

    async with httpx.AsyncClient(timeout=config.timeout, follow_redirects=False,
                                 headers={"User-Agent": "Pat link check"}) as client:
        await asyncio.gather(*(bounded(e) for e in to_check))
    broken = [e for e in to_check if e.get("status") == "error"
              or (isinstance(status := e.get("status"), int) and status >= 400)]
    refused = [e for e in to_check if e.get("status") == "refused"]
    if broken:
        return result(LINKS, Verdict.fail, f"{len(broken)} of {len(to_check)} URL(s) are "
                      f"broken (first: {broken[0]['url']} -> {broken[0]['status']})", **details)
    if refused:
        return result(LINKS, Verdict.neutral, f"{len(refused)} URL(s) point at non-public "
                      "addresses and were not checked", **details)
    return result(LINKS, Verdict.passed, f"all {len(to_check)} checked URL(s) answer",
                  **details)
