"""The V8 sandbox: runs one hook of one plugin in a V8 isolate of its own, under a hard memory
limit and a time limit.

Every call gets a fresh isolate (about 1.5 ms to start, under 1 MB of heap): nothing a call does
survives it, so a plugin that fills its heap, pollutes prototypes or leaves a runaway promise
behind harms only that one call, and one plugin can never see another's data. State that must
last lives in ``pat.storage``.

The memory limit is V8's: it is enforced when the garbage collector runs, so one large
allocation can overshoot it briefly before the script is stopped. Binary buffers
(``ArrayBuffer`` and the typed arrays) are removed from the isolate, because their bytes live
outside the V8 heap where the limit does not see them.

The isolate has no file system, no network, no timers and no ``require``: the plugin reaches the
world only through the ``pat`` object, which is plain JavaScript over data handed in. Storage
is a snapshot of the plugin's own key-value space whose writes are returned and committed only
if the hook succeeds; ``pat.http``, ``pat.email.send`` and ``pat.export.csv`` only record
effects, which Python checks against the manifest and the operator's settings and carries out
after the hook returned, outside the hook's time budget.

Since mini-racer 0.14 a ``MiniRacer`` binds to the running event loop; its JavaScript runs on
V8's own thread and ``eval_cancelable`` is awaited under ``asyncio.wait_for``, whose
cancellation terminates the script. Hooks must be synchronous: awaiting a JavaScript promise
that never settles cannot be cancelled cleanly, so a hook returning a promise is refused."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from py_mini_racer import JSEvalException, JSOOMException, JSParseException, MiniRacer

from plugins.manifest import HOOKS

MAX_OUTPUT_BYTES = 1024 * 1024


class HookStatus(StrEnum):
    ok = "ok"
    error = "error"  # the hook threw
    timeout = "timeout"
    memory = "memory"
    stack_overflow = "stack_overflow"
    malformed = "malformed"  # the hook returned something Pat cannot use
    denied = "denied"  # the plugin tried something its permissions do not allow
    compile_error = "compile_error"  # the source did not load
    effect_failed = "effect_failed"  # an allowed network or export effect failed


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    timeout_ms: int


@dataclass
class Invocation:
    """Everything one hook call sees."""

    hook: str
    args: list[Any]
    plugin_id: str
    plugin_version: str
    tenant: str
    permissions: list[str]
    hosts: list[str]
    settings: dict[str, Any]
    storage: dict[str, Any] = field(default_factory=dict)


@dataclass
class HookOutcome:
    status: HookStatus
    error: str | None = None
    value: Any = None
    logs: list[dict[str, str]] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    # key -> {"v": value} to set, None to delete
    storage_writes: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    duration_ms: float = 0.0


_PRELUDE = (Path(__file__).parent / "sandbox.js").read_text()

_FIRST_LINE_PREFIX = len(_PRELUDE.split("__PAT_CODE__", 1)[0].rsplit("\n", 1)[1])
_SYNTAX_PROBE = ("(function () { try { new Function(%s); return ''; }"
                 " catch (e) { return String(e); } })()")
_DECLARED = ", ".join(f"{h}: typeof {h} === 'function' ? {h} : undefined" for h in HOOKS)


def _script(code: str, invocation: Invocation) -> str:
    ctx = {"hook": invocation.hook, "args": invocation.args, "permissions": invocation.permissions,
           "hosts": invocation.hosts, "settings": invocation.settings,
           "storage": invocation.storage, "known": list(HOOKS),
           "plugin": {"id": invocation.plugin_id, "version": invocation.plugin_version,
                      "tenant": invocation.tenant}}
    # Split rather than str.replace on the whole: the plugin's own text is never searched.
    head, rest = _PRELUDE.split("__PAT_CTX__", 1)
    middle, tail = rest.split("__PAT_CODE__", 1)
    return head + json.dumps(ctx) + middle + code + tail.replace("__PAT_DECLARED__", _DECLARED)


_CODE_LINE = _PRELUDE.split("__PAT_CODE__", 1)[0].count("\n") + 1
_POSITION = re.compile(r"<anonymous>:(\d+)(?::(\d+))?")


def _plugin_positions(text: str, code: str) -> str:
    """V8 positions in the sandbox script, rewritten as positions in the plugin's own file."""

    code_lines = code.count("\n") + 1

    def rewrite(match: re.Match[str]) -> str:
        line = int(match.group(1)) - _CODE_LINE + 1
        if line < 1 or line > code_lines:
            return "pat-sandbox"
        column = match.group(2)
        if column is not None and line == 1:
            column = str(max(1, int(column) - _FIRST_LINE_PREFIX))
        return f"plugin.js:{line}" + (f":{column}" if column is not None else "")

    return _POSITION.sub(rewrite, text)


def _describe_js_error(exc: Exception, code: str) -> str:
    return _plugin_positions(str(exc).strip(), code)[:2000]


# Loading runs Pat's sandbox script and the plugin's top level, not the hook: it gets at least
# this budget, so a busy machine's scheduling pause cannot fail a trivial plugin's load.
LOAD_BUDGET_MS = 500


async def _timed_eval(racer: MiniRacer, code: str, limits: Limits, *,
                      loading: bool = False) -> Any:
    budget = max(limits.timeout_ms, LOAD_BUDGET_MS) if loading else limits.timeout_ms
    return await asyncio.wait_for(racer.eval_cancelable(code), budget / 1000)


