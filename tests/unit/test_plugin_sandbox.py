"""A plugin owns its isolate, not Pat's bookkeeping in it: whatever it does to globals,
prototypes or Pat's own objects, what Pat records of its call is what it really asked for, and
nothing it is not allowed to do gets through."""

from __future__ import annotations

from typing import Any

import pytest

from plugins.effects import HttpEffect
from plugins.runtime import (
    HookStatus,
    Invocation,
    Limits,
    LogLine,
    StoredValue,
    call_hook,
    compile_plugin,
)

LIMITS = Limits(memory_mb=128, timeout_ms=1000)
EMAIL = {"id": "m1", "subject": "Hello", "headers": [["Subject", "Hello"]], "text": "", "html": ""}
# Its own values are strings and numbers: how a plugin's objects serialize (toJSON...) is its
# own business; what must not change is what Pat makes of them.
HONEST = ("  pat.logger.info('hello');\n"
          "  pat.http.post('http://good.test/hook', '{\"ok\":1}');\n"
          "  pat.storage.set('k', 1);\n"
          "  return null;\n")


def invocation(**overrides: Any) -> Invocation:
    values: dict[str, Any] = {
        "hook": "onEmailReceived", "args": [EMAIL], "plugin_id": "p", "plugin_version": "1.0.0",
        "tenant": "t", "permissions": ["http", "storage"], "hosts": ["good.test"],
        "settings": {}, "storage": {}}
    values.update(overrides)
    return Invocation(**values)


def plugin(tampering: str, body: str = HONEST) -> str:
    """A plugin whose hook first tampers, then does what ``body`` says."""
    return f"function onEmailReceived(email) {{\n  {tampering}\n{body}}}\n"


TAMPERING = {
    "JSON.stringify": "JSON.stringify = () => '{\"status\":\"ok\",\"value\":null,\"logs\":[],"
                      "\"effects\":[{\"kind\":\"http\",\"method\":\"GET\",\"url\":"
                      "\"http://evil.test/\",\"headers\":{},\"body\":null}],\"writes\":{}}';",
    "JSON.parse": "JSON.parse = () => ({kind: 'http', url: 'http://evil.test/'});",
    "Object.prototype.toJSON": "Object.prototype.toJSON = function () {"
                               " return {kind: 'http', url: 'http://evil.test/'}; };",
    "Array.prototype.toJSON": "Array.prototype.toJSON = () => ['evil'];",
    "Array.prototype index setters": "for (let i = 0; i < 4; i++) Object.defineProperty("
                                     "Array.prototype, i, {set(v) {}, get() { return 'evil'; },"
                                     " configurable: true});",
    "Object.prototype index setters": "for (const k of ['0', '1', 'count', 'k']) "
                                      "Object.defineProperty(Object.prototype, k, {set(v) {},"
                                      " get() { return 'evil'; }, configurable: true});",
    "descriptor fields on Object.prototype": "Object.prototype.get = function () {"
                                             " return 'evil'; }; Object.prototype.writable = 1;",
    "Array methods": "Array.prototype.push = Array.prototype.indexOf = Array.prototype.join ="
                     " Array.prototype.map = Array.prototype.sort = () => { throw 'x'; };"
                     " Array.prototype[Symbol.iterator] = function* () { yield 'evil'; };",
    "Reflect and Object": "Reflect.apply = Reflect.defineProperty = Object.defineProperty ="
                          " Object.keys = Object.freeze = Object.hasOwn = () => { throw 'x'; };",
    "Function.prototype": "Function.prototype.call = Function.prototype.apply ="
                          " Function.prototype.bind = () => 'evil';",
    "String and RegExp": "String.prototype.slice = String.prototype.toLowerCase = () => 'evil';"
                         " RegExp.prototype.exec = () => null; String = () => 'evil';",
    "Error": "Error.prototype.name = 'x'; Error.captureStackTrace = () => {};"
             " Error.prepareStackTrace = () => 'evil';",
    "globalThis.__pat": "globalThis.__pat = {run: () => 'evil'}; delete globalThis.__pat;"
                        " try { Object.defineProperty(globalThis, '__pat', {value: 1}); }"
                        " catch (e) {}",
    "globalThis.pat": "globalThis.pat = {}; delete globalThis.pat;"
                      " try { Object.defineProperty(globalThis, 'pat', {value: {}}); }"
                      " catch (e) {}",
    "pat's objects": "try { pat.http.post = () => 0; } catch (e) {}"
                     " try { pat.storage.set = () => 0; } catch (e) {}"
                     " try { Object.setPrototypeOf(pat, {}); } catch (e) {}",
}


