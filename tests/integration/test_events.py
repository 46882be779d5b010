"""/api/v3/events streams a message's life as Server-Sent Events: received, processed, deleted."""

from __future__ import annotations

import asyncio
import json
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from temporalio.client import Client

from tests.support.harness import make_settings, running_pat
from workers.email import email_worker


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, Any] | str]]:
    """(event name, data) of each event on an SSE stream, unnamed events' data decoded from
    JSON; comments (keepalives) are skipped."""
    name, data = "message", []
    async for line in lines:
        if line == "":
            if data:
                text = "\n".join(data)
                yield name, json.loads(text) if name == "message" else text
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def _send(port: int, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "app@example.test"
    message["To"] = "dev@example.test"
    message["Subject"] = subject
    message.set_content("body\n")
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.send_message(message)


async def test_events_deliver_received_processed_and_deleted(
        tmp_path: Path, temporal_client: Client) -> None:
    # The worker starts only once "received" has been seen: the store watcher polls, and a
    # pipeline faster than its interval would fold both changes into one event.
    settings = make_settings(tmp_path)
    async with running_pat(settings, temporal_client, worker=False) as pat, \
            pat.http.stream("GET", "/api/v3/events") as response, asyncio.timeout(60):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.aiter_lines())
        assert await anext(events) == ("ready", "subscribed")

        await asyncio.to_thread(_send, pat.smtp_port, "Streamed")
        name, received = await anext(events)
        assert name == "message"
        assert isinstance(received, dict)
        message_id = received["id"]
        assert received["kind"] == "received"
        assert received["status"] == "received"
        assert received["summary"]["mail_from"] == "app@example.test"
        assert received["summary"]["workflow_id"] == f"email-{message_id}"

        async with email_worker(temporal_client, pat.store, settings.temporal_task_queue):
            updates: list[dict[str, Any]] = []
            async for _, event in events:
                assert isinstance(event, dict)
                updates.append(event)
                if event["status"] != "received":
                    break
        assert {e["id"] for e in updates} == {message_id}
        assert updates[-1]["kind"] == "updated"
        assert updates[-1]["status"] == "processed"
        assert updates[-1]["summary"]["subject"] == "Streamed"

        assert (await pat.http.delete(f"/api/v3/messages/{message_id}")).status_code == 204
        assert await anext(events) == ("message", {"kind": "deleted", "id": message_id,
                                                   "status": None, "summary": None})
