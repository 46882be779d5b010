"""The V8 sandbox: runs one hook of one plugin in a V8 isolate of its own, under a hard memory
limit and a time limit, and parses what the isolate returns.

Every call gets a fresh isolate (about 2 ms to open and close, under 1 MB of heap), closed before
the call returns: nothing a call does survives it, so a plugin that fills its heap, pollutes
prototypes or leaves a runaway promise behind harms only that one call, one plugin can never
see another's data, and no isolate is left for the interpreter to tear down at exit. State that
must last lives in ``pat.storage``.

The isolate runs three scripts: Pat's prelude (``sandbox.js``, which holds the call's context
in a closure and leaves only the frozen globals ``pat`` and ``__pat``), the plugin's source,
and ``__pat.run()``. The plugin's source is a script of its own, so no variable of the prelude
is in its scope; but once it has loaded, the isolate is the plugin's, so its output is parsed
here as hostile data: one JSON document checked against a strict schema (``HookDocument``),
bounded in every dimension. A document that does not fit is the plugin's ``malformed`` result,
and nothing it asked for is done.

The memory limit is V8's: it is enforced when the garbage collector runs, so one large
allocation can overshoot it briefly before the script is stopped. Binary buffers
(``ArrayBuffer`` and the typed arrays) are removed from the isolate, because their bytes live
outside the V8 heap where the limit does not see them.

The isolate has no file system, no network, no timers and no ``require``: the plugin reaches the
world only through the ``pat`` object. Storage is a snapshot of the plugin's own key-value space
whose writes are returned and committed only if the hook succeeds; ``pat.http``,
``pat.email.send`` and ``pat.export.csv`` only record effects, which Python checks against the
manifest and the operator's settings and carries out after the hook returned, outside the
hook's time budget.

Since mini-racer 0.14 a ``MiniRacer`` binds to the running event loop; its JavaScript runs on
V8's own thread and ``eval_cancelable`` is awaited under ``asyncio.wait_for``, whose
cancellation terminates the script. Only ``eval_cancelable`` is used: mini-racer's function
calls first run an uncancellable evaluation, which a runaway promise left by the plugin would
block forever. Hooks must be synchronous: awaiting a JavaScript promise that never settles
cannot be cancelled cleanly, so a hook returning a promise is refused."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from py_mini_racer import JSEvalException, JSOOMException, JSParseException, MiniRacer
from pydantic import AfterValidator, Field, JsonValue, ValidationError, model_validator

from plugins.effects import SANDBOX_LIMITS, SANDBOX_RULES, Effect, StrictModel
from plugins.manifest import HOOKS

MAX_OUTPUT_CHARS = 1024 * 1024
MAX_LOGS = 200
MAX_LOG_CHARS = 2000
MAX_EFFECTS = 20
MAX_ERROR_CHARS = 4000
MAX_KEY_CHARS = 255
MAX_VALUE_CHARS = 64 * 1024
MAX_WRITES = 10_000
# Deeper JSON than this is refused: Python's json and the store's drivers recurse on nesting.
MAX_DEPTH = 64
PLUGIN_SCRIPT_NAME = "plugin.js"


class HookStatus(StrEnum):
    ok = "ok"
    error = "error"  # the hook threw
    timeout = "timeout"
    memory = "memory"
    stack_overflow = "stack_overflow"
    malformed = "malformed"  # the hook returned something Pat cannot use
    denied = "denied"  # the plugin tried something its permissions do not allow
    compile_error = "compile_error"  # the source did not load
    effect_failed = "effect_failed"  # an allowed network, export or storage effect failed


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


def _storage_key(key: str) -> str:
    if any(ord(c) < 32 or c == "\x7f" for c in key):
        raise ValueError("storage keys have no control characters")
    return key


StorageKey = Annotated[str, Field(min_length=1, max_length=MAX_KEY_CHARS),
                       AfterValidator(_storage_key)]


class LogLine(StrictModel):
    level: Literal["debug", "info", "warn", "error"]
    message: str = Field(max_length=MAX_LOG_CHARS)


class StoredValue(StrictModel):
    """A value a hook gives ``pat.storage.set``; a deleted key is written as null instead."""

    value: JsonValue

    @model_validator(mode="after")
    def _bounded(self) -> StoredValue:
        if len(json.dumps(self.value, ensure_ascii=False, separators=(",", ":"))) > \
                MAX_VALUE_CHARS:
            raise ValueError(f"a stored value is at most {MAX_VALUE_CHARS} characters of JSON")
        return self


class HookDocument(StrictModel):
    """What ``__pat.run()`` returns, as Pat accepts it. Timeouts, memory, compile errors and
    effect failures are Python's to say, never the isolate's."""

    status: Literal["ok", "error", "denied", "stack_overflow", "malformed"]
    error: str | None = Field(None, max_length=MAX_ERROR_CHARS)
    logs: list[LogLine] = Field(max_length=MAX_LOGS)
    value: JsonValue = None
    effects: list[Effect] = Field(default_factory=list, max_length=MAX_EFFECTS)
    writes: dict[StorageKey, StoredValue | None] = Field(default_factory=dict,
                                                         max_length=MAX_WRITES)

    @model_validator(mode="after")
    def _consistent(self) -> HookDocument:
        if self.status == "ok" and "value" not in self.model_fields_set:
            raise ValueError("a successful call carries its value")
        if self.status != "ok" and not self.error:
            raise ValueError("a failed call carries its reason")
        if self.status != "ok" and ({"value", "effects", "writes"} & self.model_fields_set):
            raise ValueError("a failed call carries no value, effects or writes")
        return self


@dataclass
class HookOutcome:
    status: HookStatus
    error: str | None = None
    value: JsonValue = None
    logs: list[LogLine] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    # key -> the value to set, or None to delete the key
    storage_writes: dict[str, StoredValue | None] = field(default_factory=dict)
    duration_ms: float = 0.0


_DECLARED = ("{__proto__: null, " + ", ".join(
    f"{h}: () => typeof {h} === 'function' ? {h} : undefined" for h in HOOKS) + "}")
_PRELUDE_HEAD, _PRELUDE_TAIL = ((Path(__file__).parent / "sandbox.js").read_text()
                                .replace("__PAT_DECLARED__", _DECLARED).split("__PAT_CTX__"))
_SANDBOX_LIMITS = {"logs": MAX_LOGS, "log_chars": MAX_LOG_CHARS, "effects": MAX_EFFECTS,
                   "error_chars": MAX_ERROR_CHARS, "key_chars": MAX_KEY_CHARS,
                   "value_chars": MAX_VALUE_CHARS, **SANDBOX_LIMITS}


def _prelude(invocation: Invocation) -> str:
    context = {"hook": invocation.hook, "args": invocation.args,
               "permissions": invocation.permissions, "hosts": invocation.hosts,
               "settings": invocation.settings, "storage": invocation.storage,
               "known": list(HOOKS), "limits": _SANDBOX_LIMITS, **SANDBOX_RULES,
               "plugin": {"id": invocation.plugin_id, "version": invocation.plugin_version,
                          "tenant": invocation.tenant}}
    return _PRELUDE_HEAD + json.dumps(json.dumps(context)) + _PRELUDE_TAIL


def _plugin_script(code: str) -> str:
    # Named, so that V8's messages and stacks give positions in the plugin's own file; ending
    # in undefined, so that no value of the plugin's is handed to Python.
    return f"{code}\n;undefined;\n//# sourceURL={PLUGIN_SCRIPT_NAME}\n"


def _describe_js_error(exc: Exception) -> str:
    return str(exc).strip()[:MAX_ERROR_CHARS]


# Loading runs Pat's prelude and the plugin's top level, not the hook: it gets at least this
# budget, so a busy machine's scheduling pause cannot fail a trivial plugin's load.
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


async def call_hook(code: str, invocation: Invocation, limits: Limits) -> HookOutcome:
    """Load ``code`` in a fresh isolate and call ``invocation.hook``. Never raises for anything
    the plugin does: every failure is an outcome with a status and a reason."""
    started = time.perf_counter()
    with MiniRacer() as racer:
        outcome = await _call_hook(racer, code, invocation, limits)
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    return outcome


async def _load(racer: MiniRacer, code: str, invocation: Invocation,
                limits: Limits) -> HookOutcome | None:
    """Run the prelude and the plugin's top level; the failure, if they do not load."""
    racer.set_hard_memory_limit(limits.memory_mb * 1024 * 1024)
    try:
        await _timed_eval(racer, _prelude(invocation), limits, loading=True)
        await _timed_eval(racer, _plugin_script(code), limits, loading=True)
    except JSParseException as exc:
        return HookOutcome(HookStatus.compile_error,
                           f"the plugin source does not parse: {_describe_js_error(exc)}")
    except (JSEvalException, TimeoutError) as exc:
        limited = _limit_failure(exc, limits, "loading the plugin", loading=True)
        if limited:
            return limited
        return HookOutcome(HookStatus.compile_error,
                           f"the plugin failed while loading: {_describe_js_error(exc)}")
    return None


