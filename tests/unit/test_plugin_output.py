"""What an isolate returns is data from code the plugin controls: Python parses it against a
strict schema, and checks every effect against the manifest and the operator's settings, before
anything is done. Whatever the document, the outcome is a status with a reason, never an
exception."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pat.settings import Settings
from plugins.effects import EffectDenied, authorize
from plugins.manifest import Manifest
from plugins.runtime import HookDocument, HookStatus, parse_output

HTTP = {"kind": "http", "method": "POST", "url": "http://good.test/hook", "headers": {},
        "body": None}
SMTP = {"kind": "smtp", "host": "good.test", "port": 25, "from": "", "to": ["a@example.test"],
        "subject": "s", "text": "t", "headers": {}}
CSV = {"kind": "csv", "name": "rows", "row": ["a", "b"]}


def document(**fields: Any) -> dict[str, Any]:
    return {"status": "ok", "value": None, "logs": [], "effects": [], "writes": {}, **fields}


def test_a_well_formed_document_is_parsed_into_typed_values() -> None:
    outcome = parse_output(json.dumps(document(
        value={"metadata": {"n": 1}}, logs=[{"level": "warn", "message": "careful"}],
        effects=[HTTP, SMTP, CSV], writes={"k": {"value": [1, 2]}, "gone": None})),
        "onEmailReceived")
    assert outcome.status is HookStatus.ok, outcome.error
    assert outcome.value == {"metadata": {"n": 1}}
    assert [e.kind for e in outcome.effects] == ["http", "smtp", "csv"]
    assert outcome.storage_writes["gone"] is None
    assert outcome.storage_writes["k"] is not None and outcome.storage_writes["k"].value == [1, 2]


def test_a_failed_call_is_its_own_status_and_reason() -> None:
    outcome = parse_output(json.dumps({"status": "denied", "error": "no", "logs": []}), "h")
    assert (outcome.status, outcome.error) == (HookStatus.denied, "no")


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


WRONG = {
    "not a string": (42, "no result"),
    "too long": ("x" * (1024 * 1024 + 1), "more than"),
    "not JSON": ("{status: ok}", "not JSON"),
    "NaN": ('{"status": "ok", "value": NaN, "logs": []}', "NaN is not JSON"),
    "Infinity": ('{"status": "ok", "value": Infinity, "logs": []}', "Infinity is not JSON"),
    "a list": ("[]", "schema"),
    "nested too deep": (json.dumps(document(value=deep(100))), "deeper than"),
    "nested beyond Python's recursion": ("[" * 100_000 + "]" * 100_000, "too deeply"),
    "a lone surrogate": ('{"status": "ok", "value": "\\ud800", "logs": []}', "lone surrogate"),
    "unknown status": (json.dumps(document(status="fine")), "status"),
    "a status only Python may give": (json.dumps(document(status="effect_failed")), "status"),
    "status timeout": (json.dumps({"status": "timeout", "error": "x", "logs": []}), "status"),
    "no logs": (json.dumps({"status": "ok", "value": None}), "logs"),
    "an extra field": (json.dumps(document(permissions=["http"])), "permissions"),
    "ok without a value": (json.dumps({"status": "ok", "logs": []}), "carries its value"),
    "failure without a reason": (json.dumps({"status": "error", "logs": []}), "reason"),
    "failure with effects": (json.dumps({"status": "error", "error": "x", "logs": [],
                                         "effects": [HTTP]}), "no value, effects"),
    "logs not a list": (json.dumps(document(logs="hello")), "logs"),
    "a log with an extra field": (json.dumps(document(logs=[{"level": "info", "message": "m",
                                                             "time": 1}])), "time"),
    "a log level Pat does not know": (json.dumps(document(logs=[{"level": "fatal",
                                                                 "message": "m"}])), "level"),
    "a log message that is not text": (json.dumps(document(logs=[{"level": "info",
                                                                  "message": 5}])), "message"),
    "a log message too long": (json.dumps(document(logs=[{"level": "info",
                                                          "message": "m" * 2001}])), "message"),
    "too many logs": (json.dumps(document(logs=[{"level": "info", "message": "m"}] * 201)),
                      "logs"),
    "an effect of an unknown kind": (json.dumps(document(effects=[{"kind": "shell",
                                                                   "cmd": "rm"}])), "kind"),
    "an effect without a kind": (json.dumps(document(effects=[{"url": "http://x/"}])), "kind"),
    "an effect with an extra field": (json.dumps(document(effects=[{**HTTP, "proxy": "p"}])),
                                      "proxy"),
    "an effect missing a field": (json.dumps(document(effects=[{k: v for k, v in HTTP.items()
                                                                if k != "body"}])), "body"),
    "too many effects": (json.dumps(document(effects=[CSV] * 21)), "effects"),
    "an HTTP method Pat does not make": (json.dumps(document(effects=[{**HTTP,
                                                                       "method": "PUT"}])),
                                         "method"),
    "a URL with credentials": (json.dumps(document(effects=[{
        **HTTP, "url": "http://good.test@evil.test/"}])), "credentials"),
    "a URL with a backslash": (json.dumps(document(effects=[{
        **HTTP, "url": "http://evil.test\\@good.test/"}])), "credentials"),
    "a URL that is not HTTP": (json.dumps(document(effects=[{
        **HTTP, "url": "file:///etc/passwd"}])), "http://"),
    "a port out of range": (json.dumps(document(effects=[{
        **HTTP, "url": "http://good.test:0/"}])), "port"),
    "a header name with a space": (json.dumps(document(effects=[{
        **HTTP, "headers": {"X Evil": "1"}}])), "not a header name"),
    "a header value on two lines": (json.dumps(document(effects=[{
        **HTTP, "headers": {"X-A": "1\r\nHost: evil.test"}}])), "one line"),
    "a header value that is not Latin-1": (json.dumps(document(effects=[{
        **HTTP, "headers": {"X-A": "\u2603"}}])), "ISO-8859-1"),
    "a header value that is a number": (json.dumps(document(effects=[{
        **HTTP, "headers": {"X-A": 1}}])), "headers"),
    "a body that is not text": (json.dumps(document(effects=[{**HTTP, "body": {"a": 1}}])),
                                "body"),
    "an SMTP port as text": (json.dumps(document(effects=[{**SMTP, "port": "25"}])), "port"),
    "an SMTP port that is a boolean": (json.dumps(document(effects=[{**SMTP, "port": True}])),
                                       "port"),
    "an SMTP host with a path": (json.dumps(document(effects=[{**SMTP, "host": "a/b"}])),
                                 "host"),
    "no recipients": (json.dumps(document(effects=[{**SMTP, "to": []}])), "to"),
    "a subject on two lines": (json.dumps(document(effects=[{**SMTP, "subject": "a\nBcc: x"}])),
                               "one line"),
    "an export name with a slash": (json.dumps(document(effects=[{**CSV,
                                                                  "name": "../../etc/x"}])),
                                    "export names"),
    "a CSV value that is a number": (json.dumps(document(effects=[{**CSV, "row": [1]}])), "row"),
    "an empty storage key": (json.dumps(document(writes={"": {"value": 1}})), "writes"),
    "a storage key too long": (json.dumps(document(writes={"k" * 256: {"value": 1}})), "writes"),
    "a storage key with a NUL": (json.dumps(document(writes={"a\u0000b": {"value": 1}})),
                                 "control characters"),
    "a storage value too large": (json.dumps(document(writes={"k": {"value": "v" * 70_000}})),
                                  "at most"),
    "a storage value not wrapped": (json.dumps(document(writes={"k": 1})), "writes"),
    "a storage write with an extra field": (json.dumps(document(writes={"k": {
        "value": 1, "ttl": 5}})), "ttl"),
}


@pytest.mark.parametrize(("output", "reason"), list(WRONG.values()), ids=list(WRONG))
def test_every_wrong_shape_is_malformed_with_a_reason(output: Any, reason: str) -> None:
    outcome = parse_output(output, "onEmailReceived")
    assert outcome.status is HookStatus.malformed
    assert reason in (outcome.error or ""), outcome.error
    assert outcome.effects == [] and outcome.storage_writes == {}


def test_the_schema_forbids_unknown_fields_everywhere() -> None:
    assert HookDocument.model_config.get("extra") == "forbid"
    assert HookDocument.model_config.get("strict") is True


def manifest(**fields: Any) -> Manifest:
    return Manifest.model_validate({"id": "p-one", "name": "P", "version": "1.0.0",
                                    "hooks": ["onEmailReceived"], **fields})


def effect(data: dict[str, Any]) -> Any:
    outcome = parse_output(json.dumps(document(effects=[data])), "onEmailReceived")
    assert outcome.status is HookStatus.ok, outcome.error
    return outcome.effects[0]


OPEN = Settings(plugin_allowed_hosts="good.test,mail.test:2525")
ALLOWED = manifest(permissions=["http", "smtp", "export"], hosts=["good.test", "mail.test:2525"])


@pytest.mark.parametrize(("data", "plugin", "settings", "reason"), [
    (HTTP, manifest(hosts=["good.test"]), OPEN, "'http' permission"),
    (HTTP, manifest(permissions=["http"]), OPEN, "not declared in the manifest"),
    (HTTP, ALLOWED, Settings(), "PAT_PLUGIN_ALLOWED_HOSTS"),
    ({**HTTP, "url": "http://good.test:8080/"}, manifest(permissions=["http"],
                                                        hosts=["good.test:80"]), OPEN,
     "not declared"),
    ({**HTTP, "headers": {"Host": "evil.test"}}, ALLOWED, OPEN, "Host"),
    ({**HTTP, "headers": {"Content-Length": "0"}}, ALLOWED, OPEN, "Content-Length"),
    ({**HTTP, "headers": {"transfer-encoding": "chunked"}}, ALLOWED, OPEN, "transfer-encoding"),
    ({**HTTP, "headers": {"Connection": "close"}}, ALLOWED, OPEN, "Connection"),
    ({**HTTP, "headers": {"Proxy-Authorization": "x"}}, ALLOWED, OPEN, "Proxy-Authorization"),
    ({**HTTP, "headers": {"Idempotency-Key": "x"}}, ALLOWED, OPEN, "Idempotency-Key"),
    ({**SMTP, "host": "mail.test", "port": 25}, ALLOWED, OPEN, "mail.test:25"),
    ({**SMTP, "host": "mail.test", "port": 2525, "headers": {"Bcc": "v@x"}}, ALLOWED, OPEN,
     "Bcc"),
    (CSV, manifest(permissions=["http"]), OPEN, "'export' permission"),
])
def test_python_refuses_effects_the_plugin_may_not_ask_for(
        data: dict[str, Any], plugin: Manifest, settings: Settings, reason: str) -> None:
    with pytest.raises(EffectDenied, match=reason):
        authorize(effect(data), plugin, settings)


@pytest.mark.parametrize("data", [HTTP, {**SMTP, "host": "mail.test", "port": 2525}, CSV])
def test_python_allows_what_manifest_and_operator_both_allow(data: dict[str, Any]) -> None:
    authorize(effect(data), ALLOWED, OPEN)
