"""One parse per message: the pipeline parses once and stores the artifact; the APIs, the UI,
the checks and plugins read it. A message is shown whole (subject, from, to) from the moment
of 250. Stores made before the artifact existed are migrated."""

from __future__ import annotations

import asyncio
import base64
import json
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from temporalio.client import Client

import pat.parsing
from pat.domain import SpooledMessage
from pat.store.db import MIGRATIONS, make_engine, migrate
from pat.store.repository import MessageStore
from plugins.host import PluginHost
from plugins.manifest import load_plugin_files
from plugins.registry import PluginRegistry
from plugins.store import PluginStore
from tests.support.harness import RunningPat, make_settings, running_pat

SPAM_SCORER = Path(__file__).resolve().parents[2] / "plugins" / "samples" / "spam_scorer"
LOGO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAF0lEQVR4nGNkYPjPQApgIkn1qIahqwEAL4YBH4oz"
    "h+0AAAAASUVORK5CYII=")


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts every parse of a whole message (``pat.parsing.parse_bytes``) in this process."""
    counted: list[int] = []
    real = pat.parsing.parse_bytes

    def counting(raw: bytes) -> pat.parsing._MessagePart:
        counted.append(len(raw))
        return real(raw)

    monkeypatch.setattr(pat.parsing, "parse_bytes", counting)
    yield counted


def _newsletter() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Shop <news@shop.example>"
    message["To"] = "Ada <ada@example.test>"
    message["Subject"] = "Spring =?utf-8?q?sal=C3=A9?= is on"
    message.set_content("Hello Ada,\nthe sale is on.\n")
    message.add_alternative('<p>Hello <b>Ada</b></p><img src="cid:logo@shop">', subtype="html")
    html = message.get_payload()[1]  # type: ignore[index]
    html.add_related(LOGO, maintype="image", subtype="png", cid="<logo@shop>")
    message.add_attachment(b"%PDF-1.4 terms\n", maintype="application", subtype="pdf",
                           filename="terms.pdf")
    return message


def _send(port: int, message: EmailMessage) -> str:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.ehlo()
        client.mail("news@shop.example")
        client.rcpt("ada@example.test")
        code, reply = client.data(message.as_bytes())
    assert code == 250, reply
    return reply.decode().rsplit(" ", 1)[-1]


async def test_a_message_is_parsed_once_by_its_pipeline_and_never_by_a_read(
        pat_sqlite: RunningPat, parses: list[int]) -> None:
    plugins = PluginStore(pat_sqlite.store.engine)
    registry = PluginRegistry(plugins, PluginHost(plugins, pat_sqlite.store,
                                                  pat_sqlite.settings), pat_sqlite.settings)
    manifest, code = load_plugin_files(SPAM_SCORER)
    await registry.register("default", manifest, code, {}, {})
    await registry.activate("default", manifest.id)

    message_id = await asyncio.to_thread(_send, pat_sqlite.smtp_port, _newsletter())
    await pat_sqlite.wait_status(message_id, "processed", timeout=60)
    assert len(parses) == 1, "the pipeline (parse, checks, a plugin hook) parsed more than once"

    parses.clear()
    quoted = quote(message_id, safe="")
    detail = (await pat_sqlite.http.get(f"/api/v3/messages/{quoted}")).json()
    assert detail["subject"] == "Spring salé is on"
    assert detail["text"] == "Hello Ada,\nthe sale is on.\n"
    assert "<b>Ada</b>" in detail["html"]
    assert detail["checks"]["results"]["content"]["verdict"]
    reads = ["/api/v3/messages", f"/api/v3/messages/{quoted}/raw", "/api/v1/messages",
             f"/api/v1/messages/{quoted}", f"/api/v1/messages/{quoted}/download",
             "/api/v2/messages", "/api/v2/search?kind=containing&query=sale",
             "/api/v2/search?kind=from&query=shop", f"/api/v1/messages/{quoted}/mime/part/0/"
             "download", "/", f"/view/{quoted}", f"/view/{quoted}/body.html"]
    reads += [part["url"] for part in detail["parts"]]
    for path in reads:
        answer = await pat_sqlite.http.get(path)
        assert answer.status_code == 200, (path, answer.text[:200])
    logo = next(p for p in detail["parts"] if p["content_id"] == "logo@shop")
    assert (await pat_sqlite.http.get(logo["url"])).content == LOGO
    terms = next(p for p in detail["parts"] if p["filename"] == "terms.pdf")
    assert (await pat_sqlite.http.get(terms["url"])).content == b"%PDF-1.4 terms\n"
    listed = json.loads((await pat_sqlite.http.get("/api/v2/messages")).text)
    assert listed["items"][0]["Content"]["Headers"]["Subject"] == [
        "Spring =?utf-8?q?sal=C3=A9?= is on"]
    assert parses == [], f"{len(parses)} parses while reading"


async def test_a_message_shows_its_subject_from_and_to_from_the_moment_of_250(
        tmp_path: Path, temporal_client: Client) -> None:
    async with running_pat(make_settings(tmp_path), temporal_client, worker=False) as pat:
        message_id = await asyncio.to_thread(_send, pat.smtp_port, _newsletter())
        listed = (await pat.http.get("/api/v3/messages")).json()["items"][0]
        assert listed["id"] == message_id and listed["status"] == "received"
        assert listed["subject"] == "Spring salé is on"
        assert listed["from_header"] == "Shop <news@shop.example>"
        assert listed["to_header"] == "Ada <ada@example.test>"
        page = (await pat.http.get("/")).text
        assert "Spring salé is on" in page and "(no subject)" not in page


async def test_a_store_from_before_artifacts_keeps_its_parsed_views(store_url: str) -> None:
    engine = make_engine(store_url)

    def upgrade_to(connection: sa.Connection, revision: str) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:  # the schema as the release before artifacts had it
        for revision in ("0004_api_keys", "0003_plugin_effects"):
            await conn.run_sync(upgrade_to, revision)
        raw = _newsletter().as_bytes()
        view = pat.parsing.parse_message(raw).to_dict()
        await conn.execute(sa.text(
            "INSERT INTO messages (id, tenant, created_ns, updated_ns, mail_from, recipients, "
            "helo, peer, size, status, subject, parsed, pipeline_run) VALUES ('old@pat', "
            "'default', 1, 1, 'a@b', :recipients, 'h', '127.0.0.1', :size, 'processed', 'Old', "
            ":parsed, 0)").bindparams(sa.bindparam("recipients", type_=sa.JSON),
                                     sa.bindparam("parsed", type_=sa.JSON)),
            {"size": len(raw), "parsed": view, "recipients": []})
        await conn.execute(sa.text("INSERT INTO message_raw (message_id, data) "
                                   "VALUES ('old@pat', :raw)"), {"raw": raw})
    await migrate(engine)
    store = MessageStore(engine)
    message = await store.get("old@pat")
    assert message is not None and message.snippet == "Hello Ada, the sale is on."
    assert message.attachment_count == 1
    reading = await store.get_reading("old@pat")
    assert reading is not None and reading.view.subject == "Spring salé is on"
    assert reading.text == "Hello Ada,\nthe sale is on.\n"  # decoded from the raw bytes
    await engine.dispose()


async def test_the_store_keeps_what_the_gateway_read_when_the_header_section_is_hostile(
        tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'pat.db'}")
    await migrate(engine)
    store = MessageStore(engine)
    hostile = (b"Subject: =?utf-8?b?broken\x00\xff?=\r\nFrom: \xfe\xfe <x@\x00y>\r\n"
               b"To: " + b"a" * 200_000 + b"\r\n\r\nbody")
    await store.insert_batch([SpooledMessage(id="h@pat", tenant="default", mail_from="",
                                             recipients=[], helo="", peer="", data=hostile)])
    message = await store.get("h@pat")
    assert message is not None
    assert message.subject is not None and "\x00" not in message.subject
    assert message.to_header is not None and len(message.to_header) <= 1000
    await engine.dispose()