def _limit_failure(exc: BaseException, limits: Limits, what: str, *,
                   loading: bool = False) -> HookOutcome | None:
    if isinstance(exc, JSOOMException):
        return HookOutcome(HookStatus.memory, f"{what} exceeded the memory limit of "
                           f"{limits.memory_mb} MB and was stopped")
    if isinstance(exc, TimeoutError):
        budget = max(limits.timeout_ms, LOAD_BUDGET_MS) if loading else limits.timeout_ms
        return HookOutcome(HookStatus.timeout, f"{what} ran longer than {budget} ms "
                           "and was stopped")
    return None


class IsolatePool:
    """Blank isolates made ahead of need, and used ones closed after the call has returned,
    so that a hook call's latency is its own JavaScript, not V8's setup and teardown (about
    2 ms). The spare is made after a call, not during one: made while a hook's script runs,
    it would hold up the event loop that is waiting for that script. An isolate is never used
    twice. Isolates belong to the event loop they were made on; the pool starts afresh if it
    is used from another loop."""

    def __init__(self, spare: int = 1) -> None:
        self._spare: list[MiniRacer] = []
        self._target = spare
        self._loop: asyncio.AbstractEventLoop | None = None

    def take(self) -> MiniRacer:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._spare, self._loop = [], loop
        return self._spare.pop() if self._spare else MiniRacer()

    def release(self, racer: MiniRacer) -> None:
        loop = asyncio.get_running_loop()
        loop.call_soon(racer.close)
        loop.call_soon(self._refill, loop)

    def _refill(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is self._loop:
            while len(self._spare) < self._target:
                self._spare.append(MiniRacer())


async def call_hook(code: str, invocation: Invocation, limits: Limits,
                    pool: IsolatePool | None = None) -> HookOutcome:
    """Load ``code`` in a fresh isolate and call ``invocation.hook``. Never raises for anything
    the plugin does: every failure is an outcome with a status and a reason."""
    started = time.perf_counter()
    racer = pool.take() if pool else MiniRacer()
    try:
        outcome = await _call_hook(racer, code, invocation, limits)
    finally:
        if pool:
            pool.release(racer)
        else:
            racer.close()
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    return outcome


async def _call_hook(racer: MiniRacer, code: str, invocation: Invocation,
                     limits: Limits) -> HookOutcome:
    racer.set_hard_memory_limit(limits.memory_mb * 1024 * 1024)
    try:
        await _timed_eval(racer, _script(code, invocation), limits, loading=True)
    except JSParseException as exc:
        return HookOutcome(HookStatus.compile_error,
                           f"the plugin source does not parse: {_describe_js_error(exc, code)}")
    except (JSEvalException, TimeoutError) as exc:
        limited = _limit_failure(exc, limits, "loading the plugin", loading=True)
        if limited:
            return limited
        return HookOutcome(HookStatus.compile_error, "the plugin failed while loading: "
                           + _describe_js_error(exc, code))
    try:
        output = await _timed_eval(racer, "__pat.run()", limits)
    except (JSEvalException, TimeoutError) as exc:
        limited = _limit_failure(exc, limits, f"{invocation.hook}")
        if limited:
            return limited
        return HookOutcome(HookStatus.error, _describe_js_error(exc, code))
    return _decode(output, invocation.hook, code)


def _decode(output: Any, hook: str, code: str) -> HookOutcome:
    if not isinstance(output, str):
        return HookOutcome(HookStatus.malformed, f"{hook} produced no result")
    if len(output) > MAX_OUTPUT_BYTES:
        return HookOutcome(HookStatus.malformed, f"{hook} returned more than "
                           f"{MAX_OUTPUT_BYTES // 1024} KB")
    data = json.loads(output)
    error = data.get("error")
    outcome = HookOutcome(HookStatus(data["status"]),
                          _plugin_positions(error, code) if error else None, data.get("value"),
                          logs=data.get("logs", []), effects=data.get("effects", []),
                          storage_writes=data.get("writes", {}))
    if outcome.status is HookStatus.ok and "value" not in data:
        outcome.status = HookStatus.malformed
        outcome.error = f"{hook} returned a value that is not JSON (a function or a symbol)"
    if outcome.status is not HookStatus.ok:
        outcome.storage_writes = {}
        outcome.effects = []
    return outcome


async def compile_plugin(code: str, hooks: list[str], limits: Limits) -> list[str]:
    """Load ``code`` in an isolate and check it defines a function for every hook in
    ``hooks``. The problems found; none means the plugin can be registered."""
    probe = Invocation(hook="__compile__", args=[], plugin_id="compile", plugin_version="0",
                       tenant="", permissions=[], hosts=[], settings={})
    with MiniRacer() as racer:
        racer.set_hard_memory_limit(limits.memory_mb * 1024 * 1024)
        try:
            # Parse alone first: the error then names the plugin's mistake, not the sandbox.
            syntax = await _timed_eval(racer, _SYNTAX_PROBE % json.dumps(code), limits,
                                       loading=True)
            if syntax:
                return [f"the plugin source does not parse: {syntax}"]
            await _timed_eval(racer, _script(code, probe), limits, loading=True)
            defined = await _timed_eval(racer, "__pat.defined()", limits, loading=True)
        except JSParseException as exc:
            return [f"the plugin source does not parse: {_describe_js_error(exc, code)}"]
        except (JSEvalException, TimeoutError) as exc:
            limited = _limit_failure(exc, limits, "loading the plugin", loading=True)
            return [limited.error if limited and limited.error
                    else f"the plugin failed while loading: {_describe_js_error(exc, code)}"]
    found = set(json.loads(str(defined)))
    problems = [f"the manifest declares {h} but the plugin defines no such function"
                for h in hooks if h not in found]
    problems += [f"the plugin defines {h} but the manifest does not declare it"
                 for h in sorted(found - set(hooks))]
    return problems
