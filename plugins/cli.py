"""``pat plugin``: install, list, enable, disable, remove, logs, scan and test plugins.

``pat/cli.py`` looks this module up by name when the ``plugin`` subcommand is built, so the
kernel never imports plugins at module level. ``install`` runs the PluginInstall workflow
(a worker must be running); ``test`` needs neither Temporal nor a store."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pat.settings import Settings

HOOK_CHOICES = ("onEmailReceived", "onEmailValidated", "onEmailStored")
PLUGIN_INSTALL = "PluginInstall"  # workflows.plugin_install


def add_plugin_parser(sub: Any) -> None:
    plugin = sub.add_parser("plugin", help="manage and test JavaScript plugins")
    plugin.add_argument("--tenant", help="tenant (default: PAT_TENANT)")
    actions = plugin.add_subparsers(dest="plugin_command", required=True)
    install = actions.add_parser("install", help="scan, compile, register and activate a "
                                 "plugin (a directory, or a .js file with its manifest beside)")
    install.add_argument("path", type=Path)
    install.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                         help="a plugin setting; VALUE is JSON, or text if it is not JSON")
    install.add_argument("--inactive", action="store_true", help="install without activating")
    actions.add_parser("list", help="installed plugins in execution order")
    for name, text in (("enable", "activate (runs onActivate)"),
                       ("disable", "deactivate (runs onDeactivate)"),
                       ("remove", "deactivate and delete, with its storage and its runs")):
        actions.add_parser(name, help=text).add_argument("plugin_id")
    logs = actions.add_parser("logs", help="recent hook runs, newest first")
    logs.add_argument("plugin_id", nargs="?")
    logs.add_argument("--message", help="only runs on this message id")
    logs.add_argument("--limit", type=int, default=20)
    scan = actions.add_parser("scan", help="run the security scan and the compile check")
    scan.add_argument("path", type=Path)
    test = actions.add_parser("test", help="run a plugin's hooks on one message and print "
                              "what they did (effects are shown, not carried out)")
    test.add_argument("path", type=Path, metavar="FILE.js")
    test.add_argument("--message", type=Path, required=True, metavar="MAIL.eml")
    test.add_argument("--hook", action="append", choices=HOOK_CHOICES,
                      help="hooks to run (default: every email hook the manifest declares)")
    test.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")


def _settings_arg(pairs: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"--set {pair!r}: write NAME=VALUE")
        try:
            values[name] = json.loads(text)
        except json.JSONDecodeError:
            values[name] = text
    return values


def run_plugin_command(settings: Settings, args: argparse.Namespace) -> int:
    from pat.native_threads import let_native_callbacks_finish
    from plugins.manifest import ManifestError
    from plugins.registry import RegistryError

    commands: dict[str, Callable[[Settings, argparse.Namespace],
                                 Coroutine[Any, Any, int]]] = {
        "install": _install, "list": _list, "enable": _enable, "disable": _disable,
        "remove": _remove, "logs": _logs, "scan": _scan, "test": _test}
    try:
        return asyncio.run(commands[args.plugin_command](settings, args))
    except (ManifestError, RegistryError, ValueError, LookupError, OSError) as exc:
        print(f"pat plugin {args.plugin_command}: {exc}", file=sys.stderr)
        return 1
    finally:
        # The Temporal client's and V8's threads may still be handing over their last result:
        # the process must not end under them (see pat.native_threads).
        let_native_callbacks_finish()


async def _with_registry(settings: Settings, action: Callable[[Any], Awaitable[int]]) -> int:
    from pat.store.db import make_engine, migrate
    from pat.store.repository import MessageStore
    from plugins.host import PluginHost
    from plugins.registry import PluginRegistry
    from plugins.store import PluginStore

    engine = make_engine(settings.store_url)
    try:
        await migrate(engine)
        store = PluginStore(engine)
        registry = PluginRegistry(store, PluginHost(store, MessageStore(engine), settings),
                                  settings)
        return await action(registry)
    finally:
        await engine.dispose()


def _tenant(settings: Settings, args: argparse.Namespace) -> str:
    return str(args.tenant or settings.tenant)


async def _install(settings: Settings, args: argparse.Namespace) -> int:
    from pat import temporal
    from plugins.manifest import load_plugin_files

    manifest, code = load_plugin_files(args.path)
    client = await temporal.connect(settings)
    tenant = _tenant(settings, args)
    # By name and as plain JSON: plugins/ does not import the workflow packages.
    result: dict[str, Any] = await client.execute_workflow(
        PLUGIN_INSTALL,
        {"source": {"tenant": tenant, "manifest": manifest.model_dump(mode="json"),
                    "code": code, "settings": _settings_arg(args.set)},
         "activate": not args.inactive},
        id=f"plugin-install-{tenant}-{manifest.id}-{uuid.uuid4().hex[:8]}",
        task_queue=settings.temporal_task_queue, result_type=dict)
    for finding in result.get("scan_report", {}).get("findings", []):
        where = f" (line {finding['line']})" if finding.get("line") else ""
        print(f"  scan {finding['severity']}: {finding['check']}{where}: {finding['message']}")
    for problem in result.get("problems", []):
        print(f"  compile: {problem}")
    if result["status"] == "rejected":
        print(f"{manifest.id} was not installed: {result['reason']}", file=sys.stderr)
        return 1
    print(f"{result['plugin_id']} {result['version']} installed ({result['status']})")
    return 0


async def _list(settings: Settings, args: argparse.Namespace) -> int:
    async def action(registry: Any) -> int:
        plugins = await registry.store.list(_tenant(settings, args))
        if not plugins:
            print("no plugins installed")
        for p in plugins:
            state = "active" if p.active else "inactive"
            print(f"{p.position:>5}  {p.id:<24} {p.version:<10} {state:<9} "
                  f"{','.join(p.manifest.hooks)}")
        return 0

    return await _with_registry(settings, action)


def _lifecycle(name: str) -> Callable[[Settings, argparse.Namespace],
                                      Coroutine[Any, Any, int]]:
    async def command(settings: Settings, args: argparse.Namespace) -> int:
        async def action(registry: Any) -> int:
            await getattr(registry, name)(_tenant(settings, args), args.plugin_id)
            print(f"{args.plugin_id}: {name}d" if name != "remove" else
                  f"{args.plugin_id}: removed")
            return 0

        return await _with_registry(settings, action)

    return command


_enable = _lifecycle("activate")
_disable = _lifecycle("deactivate")
_remove = _lifecycle("remove")


async def _logs(settings: Settings, args: argparse.Namespace) -> int:
    async def action(registry: Any) -> int:
        runs = await registry.store.runs(_tenant(settings, args), plugin_id=args.plugin_id,
                                         message_id=args.message, limit=args.limit)
        for run in runs:
            when = datetime.fromtimestamp(run.created_ns / 1e9, tz=UTC).strftime("%H:%M:%S")
            print(f"{when} {run.plugin_id} {run.hook} {run.message_id or '-'} {run.status} "
                  f"{run.duration_ms:.1f} ms" + (f": {run.error}" if run.error else ""))
            for line in run.logs:
                print(f"    [{line['level']}] {line['message']}")
        return 0

    return await _with_registry(settings, action)


async def _scan(settings: Settings, args: argparse.Namespace) -> int:
    from plugins.host import limits_for
    from plugins.manifest import load_plugin_files
    from plugins.runtime import compile_plugin
    from plugins.scanner import scan

    manifest, code = load_plugin_files(args.path)
    report = scan(code, manifest, max_bytes=settings.plugin_max_source_bytes)
    for f in report.findings:
        print(f"{f.severity}: {f.check}" + (f" (line {f.line})" if f.line else "") +
              f": {f.message}")
    problems = await compile_plugin(code, manifest.hooks, limits_for(manifest, settings))
    for problem in problems:
        print(f"compile: {problem}")
    ok = report.passed and not problems
    print(f"{manifest.id}: {'passes' if ok else 'would be refused'}")
    return 0 if ok else 1


async def _test(settings: Settings, args: argparse.Namespace) -> int:
    from pat.domain import now_ns
    from pat.parsing import read_message
    from plugins.host import email_for_plugins, execute
    from plugins.manifest import load_plugin_files
    from plugins.runtime import HookStatus

    manifest, code = load_plugin_files(args.path)
    raw = args.message.read_bytes()
    reading = read_message(raw)
    parsed = reading.view
    recipients = [a.address for kind in ("to", "cc") for a in parsed.addresses.get(kind, [])]
    sender = parsed.addresses["from"][0].address if parsed.addresses.get("from") else ""
    plugin_settings = manifest.resolve_settings(_settings_arg(args.set))
    storage: dict[str, Any] = {}
    header_changes: list[dict[str, str | None]] = []
    hooks = args.hook or [h for h in HOOK_CHOICES if h in manifest.hooks]
    failed = False
    for hook in hooks:
        email = email_for_plugins(reading, size=len(raw), message_id=args.message.name,
                                  tenant="test", mail_from=sender, recipients=recipients,
                                  received_ns=now_ns(), header_changes=header_changes)
        hook_args: list[Any] = [email, {}] if hook == "onEmailValidated" else [email]
        outcome, changes = await execute(manifest, code, hook, hook_args, tenant="test",
                                         plugin_settings=plugin_settings, storage=storage,
                                         settings=settings)
        print(f"{hook}: {outcome.status} in {outcome.duration_ms:.1f} ms"
              + (f"\n  error: {outcome.error}" if outcome.error else ""))
        for line in outcome.logs:
            print(f"  log [{line.level}] {line.message}")
        for name, value in changes.get("headers", {}).items():
            print(f"  header {name}: {value if value is not None else '(removed)'}")
        if "metadata" in changes:
            print(f"  metadata {json.dumps(changes['metadata'], sort_keys=True)}")
        for effect in outcome.effects:
            fields = effect.model_dump(mode="json", by_alias=True, exclude={"kind"})
            print(f"  would {effect.kind}: {json.dumps(fields)}")
        for key, write in outcome.storage_writes.items():
            print(f"  storage {key} = " + ("(deleted)" if write is None
                                           else json.dumps(write.value)))
            if write is None:
                storage.pop(key, None)
            else:
                storage[key] = write.value
        if changes.get("headers"):
            header_changes.append(changes["headers"])
        failed = failed or outcome.status is not HookStatus.ok
    return 1 if failed else 0
