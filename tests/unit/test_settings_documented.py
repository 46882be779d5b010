"""The README lists every setting with its environment variable, and the compose file sets
only settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

from pat.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"`PAT_{name.upper()}`" not in readme]
    assert missing == []


def test_compose_file_sets_only_real_settings() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\bPAT_([A-Z_]+):", compose))
    assert used, "the compose file configures Pat through PAT_* variables"
    assert used <= {name.upper() for name in Settings.model_fields}
