"""The README lists every setting with its environment variable, and the production files
(docker-compose.yml, deploy/Dockerfile), which Docker cannot run here, set only settings that
exist and agree with each other."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pat.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _dockerfile_env() -> dict[str, str]:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    return dict(re.findall(r"^ENV (PAT_[A-Z_]+)=(\S+)$", dockerfile, re.MULTILINE))


def test_every_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`PAT_{name.upper()}`" not in readme]
    assert missing == []


def test_compose_file_sets_only_real_settings() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\bPAT_([A-Z_]+):", compose))
    assert used, "the compose file configures Pat through PAT_* variables"
    assert used <= SETTING_NAMES


def test_dockerfile_sets_only_real_settings() -> None:
    used = {name.removeprefix("PAT_") for name in _dockerfile_env()}
    assert "CANIEMAIL_DATA" in used
    assert used <= SETTING_NAMES


def test_image_carries_the_caniemail_data_where_its_setting_points() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    copied = re.findall(r"^COPY --from=\S+ \S+/caniemail\.json (\S+)$", dockerfile, re.MULTILINE)
    assert copied == [_dockerfile_env()["PAT_CANIEMAIL_DATA"]]


def test_compose_worker_asks_the_rspamd_service_on_the_port_it_listens_on() -> None:
    services = _compose()["services"]
    worker_env = services["worker"]["environment"]
    assert worker_env["PAT_SPAM_ENGINE"] == "rspamd"
    rspamd = services[worker_env["PAT_RSPAMD_HOST"]]
    assert rspamd["command"] == "rspamd"  # `pat rspamd`, the image's entrypoint being pat
    assert rspamd["environment"]["PAT_RSPAMD_PORT"] == worker_env["PAT_RSPAMD_PORT"]
