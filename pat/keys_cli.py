"""``pat keys create|list|revoke``: API keys for Pat's HTTP port.

``create`` prints the new key once; only its SHA-256 is stored. As soon as one key exists,
every HTTP route but /healthz and /readyz asks for a key or Basic auth."""

from __future__ import annotations

import argparse
import asyncio
import re
from datetime import UTC, datetime

from pat.settings import Settings
from pat.store.db import make_engine, migrate
from pat.store.keys import ApiKeyStore, KeyInfo, Scope

_TENANT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def add_keys_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="API keys: create, list, revoke")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--scope", required=True, choices=[s.value for s in Scope],
                        help="read: every GET; write: also deletes and reprocess; admin: also "
                             "plugins")
    create.add_argument("--tenant", help="the key sees only this tenant's messages")
    create.add_argument("--name", default="", help="a label to recognise the key by")
    actions.add_parser("list", help="list keys (never the keys themselves)")
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")


def _when(stamp_ns: int) -> str:
    return datetime.fromtimestamp(stamp_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _line(info: KeyInfo) -> str:
    state = f"revoked {_when(info.revoked_ns)}" if info.revoked_ns else "active"
    return (f"{info.id}  {info.scope.value:<5}  tenant={info.tenant or '*'}  "
            f"created {_when(info.created_ns)}  {state}  {info.name}").rstrip()


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.store_url)
    try:
        await migrate(engine)
        store = ApiKeyStore(engine)
        if args.keys_command == "create":
            if args.tenant is not None and not _TENANT.match(args.tenant):
                print("pat keys: a tenant is 1-64 of A-Z, a-z, 0-9, '.', '_' and '-'")
                return 2
            key, info = await store.create(Scope(args.scope), tenant=args.tenant,
                                           name=args.name)
            print(key)
            print(f"# {_line(info)}\n# Shown once; Pat keeps only its hash. Send it as "
                  "'Authorization: Bearer <key>'.")
            return 0
        if args.keys_command == "list":
            for info in await store.list():
                print(_line(info))
            return 0
        if await store.revoke(args.key_id):
            print(f"revoked {args.key_id}")
            return 0
        print(f"pat keys: no active key with id {args.key_id}")
        return 1
    finally:
        await engine.dispose()


def run_keys_command(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_run(settings, args))
