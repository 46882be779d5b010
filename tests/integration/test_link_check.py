"""The network link check against a real HTTP server on loopback: refused unless private
addresses are allowed, each status reported, concurrency and time bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from compliance.links import LinkCheckConfig, check_links


class _Site(BaseHTTPRequestHandler):
    in_flight = 0
    most_in_flight = 0
    lock = threading.Lock()

    def do_HEAD(self) -> None:
        with _Site.lock:
            _Site.in_flight += 1
            _Site.most_in_flight = max(_Site.most_in_flight, _Site.in_flight)
        try:
            if self.path.startswith("/slow"):
                time.sleep(0.2 if self.path.startswith("/slowish") else 3)
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/ok")
            elif self.path == "/missing":
                self.send_response(404)
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        finally:
            with _Site.lock:
                _Site.in_flight -= 1

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Site.most_in_flight = 0
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_loopback_links_are_refused_unless_allowed(site: str) -> None:
    html = f'<a href="{site}/ok">ok</a>'
    found = await check_links(html, None, LinkCheckConfig(network=True))
    entry = found.details["urls"][0]
    assert entry["status"] == "refused" and "127.0.0.1" in entry["reason"]
    assert found.verdict == "neutral"
    assert _Site.most_in_flight == 0  # nothing reached the server


async def test_each_status_is_reported_and_redirects_are_not_followed(site: str) -> None:
    html = (f'<a href="{site}/ok">a</a><a href="{site}/missing">b</a>'
            f'<a href="{site}/moved">c</a><img src="{site}/ok.png">')
    found = await check_links(html, None, LinkCheckConfig(network=True, allow_private=True))
    statuses = {u["url"].removeprefix(site): u["status"] for u in found.details["urls"]}
    assert statuses == {"/ok": 200, "/missing": 404, "/moved": 302, "/ok.png": 200}
    moved = next(u for u in found.details["urls"] if u["url"].endswith("/moved"))
    assert moved["location"] == "/ok"
    assert found.verdict == "fail" and "/missing" in found.reason


async def test_concurrency_count_and_time_are_bounded(site: str) -> None:
    html = "".join(f'<a href="{site}/slowish/{i}">{i}</a>' for i in range(12))
    html += f'<a href="{site}/slow/forever">slow</a>'
    config = LinkCheckConfig(network=True, allow_private=True, concurrency=3, timeout=0.5,
                             max_links=10)
    started = time.monotonic()
    found = await check_links(html, None, config)
    assert time.monotonic() - started < 5
    assert _Site.most_in_flight <= 3
    checked = [u for u in found.details["urls"] if "status" in u]
    assert len(checked) == 10 and found.details["not_checked"] == 3
    unchecked = found.details["urls"][-1]
    assert unchecked["url"].endswith("/slow/forever") and "status" not in unchecked


async def test_a_link_that_does_not_answer_in_time_is_an_error(site: str) -> None:
    config = LinkCheckConfig(network=True, allow_private=True, timeout=0.5)
    found = await check_links(f'<a href="{site}/slow/x">x</a>', None, config)
    assert found.details["urls"][0]["status"] == "error"
    assert found.verdict == "fail"
