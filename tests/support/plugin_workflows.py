"""A workflow that runs one plugin hook through ``run_hooks``, as EmailPipeline will."""

from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.plugins import HookResult
    from workflows.plugin_hooks import run_hooks


@dataclass
class HookProbeInput:
    hook: str
    message_id: str
    tenant: str = "default"


@workflow.defn(name="PluginHookProbe")
class PluginHookProbe:
    @workflow.run
    async def run(self, params: HookProbeInput) -> list[HookResult]:
        return await run_hooks(params.hook, params.message_id, tenant=params.tenant)
