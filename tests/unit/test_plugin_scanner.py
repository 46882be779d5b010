"""Each check of the security scanner fires on the pattern it is for, and the sample plugins
pass clean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugins.manifest import Manifest, load_plugin_files
from plugins.scanner import CHECKS, scan

SAMPLES = Path(__file__).resolve().parents[2] / "plugins" / "samples"
HOOK = "function onEmailReceived(e) {\n  %s\n}\n"


def manifest(**overrides: Any) -> Manifest:
    values: dict[str, Any] = {"id": "scanned", "name": "Scanned", "version": "1.0.0",
                              "hooks": ["onEmailReceived"]}
    values.update(overrides)
    return Manifest.model_validate(values)


def checks_fired(code: str, max_bytes: int = 256 * 1024, **overrides: Any) -> dict[str, str]:
    report = scan(code, manifest(**overrides), max_bytes=max_bytes)
    return {f.check: f.severity for f in report.findings}


CASES = [
    ("eval", HOOK % "return eval('1 + 1');", "block"),
    ("function-constructor", HOOK % "return new Function('return 1')();", "block"),
    ("function-constructor", HOOK % "return [].constructor.constructor('return this')();",
     "block"),
    ("proto-access", HOOK % "e.__proto__.polluted = true;", "block"),
    ("prototype-pollution", HOOK % "Object.prototype.isAdmin = true;", "block"),
    ("prototype-pollution", HOOK % "Object.defineProperty(Object, 'x', {});", "block"),
    ("dynamic-import", HOOK % "return import('fs');", "block"),
    ("module-syntax", "import fs from 'fs';\n" + HOOK % "", "block"),
    ("require", HOOK % "return require('child');", "block"),
    ("process", HOOK % "return process.env.SECRET;", "block"),
    ("network-api", HOOK % "fetch('http://example.test/');", "block"),
    ("network-api", HOOK % "new XMLHttpRequest();", "block"),
    ("filesystem", HOOK % "fs.readFileSync(__dirname + '/x');", "block"),
    ("timers", HOOK % "setTimeout(() => 1, 10);", "block"),
    ("webassembly", HOOK % "WebAssembly.instantiate(bytes);", "block"),
    ("shared-memory", HOOK % "Atomics.wait(view, 0, 0);", "block"),
    ("global-tampering", HOOK % "return globalThis['ev' + 'al'];", "warn"),
    ("hex-blob", HOOK % ("const p = '" + "ab" * 120 + "';"), "block"),
    ("hex-blob", HOOK % ("const p = '" + "\\x41" * 30 + "';"), "block"),
    ("base64-blob", HOOK % ("const p = '" + "QUJD" * 60 + "';"), "block"),
    ("unicode-escapes", HOOK % ("const p = '" + "\\u0061" * 12 + "';"), "block"),
    ("char-code-building", HOOK % "String.fromCharCode(101,118,97,108,40,49,41,59,50);",
     "block"),
    ("debugger", HOOK % "debugger;", "warn"),
    ("busy-loop", HOOK % "while (true) { e.n = 1; }", "block"),
    ("busy-loop", HOOK % "for (;;) {}", "block"),
    ("async-hook", "async function onEmailReceived(e) { return {}; }", "block"),
]


@pytest.mark.parametrize(("check", "code", "severity"), CASES)
def test_each_check_fires_on_its_pattern(check: str, code: str, severity: str) -> None:
    assert checks_fired(code).get(check) == severity


def test_there_are_at_least_fifteen_checks_and_each_is_tested() -> None:
    tested = {check for check, _, _ in CASES} | {
        "huge-file", "minified-code", "undeclared-permission", "unused-permission",
        "undeclared-host"}
    names = {check.__name__ for check in CHECKS}
    assert len(names) >= 15
    assert names == tested


def test_huge_files_are_refused() -> None:
    assert checks_fired(HOOK % ("// " + "x" * 5000), max_bytes=1000).get("huge-file") == "block"


def test_minified_lines_are_flagged() -> None:
    assert checks_fired(HOOK % ("var a = 1;" * 150)).get("minified-code") == "warn"


@pytest.mark.parametrize(("use", "permission"), [
    ("pat.storage.set('k', 1);", "storage"), ("pat.http.post('http://a.test/', {});", "http"),
    ("pat.email.send({host: 'a.test'});", "smtp"), ("pat.export.csv('x', []);", "export"),
])
def test_a_permission_used_but_not_declared_is_refused(use: str, permission: str) -> None:
    assert checks_fired(HOOK % use).get("undeclared-permission") == "block"
    assert "undeclared-permission" not in checks_fired(HOOK % use, permissions=[permission],
                                                       hosts=["a.test"])


def test_a_permission_declared_but_unused_is_a_warning() -> None:
    assert checks_fired(HOOK % "return null;", permissions=["http"]).get(
        "unused-permission") == "warn"


def test_an_undeclared_host_in_a_pat_http_plugin_is_a_warning() -> None:
    code = HOOK % "pat.http.post('http://elsewhere.test/hook', {});"
    assert checks_fired(code, permissions=["http"], hosts=["a.test"]).get(
        "undeclared-host") == "warn"
    assert "undeclared-host" not in checks_fired(code, permissions=["http"],
                                                 hosts=["elsewhere.test"])


def test_loops_that_can_end_and_patterns_in_comments_pass() -> None:
    code = ("// eval( and require( in a comment are harmless\n/* fetch( */\n"
            + HOOK % "while (true) { if (e.n > 3) break; e.n += 1; }")
    assert scan(code, manifest(), max_bytes=10_000).findings == []


def test_blocking_findings_fail_the_report_and_warnings_do_not() -> None:
    assert not scan(HOOK % "eval('x');", manifest(), max_bytes=10_000).passed
    assert scan(HOOK % "debugger;", manifest(), max_bytes=10_000).passed


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.iterdir() if p.is_dir()))
def test_the_sample_plugins_scan_clean(sample: str) -> None:
    found, code = load_plugin_files(SAMPLES / sample)
    assert scan(code, found, max_bytes=256 * 1024).findings == []
