"""Search from the store's index (pat.search), on SQLite (FTS5 trigram) and PostgreSQL
(pg_trgm): words and phrases anywhere in a message, field prefixes, the to/from/subject
filters, MailHog's search kinds and the v3 ``q`` parameter; the index follows every write."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from activities.parse import EmailActivities, ParseInput
from pat.domain import SpooledMessage
from pat.store.db import MIGRATIONS, make_engine, migrate
from pat.store.repository import MessageFilter, MessageStore
from tests.support.harness import RunningPat


def _invoice() -> bytes:
    message = EmailMessage()
    message["From"] = "Shop Billing <billing@shop.example>"
    message["To"] = "Ada <ada@example.test>"
    message["Subject"] = "Your invoice #42"
    message.set_content("Total: 42 EUR, due Friday.\n")
    message.add_alternative("<p>Pay <b>now</b> with the link</p>", subtype="html")
    return message.as_bytes()


def _welcome() -> bytes:
    message = EmailMessage()
    message["From"] = "app@app.example"
    message["To"] = "bob@example.test"
    message["Subject"] = "Welcome aboard"
    message["X-Campaign"] = "spring-sale"
    message.set_content("Confirm: https://app.example/confirm?token=ab_c%d\n",
                        cte="quoted-printable")
    return message.as_bytes()


def _cologne() -> bytes:  # an encoded subject, a Latin-1 body, a NUL byte
    return (b"From: =?utf-8?q?J=C3=BCrgen?= <j@koeln.example>\r\nTo: cara@example.test\r\n"
            b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n"
            b"Content-Type: text/plain; charset=latin-1\r\n\r\n"
            b"Sch\xf6ne Gr\xfc\xdfe\x00 vom Rhein\r\n")


MESSAGES = {"invoice@pat": (_invoice(), "billing@shop.example", ["ada@example.test"]),
            "welcome@pat": (_welcome(), "app@app.example", ["bob@example.test"]),
            "cologne@pat": (_cologne(), "j@koeln.example", ["cara@example.test"])}


async def _arrive(store: MessageStore, *ids: str) -> None:
    await store.insert_batch([
        SpooledMessage(id=i, tenant="default", mail_from=MESSAGES[i][1],
                       recipients=MESSAGES[i][2], helo="client.test", peer="127.0.0.1",
                       data=MESSAGES[i][0]) for i in ids])


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[MessageStore]:
    engine = make_engine(store_url)
    await migrate(engine)
    yield MessageStore(engine)
    await engine.dispose()


@pytest.fixture
async def parsed(store: MessageStore) -> MessageStore:
    """The three messages, each stored and through the parse step."""
    await _arrive(store, *MESSAGES)
    activities = EmailActivities(store)
    for message_id in MESSAGES:
        await activities.parse_and_store(ParseInput(message_id))
    return store


async def _found(store: MessageStore, **flt: str) -> set[str]:
    total, found = await store.list(MessageFilter(**flt), limit=100)
    assert total == len(found)
    return {m.id for m in found}


async def _fts_is_consistent(store: MessageStore) -> None:
    """SQLite's check that the FTS5 index holds exactly what message_search holds."""
    if store.engine.dialect.name == "sqlite":
        async with store.engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO message_fts (message_fts) VALUES ('integrity-check')"))


async def test_a_query_finds_words_and_phrases_anywhere_in_a_message_whatever_the_case(
        parsed: MessageStore) -> None:
    assert await _found(parsed, q="invoice") == {"invoice@pat"}
    assert await _found(parsed, q="INVOICE friday") == {"invoice@pat"}  # subject and body
    assert await _found(parsed, q="42 eur") == {"invoice@pat"}
    assert await _found(parsed, q='"42 EUR, due"') == {"invoice@pat"}  # a phrase as written
    assert await _found(parsed, q='"due 42"') == set()
    assert await _found(parsed, q="now link") == {"invoice@pat"}  # the HTML body
    assert await _found(parsed, q="spring-sale") == {"welcome@pat"}  # any header's value
    assert await _found(parsed, q="token=ab_c%d") == {"welcome@pat"}  # decoded QP, no wildcard
    assert await _found(parsed, q="ab_x%d") == set()
    assert await _found(parsed, q="Köln") == {"cologne@pat"}  # a decoded encoded word
    assert await _found(parsed, q="Schöne") == {"cologne@pat"}  # a Latin-1 body
    assert await _found(parsed, q="example.test") == set(MESSAGES)
    assert await _found(parsed, q="invoice welcome") == set()  # every term must occur


async def test_terms_shorter_than_three_characters_are_found_too(parsed: MessageStore) -> None:
    assert await _found(parsed, q="#4") == {"invoice@pat"}
    assert await _found(parsed, q="42 zz") == set()
    assert await _found(parsed, subject="ab") == {"welcome@pat"}


