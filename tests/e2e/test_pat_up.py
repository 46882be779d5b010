"""`pat up` as a user runs it: addresses printed, mail accepted, state kept across restarts,
and the spam engine the checks use started with the rest."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus

from pat.rspamd_embedded import place, remove, rspamd_answers, service_account
from tests.e2e.conftest import PatUp

GTUBE = Path(__file__).parents[1] / "checks_corpus" / "gtube.eml"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


def _wait_processed(pat: PatUp, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items: list[dict[str, Any]] = _get(f"{pat.base_url}/api/v3/messages")["items"]
        if len(items) == count and all(m["status"] == "processed" for m in items):
            return items
        time.sleep(0.2)
    raise AssertionError(f"not all {count} messages processed: {items}")


def _swaks(pat: PatUp, *args: str) -> str:
    done = subprocess.run(["swaks", "--server", f"127.0.0.1:{pat.smtp_port}", *args],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


async def _workflow_status(pat: PatUp, workflow_id: str) -> WorkflowExecutionStatus | None:
    client = await Client.connect(f"127.0.0.1:{pat.temporal_port}")
    return (await client.get_workflow_handle(workflow_id).describe()).status


def test_up_serves_mail_and_restart_keeps_messages_and_histories(
        pat_up: PatUp, tmp_path: Path) -> None:
    assert f"SMTP         127.0.0.1:{pat_up.smtp_port}" in pat_up.output
    assert f"http://127.0.0.1:{pat_up.http_port}" in pat_up.output
    assert f"Temporal UI  http://127.0.0.1:{pat_up.ui_port}" in pat_up.output
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8)
    out = _swaks(pat_up, "--to", "dev@example.test", "--attach", f"@{report}")
    assert "250 2.0.0 OK: queued as" in out
    listed = _get(f"{pat_up.base_url}/api/v3/messages")
    assert listed["total"] == 1  # listed the moment 250 was sent

    [message] = _wait_processed(pat_up, 1)
    assert message["attachments"] == 1
    assert asyncio.run(_workflow_status(pat_up, message["workflow_id"])) == \
        WorkflowExecutionStatus.COMPLETED
    with urllib.request.urlopen(f"{pat_up.base_url}/", timeout=30) as page:
        assert page.status == 200

    assert pat_up.stop() == 0
    pat_up.start()
    [again] = _wait_processed(pat_up, 1)
    assert again["id"] == message["id"]
    assert asyncio.run(_workflow_status(pat_up, message["workflow_id"])) == \
        WorkflowExecutionStatus.COMPLETED
    detail = _get(f"{pat_up.base_url}/api/v3/messages/{message['id']}")
    part = urllib.request.urlopen(f"{pat_up.base_url}{detail['parts'][0]['url']}", timeout=30)
    assert part.read() == report.read_bytes()


def test_killed_up_leaves_no_service_behind_and_starts_again(pat_up: PatUp) -> None:
    _swaks(pat_up, "--to", "dev@example.test")
    _wait_processed(pat_up, 1)
    assert pat_up.proc is not None
    pat_up.proc.send_signal(signal.SIGKILL)  # no chance to clean up: the children must notice
    pat_up.proc.wait()
    pat_up.proc = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{pat_up.base_url}/healthz", timeout=1)
        except OSError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the API outlived a killed pat up")
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", int(pat_up.env["PAT_RSPAMD_PORT"]))) != 0:
                break
        time.sleep(0.2)
    else:
        raise AssertionError("rspamd outlived a killed pat up")
    time.sleep(1)
    pat_up.start()
    _wait_processed(pat_up, 1)


def test_pat_send_submits_stdin_like_sendmail(pat_up: PatUp) -> None:
    message = (b"From: app@example.test\nTo: to@example.test\nBcc: hidden@example.test\n"
               b"Subject: via sendmail\n\nHello from pat send\n")
    done = subprocess.run([sys.executable, "-m", "pat", "send", "-t", "-f", "app@example.test"],
                          input=message, env=pat_up.env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [stored] = _wait_processed(pat_up, 1)
    assert sorted(stored["recipients"]) == ["hidden@example.test", "to@example.test"]
    with urllib.request.urlopen(f"{pat_up.base_url}/api/v3/messages/{stored['id']}/raw") as raw:
        data = raw.read()
    assert b"Bcc" not in data and b"Hello from pat send\r\n" in data

    refused = subprocess.run([sys.executable, "-m", "pat", "send"], input=message,
                             env=pat_up.env, capture_output=True, timeout=60)
    assert refused.returncode == 2
    assert b"no recipients" in refused.stderr


def _spam_result(pat: PatUp, message_id: str) -> dict[str, Any]:
    result: dict[str, Any] = _get(f"{pat.base_url}/api/v3/messages/{message_id}")["checks"][
        "results"]["spam"]
    return result


def _send_gtube(pat: PatUp) -> dict[str, Any]:
    with smtplib.SMTP("127.0.0.1", pat.smtp_port, timeout=30) as client:
        client.sendmail("a@example.test", ["b@example.test"], GTUBE.read_bytes())
    [message] = _wait_processed(pat, 1)
    return _spam_result(pat, message["id"])


def test_up_starts_rspamd_by_default_and_gtube_is_spam(pat_up: PatUp) -> None:
    rspamd_port = int(pat_up.env["PAT_RSPAMD_PORT"])
    assert (f"Spam check   rspamd 127.0.0.1:{rspamd_port} (log {pat_up.data_dir}/rspamd.log)"
            in pat_up.output)
    spam = _send_gtube(pat_up)
    assert spam["verdict"] == "fail", spam["reason"]
    assert spam["details"]["engine"] == "rspamd" and spam["details"]["action"] == "reject"
    assert "GTUBE" in [rule["rule"] for rule in spam["details"]["rules"]]

    assert pat_up.stop() == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", rspamd_port)) != 0, "rspamd outlived pat up"


def test_up_with_spamassassin_starts_spamd_and_gtube_is_spam(pat_up_config: PatUp) -> None:
    pat_up_config.env["PAT_SPAM_ENGINE"] = "spamassassin"
    spamd_port = int(pat_up_config.env["PAT_SPAMD_PORT"])
    pat_up_config.start()
    try:
        assert f"Spam check   SpamAssassin spamd 127.0.0.1:{spamd_port}" in pat_up_config.output
        spam = _send_gtube(pat_up_config)
        assert spam["verdict"] == "fail", spam["reason"]
        assert spam["details"]["is_spam"] is True
        assert "GTUBE" in [rule["rule"] for rule in spam["details"]["rules"]]
    finally:
        assert pat_up_config.stop() == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", spamd_port)) != 0, "spamd outlived pat up"


def test_up_without_rspamd_serves_mail_and_says_why_the_spam_check_is_unavailable(
        pat_up_config: PatUp) -> None:
    rspamd_port = int(pat_up_config.env["PAT_RSPAMD_PORT"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", rspamd_port))  # bound, not listening: rspamd cannot bind it
        pat_up_config.start()
        try:
            assert (f"Spam check   unavailable: rspamd 127.0.0.1:{rspamd_port} is "
                    "not running") in pat_up_config.output
            _swaks(pat_up_config, "--to", "dev@example.test")
            [message] = _wait_processed(pat_up_config, 1)
            assert _spam_result(pat_up_config, message["id"])["verdict"] == "unavailable"
        finally:
            status = pat_up_config.stop()
    assert status == 0
    assert "the spam check will say unavailable: rspamd exited" in pat_up_config.output
    assert "Address already in use" in pat_up_config.output


def test_pat_rspamd_runs_pats_rspamd_in_the_foreground_until_stopped(
        pat_up_config: PatUp) -> None:
    rspamd_port = int(pat_up_config.env["PAT_RSPAMD_PORT"])
    proc = subprocess.Popen([sys.executable, "-m", "pat", "rspamd"], env=pat_up_config.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not rspamd_answers("127.0.0.1", rspamd_port):
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
            assert time.monotonic() < deadline, "pat rspamd did not answer"
            time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", rspamd_port), timeout=30) as sock:
            body = GTUBE.read_bytes()
            sock.sendall(b"POST /checkv2 HTTP/1.0\r\nContent-Length: %d\r\n\r\n" % len(body)
                         + body)
            answer = b"".join(iter(lambda: sock.recv(4096), b""))
        assert b'"action":"reject"' in answer
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        if os.geteuid() == 0:
            remove(place(pat_up_config.data_dir, service_account()))
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", rspamd_port)) != 0
