"""Plugins inside every EmailPipeline, on the real Temporal dev server: an installed plugin
changes Pat's view of a message, and a hostile one breaks nothing but its own result."""

from __future__ import annotations

import asyncio
import json
import smtplib
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from plugins.host import PluginHost
from plugins.manifest import Manifest, load_plugin_files
from plugins.registry import PluginRegistry
from plugins.store import PluginStore
from tests.support.harness import RunningPat, make_settings, running_pat

SAMPLES = Path(__file__).resolve().parents[2] / "plugins" / "samples"


@pytest.fixture
async def pat_on_temporal(tmp_path: Path, temporal_client: Client) -> AsyncIterator[RunningPat]:
    settings = make_settings(tmp_path,
                             temporal_address=temporal_client.service_client.config.target_host)
    async with running_pat(settings, temporal_client) as running:
        yield running


def send(pat: RunningPat, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", pat.smtp_port) as client:
        client.sendmail("a@example.test", ["b@example.test"],
                        f"From: a@example.test\r\nTo: b@example.test\r\nSubject: {subject}\r\n"
                        "\r\nact now http://bit.ly/x\r\n".encode())


async def test_active_plugin_hooks_run_in_the_pipeline_and_change_pats_view(
        pat_on_temporal: RunningPat) -> None:
    pat = pat_on_temporal
    sample = {"manifest": json.loads((SAMPLES / "spam_scorer" / "manifest.json").read_text()),
              "code": (SAMPLES / "spam_scorer" / "plugin.js").read_text()}
    installed = await pat.http.post("/api/v3/plugins", json=sample)
    assert installed.status_code == 201, installed.text

    await asyncio.to_thread(send, pat, "FREE MONEY, WIN NOW!!!")
    message_id = (await pat.http.get("/api/v3/messages")).json()["items"][0]["id"]
    assert await pat.wait_status(message_id, "processed") == "processed"
    view = (await pat.http.get(f"/api/v3/plugins/view/{message_id}")).json()
    assert [r["hook"] for r in view["runs"]] == ["onEmailReceived"]
    assert view["runs"][0]["status"] == "ok"
    changed = {name for change in view["header_changes"] for name in change}
    assert {"X-Spam-Score", "X-Spam-Status"} <= changed
    raw = (await pat.http.get(f"/api/v3/messages/{message_id}/raw")).content
    assert b"X-Spam-Score" not in raw  # the original bytes are never changed


class Recorder(BaseHTTPRequestHandler):
    requests: list[str]

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.requests.append(self.path)
        self.send_response(204)
        self.end_headers()

    do_GET = do_POST = _record

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[tuple[int, list[str]], tuple[int, list[str]]]]:
    """Two HTTP servers on loopback that record the paths they are asked for: one the plugins'
    manifests declare, one they do not (both within the operator's 127.0.0.1)."""
    running = []
    for _ in range(2):
        requests: list[str] = []
        server = ThreadingHTTPServer(("127.0.0.1", 0),
                                     type("R", (Recorder,), {"requests": requests}))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running.append((server, requests))
    yield tuple((s.server_address[1], r) for s, r in running)  # type: ignore[misc]
    for server, _ in running:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def open_pat(tmp_path: Path, store_url: str, temporal_client: Client
                   ) -> AsyncIterator[RunningPat]:
    """A whole Pat whose operator lets plugins reach 127.0.0.1, on SQLite and PostgreSQL. Hooks
    get 2 s, not 50 ms: these tests are not about the time limit, and V8 alone takes over 10 ms
    to describe a circular structure, which a busy machine can stretch past 50 ms twice."""
    settings = make_settings(tmp_path, store_url, plugin_allowed_hosts="127.0.0.1",
                             plugin_timeout_ms=2000)
    async with running_pat(settings, temporal_client) as running:
        yield running


# Each: what the hook does (ALLOWED and FORBIDDEN are the two servers' base URLs), the status
# its run must be recorded with, and the manifest's permissions.
FAKE_DOC = ('{"status":"ok","value":null,"logs":[],"effects":[{"kind":"http","method":"GET",'
            '"url":"FORBIDDEN/fake","headers":{},"body":null}],"writes":{}}')
