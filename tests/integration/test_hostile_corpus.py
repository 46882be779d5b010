"""Every message of the hostile corpus (tests/hostile/) through a whole Pat: accepted over SMTP,
its pipeline ended (processed, or failed with a reason), and every API that shows it answering
200 with valid JSON (404 only for a part that does not exist): MailHog's /api/v1 and /api/v2,
Pat's /api/v3. One hostile message must never take an API down for everybody."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.hostile import corpus as hostile
from tests.hostile.smtp import RECIPIENT, SENDER, send_raw
from tests.support.harness import RunningPat

pytestmark = pytest.mark.timeout(2400)

FINAL = ("processed", "failed")
# Pipelines of the huge messages take long on a busy 2-core machine; the wait ends early when
# no message has changed state for STALL seconds.
DEADLINE = 1200.0
STALL = 240.0
# Each v3 part request reads the whole message again: a few parts per message are enough.
PARTS_TRIED = 4
PAGE = 10


def _stored(raw: bytes) -> bytes:
    """What the gateway stores: the DATA section up to the CRLF before the final dot."""
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


class Problems:
    """Every answer that broke a rule, so that one run reports all of them."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def json_of(self, answer: httpx.Response, what: str) -> Any:
        if answer.status_code != 200:
            self.found.append(f"{what}: answered {answer.status_code}: {answer.text[:300]}")
            return None
        try:
            return json.loads(answer.content)
        except ValueError as error:
            self.found.append(f"{what}: the JSON is not valid: {error}")
            return None

    def expect(self, condition: bool, what: str) -> None:
        if not condition:
            self.found.append(what)


async def _wait_final(pat: RunningPat, names: dict[str, str]) -> dict[str, str]:
    """The status of every message once all are final, or when waiting stops (deadline, or no
    change for STALL seconds)."""
    loop = asyncio.get_running_loop()
    started = changed = loop.time()
    statuses: dict[str, str] = {}
    while True:
        now = {}
        for message_id in names:
            message = await pat.store.get(message_id)
            now[message_id] = message.status if message else "missing"
        if now != statuses:
            statuses, changed = now, loop.time()
        if all(status in FINAL for status in statuses.values()):
            return statuses
        if loop.time() - started > DEADLINE or loop.time() - changed > STALL:
            return statuses
        await asyncio.sleep(1)


async def _check_mailhog(http: httpx.AsyncClient, names: dict[str, str],
                         stored: dict[str, bytes], problems: Problems) -> None:
    listed = problems.json_of(await http.get("/api/v1/messages"), "GET /api/v1/messages")
    if listed is not None:
        problems.expect({m["ID"] for m in listed} >= set(names),
                        "/api/v1/messages does not list every message")

    paged: set[str] = set()
    for start in range(0, len(names), PAGE):
        page = problems.json_of(
            await http.get("/api/v2/messages", params={"start": start, "limit": PAGE}),
            f"GET /api/v2/messages?start={start}&limit={PAGE}")
        if page is not None:
            paged |= {m["ID"] for m in page["items"]}
    problems.expect(paged >= set(names), "/api/v2/messages pages do not hold every message")

    for kind, query in (("from", "hostile"), ("to", RECIPIENT), ("containing", "hostile"),
                        ("containing", "no such text anywhere")):
        found = problems.json_of(
            await http.get("/api/v2/search", params={"kind": kind, "query": query}),
            f"GET /api/v2/search?kind={kind}&query={query}")
        if found is not None and kind == "to":
            problems.expect(found["total"] == len(names),
                            f"search to={query} found {found['total']} of {len(names)}")

    for message_id, name in names.items():
        base = f"/api/v1/messages/{message_id}"
        message = problems.json_of(await http.get(base), f"{name}: GET {base}")
        download = await http.get(f"{base}/download")
        problems.expect(download.status_code == 200 and download.content == stored[message_id],
                        f"{name}: {base}/download is not the message as received")
        if message is None:
            continue
        count = len((message["MIME"] or {}).get("Parts") or [])
        for index in sorted({*range(min(count, PARTS_TRIED)), count - 1} - {-1}):
            part = await http.get(f"{base}/mime/part/{index}/download")
            problems.expect(part.status_code == 200,
                            f"{name}: MailHog part {index} answered {part.status_code}")
            problems.expect(
                part.headers.get("content-disposition", "").startswith("attachment")
                and part.headers.get("x-content-type-options") == "nosniff",
                f"{name}: MailHog part {index} is not served as a sandboxed download")
        beyond = await http.get(f"{base}/mime/part/{count}/download")
        problems.expect(beyond.status_code == 404,
                        f"{name}: MailHog part {count} (none) answered {beyond.status_code}")


async def _check_v3(http: httpx.AsyncClient, names: dict[str, str],
                    stored: dict[str, bytes], problems: Problems) -> None:
    listed = problems.json_of(await http.get("/api/v3/messages", params={"limit": 1000}),
                              "GET /api/v3/messages")
    if listed is not None:
        problems.expect({m["id"] for m in listed["items"]} >= set(names),
                        "/api/v3/messages does not list every message")
    for message_id, name in names.items():
        base = f"/api/v3/messages/{message_id}"
        detail = problems.json_of(await http.get(base), f"{name}: GET {base}")
        raw = await http.get(f"{base}/raw")
        problems.expect(raw.status_code == 200 and raw.content == stored[message_id],
                        f"{name}: {base}/raw is not the message as received")
        if detail is None:
            continue
        indexes = [p["index"] for p in detail["parts"]]
        for index in sorted({*indexes[:PARTS_TRIED], *indexes[-1:]}):
            part = await http.get(f"{base}/parts/{index}")
            problems.expect(part.status_code == 200,
                            f"{name}: v3 part {index} answered {part.status_code}")
        beyond = await http.get(f"{base}/parts/1000000")
        problems.expect(beyond.status_code == 404,
                        f"{name}: v3 part 1000000 (none) answered {beyond.status_code}")


async def test_every_hostile_message_is_processed_and_every_api_answers(
        pat_sqlite: RunningPat) -> None:
    names: dict[str, str] = {}
    stored: dict[str, bytes] = {}
    for name, raw in hostile.corpus():
        message_id = await asyncio.to_thread(send_raw, pat_sqlite.smtp_port, raw,
                                             sender=SENDER, recipient=RECIPIENT)
        names[message_id] = name
        stored[message_id] = _stored(raw)

    statuses = await _wait_final(pat_sqlite, names)
    unfinished = sorted(f"{names[i]} ({s})" for i, s in statuses.items() if s not in FINAL)
    problems = Problems()
    problems.expect(not unfinished, f"pipelines that did not end: {', '.join(unfinished)}")
    for message_id, status in statuses.items():
        if status == "failed":
            message = await pat_sqlite.store.get(message_id)
            reason = message.failure_reason if message else None
            problems.expect(bool(reason), f"{names[message_id]}: failed without a reason")
            print(f"{names[message_id]}: failed: {reason}")  # shown with -rP: expected or not

    # Some answers are tens of megabytes (100,000 parts) and v3 reads a message again per
    # request: a client more patient than the harness's. A connection per request: while the
    # worker in this process parses a huge message, uvicorn's keep-alive timer fires late and
    # can close a kept connection just as the next request is sent on it.
    async with httpx.AsyncClient(base_url=pat_sqlite.base_url, timeout=300,
                                 limits=httpx.Limits(max_keepalive_connections=0)) as http:
        await _check_mailhog(http, names, stored, problems)
        await _check_v3(http, names, stored, problems)

    assert not problems.found, "\n".join(problems.found)
