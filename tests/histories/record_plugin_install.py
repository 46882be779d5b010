"""Records the PluginInstall history that its replay test checks against.

Run ``python -m tests.histories.record_plugin_install`` only when PluginInstall changes on
purpose (and then with workflow.patched for running histories). It writes plugin_install.json:
an install of the spam-scorer sample through all four steps."""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.plugins import PluginSource
from pat.cli import temporal_binary
from pat.settings import Settings
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from plugins.manifest import load_plugin_files
from workers.plugins import PLUGIN_WORKFLOWS, plugin_activities
from workflows.plugin_install import PluginInstall, PluginInstallInput

SAMPLE = Path(__file__).resolve().parents[2] / "plugins" / "samples" / "spam_scorer"


async def record() -> None:
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_binary())
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp}/pat.db")
        await migrate(engine)
        store = MessageStore(engine)
        queue = str(uuid.uuid4())
        manifest, code = load_plugin_files(SAMPLE)
        worker = Worker(env.client, task_queue=queue, workflows=list(PLUGIN_WORKFLOWS),
                        activities=plugin_activities(store, Settings(data_dir=Path(tmp))))
        async with worker:
            handle = await env.client.start_workflow(
                PluginInstall.run,
                PluginInstallInput(PluginSource(tenant="default",
                                                manifest=manifest.model_dump(mode="json"),
                                                code=code)),
                id="plugin-install-recorded", task_queue=queue)
            await handle.result()
        history = await handle.fetch_history()
        out = Path(__file__).parent / "plugin_install.json"
        out.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
        await engine.dispose()
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record())