async def _call_hook(racer: MiniRacer, code: str, invocation: Invocation,
                     limits: Limits) -> HookOutcome:
    failed = await _load(racer, code, invocation, limits)
    if failed:
        return failed
    try:
        output = await _timed_eval(racer, "__pat.run()", limits)
    except (JSEvalException, TimeoutError) as exc:
        limited = _limit_failure(exc, limits, invocation.hook)
        if limited:
            return limited
        return HookOutcome(HookStatus.error, _describe_js_error(exc))
    return parse_output(output, invocation.hook)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _unusable(document: Any) -> str | None:
    """Why ``document`` (parsed JSON) cannot be kept, if it cannot: too deep, or text that is
    not Unicode (a lone surrogate) and that no store or driver will take."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            return f"it is nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, dict):
            pending += [(k, depth) for k in item] + [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            pending += [(v, depth + 1) for v in item]
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "it holds text that is not valid Unicode (a lone surrogate)"
    return None


def _location(part: str | int) -> str:
    # Keys in a location are the plugin's own text: shown short, and without control characters.
    text = str(part)
    shown = "".join(c if c.isprintable() else "?" for c in text[:40])
    return shown + ("..." if len(text) > 40 else "")


def _validation_problems(exc: ValidationError) -> str:
    problems = [f"{'.'.join(_location(p) for p in e['loc']) or 'result'}: {e['msg']}"
                for e in exc.errors()[:5]]
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


def parse_output(output: Any, hook: str) -> HookOutcome:
    """The isolate's result, parsed and checked; anything that does not fit the schema is the
    plugin's ``malformed`` result, with the reason."""
    if not isinstance(output, str):
        return HookOutcome(HookStatus.malformed, f"{hook} produced no result")
    if len(output) > MAX_OUTPUT_CHARS:
        return HookOutcome(HookStatus.malformed, f"{hook} returned more than "
                           f"{MAX_OUTPUT_CHARS // 1024} K characters")
    try:
        data = json.loads(output, parse_constant=_refuse_constant)
    except RecursionError:
        return HookOutcome(HookStatus.malformed, f"{hook}'s result is nested too deeply")
    except ValueError as exc:
        return HookOutcome(HookStatus.malformed, f"{hook}'s result is not JSON: {exc}")
    problem = _unusable(data)
    if problem:
        return HookOutcome(HookStatus.malformed, f"{hook}'s result cannot be kept: {problem}")
    try:
        document = HookDocument.model_validate(data)
    except ValidationError as exc:
        return HookOutcome(HookStatus.malformed, f"{hook}'s result does not fit Pat's schema: "
                           f"{_validation_problems(exc)}")
    if document.status != "ok":
        return HookOutcome(HookStatus(document.status), document.error, logs=document.logs)
    return HookOutcome(HookStatus.ok, value=document.value, logs=document.logs,
                       effects=document.effects, storage_writes=document.writes)


async def compile_plugin(code: str, hooks: list[str], limits: Limits) -> list[str]:
    """Load ``code`` in an isolate and check it defines a function for every hook in
    ``hooks``. The problems found; none means the plugin can be registered."""
    probe = Invocation(hook="__compile__", args=[], plugin_id="compile", plugin_version="0",
                       tenant="", permissions=[], hosts=[], settings={})
    with MiniRacer() as racer:
        failed = await _load(racer, code, probe, limits)
        if failed:
            return [failed.error or f"the plugin does not load ({failed.status})"]
        try:
            defined = await _timed_eval(racer, "__pat.defined()", limits, loading=True)
            found = set(json.loads(str(defined)))
        except (JSEvalException, TimeoutError, ValueError) as exc:
            limited = _limit_failure(exc, limits, "loading the plugin", loading=True)
            return [limited.error if limited and limited.error
                    else f"the plugin's hooks cannot be listed: {exc}"]
    problems = [f"the manifest declares {h} but the plugin defines no such function"
                for h in hooks if h not in found]
    problems += [f"the plugin defines {h} but the manifest does not declare it"
                 for h in sorted(found - set(hooks))]
    return problems
