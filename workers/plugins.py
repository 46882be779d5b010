"""Plugin activities and workflows, for whichever worker runs EmailPipeline: the hook
activities must be on the task queue of the workflow that calls ``run_hooks``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from activities.plugins import PluginActivities
from pat.settings import Settings
from pat.store.repository import MessageStore
from workflows.plugin_install import PluginInstall

PLUGIN_WORKFLOWS: Sequence[type] = (PluginInstall,)


def plugin_activities(store: MessageStore, settings: Settings) -> list[Callable[..., Any]]:
    activities = PluginActivities(store, settings)
    return [activities.active_plugins, activities.run_plugin_hook, activities.scan_plugin,
            activities.compile_plugin, activities.register_plugin, activities.activate_plugin]
