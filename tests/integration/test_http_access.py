"""Who may call Pat's HTTP port: Host names (DNS rebinding), foreign origins, Basic auth from
an htpasswd file, API keys with scopes, and keys bound to a tenant, endpoint by endpoint."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from temporalio.client import Client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from activities.parse import EmailActivities, ParseInput
from pat.domain import SpooledMessage
from pat.store.keys import ApiKeyStore, Scope
from pat.store.models import MessageStatus
from tests.support.harness import RunningPat, make_settings, running_pat

RAW = (b"From: app@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n"
       b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
       b"Hello\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
       b"filename=r.pdf\r\n\r\nPDF\r\n--b--\r\n")


def _raw(to: str, subject: str) -> bytes:
    return RAW.replace(b"{to}", to.encode()).replace(b"{subject}", subject.encode())


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _next_event(lines: AsyncIterator[str]) -> tuple[str, str]:
    """The name and data of the next event on a Server-Sent Events stream."""
    name, data = "message", ""
    async for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            return name, data
    raise AssertionError("the stream ended")


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def open_pat(tmp_path: Path, temporal_client: Client) -> AsyncIterator[RunningPat]:
    async with running_pat(make_settings(tmp_path), temporal_client, worker=False,
                           gateway=False) as running:
        yield running


async def test_a_host_name_that_is_not_pats_gets_421_which_stops_dns_rebinding(
        open_pat: RunningPat) -> None:
    rebound = await open_pat.http.get("/api/v2/messages", headers={"Host": "evil.example:8025"})
    assert rebound.status_code == 421
    assert "evil.example" in rebound.json()["error"]
    for name in ("localhost", "127.0.0.1", "[::1]"):
        answer = await open_pat.http.get("/api/v3/messages",
                                         headers={"Host": f"{name}:{open_pat.settings.http_port}"})
        assert answer.status_code == 200, name
    # Probes from anywhere (a load balancer, Kubernetes) still see health.
    assert (await open_pat.http.get("/healthz", headers={"Host": "10.0.0.7"})).status_code == 200


async def test_allowed_hosts_adds_names_and_star_allows_any(
        tmp_path: Path, temporal_client: Client) -> None:
    settings = make_settings(tmp_path, http_allowed_hosts="pat.internal, mail.test")
    async with running_pat(settings, temporal_client, worker=False, gateway=False) as pat:
        assert (await pat.http.get("/api/v3/messages",
                                   headers={"Host": "pat.internal:8025"})).status_code == 200
        assert (await pat.http.get("/api/v3/messages",
                                   headers={"Host": "other.test"})).status_code == 421
    settings = make_settings(tmp_path, http_allowed_hosts="*")
    async with running_pat(settings, temporal_client, worker=False, gateway=False) as pat:
        assert (await pat.http.get("/api/v3/messages",
                                   headers={"Host": "other.test"})).status_code == 200


async def test_requests_and_websockets_from_another_origin_are_refused(
        open_pat: RunningPat) -> None:
    own = f"http://127.0.0.1:{open_pat.settings.http_port}"
    elsewhere = f"http://127.0.0.1:{open_pat.settings.http_port + 1}"
    for origin in ("http://evil.example", "null", elsewhere):
        answer = await open_pat.http.delete("/api/v3/messages", headers={"Origin": origin})
        assert answer.status_code == 403, origin
        assert "other origins" in answer.json()["error"]
        events = await open_pat.http.get("/api/v1/events", headers={"Origin": origin})
        assert events.status_code == 403
        read = await open_pat.http.get("/api/v3/messages",
                                       headers={"Origin": origin, "Sec-Fetch-Mode": "cors"})
        assert read.status_code == 403
    # A plain load (an inline image of a sandboxed message body, origin null) passes.
    image = await open_pat.http.get("/api/v3/messages", headers={
        "Origin": "null", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"})
    assert image.status_code == 200
    url = f"ws://127.0.0.1:{open_pat.settings.http_port}/api/v2/websocket"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    async with connect(url, origin=own):  # type: ignore[arg-type]
        pass
    assert (await open_pat.http.delete("/api/v3/messages",
                                       headers={"Origin": own})).status_code == 204


async def test_with_an_auth_file_every_route_but_health_asks_for_basic_auth(
        tmp_path: Path, temporal_client: Client) -> None:
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    users = tmp_path / "users.htpasswd"
    users.write_text(f"# Pat's users\ndev:{hashed.replace('$2b$', '$2y$', 1)}\n")
    settings = make_settings(tmp_path, ui_auth_file=users)
    async with running_pat(settings, temporal_client, worker=False, gateway=False) as pat:
        for path in ("/", "/api/v1/messages", "/api/v2/messages", "/api/v3/messages",
                     "/api/v3/plugins", "/api/v3/openapi.json", "/static/app.js"):
            refused = await pat.http.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith('Basic realm="Pat"')
        assert (await pat.http.get("/api/v3/messages",
                                   headers=_basic("dev", "wrong"))).status_code == 401
        assert (await pat.http.get("/api/v3/messages",
                                   headers=_basic("nobody", "s3cret"))).status_code == 401
        assert (await pat.http.get("/api/v3/messages",
                                   headers=_basic("dev", "s3cret"))).status_code == 200
        assert (await pat.http.delete("/api/v3/messages",
                                      headers=_basic("dev", "s3cret"))).status_code == 204
        assert (await pat.http.get("/healthz")).status_code == 200
        assert (await pat.http.get("/readyz")).status_code == 200
        url = f"ws://127.0.0.1:{settings.http_port}/api/v2/websocket"
        with pytest.raises(InvalidStatus):
            async with connect(url):
                pass
        async with connect(url, additional_headers=_basic("dev", "s3cret")):
            pass


def test_an_auth_file_with_a_weak_hash_is_refused_at_start_with_the_line(tmp_path: Path) -> None:
    from api.access import AccessConfigError
    from api.app import create_app

    users = tmp_path / "users.htpasswd"
    users.write_text("dev:$apr1$abc$def\n")
    with pytest.raises(AccessConfigError, match=r"users.htpasswd:1: .*htpasswd -B"):
        create_app(make_settings(tmp_path, ui_auth_file=users))


async def test_once_a_key_exists_requests_need_one_and_scopes_decide_what_they_may_do(
        open_pat: RunningPat) -> None:
    keys = ApiKeyStore(open_pat.store.engine)
    read, _ = await keys.create(Scope.read, name="ci reader")
    write, _ = await keys.create(Scope.write)
    admin, _ = await keys.create(Scope.admin)
    await asyncio.sleep(2.2)  # the API notices the first key within two seconds
    assert (await open_pat.http.get("/api/v3/messages")).status_code == 401
    assert (await open_pat.http.get("/api/v3/messages",
                                    headers=_bearer("pat_nope_nope"))).status_code == 401
    assert (await open_pat.http.get("/api/v3/messages", headers=_bearer(read))).status_code == 200
    # MailHog clients that only speak Basic auth can send a key as the password.
    assert (await open_pat.http.get("/api/v2/messages",
                                    headers=_basic("any", read))).status_code == 200
    denied = await open_pat.http.delete("/api/v3/messages", headers=_bearer(read))
    assert denied.status_code == 403
    assert denied.json()["error"] == "this needs the 'write' scope; the key has 'read'"
    assert (await open_pat.http.delete("/api/v3/messages",
                                       headers=_bearer(write))).status_code == 204
    plugin = {"manifest": {}, "code": ""}
    assert (await open_pat.http.post("/api/v3/plugins/scan", json=plugin,
                                     headers=_bearer(write))).status_code == 403
    assert (await open_pat.http.post("/api/v3/plugins/scan", json=plugin,
                                     headers=_bearer(admin))).status_code == 422
    info = next(k for k in await keys.list() if k.scope is Scope.read)
    assert await keys.revoke(info.id)
    assert (await open_pat.http.get("/api/v3/messages", headers=_bearer(read))).status_code == 401


async def test_a_key_bound_to_a_tenant_sees_only_that_tenants_messages_everywhere(
        open_pat: RunningPat) -> None:
    store = open_pat.store
    await store.insert_batch([
        SpooledMessage(id="a1@pat", tenant="acme", mail_from="app@acme.test",
                       recipients=["dev@acme.test"], helo="h", peer="127.0.0.1",
                       data=_raw("dev@acme.test", "acme mail")),
        SpooledMessage(id="b1@pat", tenant="bravo", mail_from="app@bravo.test",
                       recipients=["dev@bravo.test"], helo="h", peer="127.0.0.1",
                       data=_raw("dev@bravo.test", "bravo mail"))])
    for message_id in ("a1@pat", "b1@pat"):  # the parse step, as the pipeline runs it
        await EmailActivities(store).parse_and_store(ParseInput(message_id))
        await store.set_status(message_id, MessageStatus.processed)
    keys = ApiKeyStore(store.engine)
    acme, _ = await keys.create(Scope.write, tenant="acme")
    everyone, _ = await keys.create(Scope.admin)
    await asyncio.sleep(2.2)
    http = open_pat.http
    as_acme = _bearer(acme)

    listed = (await http.get("/api/v3/messages", headers=as_acme)).json()
    assert [m["id"] for m in listed["items"]] == ["a1@pat"] and listed["total"] == 1
    for path in ("/api/v3/messages/b1@pat", "/api/v3/messages/b1@pat/raw",
                 "/api/v3/messages/b1@pat/parts/2", "/view/b1@pat", "/view/b1@pat/body.html"):
        assert (await http.get(path, headers=as_acme)).status_code == 404, path
    for path in ("/api/v3/messages/a1@pat", "/api/v3/messages/a1@pat/raw",
                 "/api/v3/messages/a1@pat/parts/2", "/view/a1@pat"):
        assert (await http.get(path, headers=as_acme)).status_code == 200, path
    wait = await http.get("/api/v3/messages/wait", headers=as_acme,
                          params={"to": "dev@bravo.test", "timeout": 0.5})
    assert wait.status_code == 408
    page = (await http.get("/", headers=as_acme)).text
    assert "a1@pat" in page and "b1@pat" not in page
    assert (await http.post("/api/v3/messages/b1@pat/reprocess",
                            headers=as_acme)).status_code == 404
    assert (await http.delete("/api/v3/messages/b1@pat", headers=as_acme)).status_code == 404
    # MailHog's API, endpoint by endpoint.
    v1 = json.loads((await http.get("/api/v1/messages", headers=as_acme)).text)
    assert [m["ID"] for m in v1] == ["a1@pat"]
    v2 = json.loads((await http.get("/api/v2/messages", headers=as_acme)).text)
    assert [m["ID"] for m in v2["items"]] == ["a1@pat"] and v2["total"] == 1
    found = json.loads((await http.get("/api/v2/search", headers=as_acme, params={
        "kind": "containing", "query": "mail"})).text)
    assert [m["ID"] for m in found["items"]] == ["a1@pat"]
    for path in ("/api/v1/messages/b1@pat", "/api/v1/messages/b1@pat/download",
                 "/api/v1/messages/b1@pat/mime/part/0/download"):
        assert (await http.get(path, headers=as_acme)).status_code == 404, path
    assert (await http.get("/api/v1/messages/a1@pat", headers=as_acme)).status_code == 200
    assert (await http.delete("/api/v1/messages/b1@pat", headers=as_acme)).status_code == 404
    plugins = await http.get("/api/v3/plugins", params={"tenant": "bravo"}, headers=as_acme)
    assert plugins.status_code == 403

    async with http.stream("GET", "/api/v3/events", headers=as_acme) as stream:
        lines = stream.aiter_lines()
        async with asyncio.timeout(10):
            assert await _next_event(lines) == ("ready", "subscribed")
            assert (await http.delete("/api/v3/messages", headers=as_acme)).status_code == 204
            _, data = await _next_event(lines)
        assert json.loads(data) == {"kind": "deleted", "id": "a1@pat", "status": None,
                                    "summary": None}
    assert await store.get("a1@pat") is None
    assert await store.get("b1@pat") is not None  # the other tenant's mail is untouched
    everything = (await http.get("/api/v3/messages", headers=_bearer(everyone))).json()
    assert [m["id"] for m in everything["items"]] == ["b1@pat"]


async def test_a_tenant_key_does_not_see_other_tenants_live_events(
        open_pat: RunningPat) -> None:
    keys = ApiKeyStore(open_pat.store.engine)
    acme, _ = await keys.create(Scope.read, tenant="acme")
    await asyncio.sleep(2.2)
    async with httpx.AsyncClient(base_url=open_pat.base_url, timeout=30) as http, \
            http.stream("GET", "/api/v3/events", headers=_bearer(acme)) as stream:
        lines = stream.aiter_lines()
        async with asyncio.timeout(10):
            assert await _next_event(lines) == ("ready", "subscribed")
            for message_id, tenant in (("b2@pat", "bravo"), ("a2@pat", "acme")):
                await open_pat.store.insert_batch([SpooledMessage(
                    id=message_id, tenant=tenant, mail_from="x@y", recipients=["z@y"], helo="h",
                    peer="127.0.0.1", data=_raw("z@y", message_id))])
                await asyncio.sleep(0.5)
            _, data = await _next_event(lines)
        assert json.loads(data)["id"] == "a2@pat"


async def test_pat_keys_creates_lists_and_revokes_keys_the_api_accepts(
        open_pat: RunningPat) -> None:
    env = {**os.environ, "PAT_DATABASE_URL": open_pat.settings.store_url}

    def pat(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pat", "keys", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    created = await asyncio.to_thread(pat, "create", "--scope", "read", "--name", "ci")
    assert created.returncode == 0, created.stderr
    # A second key keeps access control on once the first is revoked: with no key and no
    # auth file, Pat is open again, as MailHog is.
    assert (await asyncio.to_thread(pat, "create", "--scope", "read")).returncode == 0
    key = created.stdout.splitlines()[0]
    key_id = key.split("_")[1]
    listed = await asyncio.to_thread(pat, "list")
    assert key_id in listed.stdout and "active" in listed.stdout and key not in listed.stdout
    await asyncio.sleep(2.2)
    assert (await open_pat.http.get("/api/v3/messages")).status_code == 401
    assert (await open_pat.http.get("/api/v3/messages", headers=_bearer(key))).status_code == 200
    assert (await asyncio.to_thread(pat, "revoke", key_id)).returncode == 0
    assert (await open_pat.http.get("/api/v3/messages", headers=_bearer(key))).status_code == 401
    wrong = await asyncio.to_thread(pat, "create", "--scope", "root")
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr


async def test_a_tenant_key_gets_only_its_tenants_mail_on_mailhogs_websocket(
        open_pat: RunningPat) -> None:
    keys = ApiKeyStore(open_pat.store.engine)
    acme, _ = await keys.create(Scope.read, tenant="acme")
    await asyncio.sleep(2.2)
    url = f"ws://127.0.0.1:{open_pat.settings.http_port}/api/v2/websocket"
    async with connect(url, additional_headers=_bearer(acme)) as websocket:
        await asyncio.sleep(0.5)  # subscribed
        for message_id, tenant in (("b3@pat", "bravo"), ("a3@pat", "acme")):
            await open_pat.store.insert_batch([SpooledMessage(
                id=message_id, tenant=tenant, mail_from="x@y", recipients=["z@y"], helo="h",
                peer="127.0.0.1", data=_raw("z@y", message_id))])
            await asyncio.sleep(0.5)
        frame = json.loads(await asyncio.wait_for(websocket.recv(), 10))
        assert frame["ID"] == "a3@pat"