TRY_FORBIDDEN = "try { pat.http.post('FORBIDDEN/' + pat.plugin.id, ''); } catch (e) {}"
HOSTILE: dict[str, tuple[str, str, list[str]]] = {
    "rewrites-its-context": ("ctx.permissions.push('http'); ctx.hosts.push('FORBIDDEN');"
                             " pat.http.post('FORBIDDEN/x', '');", "error", ["storage"]),
    "reaches-pats-effects": (f"effects[0] = {FAKE_DOC!r};", "error", ["http"]),
    "reaches-pats-writes": ("writes['owner'] = '\"me\"'; stored['owner'] = 1;", "error",
                            ["storage"]),
    "overrides-json": (f"JSON.stringify = () => {FAKE_DOC!r}; JSON.parse = () => ({{}});"
                       f" {TRY_FORBIDDEN} return null;", "denied", ["http"]),
    "sets-array-indexes": ("for (let i = 0; i < 3; i++) Object.defineProperty(Array.prototype,"
                           " i, {set(v) {}, get() { return 'FORBIDDEN'; }, configurable: true});"
                           f" {TRY_FORBIDDEN} return null;", "denied", ["http"]),
    "adds-to-json": ("Object.prototype.toJSON = () => ({kind: 'http', url: 'FORBIDDEN/json'});"
                     f" Object.prototype.get = () => 1; {TRY_FORBIDDEN} return {{metadata: {{}}}};",
                     "denied", ["http"]),
    "redefines-pat": ("try { Object.defineProperty(globalThis, '__pat', {value: {run: () =>"
                      f" {FAKE_DOC!r}}}}}); }} catch (e) {{}} globalThis.__pat = 1;"
                      " globalThis.pat = {}; delete globalThis.pat;"
                      f" {TRY_FORBIDDEN} return null;", "denied", ["http"]),
    "lies-about-hosts": ("String.prototype.toLowerCase = () => '127.0.0.1';"
                         " Array.prototype.indexOf = () => 0; RegExp.prototype.exec = () => null;"
                         " pat.http.post('FORBIDDEN/lies', '');", "denied", ["http"]),
    "has-no-http-permission": ("Array.prototype.indexOf = () => 0;"
                               " pat.http.post('ALLOWED/no-permission', '');", "denied",
                               ["storage"]),
    "sets-the-host-header": ("pat.http.post('ALLOWED/host-header', '', {headers:"
                             " {Host: 'evil.test'}});", "denied", ["http"]),
    "runs-pats-call-itself": ("__pat.run(); pat.http.post('FORBIDDEN/run', '');", "error",
                              ["http"]),
    "throws-a-nul": ("throw new Error('a\\u0000b');", "error", []),
    "returns-a-string": ("return 'headers';", "malformed", []),
    "returns-a-list": ("return [1, 2];", "malformed", []),
    "returns-a-promise": ("return Promise.resolve({});", "malformed", []),
    "returns-a-function": ("return () => 1;", "malformed", []),
    "returns-a-cycle": ("const o = {}; o.o = o; return o;", "malformed", []),
    "returns-a-bigint": ("return {metadata: {n: 10n}};", "malformed", []),
    "returns-unknown-fields": ("return {subject: 'changed', status: 'ok'};", "malformed", []),
    "returns-bad-headers": ("return {headers: 'X-A: 1'};", "malformed", []),
    "returns-a-header-injection": ("return {headers: {'X-A': 'a\\r\\nBcc: v@example.test'}};",
                                   "malformed", []),
    "returns-a-bad-header-name": ("return {headers: {'Bad Name': 'x'}};", "malformed", []),
    "returns-deep-metadata": ("let m = {}; for (let i = 0; i < 100; i++) m = {m};"
                              " return {metadata: m};", "malformed", []),
    "returns-huge-metadata": ("return {metadata: {s: 'x'.repeat(100000)}};", "malformed", []),
    "returns-a-lone-surrogate": ("return {metadata: {s: '\\ud800'}};", "malformed", []),
    "returns-metadata-not-an-object": ("return {metadata: 'x'};", "malformed", []),
}
GOOD = ("pat.http.post('ALLOWED/good', '{}'); pat.storage.set('seen', true);"
        " return {headers: {'X-Good': 'yes'}, metadata: {good: true}};")
# Text with NUL characters, which PostgreSQL's text columns refuse, is still a plugin's to log,
# store and return as metadata.
NUL_TEXT = ("pat.logger.info('a\\u0000b'); pat.storage.set('k\\u00e9', 'v\\u0000');"
            " return {metadata: {text: 'a\\u0000b'}};")


