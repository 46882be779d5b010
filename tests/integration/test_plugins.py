"""Plugins against a real store, real effects (a local HTTP server, Pat's own SMTP) and the
real Temporal dev server: install workflow, hook activities, hostile plugins contained."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.plugins import (
    ActivePluginsInput,
    HookResult,
    PluginActivities,
    PluginSource,
    RunHookInput,
)
from pat.domain import SpooledMessage
from pat.settings import Settings
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from plugins.host import PluginHost
from plugins.manifest import Manifest, load_plugin_files
from plugins.registry import PluginRegistry, RegistryError
from plugins.runtime import HookStatus
from plugins.store import PluginStore
from tests.support.harness import RunningPat, make_settings
from tests.support.plugin_workflows import HookProbeInput, PluginHookProbe
from workers.plugins import PLUGIN_WORKFLOWS, plugin_activities
from workflows.plugin_install import PluginInstall, PluginInstallInput, PluginInstallResult

SAMPLES = Path(__file__).resolve().parents[2] / "plugins" / "samples"
RAW = (b"From: Sender <sender@example.test>\r\nTo: dev@example.test\r\n"
       b"Subject: FREE MONEY NOW!!\r\nMessage-ID: <m1@example.test>\r\n"
       b"Date: Mon, 23 Nov 2026 05:00:00 +0000\r\n\r\n"
       b"You are a winner, act now: http://bit.ly/x and https://example.test/ok\r\n")


class Pat:
    def __init__(self, settings: Settings, messages: MessageStore) -> None:
        self.settings = settings
        self.messages = messages
        self.store = PluginStore(messages.engine)
        self.host = PluginHost(self.store, messages, settings)
        self.registry = PluginRegistry(self.store, self.host, settings)

    async def add_message(self, message_id: str = "m1", raw: bytes = RAW) -> str:
        await self.messages.insert_batch([SpooledMessage(
            id=message_id, tenant="default", mail_from="sender@example.test",
            recipients=["dev@example.test"], helo="h", peer="127.0.0.1", data=raw)])
        return message_id

    async def install(self, manifest: Manifest | dict[str, Any], code: str,
                      settings: dict[str, Any] | None = None, *, activate: bool = True,
                      scan: bool = True) -> None:
        """Install as the workflow does. ``scan=False`` installs code the scanner would
        refuse: the sandbox must hold even for what the scanner misses."""
        found = manifest if isinstance(manifest, Manifest) else Manifest.model_validate(manifest)
        assert not scan or self.registry.scan(found, code).passed
        assert await self.registry.compile(found, code) == []
        await self.registry.register("default", found, code, settings or {}, {})
        if activate:
            await self.registry.activate("default", found.id)

    async def install_sample(self, name: str, settings: dict[str, Any] | None = None) -> None:
        found, code = load_plugin_files(SAMPLES / name)
        await self.install(found, code, settings)


@pytest.fixture
async def pat_store(tmp_path: Path) -> AsyncIterator[Pat]:
    settings = Settings(data_dir=tmp_path, plugin_allowed_hosts="127.0.0.1")
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'pat.db'}")
    await migrate(engine)
    yield Pat(settings, MessageStore(engine))
    await engine.dispose()


def hostile(plugin_id: str, body: str, **manifest: Any) -> tuple[dict[str, Any], str]:
    values: dict[str, Any] = {"id": plugin_id, "name": plugin_id, "version": "1.0.0",
                              "hooks": ["onEmailReceived"], **manifest}
    return values, f"function onEmailReceived(email) {{\n{body}\n}}\n"


async def test_spam_scorer_changes_pats_view_not_the_stored_bytes(pat_store: Pat) -> None:
    await pat_store.install_sample("spam_scorer")
    message_id = await pat_store.add_message()
    run = await pat_store.host.run_hook("default", "spam-scorer", "onEmailReceived",
                                        message_id=message_id)
    assert run.status is HookStatus.ok, run.error
    assert run.changes["headers"]["X-Spam-Status"].startswith("Yes, score=")
    assert "MONEY_WORDS" in run.changes["metadata"]["rules"]
    assert await pat_store.messages.get_raw(message_id) == RAW
    email = await pat_store.host.email("default", message_id)
    assert email is not None
    assert ["X-Spam-Score", run.changes["headers"]["X-Spam-Score"]] in email["headers"]
    recorded = await pat_store.store.runs("default", message_id=message_id)
    assert [(r.plugin_id, r.status) for r in recorded] == [("spam-scorer", "ok")]


async def test_a_tenants_plugin_cannot_read_another_tenants_message(pat_store: Pat) -> None:
    await pat_store.install_sample("spam_scorer")
    await pat_store.messages.insert_batch([SpooledMessage(
        id="other-tenant", tenant="acme", mail_from="a@x", recipients=["b@y"], helo="h",
        peer="127.0.0.1", data=RAW)])
    with pytest.raises(LookupError, match="not in the store"):
        await pat_store.host.run_hook("default", "spam-scorer", "onEmailReceived",
                                      message_id="other-tenant")


async def test_link_validator_flags_risky_links(pat_store: Pat) -> None:
    await pat_store.install_sample("link_validator")
    run = await pat_store.host.run_hook("default", "link-validator", "onEmailReceived",
                                        message_id=await pat_store.add_message())
    assert run.status is HookStatus.ok, run.error
    links = {link["url"]: link["problems"] for link in run.changes["metadata"]["links"]}
    assert "URL shortener hides the destination" in links["http://bit.ly/x"]
    assert links["https://example.test/ok"] == []
    assert run.changes["headers"]["X-Link-Check"] == "2 links, 1 with problems"


@pytest.mark.parametrize(("body", "status"), [
    ("while (true) {}", HookStatus.timeout),
    ("for (let i = 0; i >= 0; i++) {}", HookStatus.timeout),
    ("const a = []; while (true) a.push(new Array(2 ** 20).fill(1.5));", HookStatus.timeout),
    ("function f() { return f() + 1; } return f();", HookStatus.stack_overflow),
    ("throw new Error('plugin bug');", HookStatus.error),
    ("return 'not an object';", HookStatus.malformed),
    ("return {headers: {'X-Injected': 'a\\r\\nBcc: victim@example.test'}};", HookStatus.malformed),
    ("return fetch('http://127.0.0.1/');", HookStatus.error),
    ("return require('fs').readFileSync('/etc/passwd', 'utf8');", HookStatus.error),
    ("pat.http.post('http://127.0.0.1:9/', {});", HookStatus.denied),
])
async def test_a_hostile_plugin_fails_alone_and_the_next_plugin_runs(
        pat_store: Pat, body: str, status: HookStatus) -> None:
    await pat_store.install(*hostile("hostile", body), scan=False)
    await pat_store.install_sample("spam_scorer")
    message_id = await pat_store.add_message()
    bad = await pat_store.host.run_hook("default", "hostile", "onEmailReceived",
                                        message_id=message_id)
    assert bad.status is status, bad.error
    assert bad.error
    good = await pat_store.host.run_hook("default", "spam-scorer", "onEmailReceived",
                                         message_id=message_id)
    assert good.status is HookStatus.ok
    recorded = {r.plugin_id: r for r in await pat_store.store.runs("default",
                                                                   message_id=message_id)}
    assert recorded["hostile"].status == status and recorded["hostile"].error == bad.error
    email = await pat_store.host.email("default", message_id)
    assert email is not None
    assert not any(name == "X-Injected" for name, _ in email["headers"])


async def test_a_memory_bomb_is_stopped_at_the_memory_limit(pat_store: Pat) -> None:
    # The operator allows 10 s, so that the bomb meets its manifest's 64 MB before its time.
    patient = Pat(Settings(data_dir=pat_store.settings.data_dir, plugin_timeout_ms=10_000),
                  pat_store.messages)
    await patient.install(*hostile(
        "memory-bomb", "const a = []; while (true) a.push(new Array(2 ** 24).fill(1.5));",
        memory_limit_mb=64), scan=False)
    run = await patient.host.run_hook("default", "memory-bomb", "onEmailReceived",
                                      message_id=await patient.add_message())
    assert run.status is HookStatus.memory
    assert "64 MB" in (run.error or "")


async def test_storage_is_per_plugin_and_kept_only_when_the_hook_succeeds(
        pat_store: Pat) -> None:
    await pat_store.install(*hostile(
        "keeper", "pat.storage.set('secret', 's3cret'); pat.storage.set('count',"
        " (pat.storage.get('count') || 0) + 1);"
        " if (email.subject === 'fail') throw new Error('x');",
        permissions=["storage"]))
    await pat_store.install(*hostile(
        "snoop", "return {metadata: {keys: pat.storage.keys(), secret: pat.storage.get('secret')"
        " || null, other: pat.storage.get('keeper/secret') || null}};",
        permissions=["storage"]))
    message_id = await pat_store.add_message()
    for _ in range(2):
        await pat_store.host.run_hook("default", "keeper", "onEmailReceived",
                                      message_id=message_id)
    assert await pat_store.store.storage("default", "keeper") == {"secret": "s3cret",
                                                                   "count": 2}
    snooped = await pat_store.host.run_hook("default", "snoop", "onEmailReceived",
                                            message_id=message_id)
    assert snooped.changes["metadata"] == {"keys": [], "secret": None, "other": None}
    failing = await pat_store.add_message(
        "m2", RAW.replace(b"Subject: FREE MONEY NOW!!", b"Subject: fail"))
    run = await pat_store.host.run_hook("default", "keeper", "onEmailReceived",
                                        message_id=failing)
    assert run.status is HookStatus.error
    assert (await pat_store.store.storage("default", "keeper"))["count"] == 2


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/pat", received
    server.shutdown()
    server.server_close()


async def test_webhook_notifier_posts_to_the_configured_url(
        pat_store: Pat, webhook_server: tuple[str, list[tuple[dict[str, str], bytes]]]) -> None:
    url, received = webhook_server
    await pat_store.install_sample("webhook_notifier", {"url": url, "secret": "hush"})
    run = await pat_store.host.run_hook("default", "webhook-notifier", "onEmailStored",
                                        message_id=await pat_store.add_message())
    assert run.status is HookStatus.ok, run.error
    assert run.effects == [{"kind": "http", "target": url, "ok": True, "detail": "HTTP 204"}]
    headers, body = received[0]
    assert headers["X-Pat-Secret"] == "hush"
    assert json.loads(body)["subject"] == "FREE MONEY NOW!!"


NOTIFIER = ("function onEmailStored(email) {\n"
            "  pat.storage.set('count', (pat.storage.get('count') || 0) + 1);\n"
            "  pat.http.post(pat.settings.url, {id: email.id});\n"
            "  pat.export.csv('stored', [email.id]);\n}\n")


def notifier(url: str) -> tuple[dict[str, Any], str]:
    manifest = {"id": "notifier", "name": "Notifier", "version": "1.0.0",
                "hooks": ["onEmailStored"], "permissions": ["storage", "http", "export"],
                "hosts": ["127.0.0.1"], "settings": {"url": {"type": "string", "default": url}}}
    return manifest, NOTIFIER


def attempt(workflow_run_id: str, number: int) -> ActivityEnvironment:
    """An environment whose activity is attempt ``number`` of activity 7 of one EmailPipeline
    run, as Temporal would run it again after a lost worker or an unreachable store."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id="email-m1",
                                   workflow_run_id=workflow_run_id, activity_id="7",
                                   attempt=number)
    return env


