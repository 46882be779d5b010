"""A seeded run of bench/smtp_fuzz.py's hostile sessions against the gateway: every session
ends, every reply line is well formed, nothing inside Pat fails, and afterwards no session is
left holding a connection slot and mail is still delivered. The 10,000-session run and its
figures are in the README."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from pathlib import Path

import pytest

from bench.smtp_fuzz import Target, fuzz, sessions_admitted
from tests.support.gateway import running_gateway
from tests.support.harness import make_settings
from tests.support.postgres import free_port

SLOTS = 16


async def test_a_thousand_hostile_sessions_end_with_well_formed_replies(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, smtp_tls_port=free_port(), smtp_max_connections=SLOTS)
    assert settings.smtp_tls_port is not None
    target = Target("127.0.0.1", settings.smtp_port, settings.smtp_tls_port)
    with caplog.at_level(logging.ERROR):
        async with running_gateway(settings) as gw:
            figures = await fuzz(target, sessions=1000, seed=1, concurrency=8, timeout=30)
            assert figures.sessions == 1000
            assert (figures.hangs, figures.malformed) == (0, 0), figures.examples

            def deliver() -> dict[str, tuple[int, bytes]]:
                with smtplib.SMTP("127.0.0.1", gw.smtp_port, timeout=20) as client:
                    return client.sendmail("app@example.test", ["dev@example.test"],
                                           b"Subject: after the fuzz\r\n\r\nstill here\r\n")

            assert await asyncio.to_thread(deliver) == {}
            assert await sessions_admitted(target, SLOTS) == SLOTS  # no slot was leaked
    # Neither Pat nor asyncio's transports logged a failure (a session's exception, an
    # unretrieved task exception, a protocol callback that raised).
    assert [f"{r.name}: {r.getMessage()}" for r in caplog.records] == []
