"""Tables of the store. A message is three rows: its metadata (``messages``, all a list
needs), its bytes (``message_raw``) and, once parsed, its artifact (``message_artifacts``:
the parsed view, the decoded bodies and its MailHog JSON), so that listing never reads bodies
and nothing is parsed twice. ``outbox`` rows are written in the same transaction as the message
and tell the relay which pipelines still have to be started."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlmodel import Field, SQLModel


class MessageStatus(StrEnum):
    received = "received"
    processed = "processed"
    failed = "failed"


class MessageBase(SQLModel):
    id: str = Field(primary_key=True, max_length=255)
    tenant: str = Field(default="default", index=True, max_length=255)
    # Indexed with id in list order, newest first (migration 0008_newest_first).
    created_ns: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_ns: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    mail_from: str = Field(default="", max_length=1024)
    recipients: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    helo: str = Field(default="", max_length=1024)
    peer: str = Field(default="", max_length=255)
    size: int = 0
    status: str = Field(default=MessageStatus.received, index=True, max_length=16)
    failure_reason: str | None = None
    subject: str | None = None
    from_header: str | None = None
    to_header: str | None = None
    # The start of the text body and the number of attachments, from the parse step
    # (migration 0005_artifacts): what a list shows besides the headers above.
    snippet: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    attachment_count: int = Field(default=0, sa_column=Column(Integer, nullable=False,
                                                              server_default="0"))
    # The deliverability checks' results and report (migration 0002_checks).
    checks: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # Which run of EmailPipeline is the message's current one: 0 for the run started on
    # arrival, n for the n-th reprocess (migration 0003_pipeline_runs). Only the current run
    # may change the message's status.
    pipeline_run: int = Field(default=0, sa_column=Column(Integer, nullable=False,
                                                          server_default="0"))


class Message(MessageBase, table=True):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_newest_first", text("created_ns DESC"), "id"),)


class MessageRaw(SQLModel, table=True):
    __tablename__ = "message_raw"
    message_id: str = Field(
        sa_column=Column(String(255), ForeignKey("messages.id", ondelete="CASCADE"),
                         primary_key=True))
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class Outbox(SQLModel, table=True):
    __tablename__ = "outbox"
    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=255, index=True)
    tenant: str = Field(default="default", max_length=255)
    size: int = 0
    created_ns: int = Field(sa_column=Column(BigInteger, nullable=False))
    published_ns: int | None = Field(default=None, sa_column=Column(BigInteger, index=True))
    run: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))


class MessageArtifact(SQLModel, table=True):
    """What the parse step made of a message, kept so that no reader parses it again: the
    parsed view (``pat.parsing.ParsedMessage`` as a dict), the decoded text and HTML bodies,
    and MailHog's JSON of the message (Go-encoded, zlib-compressed)."""

    __tablename__ = "message_artifacts"
    message_id: str = Field(
        sa_column=Column(String(255), ForeignKey("messages.id", ondelete="CASCADE"),
                         primary_key=True))
    view: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    text: str | None = Field(default=None, sa_column=Column(Text))
    html: str | None = Field(default=None, sa_column=Column(Text))
    mailhog: bytes | None = Field(default=None, sa_column=Column(LargeBinary))


class MessageSearch(SQLModel, table=True):
    """What a search looks in (``pat.search``), one row per message; indexed for substrings by
    migration 0006_search (FTS5 trigram on SQLite, pg_trgm on PostgreSQL)."""

    __tablename__ = "message_search"
    seq: int | None = Field(default=None, sa_column=Column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True))
    message_id: str = Field(
        sa_column=Column(String(255), ForeignKey("messages.id", ondelete="CASCADE"),
                         unique=True, nullable=False))
    to_text: str = Field(default="", sa_column=Column(Text, nullable=False))
    from_text: str = Field(default="", sa_column=Column(Text, nullable=False))
    subject_text: str = Field(default="", sa_column=Column(Text, nullable=False))
    all_text: str = Field(default="", sa_column=Column(Text, nullable=False))


class MessageCount(SQLModel, table=True):
    """How many messages a tenant has, kept in step by triggers on ``messages`` (migration
    0007_message_counts): the total of a list without filters, without counting rows."""

    __tablename__ = "message_counts"
    tenant: str = Field(primary_key=True, max_length=255)
    total: int = Field(sa_column=Column(BigInteger, nullable=False))


messages = Message.__table__  # type: ignore[attr-defined]
message_counts = MessageCount.__table__  # type: ignore[attr-defined]
message_search = MessageSearch.__table__  # type: ignore[attr-defined]
message_artifacts = MessageArtifact.__table__  # type: ignore[attr-defined]
message_raw = MessageRaw.__table__  # type: ignore[attr-defined]
outbox = Outbox.__table__  # type: ignore[attr-defined]


class ApiKey(SQLModel, table=True):
    """An API key: only its SHA-256 is kept (keys are 256 random bits, so a fast hash is as
    good as a slow one); the key itself is shown once, when it is made."""

    __tablename__ = "api_keys"
    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(default="", max_length=255)
    key_hash: str = Field(max_length=64, unique=True)
    scope: str = Field(max_length=16)
    tenant: str | None = Field(default=None, max_length=255)
    created_ns: int = Field(sa_column=Column(BigInteger, nullable=False))
    revoked_ns: int | None = Field(default=None, sa_column=Column(BigInteger))


api_keys = ApiKey.__table__  # type: ignore[attr-defined]
