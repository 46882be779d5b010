"""Domain types shared by the gateway, the workflows and the APIs."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field


def new_message_id(hostname: str) -> str:
    """An ID shaped like MailHog's (``<url-safe base64 of 32 random bytes>@<hostname>``), so
    clients that treat the ID as opaque text keep working."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode() + "@" + hostname


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True)
class SpooledMessage:
    """What the gateway hands to the store before it answers 250."""

    id: str
    tenant: str
    mail_from: str
    recipients: list[str]
    helo: str
    peer: str
    data: bytes
    created_ns: int = field(default_factory=now_ns)


@dataclass(frozen=True)
class EmailReceived:
    """The event published for each spooled message: a claim check, never the body."""

    message_id: str
    tenant: str
    size: int
    mail_from: str
    recipients: list[str]
    run: int = 0
    subject: str | None = None  # as read from the header section at arrival


def workflow_id_for(message_id: str, run: int = 0) -> str:
    """``email-<message id>`` for the run started on arrival, ``email-<message id>-r<n>`` for
    the n-th reprocess: derived from the message, so a second start of the same run is refused
    by Temporal and a redelivered event is harmless."""
    return f"email-{message_id}" if run == 0 else f"email-{message_id}-r{run}"


@dataclass
class EmailPipelineInput:
    """Input of the EmailPipeline workflow; new fields must have defaults so that running
    histories keep decoding."""

    message_id: str
    tenant: str = "default"
    run: int = 0


@dataclass
class EmailPipelineResult:
    message_id: str
    status: str
    reason: str | None = None
