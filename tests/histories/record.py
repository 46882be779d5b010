"""Records the EmailPipeline history that the replay tests check against.

Run ``python -m tests.histories.record`` only when EmailPipeline changes on purpose (and
then with workflow.patched for running histories). It writes email_pipeline_two_steps.json,
a run of today's pipeline ("two-steps": parse and store, then all checks in one step that
also marks the message, the active plugins' hooks in between: here those of one plugin). The
older histories are kept as they are: email_pipeline.json (before all patches),
email_pipeline_checks.json (checks only), email_pipeline_plugins.json (checks and hooks,
regular activities) and email_pipeline_local.json (local steps). Today's code
cannot record them again, and their replays prove that runs started before each change still
complete."""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from pat import temporal
from pat.cli import temporal_binary
from pat.domain import EmailPipelineInput, SpooledMessage
from pat.native_threads import let_native_callbacks_finish
from pat.settings import Settings
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from plugins.host import PluginHost
from plugins.manifest import load_plugin_files
from plugins.registry import PluginRegistry
from plugins.store import PluginStore
from workers.email import email_worker
from workflows.email_pipeline import EmailPipeline

SPAM_SCORER = Path(__file__).resolve().parents[2] / "plugins" / "samples" / "spam_scorer"
RAW = (b"From: App <app@example.test>\r\nTo: dev@example.test\r\nSubject: Recorded\r\n"
       b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
       b"Hello\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
       b"filename=r.pdf\r\n\r\nPDF\r\n--b--\r\n")


async def record() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=[temporal.SENDER, temporal.RECIPIENTS, temporal.SUBJECT,
                           temporal.TENANT])
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp}/pat.db")
        await migrate(engine)
        store = MessageStore(engine)
        await store.insert_batch([SpooledMessage(id="recorded@pat", tenant="default",
                                                 mail_from="app@example.test",
                                                 recipients=["dev@example.test"], helo="h",
                                                 peer="127.0.0.1", data=RAW)])
        plugins = PluginStore(engine)
        registry = PluginRegistry(plugins, PluginHost(plugins, store, Settings()), Settings())
        manifest, code = load_plugin_files(SPAM_SCORER)
        await registry.register("default", manifest, code, {}, {})
        await registry.activate("default", manifest.id)
        queue = str(uuid.uuid4())
        # No spamd and a resolver that is not there: the checks record their error verdicts
        # quickly, which is all a replay needs.
        settings = Settings(data_dir=Path(tmp), dns_resolver="127.0.0.1", dns_port=9,
                            dns_timeout=0.2, spamd_port=9)
        async with email_worker(env.client, store, queue, settings):
            handle = await env.client.start_workflow(
                EmailPipeline.run, EmailPipelineInput(message_id="recorded@pat"),
                id="email-recorded@pat", task_queue=queue)
            await handle.result()
        history = await handle.fetch_history()
        out = Path(__file__).parent / "email_pipeline_two_steps.json"
        out.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
        await engine.dispose()
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record())
    let_native_callbacks_finish()