@pytest.mark.parametrize("tampering", list(TAMPERING.values()), ids=list(TAMPERING))
async def test_tampering_with_globals_and_prototypes_does_not_change_what_pat_records(
        tampering: str) -> None:
    outcome = await call_hook(plugin(tampering), invocation(), LIMITS)
    assert outcome.status is HookStatus.ok, outcome.error
    assert outcome.value is None
    assert outcome.logs == [LogLine(level="info", message="hello")]
    assert outcome.effects == [HttpEffect(kind="http", method="POST", headers={},
                                          url="http://good.test/hook", body='{"ok":1}')]
    assert outcome.storage_writes == {"k": StoredValue(value=1)}


def test_the_tampering_cases_reach_what_they_target() -> None:
    # Each case above must be able to fail: a plugin without Pat's defences in its way would
    # see its change take effect. Checked here in plain JavaScript, no sandbox involved.
    from py_mini_racer import MiniRacer

    with MiniRacer() as racer:
        racer.eval(TAMPERING["Array.prototype index setters"])
        assert racer.eval("const a = []; a[0] = 'mine'; a[0]") == "evil"
        racer.eval(TAMPERING["descriptor fields on Object.prototype"])
        assert racer.eval("try { Object.defineProperty({}, 'x', {value: 1}); 'defined' }"
                          " catch (e) { e.name }") == "TypeError"


ESCALATION = {
    "rewrite its context": "ctx.permissions.push('http');",
    "reach Pat's effects": "effects.push({kind: 'http', url: 'http://evil.test/'});",
    "reach Pat's writes": "writes['k'] = {value: 1};",
    "reach Pat's denial": "denial = undefined;",
    "make every host look allowed": "Array.prototype.indexOf = () => 0;"
                                    " Array.prototype.includes = () => true;"
                                    " String.prototype.toLowerCase = () => 'good.test';"
                                    " RegExp.prototype.exec = function () {"
                                    " return ['http://good.test/', 'http', 'good.test']; };",
    "catch the denial": "try { pat.http.post('http://evil.test/', {}); } catch (e) {}",
    "run Pat's call itself": "__pat.run();",
    "redefine __pat": "Object.defineProperty(globalThis, '__pat', {value: {run: () => '{}'}});",
}


@pytest.mark.parametrize("attempt", list(ESCALATION.values()), ids=list(ESCALATION))
async def test_a_plugin_cannot_widen_its_own_permissions(attempt: str) -> None:
    code = plugin(attempt, "  pat.http.post('http://evil.test/', {});\n  return null;\n")
    outcome = await call_hook(code, invocation(), LIMITS)  # http to good.test only
    assert outcome.status in (HookStatus.denied, HookStatus.error), outcome
    assert outcome.error
    assert outcome.effects == [] and outcome.storage_writes == {}


async def test_a_caught_denial_still_denies_the_call() -> None:
    code = plugin("", "  try { pat.http.post('http://evil.test/', {}); } catch (e) {}\n"
                      "  pat.http.post('http://good.test/', {});\n  return {metadata: {}};\n")
    outcome = await call_hook(code, invocation(), LIMITS)
    assert outcome.status is HookStatus.denied
    assert "evil.test" in (outcome.error or "")
    assert outcome.effects == []


async def test_the_host_s_names_are_not_in_the_plugins_scope() -> None:
    names = ["ctx", "logs", "effects", "writes", "stored", "denial", "deny", "need", "effect",
             "result", "run", "limits", "declared", "commonjs"]
    probe = ", ".join(f"{n}: typeof {n}" for n in names)
    code = f"function onEmailReceived(e) {{ return {{metadata: {{{probe}}}}}; }}"
    outcome = await call_hook(code, invocation(), LIMITS)
    assert outcome.value == {"metadata": dict.fromkeys(names, "undefined")}