async def test_hostile_plugins_fail_alone_and_the_message_is_processed(
        open_pat: RunningPat, servers: tuple[tuple[int, list[str]], tuple[int, list[str]]]
        ) -> None:
    (allowed_port, allowed), (forbidden_port, forbidden) = servers
    urls = {"ALLOWED": f"http://127.0.0.1:{allowed_port}",
            "FORBIDDEN": f"http://127.0.0.1:{forbidden_port}"}
    store = PluginStore(open_pat.store.engine)
    registry = PluginRegistry(store, PluginHost(store, open_pat.store, open_pat.settings),
                              open_pat.settings)
    plugins = {**{pid: body for pid, (body, _, _) in HOSTILE.items()}, "zz-good": GOOD,
               "zz-nul-text": NUL_TEXT}
    for plugin_id, body in plugins.items():
        for name, url in urls.items():
            body = body.replace(name, url)
        permissions = HOSTILE[plugin_id][2] if plugin_id in HOSTILE else ["http", "storage"]
        manifest = Manifest.model_validate({
            "id": plugin_id, "name": plugin_id, "version": "1.0.0", "hooks": ["onEmailReceived"],
            "permissions": permissions, "hosts": [f"127.0.0.1:{allowed_port}"]})
        # Registered without the scanner, which would refuse most of these: the sandbox must
        # hold for whatever the scanner misses.
        await registry.register("default", manifest,
                                f"function onEmailReceived(email) {{\n{body}\n}}\n", {}, {})
        await registry.activate("default", plugin_id)

    await asyncio.to_thread(send, open_pat, "hostile plugins")
    message_id = (await open_pat.http.get("/api/v3/messages")).json()["items"][0]["id"]
    assert await open_pat.wait_status(message_id, "processed", "failed",
                                      timeout=120) == "processed"

    runs = {r.plugin_id: r for r in await store.runs("default", message_id=message_id)}
    assert {pid: runs[pid].status for pid in HOSTILE} == {
        pid: status for pid, (_, status, _) in HOSTILE.items()}
    assert all(runs[pid].error for pid in HOSTILE)
    assert "\x00" not in (runs["throws-a-nul"].error or "")
    assert runs["zz-good"].status == "ok", runs["zz-good"].error
    assert runs["zz-nul-text"].status == "ok", runs["zz-nul-text"].error
    assert runs["zz-nul-text"].logs == [{"level": "info", "message": "a\x00b"}]
    assert await store.storage("default", "zz-nul-text") == {"k\u00e9": "v\x00"}
    assert forbidden == []
    assert allowed == ["/good"]
    assert await store.storage("default", "zz-good") == {"seen": True}
    assert [pid for pid in HOSTILE if await store.storage("default", pid)] == []
    view = (await open_pat.http.get(f"/api/v3/plugins/view/{message_id}")).json()
    assert view["header_changes"] == [{"X-Good": "yes"}]
    assert view["metadata"] == {"zz-good": {"good": True}, "zz-nul-text": {"text": "a\x00b"}}


async def test_a_hook_activity_that_temporal_retries_does_not_post_twice(
        tmp_path: Path, temporal_client: Client) -> None:
    """The store stops taking writes just as the webhook answers: the hook's activity cannot
    record that the post was made, fails as a store outage, and Temporal runs it again. The
    retried attempt finds the post claimed and does not make it a second time."""
    settings = make_settings(tmp_path, plugin_allowed_hosts="127.0.0.1")
    posts: list[str] = []

    class LockingTheStore(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(self.headers["Idempotency-Key"])
            # Longer than the store's 10 s busy timeout: the attempt's next write fails.
            lock = sqlite3.connect(settings.data_dir / "pat.db", isolation_level=None,
                                   check_same_thread=False)
            lock.execute("BEGIN EXCLUSIVE")
            threading.Timer(11, lambda: (lock.rollback(), lock.close())).start()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), LockingTheStore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        async with running_pat(settings, temporal_client) as pat:
            store = PluginStore(pat.store.engine)
            registry = PluginRegistry(store, PluginHost(store, pat.store, settings), settings)
            manifest, code = load_plugin_files(SAMPLES / "webhook_notifier")
            await registry.register("default", manifest, code,
                                    {"url": f"http://127.0.0.1:{server.server_address[1]}/"}, {})
            await registry.activate("default", manifest.id)
            await asyncio.to_thread(send, pat, "posted once")
            message_id = (await pat.http.get("/api/v3/messages")).json()["items"][0]["id"]
            assert await pat.wait_status(message_id, "processed", timeout=60) == "processed"
            handle = temporal_client.get_workflow_handle(f"email-{message_id}")
            await asyncio.wait_for(handle.result(), 120)  # its onEmailStored, retried, is done
            history = [event async for event in handle.fetch_history_events()]
            runs = await store.runs("default", message_id=message_id)
    finally:
        server.shutdown()
        server.server_close()
    assert len(posts) == 1
    assert [(r.hook, r.status) for r in runs] == [("onEmailStored", "effect_failed")]
    assert "did not record how it ended; not repeated" in runs[0].effects[0]["detail"]
    attempts = [e.activity_task_started_event_attributes.attempt for e in history
                if e.HasField("activity_task_started_event_attributes")]
    assert max(attempts) >= 2