async def test_a_retried_hook_activity_does_not_repeat_its_effects(
        pat_store: Pat, webhook_server: tuple[str, list[tuple[dict[str, str], bytes]]]) -> None:
    url, received = webhook_server
    await pat_store.install(*notifier(url))
    message_id = await pat_store.add_message()
    activities = PluginActivities(pat_store.messages, pat_store.settings)
    hook = RunHookInput(tenant="default", plugin_id="notifier", hook="onEmailStored",
                        message_id=message_id)
    first = await attempt("run-1", 1).run(activities.run_plugin_hook, hook)
    retried = await attempt("run-1", 2).run(activities.run_plugin_hook, hook)
    assert (first.status, retried.status) == ("ok", "ok")
    assert len(received) == 1
    key = received[0][0]["Idempotency-Key"]
    assert len(key) == 64
    runs = await pat_store.store.runs("default", plugin_id="notifier")
    assert ["carried out by an earlier attempt" in e["detail"] for e in runs[0].effects] == [
        True, True]
    assert (await pat_store.store.storage("default", "notifier"))["count"] == 1
    exported = pat_store.settings.data_dir / "exports" / "default" / "notifier" / "stored.csv"
    assert exported.read_text().splitlines() == [message_id]
    # Running the workflow again (a new run id) is a new call, not a retry.
    await attempt("run-2", 1).run(activities.run_plugin_hook, hook)
    assert len(received) == 2
    assert received[1][0]["Idempotency-Key"] != key


