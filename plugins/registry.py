"""The plugin registry: install, upgrade, activate, deactivate, configure, order and remove
plugins, per tenant, in Pat's store. Lifecycle hooks (onInstall, onActivate, onDeactivate) run
here, in the plugin's isolate, and are recorded like any other hook run.

Installing is the PluginInstall workflow, whose activities call ``scan``, ``compile``,
``register`` and ``activate`` in turn; the API and the command line use the rest directly."""

from __future__ import annotations

import hashlib
from typing import Any

from pat.settings import Settings
from plugins.host import HookRun, PluginHost, limits_for
from plugins.manifest import Manifest, ManifestError
from plugins.runtime import HookStatus, compile_plugin
from plugins.scanner import Finding, ScanReport, scan
from plugins.store import InstalledPlugin, PluginStore


class RegistryError(ValueError):
    """A registry operation was refused; the message says why and nothing was changed."""


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class PluginRegistry:
    def __init__(self, store: PluginStore, host: PluginHost, settings: Settings) -> None:
        self.store = store
        self.host = host
        self.settings = settings

    def scan(self, manifest: Manifest, code: str) -> ScanReport:
        report = scan(code, manifest, max_bytes=self.settings.plugin_max_source_bytes)
        report.findings += self._capped_limits(manifest)
        return report

    def _capped_limits(self, manifest: Manifest) -> list[Finding]:
        """Limits the manifest asks for above the operator's ceilings, which it will not get."""
        capped = limits_for(manifest, self.settings)
        findings: list[Finding] = []
        if manifest.memory_limit_mb and manifest.memory_limit_mb > capped.memory_mb:
            findings.append(Finding("limits", "warn", f"memory_limit_mb {manifest.memory_limit_mb}"
                                    f" is above the operator's ceiling: the plugin gets "
                                    f"{capped.memory_mb} MB (PAT_PLUGIN_MEMORY_LIMIT_MB)"))
        if manifest.timeout_ms and manifest.timeout_ms > capped.timeout_ms:
            findings.append(Finding("limits", "warn", f"timeout_ms {manifest.timeout_ms} is "
                                    f"above the operator's ceiling: the plugin gets "
                                    f"{capped.timeout_ms} ms (PAT_PLUGIN_TIMEOUT_MS)"))
        return findings

    async def compile(self, manifest: Manifest, code: str) -> list[str]:
        return await compile_plugin(code, manifest.hooks, limits_for(manifest, self.settings))

    async def _lifecycle(self, plugin: InstalledPlugin, hook: str,
                         call_key: str | None = None) -> HookRun | None:
        if hook not in plugin.manifest.hooks:
            return None
        return await self.host.run_hook(plugin.tenant, plugin.id, hook, call_key=call_key)

    async def register(self, tenant: str, manifest: Manifest, code: str,
                       plugin_settings: dict[str, Any], scan_report: dict[str, Any], *,
                       call_key: str | None = None) -> tuple[InstalledPlugin, HookRun | None]:
        """Store the plugin, or upgrade the installed one to a newer version. A fresh install
        runs onInstall; if it fails the plugin is removed again and the install refused.
        Registering the same version and code twice changes nothing (activity retries).
        ``call_key`` names the onInstall call for its effects' idempotency (see
        ``PluginHost.run_hook``)."""
        try:
            resolved = manifest.resolve_settings(plugin_settings)
        except ManifestError as exc:
            raise RegistryError(str(exc)) from exc
        if "\x00" in code or "\x00" in manifest.name:
            raise RegistryError("the plugin's source or name holds a NUL character, which no "
                                "store keeps as text")
        digest = code_digest(code)
        existing = await self.store.get(tenant, manifest.id)
        if existing is not None:
            if existing.version == manifest.version and existing.code_sha256 == digest:
                return existing, None
            if manifest.version_key() <= existing.manifest.version_key():
                raise RegistryError(f"{manifest.id} {existing.version} is installed; an upgrade "
                                    f"needs a higher version than {manifest.version}")
            upgraded = await self.store.register(tenant, manifest, code, digest, scan_report,
                                                 resolved)
            return upgraded, None
        plugin = await self.store.register(tenant, manifest, code, digest, scan_report,
                                           resolved)
        run = await self._lifecycle(plugin, "onInstall", call_key)
        if run is not None and run.status is not HookStatus.ok:
            await self.store.remove(tenant, manifest.id)
            raise RegistryError(f"onInstall failed ({run.status}): {run.error}")
        return plugin, run

    async def _require(self, tenant: str, plugin_id: str) -> InstalledPlugin:
        plugin = await self.store.get(tenant, plugin_id)
        if plugin is None:
            raise RegistryError(f"no plugin {plugin_id!r} is installed for tenant {tenant!r}")
        return plugin

    async def activate(self, tenant: str, plugin_id: str, *,
                       call_key: str | None = None) -> HookRun | None:
        """Runs onActivate; the plugin becomes active only if it succeeds."""
        plugin = await self._require(tenant, plugin_id)
        if plugin.active:
            return None
        run = await self._lifecycle(plugin, "onActivate", call_key)
        if run is not None and run.status is not HookStatus.ok:
            raise RegistryError(f"onActivate failed ({run.status}): {run.error}; the plugin "
                                "stays inactive")
        await self.store.update(tenant, plugin_id, active=True)
        return run

    async def deactivate(self, tenant: str, plugin_id: str) -> HookRun | None:
        """Deactivates whatever onDeactivate does: a plugin cannot refuse to be turned off."""
        plugin = await self._require(tenant, plugin_id)
        if not plugin.active:
            return None
        await self.store.update(tenant, plugin_id, active=False)
        return await self._lifecycle(plugin, "onDeactivate")

    async def configure(self, tenant: str, plugin_id: str, values: dict[str, Any]) -> None:
        plugin = await self._require(tenant, plugin_id)
        try:
            resolved = plugin.manifest.resolve_settings({**plugin.settings, **values})
        except ManifestError as exc:
            raise RegistryError(str(exc)) from exc
        await self.store.update(tenant, plugin_id, settings=resolved)

    async def move(self, tenant: str, plugin_id: str, position: int) -> None:
        """Plugins run in ascending position; ties run in id order."""
        await self._require(tenant, plugin_id)
        await self.store.update(tenant, plugin_id, position=position)

    async def remove(self, tenant: str, plugin_id: str) -> None:
        await self.deactivate(tenant, plugin_id)
        await self.store.remove(tenant, plugin_id)