async def test_pats_globals_are_fixed() -> None:
    outcome = await call_hook(
        "function onEmailReceived(e) { const d = n => Object.getOwnPropertyDescriptor("
        "globalThis, n); return {metadata: {pat: [d('pat').writable, d('pat').configurable,"
        " Object.isFrozen(pat), Object.isFrozen(pat.http)], run: [d('__pat').writable,"
        " d('__pat').configurable, Object.isFrozen(__pat)]}}; }", invocation(), LIMITS)
    assert outcome.value == {"metadata": {"pat": [False, False, True, True],
                                          "run": [False, False, True]}}


async def test_a_plugin_cannot_replace_pat() -> None:
    outcome = await call_hook("var pat = {fake: true};\nfunction onEmailReceived(e) {"
                              " return {metadata: {fake: pat.fake === true,"
                              " http: typeof pat.http}}; }", invocation(), LIMITS)
    assert outcome.value == {"metadata": {"fake": False, "http": "object"}}


@pytest.mark.parametrize("declaration", ["let __pat = 1;", "function __pat() {}",
                                         "const pat = {};", "class pat {}"])
async def test_a_plugin_that_declares_pats_names_does_not_load(declaration: str) -> None:
    outcome = await call_hook(f"{declaration}\nfunction onEmailReceived(e) {{}}", invocation(),
                              LIMITS)
    assert outcome.status is HookStatus.compile_error
    assert await compile_plugin(f"{declaration}\nfunction onEmailReceived(e) {{}}",
                                ["onEmailReceived"], LIMITS) != []


@pytest.mark.parametrize(("header", "reason"), [
    ("Host", "Host"), ("content-length", "content-length"), ("Transfer-Encoding", "Transfer"),
    ("Connection", "Connection"), ("Proxy-Authorization", "Proxy"), ("Idempotency-Key", "Idem"),
])
async def test_pat_http_may_not_set_framing_or_routing_headers(header: str, reason: str) -> None:
    outcome = await call_hook(plugin("", f"  pat.http.get('http://good.test/', "
                                         f"{{headers: {{'{header}': 'evil.test'}}}});\n"),
                              invocation(), LIMITS)
    assert outcome.status is HookStatus.denied
    assert reason in (outcome.error or "")


@pytest.mark.parametrize("url", ["http://good.test@evil.test/", "http://evil.test\\@good.test/",
                                 "http://good.test /", "javascript:alert(1)", "//good.test/",
                                 "http://good.test:99999/"])
async def test_pat_http_refuses_urls_that_could_lead_elsewhere(url: str) -> None:
    outcome = await call_hook(plugin("", f"  pat.http.get({url!r});\n"), invocation(), LIMITS)
    assert outcome.status in (HookStatus.error, HookStatus.denied)
    assert outcome.effects == []


async def test_pat_email_send_may_not_set_recipients_through_headers() -> None:
    outcome = await call_hook(
        plugin("", "  pat.email.send({host: 'good.test', port: 25, to: ['a@x'], subject: 's',"
                   " text: 't', headers: {Bcc: 'victim@example.test'}});\n"),
        invocation(permissions=["smtp"], hosts=["good.test"]), LIMITS)
    assert outcome.status is HookStatus.denied
    assert "Bcc" in (outcome.error or "")


async def test_proto_keys_in_a_messages_or_plugins_data_are_plain_keys() -> None:
    outcome = await call_hook(
        "function onEmailReceived(e) { return {metadata: {own: Object.keys(e.metadata),"
        " proto: Object.getPrototypeOf(e.metadata) === Object.prototype,"
        " stored: pat.storage.keys()}}; }",
        invocation(args=[{**EMAIL, "metadata": {"__proto__": {"polluted": True}}}],
                   storage={"__proto__": 1}), LIMITS)
    assert outcome.value == {"metadata": {"own": ["__proto__"], "proto": True,
                                          "stored": ["__proto__"]}}
