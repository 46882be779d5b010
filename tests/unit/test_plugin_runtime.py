"""The V8 sandbox against hostile and sloppy plugins: each failure is contained in its own
hook call with the right status, and the next call (and the next plugin) runs normally."""

from __future__ import annotations

from typing import Any

import pytest

from pat.settings import Settings
from plugins.effects import HttpEffect
from plugins.host import execute
from plugins.manifest import Manifest
from plugins.runtime import (
    HookStatus,
    Invocation,
    Limits,
    LogLine,
    StoredValue,
    call_hook,
    compile_plugin,
)

LIMITS = Limits(memory_mb=128, timeout_ms=50)
# For calls that are not about the time limit: a busy machine can stall a trivial hook for
# longer than 50 ms, and only execute() runs a timed-out call a second time.
ROOMY = Limits(memory_mb=128, timeout_ms=2000)
EMAIL = {"id": "m1", "subject": "Hello", "headers": [["Subject", "Hello"]],
         "text": "see https://example.test/a.", "html": "", "envelope": {"from": "a@x",
                                                                          "to": ["b@y"]}}


def invocation(hook: str = "onEmailReceived", **overrides: Any) -> Invocation:
    values: dict[str, Any] = {
        "hook": hook, "args": [EMAIL], "plugin_id": "p", "plugin_version": "1.0.0",
        "tenant": "t", "permissions": [], "hosts": [], "settings": {}, "storage": {}}
    values.update(overrides)
    return Invocation(**values)


def manifest(**overrides: Any) -> Manifest:
    values: dict[str, Any] = {"id": "test-plugin", "name": "Test", "version": "1.0.0",
                              "hooks": ["onEmailReceived"]}
    values.update(overrides)
    return Manifest.model_validate(values)


async def run(code: str, **overrides: Any) -> Any:
    return await call_hook(code, invocation(**overrides), ROOMY)


async def test_a_well_behaved_hook_returns_its_changes_logs_and_storage_writes() -> None:
    outcome = await run(
        "function onEmailReceived(e) { pat.logger.info('got', e.subject);"
        " pat.storage.set('n', (pat.storage.get('n') || 0) + 1);"
        " return {headers: {'X-Seen': 'yes'}}; }",
        permissions=["storage"], storage={"n": 41})
    assert outcome.status is HookStatus.ok, outcome.error
    assert outcome.value == {"headers": {"X-Seen": "yes"}}
    assert outcome.logs == [LogLine(level="info", message="got Hello")]
    assert outcome.storage_writes == {"n": StoredValue(value=42)}


async def test_module_exports_style_works_too() -> None:
    outcome = await run("module.exports = {onEmailReceived: e => ({metadata: {s: e.subject}})}")
    assert outcome.status is HookStatus.ok
    assert outcome.value == {"metadata": {"s": "Hello"}}


async def test_an_infinite_loop_is_stopped_at_the_time_limit() -> None:
    outcome = await call_hook("function onEmailReceived(e) { while (true) {} }", invocation(),
                              LIMITS)
    assert outcome.status is HookStatus.timeout
    assert "50 ms" in (outcome.error or "")
    assert outcome.duration_ms < 1000


async def test_an_infinite_loop_while_loading_is_stopped_too() -> None:
    outcome = await call_hook("for (;;) {}\nfunction onEmailReceived(e) {}", invocation(),
                              LIMITS)
    assert outcome.status is HookStatus.timeout


async def test_a_memory_bomb_hits_the_hard_memory_limit() -> None:
    outcome = await call_hook(
        "function onEmailReceived(e) {"
        " const a = []; while (true) a.push(new Array(1e6).fill(1.5)); }",
        invocation(), Limits(memory_mb=32, timeout_ms=5000))
    assert outcome.status is HookStatus.memory, outcome.error
    assert "32 MB" in (outcome.error or "")


async def test_a_bomb_of_large_arrays_hits_the_memory_limit() -> None:
    # The limit is enforced when V8 collects garbage, so one large allocation can overshoot
    # it briefly; a plugin that keeps allocating is stopped.
    outcome = await call_hook("function onEmailReceived(e) { const a = [];"
                              " for (let i = 0; i < 20; i++) a.push(new Array(2 ** 24).fill(1.5));"
                              " return a.length; }", invocation(),
                              Limits(memory_mb=64, timeout_ms=5000))
    assert outcome.status is HookStatus.memory, outcome.error


@pytest.mark.parametrize("name", ["ArrayBuffer", "Uint8Array", "SharedArrayBuffer", "DataView",
                                  "WebAssembly", "Float64Array"])
async def test_buffers_whose_memory_the_limit_cannot_see_are_not_there(name: str) -> None:
    # An ArrayBuffer's bytes live outside the V8 heap: 1 GB of them passed a 128 MB limit.
    outcome = await run(
        f"function onEmailReceived(e) {{ return {{metadata: {{t: typeof {name}}}}}; }}")
    assert outcome.value == {"metadata": {"t": "undefined"}}


