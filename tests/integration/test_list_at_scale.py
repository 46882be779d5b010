"""What keeps a list fast in a large store gives the answers of counting and searching every
row, on SQLite and PostgreSQL: the per-tenant message counts (migration 0007), the page's ids
read in list order from their own index (migration 0008), and terms looked up in the search
index by a rare part and checked whole (``pat.store.repository._lookup_part``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from pat.domain import SpooledMessage
from pat.store.db import MIGRATIONS, make_engine, migrate
from pat.store.models import MessageStatus, messages
from pat.store.repository import MessageFilter, MessageStore, _lookup_part


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[MessageStore]:
    engine = make_engine(store_url)
    await migrate(engine)
    yield MessageStore(engine)
    await engine.dispose()


def _message(number: int, tenant: str = "default", *, created_ns: int | None = None,
             to: str | None = None) -> SpooledMessage:
    recipient = to or f"user{number:04d}@customers.test"
    data = (f"From: Shop <news{number % 7:03d}@shop.example>\r\nTo: {recipient}\r\n"
            f"Subject: Order {100000 + number} of Vensulrossul\r\n\r\nHello {number}\r\n")
    return SpooledMessage(id=f"m{number:04d}@pat", tenant=tenant,
                          mail_from=f"news{number % 7:03d}@shop.example",
                          recipients=[recipient], helo="client.test", peer="127.0.0.1",
                          data=data.encode(), created_ns=created_ns or 1_000_000 + number)


async def _counted(store: MessageStore, tenant: str | None = None) -> tuple[int, int]:
    """The total a list shows, and the number of rows."""
    total, _ = await store.list(MessageFilter(tenant=tenant), limit=1)
    query = sa.select(sa.func.count()).select_from(messages)
    if tenant is not None:
        query = query.where(messages.c.tenant == tenant)
    async with store.engine.connect() as conn:
        rows = await conn.scalar(query)
    return total, int(rows or 0)


async def test_the_total_follows_inserts_and_deletes_per_tenant(store: MessageStore) -> None:
    assert await _counted(store) == (0, 0)
    await store.insert_batch([_message(n, "acme" if n % 3 else "globex") for n in range(30)])
    await store.insert_batch([_message(n, "initech") for n in range(30, 35)])
    assert await _counted(store) == (35, 35)
    assert await _counted(store, "acme") == (20, 20)
    assert await _counted(store, "globex") == (10, 10)
    assert await _counted(store, "nobody") == (0, 0)
    await store.delete("m0001@pat")
    assert await store.delete("m0001@pat") is None  # gone already: nothing counted twice
    assert await _counted(store, "acme") == (19, 19)
    await store.delete_all(tenant="globex")
    assert await _counted(store, "globex") == (0, 0)
    assert await _counted(store) == (24, 24)
    await store.insert_batch([_message(3, "globex")])  # an id deleted before, stored again
    assert await _counted(store, "globex") == (1, 1)
    await store.delete_all()
    assert await _counted(store) == (0, 0)
    assert await _counted(store, "acme") == (0, 0)


async def test_a_failed_insert_counts_nothing(store: MessageStore) -> None:
    await store.insert_batch([_message(1)])
    with pytest.raises(sa.exc.IntegrityError):
        await store.insert_batch([_message(2), _message(1)])  # the same id twice: rolled back
    assert await _counted(store) == (1, 1)


async def test_a_filtered_total_is_still_counted_from_the_rows(store: MessageStore) -> None:
    await store.insert_batch([_message(n) for n in range(10)])
    await store.set_status("m0003@pat", MessageStatus.processed)
    total, found = await store.list(MessageFilter(status="processed"))
    assert (total, [m.id for m in found]) == (1, ["m0003@pat"])


async def test_counts_start_from_the_messages_stored_before_the_upgrade(
        store_url: str) -> None:
    engine = make_engine(store_url)

    def upgrade_to(connection: sa.Connection, revision: str) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as conn:
        for revision in ("0006_search", "0003_plugin_effects"):
            await conn.run_sync(upgrade_to, revision)
    await MessageStore(engine).insert_batch(
        [_message(n, "acme" if n % 2 else "globex") for n in range(9)])
    await migrate(engine)
    store = MessageStore(engine)
    assert await _counted(store) == (9, 9)
    assert await _counted(store, "acme") == (4, 4)
    await store.delete("m0000@pat")
    assert await _counted(store, "globex") == (4, 4)
    await engine.dispose()


async def test_pages_are_newest_first_with_ties_in_id_order_at_any_offset(
        store: MessageStore) -> None:
    # Three arrivals in each nanosecond: the id breaks the tie.
    batch = [_message(n, created_ns=5_000 + n // 3) for n in range(60)]
    await store.insert_batch(batch)
    expected = [m.id for m in sorted(batch, key=lambda m: (-m.created_ns, m.id))]
    for offset, limit in ((0, 7), (7, 7), (25, 10), (55, 10), (60, 5), (100, 5)):
        total, found = await store.list(offset=offset, limit=limit)
        assert total == 60
        assert [m.id for m in found] == expected[offset:offset + limit]
    total, found = await store.list(MessageFilter(sender="news003@"), offset=2, limit=3)
    senders = [i for i in expected if int(i[1:5]) % 7 == 3]
    assert (total, [m.id for m in found]) == (len(senders), senders[2:5])
    # A search answers its total with an empty page too.
    assert await store.list(MessageFilter(sender="news003@"), offset=100) == (len(senders), [])
    assert await store.list(MessageFilter(q="no such words")) == (0, [])


def test_a_part_is_a_run_of_rare_trigrams_that_finds_few_rows() -> None:
    common = {"use", "ser", "er0", "cus", "ust", "sto", "tom", "ome", "mer", "ers", "tes",
              "est", "@cu", "rs.", "s.t", ".te", "2@c", "42@"}

    def share(piece: str) -> float:
        return 0.9 if piece in common else 0.001

    # The digits are rare, the rest of the address is in every message.
    assert _lookup_part("user0042@customers.test", share, 50) == "r0042"
    assert _lookup_part("USER0042@Customers.test", share, 50) == "R0042"  # as written
    assert _lookup_part("customers.test", share, 50) is None  # nothing rare in it
    assert _lookup_part("vensulrossul", share, 50) is None  # all of it rare: look it all up
    # A rare part that still finds many rows costs more than the whole term.
    assert _lookup_part("user0042@customers.test",
                        lambda p: 0.04 if p in ("r00", "004", "042", "r0042") else 0.9,
                        500) is None
    assert _lookup_part("İstanbul 0042 customers", share, 50) is None  # lower() moves positions


async def test_a_term_looked_up_by_a_part_finds_what_the_whole_term_finds(
        store: MessageStore) -> None:
    # Enough recipients that the digits of one are rare and its domain is in every message.
    batch = [_message(n) for n in range(400)]
    batch += [_message(1000, to="user0042@other.test"),
              _message(1001, to="xuser0042@customers.tests"),
              _message(1002, to="User0042@Customers.TEST")]
    await store.insert_batch(batch)
    by_part = MessageStore(store.engine)
    by_part.sample_minimum = 1
    whole = MessageStore(store.engine)
    whole.sample_minimum = 10**9  # never samples enough: every term is looked up whole
    queries = [{"to": "user0042@customers.test"}, {"to": "USER0042@customers.test"},
               {"sender": "news003@shop.example"}, {"q": "to:user0042@customers.test order"},
               {"q": "100042 vensulrossul"}, {"to": "r0042@"}, {"to": "customers.test"},
               {"q": "to:0042@ from:news"}]
    for flt in queries:
        expected = await whole.list(MessageFilter(**flt), limit=100)
        found = await by_part.list(MessageFilter(**flt), limit=100)
        assert (found[0], [m.id for m in found[1]]) == (expected[0],
                                                        [m.id for m in expected[1]]), flt
    total, found = await by_part.list(MessageFilter(to="user0042@customers.test"))
    assert sorted(m.id for m in found) == ["m0042@pat", "m1001@pat", "m1002@pat"]
    assert total == 3
    # ... and the part was what the index was asked for.
    async with store.engine.connect() as conn:
        term = MessageFilter(to="user0042@customers.test").terms()[0]
        assert await by_part._part(conn, term) is not None
        assert await whole._part(conn, term) is None
