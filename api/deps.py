"""Dependencies shared by the routers: the store, the bus and the settings of this app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

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


StateDep = Annotated[AppState, Depends(get_state)]
StoreDep = Annotated[MessageStore, Depends(get_store)]
