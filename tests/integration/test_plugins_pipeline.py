"""A plugin installed through the API runs inside every EmailPipeline."""

from __future__ import annotations

import asyncio
import json
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.support.harness import RunningPat, make_settings, running_pat

SAMPLES = Path(__file__).resolve().parents[2] / "plugins" / "samples"


@pytest.fixture
async def pat_on_temporal(tmp_path: Path, temporal_client: Client) -> AsyncIterator[RunningPat]:
    settings = make_settings(tmp_path,
                             temporal_address=temporal_client.service_client.config.target_host)
    async with running_pat(settings, temporal_client) as running:
        yield running


async def test_active_plugin_hooks_run_in_the_pipeline_and_change_pats_view(
        pat_on_temporal: RunningPat) -> None:
    pat = pat_on_temporal
    sample = {"manifest": json.loads((SAMPLES / "spam_scorer" / "manifest.json").read_text()),
              "code": (SAMPLES / "spam_scorer" / "plugin.js").read_text()}
    installed = await pat.http.post("/api/v3/plugins", json=sample)
    assert installed.status_code == 201, installed.text

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", pat.smtp_port) as client:
            client.sendmail("a@example.test", ["b@example.test"],
                            b"From: a@example.test\r\nTo: b@example.test\r\n"
                            b"Subject: FREE MONEY, WIN NOW!!!\r\n\r\nact now http://bit.ly/x\r\n")

    await asyncio.to_thread(send)
    message_id = (await pat.http.get("/api/v3/messages")).json()["items"][0]["id"]
    assert await pat.wait_status(message_id, "processed") == "processed"
    view = (await pat.http.get(f"/api/v3/plugins/view/{message_id}")).json()
    assert [r["hook"] for r in view["runs"]] == ["onEmailReceived"]
    assert view["runs"][0]["status"] == "ok"
    changed = {name for change in view["header_changes"] for name in change}
    assert {"X-Spam-Score", "X-Spam-Status"} <= changed
    raw = (await pat.http.get(f"/api/v3/messages/{message_id}/raw")).content
    assert b"X-Spam-Score" not in raw  # the original bytes are never changed
