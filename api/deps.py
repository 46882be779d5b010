"""Dependencies shared by the routers: the store, the bus and the settings of this app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from api.access import OPEN, Principal
from pat.bus import Bus, StoreWatcher
from pat.settings import Settings
from pat.store.repository import MessageStore


@dataclass
class AppState:
    settings: Settings
    store: MessageStore
    bus: Bus
    watcher: StoreWatcher


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.pat
    return state


def get_store(request: Request) -> MessageStore:
    return get_state(request).store


def get_principal(connection: HTTPConnection) -> Principal:
    """Who is calling (set by the access middleware; ``OPEN`` when access control is off)."""
    principal: Principal = getattr(connection.state, "principal", OPEN)
    return principal


def get_tenant(connection: HTTPConnection) -> str | None:
    """The one tenant whose messages the caller may see, or None for all."""
    return get_principal(connection).tenant


StateDep = Annotated[AppState, Depends(get_state)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
TenantDep = Annotated[str | None, Depends(get_tenant)]
StoreDep = Annotated[MessageStore, Depends(get_store)]