async def test_deep_recursion_is_a_stack_overflow() -> None:
    outcome = await run("function onEmailReceived(e) { function f(n) { return f(n + 1) + 1; }"
                        " return f(0); }")
    assert outcome.status is HookStatus.stack_overflow
    assert "Maximum call stack size exceeded" in (outcome.error or "")


async def test_a_throwing_hook_reports_the_error_at_the_plugins_own_line() -> None:
    outcome = await run("// line 1\nfunction onEmailReceived(e) {\n  throw new Error('boom');\n}")
    assert outcome.status is HookStatus.error
    assert "Error: boom" in (outcome.error or "")
    assert "plugin.js:3" in (outcome.error or "")


async def test_throwing_a_non_error_is_reported() -> None:
    outcome = await run("function onEmailReceived(e) { throw {code: 7}; }")
    assert outcome.status is HookStatus.error
    assert '{"code":7}' in (outcome.error or "")


async def test_a_failed_hook_commits_no_storage_writes_and_no_effects() -> None:
    outcome = await run("function onEmailReceived(e) { pat.storage.set('k', 1);"
                        " pat.export.csv('x', [1]); throw new Error('after writing'); }",
                        permissions=["storage", "export"])
    assert outcome.status is HookStatus.error
    assert outcome.storage_writes == {} and outcome.effects == []


@pytest.mark.parametrize(("returned", "status"), [
    ("async function onEmailReceived(e) { return {}; }", HookStatus.malformed),
    ("function onEmailReceived(e) { return () => 1; }", HookStatus.malformed),
    ("function onEmailReceived(e) { return {big: 10n}; }", HookStatus.malformed),
    ("function onEmailReceived(e) { const o = {}; o.self = o; return o; }", HookStatus.malformed),
])
async def test_values_that_are_not_json_are_malformed(returned: str, status: HookStatus) -> None:
    assert (await run(returned)).status is status


@pytest.mark.parametrize(("value", "problem"), [
    ("'a string'", "must return an object"),
    ("42", "must return an object"),
    ("[1, 2]", "must return an object"),
    ("{headers: 'X-A: 1'}", "headers must be an object"),
    ("{headers: {'X-A': 5}}", "one-line string"),
    ("{headers: {'X-A': 'a\\r\\nBcc: evil@x'}}", "one-line string"),
    ("{headers: {'Bad Name': 'x'}}", "not a valid header name"),
    ("{subject: 'changed'}", "may return only"),
    ("{metadata: 'x'}", "metadata must be an object"),
])
async def test_wrong_result_shapes_are_refused_with_a_reason(value: str, problem: str) -> None:
    outcome, changes = await execute(
        manifest(), f"function onEmailReceived(e) {{ return {value}; }}", "onEmailReceived",
        [EMAIL], tenant="t", plugin_settings={}, storage={}, settings=Settings())
    assert outcome.status is HookStatus.malformed
    assert problem in (outcome.error or "")
    assert changes == {}


async def test_only_on_email_received_may_change_headers() -> None:
    outcome, _ = await execute(
        manifest(hooks=["onEmailStored"]),
        "function onEmailStored(e) { return {headers: {'X-A': '1'}}; }", "onEmailStored",
        [EMAIL], tenant="t", plugin_settings={}, storage={}, settings=Settings())
    assert outcome.status is HookStatus.malformed


@pytest.mark.parametrize("code", [
    "function onEmailReceived(e) { return fetch('http://example.test/'); }",
    "function onEmailReceived(e) { return new XMLHttpRequest(); }",
    "function onEmailReceived(e) { return require('http'); }",
    "function onEmailReceived(e) { return require('fs').readFileSync('/etc/passwd'); }",
    "function onEmailReceived(e) { return process.env; }",
    "function onEmailReceived(e) { return read('/etc/passwd'); }",
    "function onEmailReceived(e) { return load('/etc/passwd'); }",
    "function onEmailReceived(e) { return Deno.readTextFileSync('/etc/passwd'); }",
])
async def test_there_is_no_network_file_system_or_process_in_the_isolate(code: str) -> None:
    outcome = await run(code)
    assert outcome.status is HookStatus.error
    assert "is not defined" in (outcome.error or "")


async def test_there_are_no_timers() -> None:
    # mini-racer declares setTimeout with `var`, which cannot be deleted: it is emptied.
    outcome = await run("function onEmailReceived(e) { return {metadata: {t: typeof setTimeout,"
                        " c: typeof clearTimeout, m: typeof __timer_manager}}; }")
    assert outcome.value == {"metadata": {"t": "undefined", "c": "undefined", "m": "undefined"}}


async def test_dynamic_import_is_refused() -> None:
    outcome = await run("function onEmailReceived(e) { return import('fs'); }")
    assert outcome.status in (HookStatus.error, HookStatus.malformed)
    assert outcome.value is None


async def test_pat_http_without_the_permission_is_denied() -> None:
    outcome = await run("function onEmailReceived(e) { pat.http.post('http://a.test/', {}); }")
    assert outcome.status is HookStatus.denied
    assert "'http' permission" in (outcome.error or "")


