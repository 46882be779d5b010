"""A plugin's manifest: who it is, which hooks it implements, what it may do, what it can be
configured with. It travels beside the JavaScript file as ``manifest.json``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

EMAIL_HOOKS = ("onEmailReceived", "onEmailValidated", "onEmailStored")
LIFECYCLE_HOOKS = ("onInstall", "onActivate", "onDeactivate")
HOOKS = EMAIL_HOOKS + LIFECYCLE_HOOKS
PERMISSIONS = ("storage", "http", "smtp", "export")
RESERVED_IDS = frozenset({"runs", "view", "scan"})  # paths under /api/v3/plugins

_ID = re.compile(r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")


class ManifestError(ValueError):
    """The manifest is missing or wrong; the message says what to fix."""


class SettingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["string", "integer", "number", "boolean"]
    default: str | int | float | bool | None = None
    required: bool = False
    description: str = ""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    name: str = Field(min_length=1, max_length=255)
    version: str
    description: str = ""
    hooks: list[str] = Field(min_length=1)
    permissions: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list, description="Hosts (host or host:port) that "
                             "pat.http and pat.email.send may reach, if the operator allows.")
    settings: dict[str, SettingSpec] = Field(default_factory=dict)
    memory_limit_mb: int | None = Field(None, ge=8, le=2048)
    timeout_ms: int | None = Field(None, ge=1, le=10_000)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("must be 3-64 characters of a-z, 0-9 and '-', starting with a letter")
        if value in RESERVED_IDS:
            raise ValueError(f"{value!r} is reserved by the API; choose another id")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError("must be a semantic version such as 1.2.0")
        return value

    @field_validator("hooks")
    @classmethod
    def _hooks(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(HOOKS))
        if unknown:
            raise ValueError(f"unknown hooks {unknown}; known: {list(HOOKS)}")
        return value

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(PERMISSIONS))
        if unknown:
            raise ValueError(f"unknown permissions {unknown}; known: {list(PERMISSIONS)}")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        bad = [h for h in value if not _HOST.match(h)]
        if bad:
            raise ValueError(f"not host or host:port: {bad}")
        return [h.lower() for h in value]

    def version_key(self) -> tuple[int, int, int]:
        major, minor, patch = re.split(r"[-+]", self.version)[0].split(".")
        return int(major), int(minor), int(patch)

    def resolve_settings(self, given: dict[str, Any]) -> dict[str, Any]:
        """The plugin's settings: ``given`` checked against the schema, defaults filled in."""
        unknown = sorted(set(given) - set(self.settings))
        if unknown:
            raise ManifestError(f"unknown settings {unknown}; this plugin has "
                                f"{sorted(self.settings)}")
        resolved: dict[str, Any] = {}
        kinds: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,),
                                              "number": (int, float), "boolean": (bool,)}
        for name, spec in self.settings.items():
            value = given.get(name, spec.default)
            if value is None:
                if spec.required:
                    raise ManifestError(f"setting {name!r} is required")
                continue
            wrong_bool = isinstance(value, bool) and spec.type != "boolean"
            if wrong_bool or not isinstance(value, kinds[spec.type]):
                raise ManifestError(f"setting {name!r} must be a {spec.type}, "
                                    f"not {type(value).__name__}")
            resolved[name] = value
        return resolved


def parse_manifest(data: dict[str, Any]) -> Manifest:
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'manifest'}: {e['msg']}"
                             for e in exc.errors())
        raise ManifestError(f"invalid manifest: {problems}") from exc


def load_plugin_files(path: Path) -> tuple[Manifest, str]:
    """A plugin from disk: a directory with ``manifest.json`` and ``plugin.js``, or a ``.js``
    file with ``manifest.json`` (or ``<name>.json``) beside it."""
    if path.is_dir():
        code_file, manifest_file = path / "plugin.js", path / "manifest.json"
    else:
        code_file = path
        manifest_file = path.with_suffix(".json")
        if not manifest_file.exists():
            manifest_file = path.parent / "manifest.json"
    if not code_file.exists():
        raise ManifestError(f"no plugin source at {code_file}")
    if not manifest_file.exists():
        raise ManifestError(f"no manifest beside {code_file}: write {manifest_file}")
    try:
        data = json.loads(manifest_file.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{manifest_file} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{manifest_file} must hold a JSON object")
    return parse_manifest(data), code_file.read_text()
