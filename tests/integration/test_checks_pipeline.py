"""The checks inside the whole pipeline: SMTP -> EmailPipeline (real activities, a real DNS
server, a real spamd) -> store -> /api/v3 -> web UI, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.support.check_fixtures import (
    DOMAIN,
    SENDING_IP,
    SigningDns,
    Spamd,
    start_spamd,
    stop_spamd,
)
from tests.support.harness import RunningPat, make_settings, running_pat

NOTE = (b"From: App <app@example.test>\r\nTo: dev@example.test\r\nSubject: Your receipt\r\n"
        b"Date: Mon, 23 Nov 2026 05:00:00 +0000\r\nMessage-ID: <p1@example.test>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Thanks for your order, it ships on Thursday. See https://shop.example.test/o/1\r\n")
GTUBE_LINE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"


def _check_settings(tmp: Path, store_url: str | None, dns: SigningDns, spamd_port: int,
                    spamd_host: str = "127.0.0.1") -> Any:
    return make_settings(tmp, store_url, dns_resolver="127.0.0.1", dns_port=dns.port,
                         dns_timeout=2.0, spf_evaluate_ip=SENDING_IP, spam_engine="spamassassin",
                         spamd_host=spamd_host,
                         spamd_port=spamd_port, spamd_timeout=20, dnsbl_ip_zones=["bl.test"],
                         dnsbl_domain_zones=["dbl.test"])


@pytest.fixture
async def checked_pat(tmp_path: Path, store_url: str, temporal_client: Client,
                      test_dns: SigningDns, spamd: Spamd) -> AsyncIterator[RunningPat]:
    settings = _check_settings(tmp_path, store_url, test_dns, spamd.port, spamd.host)
    async with running_pat(settings, temporal_client) as running:
        yield running


def _send(port: int, raw: bytes, mail_from: str = f"bounce@{DOMAIN}") -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail(mail_from, ["dev@example.test"], raw)


async def _deliver(pat: RunningPat, raw: bytes) -> dict[str, Any]:
    await asyncio.to_thread(_send, pat.smtp_port, raw)
    _, found = await pat.store.list()
    message_id = found[0].id
    assert await pat.wait_status(message_id, "processed", "failed", timeout=60) == "processed"
    detail: dict[str, Any] = (await pat.http.get(f"/api/v3/messages/{message_id}")).json()
    return detail


async def test_signed_note_passes_every_check_and_shows_them(checked_pat: RunningPat,
                                                             test_dns: SigningDns) -> None:
    detail = await _deliver(checked_pat, test_dns.sign(NOTE))
    checks = detail["checks"]
    results = checks["results"]
    assert set(results) == {"auth", "spam", "content", "html_compatibility", "links",
                            "blocklists"}
    auth = results["auth"]["details"]["checks"]
    assert auth["dkim"]["verdict"] == "pass"
    assert auth["spf"]["verdict"] == "pass" and auth["spf"]["details"]["ip"] == SENDING_IP
    assert auth["dmarc"]["verdict"] == "pass"
    assert "dkim=pass header.d=example.test" in results["auth"]["details"][
        "authentication_results"]
    assert results["spam"]["verdict"] == "pass"
    assert results["blocklists"]["verdict"] == "pass"
    assert results["html_compatibility"]["verdict"] == "none"
    assert results["links"]["details"]["urls"][0]["url"] == "https://shop.example.test/o/1"
    report = checks["report"]
    assert 90 <= report["score"] <= 100
    assert report["score"] == round(100 - sum(d["points"] for d in report["deductions"]))

    page = await checked_pat.http.get(f"/view/{detail['id']}")
    assert 'data-tab="checks"' in page.text
    assert "dkim=pass" in page.text and f"{report['score']}" in page.text


async def test_gtube_is_spam_and_costs_the_spam_points(checked_pat: RunningPat) -> None:
    detail = await _deliver(checked_pat, NOTE.replace(b"Thanks for your order", GTUBE_LINE))
    spam = detail["checks"]["results"]["spam"]
    assert spam["verdict"] == "fail" and spam["details"]["is_spam"] is True
    assert any(r["rule"] == "GTUBE" for r in spam["details"]["rules"])
    assert detail["checks"]["report"]["score"] <= 70


async def test_spamd_going_down_mid_run_gives_unavailable_and_the_pipeline_completes(
        tmp_path: Path, temporal_client: Client, test_dns: SigningDns) -> None:
    process, port = start_spamd(tmp_path)
    try:
        settings = _check_settings(tmp_path, None, test_dns, port)
        async with running_pat(settings, temporal_client) as pat:
            before = await _deliver(pat, test_dns.sign(NOTE))
            assert before["checks"]["results"]["spam"]["verdict"] == "pass"
            stop_spamd(process)
            await pat.store.delete_all()
            after = await _deliver(pat, test_dns.sign(NOTE.replace(b"<p1@", b"<p2@")))
    finally:
        stop_spamd(process)
    spam = after["checks"]["results"]["spam"]
    assert spam["verdict"] == "unavailable", spam
    assert f"127.0.0.1:{port}" in spam["reason"]
    assert after["checks"]["results"]["auth"]["verdict"] == "pass"
    assert any(s.startswith("spam:") for s in after["checks"]["report"]["not_scored"])


async def test_unresponsive_resolver_gives_error_verdicts_and_the_pipeline_completes(
        tmp_path: Path, temporal_client: Client, test_dns: SigningDns, spamd: Spamd) -> None:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        settings = _check_settings(tmp_path, None, test_dns, spamd.port).model_copy(
            update={"dns_port": silent.getsockname()[1], "dns_timeout": 0.3})
        async with running_pat(settings, temporal_client) as pat:
            detail = await _deliver(pat, test_dns.sign(NOTE))
    auth = detail["checks"]["results"]["auth"]["details"]["checks"]
    assert auth["dkim"]["verdict"] == "error" and "temperror" in auth["dkim"]["reason"]
    assert auth["spf"]["verdict"] == "error"
    assert detail["checks"]["results"]["blocklists"]["verdict"] == "error"
    assert detail["checks"]["results"]["spam"]["verdict"] == "pass"
