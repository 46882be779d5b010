"""Manifests are checked with reasons, plugin settings against their schema, and header
changes apply to Pat's view in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pat.parsing import read_message
from plugins.host import apply_header_changes, email_for_plugins
from plugins.manifest import ManifestError, load_plugin_files, parse_manifest

BASE: dict[str, Any] = {"id": "good-plugin", "name": "Good", "version": "1.2.3",
                        "hooks": ["onEmailReceived"]}


@pytest.mark.parametrize(("change", "problem"), [
    ({"id": "Bad_Id"}, "id:"), ({"id": "runs"}, "reserved"), ({"version": "1.0"}, "version:"),
    ({"hooks": ["onSomething"]}, "unknown hooks"), ({"hooks": []}, "hooks:"),
    ({"permissions": ["root"]}, "unknown permissions"), ({"hosts": ["http://x"]}, "hosts:"),
    ({"timeout_ms": 0}, "timeout_ms:"), ({"extra": 1}, "extra:"),
])
def test_bad_manifests_are_refused_with_the_field_and_the_reason(change: dict[str, Any],
                                                                 problem: str) -> None:
    with pytest.raises(ManifestError, match=problem):
        parse_manifest({**BASE, **change})


def test_settings_are_checked_against_the_schema_and_defaults_filled_in() -> None:
    manifest = parse_manifest({**BASE, "settings": {
        "threshold": {"type": "number", "default": 5}, "url": {"type": "string",
                                                                "required": True},
        "loud": {"type": "boolean", "default": False}}})
    assert manifest.resolve_settings({"url": "http://a"}) == {"threshold": 5, "url": "http://a",
                                                              "loud": False}
    with pytest.raises(ManifestError, match="'url' is required"):
        manifest.resolve_settings({})
    with pytest.raises(ManifestError, match="must be a number"):
        manifest.resolve_settings({"url": "x", "threshold": "high"})
    with pytest.raises(ManifestError, match="must be a number"):
        manifest.resolve_settings({"url": "x", "threshold": True})
    with pytest.raises(ManifestError, match="unknown settings"):
        manifest.resolve_settings({"url": "x", "colour": "red"})


def test_a_plugin_needs_its_manifest_beside_it(tmp_path: Path) -> None:
    (tmp_path / "p.js").write_text("function onEmailReceived(e) {}")
    with pytest.raises(ManifestError, match="no manifest"):
        load_plugin_files(tmp_path / "p.js")
    (tmp_path / "manifest.json").write_text("[1]")
    with pytest.raises(ManifestError, match="JSON object"):
        load_plugin_files(tmp_path / "p.js")


def test_header_changes_replace_remove_and_apply_in_order() -> None:
    headers = [("Subject", "Hi"), ("X-Spam", "old"), ("x-spam", "older")]
    changed = apply_header_changes(headers, [{"X-Spam": "new"}, {"Subject": None},
                                             {"X-Added": "1"}])
    assert changed == [("X-Added", "1"), ("X-Spam", "new")]


def test_the_email_plugins_see_is_plain_json_with_bodies() -> None:
    raw = (b"From: A <a@example.test>\r\nTo: b@example.test\r\nReply-To: r@example.test\r\n"
           b"Subject: Hi\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\n\r\nHello\r\n--b\r\nContent-Type: application/pdf\r\n"
           b"Content-Disposition: attachment; filename=r.pdf\r\n\r\nPDF\r\n--b--\r\n")
    email = email_for_plugins(read_message(raw), size=len(raw), message_id="m", tenant="t",
                              mail_from="a@example.test", recipients=["b@example.test"],
                              received_ns=0, header_changes=[{"X-Tag": "1"}])
    assert email["from"] == {"name": "A", "address": "a@example.test"}
    assert email["replyTo"] == [{"name": "", "address": "r@example.test"}]
    assert email["text"].strip() == "Hello"
    assert email["attachments"] == [{"filename": "r.pdf", "contentType": "application/pdf",
                                     "size": 3}]
    assert email["headers"][0] == ["X-Tag", "1"]
    assert email["receivedAt"] == "1970-01-01T00:00:00+00:00"
