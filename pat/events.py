"""Publishing "email received" events. The outbox relay calls one ``EventPublisher``; embedded
Pat starts the workflow directly, production publishes to Kafka (a second implementation)."""

from __future__ import annotations

from typing import Protocol

from pat.domain import EmailReceived


class EventRefused(Exception):
    """The event can never be delivered as it is (its receiver refuses it, not just for now);
    the message says why."""


class EventPublisher(Protocol):
    async def publish(self, event: EmailReceived) -> None:
        """Deliver ``event``; publishing the same event twice must have no further effect.
        ``EventRefused`` if it can never be delivered; any other error is retried."""
