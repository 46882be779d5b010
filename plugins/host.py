"""Running a plugin's hook for Pat: the email as plugins see it, the isolate call, the checks
on what came back, storage commits, effects, and the run record.

``execute`` needs no database (``pat plugin test`` uses it on a file): it runs the hook and
checks its result, its storage writes and its effects against the manifest and the operator's
settings. ``PluginHost`` adds the store: it loads the plugin, commits its storage writes,
carries out its effects and records every run, whatever its outcome.

Whatever a plugin returns, committing it cannot fail the hook's activity: an error while
writing its storage, carrying out its effects or recording its run becomes that run's recorded
failure. Only a store that cannot be reached raises, so that Temporal retries the activity;
and because every effect and every storage commit is claimed under an idempotency key first
(the workflow, its run, the activity, the plugin, the hook and the effect's position), a retried
call never carries out what an earlier attempt did."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pat.parsing import MalformedMessage, MessageReading, ParsedMessage, read_message
from pat.settings import Settings
from pat.store.repository import MessageStore
from plugins.effects import EffectDenied, EffectFailed, authorize, perform, reachable_hosts
from plugins.manifest import EMAIL_HOOKS, Manifest
from plugins.runtime import HookOutcome, HookStatus, Invocation, Limits, call_hook
from plugins.store import (
    EffectClaim,
    EffectRecord,
    InstalledPlugin,
    PluginStore,
    StorageQuotaError,
    store_unavailable,
)

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 256 * 1024
MAX_METADATA_BYTES = 64 * 1024
MAX_HEADER_CHANGES = 50
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")
_UNSAFE_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class MalformedResult(ValueError):
    pass


@dataclass
class HookRun:
    """What one hook call did, as recorded."""

    plugin_id: str
    plugin_version: str
    hook: str
    status: HookStatus
    error: str | None
    duration_ms: float
    changes: dict[str, Any] = field(default_factory=dict)
    logs: list[dict[str, str]] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    run_id: int | None = None


def limits_for(manifest: Manifest, settings: Settings) -> Limits:
    """The operator's settings are ceilings: a manifest may lower its plugin's limits, never
    raise them (a plugin asking for 2 GB and 10 s gets the operator's figures)."""
    memory, timeout = settings.plugin_memory_limit_mb, settings.plugin_timeout_ms
    return Limits(memory_mb=min(manifest.memory_limit_mb or memory, memory),
                  timeout_ms=min(manifest.timeout_ms or timeout, timeout))


def validate_changes(hook: str, value: Any) -> dict[str, Any]:
    """What a hook returned, checked: ``onEmailReceived`` may return ``{headers, metadata}``
    (a header set to null is removed), the other hooks ``{metadata}``, any hook nothing."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedResult(f"{hook} must return an object or nothing, not "
                              f"{type(value).__name__}")
    allowed = {"headers", "metadata"} if hook == "onEmailReceived" else {"metadata"}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise MalformedResult(f"{hook} may return only {sorted(allowed)}; got {unknown}")
    changes: dict[str, Any] = {}
    if "headers" in value:
        headers = value["headers"]
        if not isinstance(headers, dict) or len(headers) > MAX_HEADER_CHANGES:
            raise MalformedResult(f"headers must be an object of at most {MAX_HEADER_CHANGES} "
                                  "names")
        for name, text in headers.items():
            if not _HEADER_NAME.match(name):
                raise MalformedResult(f"{name!r} is not a valid header name")
            if text is not None and (not isinstance(text, str) or len(text) > 998
                                     or _UNSAFE_HEADER_VALUE.search(text)):
                raise MalformedResult(f"header {name} must be a one-line string of at most 998 "
                                      "characters without control characters, or null to "
                                      "remove it")
        changes["headers"] = headers
    if "metadata" in value:
        if not isinstance(value["metadata"], dict):
            raise MalformedResult("metadata must be an object")
        if len(json.dumps(value["metadata"])) > MAX_METADATA_BYTES:
            raise MalformedResult(f"metadata is larger than {MAX_METADATA_BYTES // 1024} KB")
        changes["metadata"] = value["metadata"]
    return changes


def apply_header_changes(headers: list[tuple[str, str]],
                         changes: list[dict[str, str | None]]) -> list[tuple[str, str]]:
    """Pat's view of the headers after plugins' changes; the stored bytes never change."""
    result = list(headers)
    for change in changes:
        for name, value in change.items():
            result = [(n, v) for n, v in result if n.lower() != name.lower()]
            if value is not None:
                result.insert(0, (name, value))
    return result


def _addresses(parsed: ParsedMessage, kind: str) -> list[dict[str, str]]:
    return [{"name": a.name, "address": a.address} for a in parsed.addresses.get(kind, [])]


def email_for_plugins(reading: MessageReading, *, size: int, message_id: str, tenant: str,
                      mail_from: str, recipients: list[str], received_ns: int,
                      header_changes: list[dict[str, str | None]] | None = None,
                      metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The email object a hook receives: plain JSON, bodies capped at 256 K characters."""
    parsed = reading.view
    from_ = _addresses(parsed, "from")
    return {
        "id": message_id, "tenant": tenant,
        "receivedAt": datetime.fromtimestamp(received_ns / 1e9, tz=UTC).isoformat(),
        "envelope": {"from": mail_from, "to": recipients},
        "subject": parsed.subject, "messageId": parsed.message_id, "date": parsed.date,
        "from": from_[0] if from_ else None, "to": _addresses(parsed, "to"),
        "cc": _addresses(parsed, "cc"), "replyTo": _addresses(parsed, "reply_to"),
        "headers": [list(h) for h in apply_header_changes(parsed.headers, header_changes or [])],
        "text": (reading.text or "")[:MAX_BODY_CHARS],
        "html": (reading.html or "")[:MAX_BODY_CHARS],
        "attachments": [{"filename": p.filename, "contentType": p.content_type, "size": p.size}
                        for p in parsed.attachments],
        "size": size, "metadata": metadata or {},
    }


async def execute(manifest: Manifest, code: str, hook: str, args: list[Any], *,
                  tenant: str, plugin_settings: dict[str, Any], storage: dict[str, Any],
                  settings: Settings) -> tuple[HookOutcome, dict[str, Any]]:
    """Call one hook and check its result, its storage writes and its effects against the
    manifest and the operator's settings; the outcome and the changes it asks for. An outcome
    that is not ``ok`` carries no writes and no effects."""
    invocation = Invocation(
        hook=hook, args=args, plugin_id=manifest.id, plugin_version=manifest.version,
        tenant=tenant, permissions=manifest.permissions,
        hosts=reachable_hosts(manifest, settings), settings=plugin_settings,
        storage=storage if "storage" in manifest.permissions else {})
    limits = limits_for(manifest, settings)
    outcome = await call_hook(code, invocation, limits)
    if outcome.status is HookStatus.timeout:
        # The limit is wall-clock time, and a busy machine can stall even a trivial hook past
        # it (seen under load). A timed-out call has no effects and no writes, so it is run
        # once more in a fresh isolate; a hook that really loops times out twice.
        first = outcome.duration_ms
        outcome = await call_hook(code, invocation, limits)
        outcome.duration_ms += first
    changes: dict[str, Any] = {}
    if outcome.status is HookStatus.ok:
        try:
            changes = validate_changes(hook, outcome.value)
            _authorize(outcome, manifest, settings)
        except MalformedResult as exc:
            outcome.status, outcome.error = HookStatus.malformed, str(exc)
        except EffectDenied as exc:
            outcome.status, outcome.error = HookStatus.denied, str(exc)
    if outcome.status is not HookStatus.ok:
        outcome.effects, outcome.storage_writes, changes = [], {}, {}
    return outcome, changes


def _authorize(outcome: HookOutcome, manifest: Manifest, settings: Settings) -> None:
    """Python's own permission checks, whatever the isolate's checks (code the plugin could
    change) let through: all of them pass before anything is done."""
    if outcome.storage_writes and "storage" not in manifest.permissions:
        raise EffectDenied("storage writes need the 'storage' permission, which the manifest "
                           "does not declare")
    for effect in outcome.effects:
        authorize(effect, manifest, settings)


def _printable(text: str, limit: int = 2000) -> str:
    """``text`` as any store takes it: no NUL (PostgreSQL refuses it in text), valid UTF-8."""
    return text[:limit].replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _local_call_key() -> str:
    """The call key of a hook run outside a Temporal activity (the API, the command line),
    which is never retried: any unique value."""
    return f"local/{uuid.uuid4()}"


def _claim(call_key: str, plugin: InstalledPlugin, hook: str, position: str, kind: str,
           target: str) -> EffectClaim:
    origin = f"{call_key}/{plugin.tenant}/{plugin.id}/{hook}#{position}"
    return EffectClaim(key=hashlib.sha256(origin.encode("utf-8", "replace")).hexdigest(),
                       origin=_printable(origin, 4000), tenant=plugin.tenant,
                       plugin_id=plugin.id, kind=kind, target=_printable(target))


def _earlier(kind: str, record: EffectRecord) -> tuple[bool, str]:
    """What to say of an effect that an earlier attempt of the same call had claimed."""
    if record.state == "done":
        return True, f"carried out by an earlier attempt ({record.detail}); not repeated"
    if record.state == "failed":
        return False, f"failed in an earlier attempt ({record.detail}); not repeated"
    return False, (f"an earlier attempt started this {kind} effect and did not record how it "
                   "ended; not repeated")


class PluginHost:
    def __init__(self, plugins: PluginStore, messages: MessageStore, settings: Settings) -> None:
        self.plugins = plugins
        self.messages = messages
        self.settings = settings

    async def email(self, tenant: str, message_id: str, *, before_plugin: str | None = None
                    ) -> dict[str, Any] | None:
        """The email for hooks, with the header changes and metadata that other plugins'
        ``onEmailReceived`` recorded for it; None if the message is gone, unreadable or not
        this tenant's."""
        message = await self.messages.get(message_id, tenant=tenant)
        if message is None:
            return None  # a tenant's plugins never see another tenant's mail
        reading = await self.messages.get_reading(message_id)
        if reading is None:  # hooks run after the parse step; a message never parsed is read
            raw = await self.messages.get_raw(message_id)
            try:
                reading = await asyncio.to_thread(read_message, raw or b"")
            except MalformedMessage:
                return None
        header_changes, metadata = await self.recorded_changes(tenant, message_id,
                                                               exclude=before_plugin)
        return email_for_plugins(reading, size=message.size, message_id=message_id,
                                 tenant=tenant,
                                 mail_from=message.mail_from, recipients=message.recipients,
                                 received_ns=message.created_ns, header_changes=header_changes,
                                 metadata=metadata)

    async def recorded_changes(self, tenant: str, message_id: str, *, exclude: str | None = None
                               ) -> tuple[list[dict[str, str | None]], dict[str, Any]]:
        """Header changes (in the order they were made) and metadata by plugin id, from each
        plugin's latest successful ``onEmailReceived`` on this message."""
        latest: dict[str, dict[str, Any]] = {}
        for run in await self.plugins.runs(tenant, message_id=message_id, limit=1000):
            if (run.hook == "onEmailReceived" and run.status == HookStatus.ok
                    and run.plugin_id != exclude and run.plugin_id not in latest):
                latest[run.plugin_id] = run.changes
        ordered = list(reversed(latest.items()))
        return ([c["headers"] for _, c in ordered if c.get("headers")],
                {pid: c["metadata"] for pid, c in ordered if "metadata" in c})

    async def run_hook(self, tenant: str, plugin_id: str, hook: str, *,
                       message_id: str | None = None, payload: Any = None,
                       call_key: str | None = None) -> HookRun:
        """Run one hook of one installed plugin and record the run. ``call_key`` names this
        call for idempotency: the same for every attempt of one Temporal activity (see
        ``activities.plugins``), a fresh one when None. Raises ``LookupError`` when the plugin
        or the message is gone, and lets an unreachable store's errors through; everything the
        plugin does wrong is in the returned, recorded run."""
        plugin = await self.plugins.get(tenant, plugin_id)
        if plugin is None:
            raise LookupError(f"no plugin {plugin_id!r} is installed for tenant {tenant!r}")
        if hook in EMAIL_HOOKS:
            email = await self.email(tenant, message_id or "", before_plugin=plugin_id)
            if email is None:
                raise LookupError(f"message {message_id} of tenant {tenant} is not in the store "
                                  "(deleted?)")
            if hook == "onEmailValidated" and payload is None:  # the results, from the store
                stored = await self.messages.get(message_id or "", tenant=tenant)
                payload = ((stored.checks or {}) if stored else {}).get("results", {})
            args: list[Any] = [email, payload] if hook == "onEmailValidated" else [email]
        else:
            args = [{"tenant": tenant, "settings": plugin.settings}]
        return await self._run(plugin, hook, args, message_id, call_key or _local_call_key())

    async def _run(self, plugin: InstalledPlugin, hook: str, args: list[Any],
                   message_id: str | None, call_key: str) -> HookRun:
        if hook not in plugin.manifest.hooks:
            outcome = HookOutcome(HookStatus.malformed,
                                  f"{plugin.id} does not declare the hook {hook}")
            changes: dict[str, Any] = {}
        else:
            storage = ({} if "storage" not in plugin.manifest.permissions
                       else await self.plugins.storage(plugin.tenant, plugin.id))
            outcome, changes = await execute(
                plugin.manifest, plugin.code, hook, args, tenant=plugin.tenant,
                plugin_settings=plugin.settings, storage=storage, settings=self.settings)
        try:
            effects = await self._commit(plugin, hook, outcome, call_key)
        except Exception as exc:
            if store_unavailable(exc):
                raise
            # What the plugin returned, not the store's availability, made the commit fail.
            log.warning("%s.%s: committing its output failed", plugin.id, hook, exc_info=True)
            outcome.status = HookStatus.effect_failed
            outcome.error = f"its output could not be committed: {type(exc).__name__}: {exc}"
            effects = []
        if outcome.status is not HookStatus.ok:
            changes = {}
        run = HookRun(plugin_id=plugin.id, plugin_version=plugin.version, hook=hook,
                      status=outcome.status, error=_printable(outcome.error or "") or None,
                      duration_ms=round(outcome.duration_ms, 3), changes=changes,
                      logs=[line.model_dump() for line in outcome.logs], effects=effects)
        await self._record(plugin, message_id, run)
        return run

    async def _commit(self, plugin: InstalledPlugin, hook: str, outcome: HookOutcome,
                      call_key: str) -> list[dict[str, Any]]:
        """Storage writes, then effects, of a successful hook; what each effect did. A write
        or an effect that an earlier attempt of the same call committed is not done again."""
        if outcome.status is not HookStatus.ok:
            return []
        if outcome.storage_writes:
            claim = _claim(call_key, plugin, hook, "storage", "storage", "storage")
            try:
                await self.plugins.apply_storage_writes(claim, outcome.storage_writes)
            except StorageQuotaError as exc:
                outcome.status, outcome.error = HookStatus.denied, f"storage: {exc}"
                return []
        done: list[dict[str, Any]] = []
        for position, effect in enumerate(outcome.effects):
            claim = _claim(call_key, plugin, hook, str(position), effect.kind, effect.target)
            record: dict[str, Any] = {"kind": effect.kind, "target": effect.target}
            earlier = await self.plugins.claim_effect(claim)
            if earlier is not None:
                ok, detail = _earlier(effect.kind, earlier)
            else:
                try:
                    detail = await perform(effect, plugin.manifest, self.settings, plugin.tenant,
                                           idempotency_key=claim.key)
                    ok = True
                except EffectFailed as exc:
                    ok, detail = False, _printable(str(exc))
                await self.plugins.finish_effect(claim.key, done=ok, detail=detail)
            record.update(ok=ok, detail=detail)
            if not ok and outcome.status is HookStatus.ok:
                outcome.status = HookStatus.effect_failed
                outcome.error = f"{effect.kind} effect failed: {detail}"
            done.append(record)
        return done

    async def _record(self, plugin: InstalledPlugin, message_id: str | None,
                      run: HookRun) -> None:
        """Record ``run``. Should the store refuse the full record (what the plugin returned,
        not its availability, is the cause), a short one keeps the failure on record."""
        values = {"tenant": plugin.tenant, "plugin_id": plugin.id,
                  "plugin_version": plugin.version, "hook": run.hook, "message_id": message_id,
                  "duration_ms": run.duration_ms}
        try:
            run.run_id = await self.plugins.record_run({
                **values, "status": run.status, "error": run.error, "logs": run.logs,
                "changes": run.changes, "effects": run.effects})
            return
        except Exception as exc:
            if store_unavailable(exc):
                raise
            log.warning("%s.%s: its run could not be recorded", plugin.id, run.hook,
                        exc_info=True)
            if run.status is HookStatus.ok:
                run.status = HookStatus.malformed
            run.error = _printable(f"{run.error + '; ' if run.error else ''}its result could "
                                   f"not be recorded: {type(exc).__name__}: {exc}")
            run.changes, run.logs = {}, []
        run.run_id = await self.plugins.record_run({
            **values, "status": run.status, "error": run.error, "logs": [], "changes": {},
            "effects": run.effects})
