"""message counts: how many messages each tenant has, kept in step by triggers

Revision ID: 0007_message_counts
Revises: 0006_search

A list without filters shows the total number of messages; ``count(*)`` reads every row of
an index for it, tens of milliseconds at a million messages. ``message_counts`` holds the
number per tenant instead, changed by triggers on ``messages`` in the transaction that adds or
removes a message, whoever does it, so that it is exact whenever a transaction can see it.
SQLite counts row by row; PostgreSQL once per statement, from its transition tables, with the
tenants' rows locked in one order (two writers never wait for each other in a cycle).
"""

from alembic import op

revision = "0007_message_counts"
down_revision = "0006_search"
branch_labels = None
depends_on = None

_TABLE = """CREATE TABLE message_counts (
    tenant VARCHAR(255) PRIMARY KEY,
    total BIGINT NOT NULL)"""

_ADD = """INSERT INTO message_counts (tenant, total) VALUES ({tenant}, {delta})
        ON CONFLICT (tenant) DO UPDATE SET total = message_counts.total + excluded.total"""

_SQLITE = [
    f"""CREATE TRIGGER message_counted AFTER INSERT ON messages BEGIN
        {_ADD.format(tenant="new.tenant", delta=1)};
    END""",
    f"""CREATE TRIGGER message_uncounted AFTER DELETE ON messages BEGIN
        {_ADD.format(tenant="old.tenant", delta=-1)};
    END""",
    f"""CREATE TRIGGER message_recounted AFTER UPDATE OF tenant ON messages
        WHEN old.tenant IS NOT new.tenant BEGIN
        {_ADD.format(tenant="old.tenant", delta=-1)};
        {_ADD.format(tenant="new.tenant", delta=1)};
    END""",
]

_POSTGRES_COUNT = """INSERT INTO message_counts (tenant, total)
        SELECT tenant, {sign}count(*) FROM {rows} GROUP BY tenant ORDER BY tenant
        ON CONFLICT (tenant) DO UPDATE SET total = message_counts.total + excluded.total"""

_POSTGRES = [
    f"""CREATE FUNCTION message_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_POSTGRES_COUNT.format(sign="", rows="added")};
        RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION message_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_POSTGRES_COUNT.format(sign="-", rows="removed")};
        RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION message_counts_moved() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_ADD.format(tenant="OLD.tenant", delta=-1)};
        {_ADD.format(tenant="NEW.tenant", delta=1)};
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER message_counted AFTER INSERT ON messages
        REFERENCING NEW TABLE AS added FOR EACH STATEMENT
        EXECUTE FUNCTION message_counts_added()""",
    """CREATE TRIGGER message_uncounted AFTER DELETE ON messages
        REFERENCING OLD TABLE AS removed FOR EACH STATEMENT
        EXECUTE FUNCTION message_counts_removed()""",
    # Pat never moves a message to another tenant; were it to, the counts would follow.
    """CREATE TRIGGER message_recounted AFTER UPDATE OF tenant ON messages
        FOR EACH ROW WHEN (OLD.tenant IS DISTINCT FROM NEW.tenant)
        EXECUTE FUNCTION message_counts_moved()""",
]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute(_TABLE)
    op.execute("INSERT INTO message_counts (tenant, total) "
               "SELECT tenant, count(*) FROM messages GROUP BY tenant")
    for statement in _SQLITE if sqlite else _POSTGRES:
        op.execute(statement)


def downgrade() -> None:
    for trigger in ("message_counted", "message_uncounted", "message_recounted"):
        op.execute(f"DROP TRIGGER {trigger}" if op.get_bind().dialect.name == "sqlite"
                   else f"DROP TRIGGER {trigger} ON messages")
    if op.get_bind().dialect.name != "sqlite":
        for function in ("message_counts_added", "message_counts_removed",
                         "message_counts_moved"):
            op.execute(f"DROP FUNCTION {function}()")
    op.drop_table("message_counts")
