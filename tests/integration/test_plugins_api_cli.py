"""/api/v3/plugins and `pat plugin` against a running Pat, its store and the real Temporal dev
server (install goes through the PluginInstall workflow)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from pat.cli import build_parser
from pat.domain import SpooledMessage
from pat.settings import Settings
from plugins.cli import run_plugin_command
from tests.support.harness import RunningPat, make_settings, running_pat
from workers.plugins import PLUGIN_WORKFLOWS, plugin_activities

SAMPLES = Path(__file__).resolve().parents[2] / "plugins" / "samples"
RAW = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: WIN BIG!!\r\n"
       b"Message-ID: <api@example.test>\r\n\r\nlimited time http://bit.ly/x\r\n")


def sample(name: str) -> dict[str, object]:
    return {"manifest": json.loads((SAMPLES / name / "manifest.json").read_text()),
            "code": (SAMPLES / name / "plugin.js").read_text()}


@pytest.fixture
async def pat_with_plugins(tmp_path: Path, temporal_client: Client
                           ) -> AsyncIterator[RunningPat]:
    settings = make_settings(tmp_path,
                             temporal_address=temporal_client.service_client.config.target_host)
    async with running_pat(settings, temporal_client, worker=False, gateway=False) as running:
        worker = Worker(temporal_client, task_queue=settings.temporal_task_queue,
                        workflows=list(PLUGIN_WORKFLOWS),
                        activities=plugin_activities(running.store, settings))
        async with worker:
            yield running


async def test_install_configure_order_and_remove_through_the_api(
        pat_with_plugins: RunningPat) -> None:
    http = pat_with_plugins.http
    installed = await http.post("/api/v3/plugins", json=sample("spam_scorer"))
    assert installed.status_code == 201, installed.text
    assert installed.json()["status"] == "active"
    second = await http.post("/api/v3/plugins", json={**sample("link_validator"),
                                                      "activate": False})
    assert second.json()["status"] == "installed"
    listed = (await http.get("/api/v3/plugins")).json()
    assert [(p["id"], p["active"]) for p in listed] == [("spam-scorer", True),
                                                        ("link-validator", False)]
    moved = await http.patch("/api/v3/plugins/link-validator",
                             json={"position": 1, "active": True,
                                   "settings": {"shorteners": "bit.ly"}})
    assert moved.status_code == 200, moved.text
    assert moved.json()["settings"] == {"shorteners": "bit.ly"}
    assert [p["id"] for p in (await http.get("/api/v3/plugins")).json()] == [
        "link-validator", "spam-scorer"]
    wrong = await http.patch("/api/v3/plugins/spam-scorer", json={"settings": {"x": 1}})
    assert wrong.status_code == 422 and "unknown settings" in wrong.json()["detail"]
    assert (await http.delete("/api/v3/plugins/spam-scorer")).status_code == 204
    assert (await http.get("/api/v3/plugins/spam-scorer")).status_code == 404


async def test_the_api_refuses_a_plugin_the_scanner_blocks(pat_with_plugins: RunningPat) -> None:
    bad = {"manifest": {"id": "bad-one", "name": "Bad", "version": "1.0.0",
                        "hooks": ["onEmailReceived"]},
           "code": "function onEmailReceived(e) { return eval(e.subject); }"}
    scanned = (await pat_with_plugins.http.post("/api/v3/plugins/scan", json=bad)).json()
    assert not scanned["passed"]
    refused = await pat_with_plugins.http.post("/api/v3/plugins", json=bad)
    assert refused.status_code == 422
    assert refused.json()["detail"]["status"] == "rejected"
    assert (await pat_with_plugins.http.get("/api/v3/plugins")).json() == []


async def test_runs_and_the_plugin_view_of_a_message(pat_with_plugins: RunningPat) -> None:
    from plugins.host import PluginHost
    from plugins.store import PluginStore

    http = pat_with_plugins.http
    assert (await http.post("/api/v3/plugins", json=sample("spam_scorer"))).status_code == 201
    await pat_with_plugins.store.insert_batch([SpooledMessage(
        id="api-1", tenant="default", mail_from="a@example.test",
        recipients=["b@example.test"], helo="h", peer="127.0.0.1", data=RAW)])
    host = PluginHost(PluginStore(pat_with_plugins.store.engine), pat_with_plugins.store,
                      pat_with_plugins.settings)
    await host.run_hook("default", "spam-scorer", "onEmailReceived", message_id="api-1")
    view = (await http.get("/api/v3/plugins/view/api-1")).json()
    assert view["header_changes"][0]["X-Spam-Score"]
    assert view["metadata"]["spam-scorer"]["rules"]
    runs = (await http.get("/api/v3/plugins/runs", params={"plugin_id": "spam-scorer"})).json()
    assert [(r["hook"], r["status"]) for r in runs] == [("onEmailReceived", "ok"),
                                                        ("onActivate", "ok")]
    assert runs[1]["logs"][0]["message"].startswith("spam scorer active")


def _cli(settings: Settings, *argv: str) -> int:
    args: argparse.Namespace = build_parser().parse_args(["plugin", *argv])
    return run_plugin_command(settings, args)


async def test_the_cli_installs_lists_disables_logs_and_removes(
        pat_with_plugins: RunningPat, capsys: pytest.CaptureFixture[str]) -> None:
    settings = pat_with_plugins.settings
    status = await asyncio.to_thread(_cli, settings, "install", str(SAMPLES / "csv_exporter"))
    assert status == 0, capsys.readouterr()
    assert "csv-exporter 1.0.0 installed (active)" in capsys.readouterr().out
    assert await asyncio.to_thread(_cli, settings, "list") == 0
    assert "csv-exporter" in capsys.readouterr().out
    assert await asyncio.to_thread(_cli, settings, "disable", "csv-exporter") == 0
    assert await asyncio.to_thread(_cli, settings, "list") == 0
    assert "inactive" in capsys.readouterr().out
    assert await asyncio.to_thread(_cli, settings, "logs", "csv-exporter") == 0
    assert "csv-exporter onInstall - ok" in capsys.readouterr().out
    assert await asyncio.to_thread(_cli, settings, "remove", "csv-exporter") == 0
    assert await asyncio.to_thread(_cli, settings, "enable", "csv-exporter") == 1
    assert "no plugin 'csv-exporter'" in capsys.readouterr().err


async def test_pat_plugin_install_exits_cleanly_every_time(
        pat_with_plugins: RunningPat, temporal_client: Client) -> None:
    """As a user runs it: a process of its own, which must end with status 0 and nothing but
    its report, every time (it used to abort at exit in about one run in three)."""
    settings = pat_with_plugins.settings
    env = {**os.environ, "PAT_DATA_DIR": str(settings.data_dir),
           "PAT_TEMPORAL_ADDRESS": temporal_client.service_client.config.target_host,
           "PAT_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue, "PAT_LOG_LEVEL": "WARNING"}
    for _ in range(10):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pat", "plugin", "install", str(SAMPLES / "spam_scorer"),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        assert (process.returncode, err.decode()) == (0, "")
        assert out.decode().endswith("spam-scorer 1.0.0 installed (active)\n")


def test_pat_plugin_scan_reports_findings_and_compile_problems(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=tmp_path)
    assert _cli(settings, "scan", str(SAMPLES / "link_validator")) == 0
    assert "link-validator: passes" in capsys.readouterr().out
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"id": "shady", "name": "Shady", "version": "1.0.0", "hooks": ["onEmailStored"]}))
    (tmp_path / "plugin.js").write_text("function onEmailReceived(e) { return eval('1'); }\n")
    assert _cli(settings, "scan", str(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "block: eval (line 1)" in out
    assert "compile: the manifest declares onEmailStored" in out
    assert "shady: would be refused" in out


def test_pat_plugin_test_runs_the_hooks_on_a_message_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mail = tmp_path / "mail.eml"
    mail.write_bytes(RAW)
    settings = Settings(data_dir=tmp_path)
    assert _cli(settings, "test", str(SAMPLES / "spam_scorer" / "plugin.js"),
                "--message", str(mail)) == 0
    out = capsys.readouterr().out
    assert "onEmailReceived: ok" in out and "header X-Spam-Status: No, score=2.8" in out
    assert _cli(settings, "test", str(SAMPLES / "spam_scorer" / "plugin.js"),
                "--message", str(mail), "--set", "threshold=2") == 0
    assert "header X-Spam-Status: Yes, score=2.8 required=2.0" in capsys.readouterr().out
    assert _cli(settings, "test", str(SAMPLES / "webhook_notifier" / "plugin.js"),
                "--message", str(mail), "--set", "url=http://127.0.0.1:9/x") == 1
    assert "PAT_PLUGIN_ALLOWED_HOSTS" in capsys.readouterr().out
    allowed = Settings(data_dir=tmp_path, plugin_allowed_hosts="127.0.0.1")
    assert _cli(allowed, "test", str(SAMPLES / "webhook_notifier"), "--message", str(mail),
                "--set", "url=http://127.0.0.1:9/x") == 0
    assert 'would http: {"method": "POST", "url": "http://127.0.0.1:9/x"' in \
        capsys.readouterr().out