async def test_pat_http_to_a_host_the_operator_did_not_allow_is_denied() -> None:
    outcome = await run("function onEmailReceived(e) { pat.http.post('http://evil.test/', {}); }",
                        permissions=["http"], hosts=["good.test"])
    assert outcome.status is HookStatus.denied
    assert "evil.test" in (outcome.error or "")


async def test_pat_http_to_an_allowed_host_is_recorded_as_an_effect_not_sent() -> None:
    outcome = await run("function onEmailReceived(e) { pat.http.post('http://good.test:8080/x',"
                        " {id: e.id}); }", permissions=["http"], hosts=["good.test"])
    assert outcome.status is HookStatus.ok
    assert outcome.effects == [HttpEffect(kind="http", method="POST", headers={},
                                          url="http://good.test:8080/x", body='{"id":"m1"}')]


async def test_storage_without_the_permission_is_denied() -> None:
    outcome = await run("function onEmailReceived(e) {"
                        " return {metadata: {v: pat.storage.get('k')}}; }")
    assert outcome.status is HookStatus.denied


async def test_prototype_pollution_does_not_outlive_the_call() -> None:
    polluted = await run("Object.prototype.polluted = 'yes';\n"
                         "function onEmailReceived(e) { globalThis.leak = 1; }")
    assert polluted.status is HookStatus.ok
    clean = await run("function onEmailReceived(e) { return {metadata:"
                      " {p: ({}).polluted || null, l: globalThis.leak || null}}; }")
    assert clean.value == {"metadata": {"p": None, "l": None}}


async def test_a_runaway_promise_left_behind_does_not_hang_the_caller() -> None:
    outcome = await call_hook("function onEmailReceived(e) {"
                              " Promise.resolve().then(() => { while (true) {} }); return null; }",
                              invocation(), LIMITS)
    assert outcome.status in (HookStatus.ok, HookStatus.timeout)
    after = await run("function onEmailReceived(e) { return {metadata: {ok: true}}; }")
    assert after.status is HookStatus.ok


async def test_a_hook_that_is_not_defined_fails_clearly() -> None:
    outcome = await run("function somethingElse() {}")
    assert outcome.status is HookStatus.error
    assert "defines no function onEmailReceived" in (outcome.error or "")


async def test_compile_finds_syntax_errors_and_hooks_that_do_not_match_the_manifest() -> None:
    assert await compile_plugin("function onEmailReceived(e) {}", ["onEmailReceived"],
                                LIMITS) == []
    assert "does not parse" in (await compile_plugin("function (", ["onEmailReceived"],
                                                     LIMITS))[0]
    problems = await compile_plugin("function onEmailStored(e) {}", ["onEmailReceived"], LIMITS)
    assert any("declares onEmailReceived" in p for p in problems)
    assert any("defines onEmailStored" in p for p in problems)
    assert "ran longer" in (await compile_plugin("while (true) {}", ["onEmailReceived"],
                                                 LIMITS))[0]


async def test_a_manifest_may_lower_the_operators_limits_but_never_raise_them() -> None:
    slow = ("function onEmailReceived(e) { const end = Date.now() + 120;"
            " while (Date.now() < end) {} return null; }")
    operator = Settings(plugin_timeout_ms=2000, plugin_memory_limit_mb=64)
    within, _ = await execute(manifest(), slow, "onEmailReceived", [EMAIL], tenant="t",
                              plugin_settings={}, storage={}, settings=operator)
    assert within.status is HookStatus.ok
    lowered, _ = await execute(manifest(timeout_ms=60), slow, "onEmailReceived", [EMAIL],
                               tenant="t", plugin_settings={}, storage={}, settings=operator)
    assert lowered.status is HookStatus.timeout
    assert "60 ms" in (lowered.error or "")
    greedy = manifest(timeout_ms=10_000, memory_limit_mb=2048)
    bomb = ("function onEmailReceived(e) { const a = [];"
            " while (true) a.push(new Array(1e6).fill(1.5)); }")
    capped, _ = await execute(greedy, bomb, "onEmailReceived", [EMAIL], tenant="t",
                              plugin_settings={}, storage={}, settings=operator)
    assert capped.status is HookStatus.memory, capped.error
    assert "64 MB" in (capped.error or "")
    stuck, _ = await execute(greedy, "function onEmailReceived(e) { while (true) {} }",
                             "onEmailReceived", [EMAIL], tenant="t", plugin_settings={},
                             storage={}, settings=Settings())
    assert stuck.status is HookStatus.timeout
    assert "50 ms" in (stuck.error or "")


async def test_a_timeout_is_confirmed_in_a_fresh_isolate_before_it_counts() -> None:
    # A stalled machine can push even a trivial hook past 50 ms; a real loop times out twice.
    outcome, _ = await execute(manifest(), "function onEmailReceived(e) { while (true) {} }",
                               "onEmailReceived", [EMAIL], tenant="t", plugin_settings={},
                               storage={}, settings=Settings())
    assert outcome.status is HookStatus.timeout
    assert outcome.duration_ms >= 2 * 50
