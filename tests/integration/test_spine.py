"""A message travels SMTP -> spool -> EmailPipeline -> store -> REST, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from tests.support.harness import RunningPat


def _message(subject: str = "Hello", to: str = "dev@example.test") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "App <app@example.test>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Plain body\n")
    message.add_alternative("<p>HTML body</p>", subtype="html")
    message.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf",
                           filename="report.pdf")
    return message


def _send(port: int, message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.send_message(message)


async def test_message_is_listed_at_once_and_processed_by_its_workflow(pat: RunningPat) -> None:
    await asyncio.to_thread(_send, pat.smtp_port, _message("Quarterly =?utf-8?Q?r=C3=A9port?="))
    listing = (await pat.http.get("/api/v3/messages")).json()
    assert listing["total"] == 1
    message_id = listing["items"][0]["id"]
    assert listing["items"][0]["workflow_id"] == f"email-{message_id}"

    assert await pat.wait_status(message_id, "processed") == "processed"
    detail = (await pat.http.get(f"/api/v3/messages/{message_id}")).json()
    assert detail["subject"] == "Quarterly réport"
    assert detail["text"] == "Plain body\n"
    assert detail["html"] == "<p>HTML body</p>\n"
    assert [p["filename"] for p in detail["parts"]] == ["report.pdf"]
    part = await pat.http.get(detail["parts"][0]["url"])
    assert part.content == b"%PDF-1.4 fake"
    assert part.headers["content-type"] == "application/pdf"
    raw = await pat.http.get(detail["raw_url"])
    assert b"Subject: Quarterly" in raw.content


async def test_wait_answers_when_the_pipeline_finishes_and_408_on_timeout(
        pat: RunningPat) -> None:
    waiter = asyncio.create_task(pat.http.get(
        "/api/v3/messages/wait", params={"to": "waiter@example.test", "timeout": 20}))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(_send, pat.smtp_port, _message("Wait for me", "waiter@example.test"))
    answer = await waiter
    assert answer.status_code == 200
    assert answer.json()["status"] == "processed"
    assert answer.json()["subject"] == "Wait for me"

    late = await pat.http.get("/api/v3/messages/wait",
                              params={"to": "nobody@example.test", "timeout": 0.5})
    assert late.status_code == 408
    assert "within 0.5 seconds" in late.json()["error"]


async def test_wrong_parameters_are_refused_with_which_and_why(pat: RunningPat) -> None:
    answer = await pat.http.get("/api/v3/messages", params={"limit": "lots", "status": "odd"})
    assert answer.status_code == 422
    body = answer.json()
    assert {p["parameter"] for p in body["problems"]} == {"limit", "status"}
    assert "limit" in body["error"]


async def test_malformed_message_is_kept_as_failed_with_the_reason(pat: RunningPat) -> None:
    def send_headerless() -> None:
        with smtplib.SMTP("127.0.0.1", pat.smtp_port) as client:
            client.sendmail("a@example.test", ["b@example.test"], b"\r\njust a body, no headers")

    await asyncio.to_thread(send_headerless)
    listing = (await pat.http.get("/api/v3/messages")).json()
    message_id = listing["items"][0]["id"]
    assert await pat.wait_status(message_id, "failed", "processed") == "failed"
    detail = (await pat.http.get(f"/api/v3/messages/{message_id}")).json()
    assert detail["failure_reason"] == "the message has no header section"
    raw = (await pat.http.get(detail["raw_url"])).content
    assert raw == b"\r\njust a body, no headers\r\n"


async def test_delete_removes_the_message_everywhere(pat: RunningPat) -> None:
    await asyncio.to_thread(_send, pat.smtp_port, _message())
    message_id = (await pat.http.get("/api/v3/messages")).json()["items"][0]["id"]
    assert (await pat.http.delete(f"/api/v3/messages/{message_id}")).status_code == 204
    assert (await pat.http.get(f"/api/v3/messages/{message_id}")).status_code == 404
    assert (await pat.http.delete(f"/api/v3/messages/{message_id}")).status_code == 404