async def test_field_prefixes_and_filters_look_only_in_their_field(
        parsed: MessageStore) -> None:
    assert await _found(parsed, q="to:bob") == {"welcome@pat"}
    assert await _found(parsed, q="from:billing") == {"invoice@pat"}
    assert await _found(parsed, q="from:jürgen") == {"cologne@pat"}  # the decoded display name
    assert await _found(parsed, q="subject:welcome") == {"welcome@pat"}
    assert await _found(parsed, q='to:"Ada <ada@"') == {"invoice@pat"}  # the header as sent
    assert await _found(parsed, q="to:billing") == set()
    assert await _found(parsed, q="https://app.example") == {"welcome@pat"}  # not a field
    assert await _found(parsed, to="ADA@example") == {"invoice@pat"}
    assert await _found(parsed, sender="shop.example") == {"invoice@pat"}
    assert await _found(parsed, subject="aboard") == {"welcome@pat"}
    assert await _found(parsed, text="(mailhog)") == set(MESSAGES)  # MailHog's Received


async def test_odd_queries_are_searched_as_text_and_never_fail(parsed: MessageStore) -> None:
    for query in ('"', '""', 'a"b', "x:", ":", "*", "AND", "NEAR(a b)", "'; DROP TABLE x; --",
                  "%", "_", "\\", "\x00", "to:", 'subject:"'):
        await _found(parsed, q=query)
    assert await _found(parsed, q="%") == {"welcome@pat"}  # the only message with a %


async def test_a_message_is_found_by_its_envelope_and_headline_from_the_moment_of_250(
        store: MessageStore) -> None:
    await _arrive(store, "invoice@pat")
    assert await _found(store, q="invoice") == {"invoice@pat"}
    assert await _found(store, to="ada@example.test") == {"invoice@pat"}
    assert await _found(store, q="friday") == set()  # the body is searchable once parsed
    await EmailActivities(store).parse_and_store(ParseInput("invoice@pat"))
    assert await _found(store, q="friday") == {"invoice@pat"}


async def test_the_index_follows_deletes_and_reparses(parsed: MessageStore) -> None:
    await EmailActivities(parsed).parse_and_store(ParseInput("invoice@pat"))  # a reprocess
    assert await _found(parsed, q="invoice") == {"invoice@pat"}
    await parsed.delete("invoice@pat")
    assert await _found(parsed, q="invoice") == set()
    await _fts_is_consistent(parsed)
    await parsed.delete_all()
    assert await _found(parsed, q="example") == set()
    await _fts_is_consistent(parsed)
    await _arrive(parsed, "invoice@pat")  # the same id again: no trace of the old rows
    assert await _found(parsed, q="invoice") == {"invoice@pat"}
    await _fts_is_consistent(parsed)


async def test_a_store_from_before_the_index_finds_its_messages_after_the_upgrade(
        store_url: str) -> None:
    engine = make_engine(store_url)

    def upgrade_to(connection: sa.Connection, revision: str) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        for revision in ("0005_artifacts", "0003_plugin_effects"):
            await conn.run_sync(upgrade_to, revision)
    async with engine.begin() as conn:
        await conn.execute(sa.text(
            "INSERT INTO messages (id, tenant, created_ns, updated_ns, mail_from, recipients, "
            "helo, peer, size, status, subject, from_header, to_header, pipeline_run) VALUES "
            "('old@pat', 'default', 1, 1, 'billing@shop.example', :recipients, 'h', "
            "'127.0.0.1', 10, 'processed', 'Your invoice #42', 'Shop <billing@shop.example>', "
            "'Ada <ada@example.test>', 0)").bindparams(sa.bindparam("recipients", type_=sa.JSON)),
            {"recipients": ["ada@example.test"]})
        await conn.execute(sa.text(
            "INSERT INTO message_artifacts (message_id, view, text) VALUES ('old@pat', '{}', "
            "'Total: 42 EUR, due Friday.')"))
    await migrate(engine)
    store = MessageStore(engine)
    assert await _found(store, q="invoice friday") == {"old@pat"}
    assert await _found(store, to="ada@example") == {"old@pat"}
    assert await _found(store, sender="billing@") == {"old@pat"}
    await _fts_is_consistent(store)
    await engine.dispose()


def _send(port: int, raw: bytes, recipient: str) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("sender@app.example", [recipient], raw)


async def test_the_v3_list_and_wait_take_a_search_query(pat: RunningPat) -> None:
    await asyncio.to_thread(_send, pat.smtp_port, _invoice(), "ada@example.test")
    await asyncio.to_thread(_send, pat.smtp_port, _welcome(), "bob@example.test")
    async with httpx.AsyncClient(base_url=pat.base_url, timeout=60) as http:
        waited = await http.get("/api/v3/messages/wait", params={"q": "friday 42"})
        assert waited.status_code == 200 and waited.json()["subject"] == "Your invoice #42"
        listed = (await http.get("/api/v3/messages", params={"q": "to:bob"})).json()
        assert [m["subject"] for m in listed["items"]] == ["Welcome aboard"]
        assert listed["total"] == 1
        both = (await http.get("/api/v3/messages", params={"q": "example.test"})).json()
        assert both["total"] == 2
        too_long = await http.get("/api/v3/messages", params={"q": "x" * 1001})
        assert too_long.status_code == 422
        mailhog = (await http.get("/api/v2/search", params={
            "kind": "containing", "query": "due friday"})).json()
        assert mailhog["total"] == 1
        assert mailhog["items"][0]["Content"]["Headers"]["Subject"] == ["Your invoice #42"]