async def test_an_effect_interrupted_mid_request_is_not_repeated_by_the_retry(
        pat_store: Pat) -> None:
    arrived, release = threading.Event(), threading.Event()
    requests: list[str] = []

    class Stalling(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            requests.append(self.headers["Idempotency-Key"])
            arrived.set()
            release.wait(30)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        await pat_store.install(*notifier(f"http://127.0.0.1:{server.server_address[1]}/"))
        activities = PluginActivities(pat_store.messages, pat_store.settings)
        hook = RunHookInput(tenant="default", plugin_id="notifier", hook="onEmailStored",
                            message_id=await pat_store.add_message())
        interrupted = asyncio.create_task(attempt("run-1", 1).run(activities.run_plugin_hook,
                                                                  hook))
        assert await asyncio.to_thread(arrived.wait, 30)
        interrupted.cancel()  # as a worker lost mid-request would leave it
        with contextlib.suppress(asyncio.CancelledError):
            await interrupted
        with pytest.raises(ApplicationError) as failed:
            await attempt("run-1", 2).run(activities.run_plugin_hook, hook)
        assert len(requests) == 1
        result = failed.value.details[0]
        assert result.status == "effect_failed"
        assert "did not record how it ended; not repeated" in (result.error or "")
    finally:
        release.set()
        server.shutdown()
        server.server_close()


class _Redirecting(BaseHTTPRequestHandler):
    target = ""

    def do_POST(self) -> None:
        self.send_response(307)
        self.send_header("Location", self.target)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def test_http_effects_follow_no_redirect(
        pat_store: Pat, webhook_server: tuple[str, list[tuple[dict[str, str], bytes]]]) -> None:
    elsewhere, received = webhook_server
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 type("R", (_Redirecting,), {"target": elsewhere}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        await pat_store.install_sample("webhook_notifier", {"url": url})
        run = await pat_store.host.run_hook("default", "webhook-notifier", "onEmailStored",
                                            message_id=await pat_store.add_message())
    finally:
        server.shutdown()
        server.server_close()
    assert run.status is HookStatus.effect_failed
    assert "HTTP 307" in run.effects[0]["detail"]
    assert "redirects are not followed" in run.effects[0]["detail"]
    assert received == []


async def test_an_unreachable_webhook_is_a_recorded_effect_failure(pat_store: Pat) -> None:
    from tests.support.postgres import free_port

    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    await pat_store.install_sample("webhook_notifier", {"url": url})
    run = await pat_store.host.run_hook("default", "webhook-notifier", "onEmailStored",
                                        message_id=await pat_store.add_message())
    assert run.status is HookStatus.effect_failed
    assert run.effects[0]["ok"] is False and run.effects[0]["target"] == url
    assert "http effect failed" in (run.error or "")


async def test_on_email_validated_receives_the_check_results(pat_store: Pat) -> None:
    code = ("function onEmailValidated(email, results) {\n"
            "  return {metadata: {spam: results.spam.verdict, subject: email.subject}};\n}\n")
    await pat_store.install({"id": "verdicts", "name": "Verdicts", "version": "1.0.0",
                             "hooks": ["onEmailValidated"]}, code)
    run = await pat_store.host.run_hook("default", "verdicts", "onEmailValidated",
                                        message_id=await pat_store.add_message(),
                                        payload={"spam": {"verdict": "pass", "score": 1.2}})
    assert run.status is HookStatus.ok, run.error
    assert run.changes == {"metadata": {"spam": "pass", "subject": "FREE MONEY NOW!!"}}


async def test_network_effects_need_the_operators_permission_too(
        tmp_path: Path, webhook_server: tuple[str, list[tuple[dict[str, str], bytes]]]) -> None:
    url, received = webhook_server
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'closed.db'}")
    await migrate(engine)
    closed = Pat(Settings(data_dir=tmp_path), MessageStore(engine))  # no allowed hosts
    await closed.install_sample("webhook_notifier", {"url": url})
    run = await closed.host.run_hook("default", "webhook-notifier", "onEmailStored",
                                     message_id=await closed.add_message())
    assert run.status is HookStatus.denied
    assert "PAT_PLUGIN_ALLOWED_HOSTS" in (run.error or "")
    assert received == []
    await engine.dispose()


async def test_csv_exporter_writes_a_header_then_a_row_per_message(pat_store: Pat) -> None:
    await pat_store.install_sample("csv_exporter")
    for message_id in ("m1", "m2"):
        await pat_store.add_message(message_id)
        run = await pat_store.host.run_hook("default", "csv-exporter", "onEmailStored",
                                            message_id=message_id)
        assert run.status is HookStatus.ok, run.error
    path = pat_store.settings.data_dir / "exports" / "default" / "csv-exporter" / "messages.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == "received_at,id,from,to,subject,size,attachments"
    assert [line.split(",")[1] for line in lines[1:]] == ["m1", "m2"]


async def test_auto_responder_replies_into_pats_own_smtp(
        tmp_path: Path, temporal_client: Client) -> None:
    from tests.support.harness import running_pat

    settings = make_settings(tmp_path, plugin_allowed_hosts="127.0.0.1")
    async with running_pat(settings, temporal_client) as running:
        pat = Pat(settings, running.store)
        await pat.install_sample("auto_responder", {"smtp_port": settings.smtp_port})
        message_id = await pat.add_message()
        run = await pat.host.run_hook("default", "auto-responder", "onEmailReceived",
                                      message_id=message_id)
        assert run.status is HookStatus.ok, run.error
        reply = await _wait_for_reply(running)
        raw = await running.store.get_raw(reply) or b""
        assert b"Subject: Re: FREE MONEY NOW!!" in raw
        assert b"Auto-Submitted: auto-replied" in raw
        again = await pat.host.run_hook("default", "auto-responder", "onEmailReceived",
                                        message_id=message_id)
        assert again.changes["metadata"]["replied"] is False
        assert (await pat.store.storage("default", "auto-responder"))["count"] == 1


async def _wait_for_reply(running: RunningPat) -> str:
    for _ in range(200):
        _, found = await running.store.list()
        replies = [m for m in found if m.recipients == ["sender@example.test"]]
        if replies:
            return replies[0].id
        await asyncio.sleep(0.05)
    raise AssertionError("no reply reached Pat's SMTP")


async def test_registry_refuses_downgrades_and_keeps_state_across_upgrades(
        pat_store: Pat) -> None:
    manifest, code = hostile("versioned", "return null;", permissions=["storage"])
    code = code.replace("return null;", "pat.storage.set('v', 1); return null;")
    await pat_store.install(manifest, code)
    await pat_store.host.run_hook("default", "versioned", "onEmailReceived",
                                  message_id=await pat_store.add_message())
    newer = Manifest.model_validate({**manifest, "version": "1.1.0"})
    await pat_store.registry.register("default", newer, code + "\n", {}, {})
    upgraded = await pat_store.store.get("default", "versioned")
    assert upgraded is not None and upgraded.version == "1.1.0" and upgraded.active
    assert await pat_store.store.storage("default", "versioned") == {"v": 1}
    with pytest.raises(RegistryError, match="higher version"):
        await pat_store.registry.register("default", Manifest.model_validate(manifest),
                                          code + "//", {}, {})


async def test_limits_above_the_operators_ceilings_are_warned_of_and_not_granted(
        pat_store: Pat) -> None:
    manifest, code = hostile("greedy", "return null;", memory_limit_mb=2048, timeout_ms=10_000)
    found = Manifest.model_validate(manifest)
    report = pat_store.registry.scan(found, code)
    assert report.passed
    warnings = [f.message for f in report.findings if f.check == "limits"]
    assert len(warnings) == 2
    assert "the plugin gets 128 MB" in warnings[0] and "the plugin gets 50 ms" in warnings[1]


async def test_a_source_with_a_nul_character_is_refused(pat_store: Pat) -> None:
    manifest, code = hostile("nul-source", "return 'a\x00b';")
    with pytest.raises(RegistryError, match="NUL"):
        await pat_store.registry.register("default", Manifest.model_validate(manifest), code,
                                          {}, {})
    assert await pat_store.store.get("default", "nul-source") is None


async def test_failing_lifecycle_hooks(pat_store: Pat) -> None:
    manifest = {"id": "moody", "name": "Moody", "version": "1.0.0",
                "hooks": ["onEmailReceived", "onInstall", "onActivate", "onDeactivate"]}
    code = ("function onEmailReceived(e) {}\nfunction onInstall() {}\n"
            "function onActivate() { throw new Error('not today'); }\n"
            "function onDeactivate() { while (true) {} }\n")
    await pat_store.install(manifest, code, activate=False, scan=False)
    with pytest.raises(RegistryError, match="not today"):
        await pat_store.registry.activate("default", "moody")
    plugin = await pat_store.store.get("default", "moody")
    assert plugin is not None and not plugin.active
    bad_install = {**manifest, "id": "broken-install"}
    with pytest.raises(RegistryError, match="onInstall failed"):
        await pat_store.registry.register(
            "default", Manifest.model_validate(bad_install),
            code.replace("function onInstall() {}", "function onInstall() { throw 1; }"), {}, {})
    assert await pat_store.store.get("default", "broken-install") is None


async def _worker(client: Client, pat: Pat) -> Worker:
    return Worker(client, task_queue=f"plugins-{uuid.uuid4()}",
                  workflows=[*PLUGIN_WORKFLOWS, PluginHookProbe],
                  activities=plugin_activities(pat.messages, pat.settings))


async def test_install_workflow_then_hooks_as_activities_in_temporal(
        pat_store: Pat, temporal_client: Client) -> None:
    worker = await _worker(temporal_client, pat_store)
    scorer, scorer_code = load_plugin_files(SAMPLES / "spam_scorer")
    thrower, thrower_code = hostile("thrower", "throw new Error('I always fail');")
    async with worker:
        results: list[PluginInstallResult] = []
        for manifest, code in ((thrower, thrower_code),
                               (scorer.model_dump(mode="json"), scorer_code)):
            results.append(await temporal_client.execute_workflow(
                PluginInstall.run,
                PluginInstallInput(PluginSource(tenant="default", manifest=manifest, code=code)),
                id=f"plugin-install-{uuid.uuid4()}", task_queue=worker.task_queue))
        assert [(r.plugin_id, r.status) for r in results] == [("thrower", "active"),
                                                               ("spam-scorer", "active")]
        message_id = await pat_store.add_message()
        handle = await temporal_client.start_workflow(
            PluginHookProbe.run, HookProbeInput("onEmailReceived", message_id),
            id=f"hooks-{uuid.uuid4()}", task_queue=worker.task_queue)
        hooks: list[HookResult] = await handle.result()
    assert [(h.plugin_id, h.status) for h in hooks] == [("thrower", "error"),
                                                         ("spam-scorer", "ok")]
    assert "I always fail" in (hooks[0].error or "")
    assert hooks[1].changes["headers"]["X-Spam-Status"].startswith("Yes")
    failed_attempts = [e for e in [event async for event in handle.fetch_history_events()]
                       if e.HasField("activity_task_failed_event_attributes")]
    assert len(failed_attempts) == 1  # shown in the UI, and not retried


@activity.defn(name="active_plugins")
async def one_active_plugin(params: ActivePluginsInput) -> list[str]:
    return ["unlucky"]


@activity.defn(name="run_plugin_hook")
async def store_never_answers(params: RunHookInput) -> HookResult:
    raise ConnectionError("the store does not answer")


async def test_a_hook_activity_that_gives_up_is_the_plugins_failure_not_the_workflows(
        temporal_client: Client) -> None:
    task_queue = f"plugins-{uuid.uuid4()}"
    async with Worker(temporal_client, task_queue=task_queue, workflows=[PluginHookProbe],
                      activities=[one_active_plugin, store_never_answers]):
        handle = await temporal_client.start_workflow(
            PluginHookProbe.run, HookProbeInput("onEmailStored", "m1"),
            id=f"hooks-{uuid.uuid4()}", task_queue=task_queue)
        hooks: list[HookResult] = await handle.result()
    assert [(h.plugin_id, h.status) for h in hooks] == [("unlucky", "error")]
    assert "gave up: the store does not answer" in (hooks[0].error or "")


async def test_install_workflow_rejects_what_the_scanner_blocks(
        pat_store: Pat, temporal_client: Client) -> None:
    worker = await _worker(temporal_client, pat_store)
    manifest, code = hostile("sneaky", "return eval(email.subject);")
    async with worker:
        result = await temporal_client.execute_workflow(
            PluginInstall.run,
            PluginInstallInput(PluginSource(tenant="default", manifest=manifest, code=code)),
            id=f"plugin-install-{uuid.uuid4()}", task_queue=worker.task_queue)
    assert result.status == "rejected"
    assert any(f["check"] == "eval" for f in result.scan_report["findings"])
    assert await pat_store.store.get("default", "sneaky") is None


async def test_replay_of_a_recorded_install_is_deterministic() -> None:
    """A change to PluginInstall that breaks running histories fails here. Re-record with
    `python -m tests.histories.record_plugin_install` only for a deliberate, versioned change."""
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer

    recorded = Path(__file__).parent.parent / "histories" / "plugin_install.json"
    history = WorkflowHistory.from_json(workflow_id="plugin-install-recorded",
                                        history=json.loads(recorded.read_text()))
    await Replayer(workflows=[PluginInstall]).replay_workflow(history)
