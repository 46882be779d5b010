"""What a user installs is what runs: Pat pip-installed into a fresh virtual environment, without
the dev extras, from the paths deploy/Dockerfile copies into the image; every import of the
product resolves there, and each service started from that environment's ``pat`` comes up,
does its work and stops cleanly on SIGTERM."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.support.postgres import free_port

ROOT = Path(__file__).resolve().parents[2]
# The first test pays for the install (pip from its cache, ~20-60 s on a busy machine).
pytestmark = [pytest.mark.install, pytest.mark.timeout(300)]


def _packages() -> list[str]:
    """The packages pyproject.toml installs (its setuptools include patterns, without '*')."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns: list[str] = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return [pattern.rstrip("*") for pattern in patterns]


def _image_sources() -> list[str]:
    """What deploy/Dockerfile copies from the build context before its `pip install .`."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    sources: list[str] = []
    for line in re.findall(r"^COPY (?!--)(.+)$", dockerfile, re.MULTILINE):
        sources += line.split()[:-1]
    return sources


def _without_dev_paths() -> dict[str, str]:
    """This environment minus what would let the fresh one see the work tree or this venv."""
    return {name: value for name, value in os.environ.items()
            if name not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


@dataclass
class Installed:
    python: Path
    pat: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    source.mkdir()
    for name in _image_sources():
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--prefer-binary",
                           str(source)], env=_without_dev_paths(), cwd=tmp,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    return Installed(python=python, pat=venv / "bin" / "pat")


def _imported_names() -> set[str]:
    """Top-level names of every absolute import in the product's sources, wherever it is
    written (a subcommand imports its service inside the function), minus the standard library
    and the product's own packages."""
    names: set[str] = set()
    for package in _packages():
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.partition(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.partition(".")[0])
    return names - set(sys.stdlib_module_names) - set(_packages())


# Run by the installed Python: which imported names it cannot find, and which of the installed
# product's modules fail to import (``__main__`` would run the command).
_PROBE = """
import importlib, importlib.util, json, pkgutil, sys
names, packages = json.loads(sys.argv[1])
missing = sorted(name for name in names if importlib.util.find_spec(name) is None)
broken = {}
for package in packages:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            broken[info.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"missing": missing, "broken": broken,
                  "from": sorted({importlib.import_module(p).__file__ for p in packages})}))
"""


def test_every_import_of_the_product_resolves_in_the_installed_environment(
        installed: Installed, tmp_path: Path) -> None:
    names = sorted(_imported_names())
    assert "httpx" in names  # compliance/links.py: once a dev-only dependency
    done = subprocess.run([str(installed.python), "-c", _PROBE,
                           json.dumps([names, _packages()])], env=_without_dev_paths(),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["missing"] == [], "imported but not a runtime dependency"
    assert found["broken"] == {}
    assert all(str(installed.python.parents[1]) in path for path in found["from"])


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_until(self, what: str, ready: Callable[[], bool], timeout: float = 90) -> None:
        """Poll ``ready`` while the service runs; fail with ``what`` and its output if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"pat {self.name} exited with status "
                                     f"{self.proc.returncode}:\n{self.output()}")
            if ready():
                return
            time.sleep(0.3)
        raise AssertionError(f"pat {self.name}: {what} within {timeout:.0f}s\n{self.output()}")


@dataclass
class Services:
    """Services started from the installed ``pat``, all with the settings in ``env``."""

    pat: Path
    env: dict[str, str]
    workdir: Path
    started: list[Service] = field(default_factory=list)

    def start(self, name: str) -> Service:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen([str(self.pat), name], env=self.env, cwd=self.workdir,
                                    stdin=subprocess.DEVNULL, stdout=sink,
                                    stderr=subprocess.STDOUT)
        self.started.append(Service(name, proc, log))
        return self.started[-1]


@pytest.fixture
def services(installed: Installed, temporal_env: WorkflowEnvironment,
             tmp_path: Path) -> Iterator[Services]:
    """Free ports, a fresh data directory, the tests' Temporal server and a task queue of
    their own; whatever a test leaves running is killed after it."""
    env = _without_dev_paths()
    env.pop("PAT_DATABASE_URL", None)
    env.update({
        "PAT_DATA_DIR": str(tmp_path / "data"), "PAT_SMTP_PORT": str(free_port()),
        "PAT_HTTP_PORT": str(free_port()),
        "PAT_TEMPORAL_ADDRESS": temporal_env.client.service_client.config.target_host,
        "PAT_TEMPORAL_TASK_QUEUE": f"pat-install-{uuid.uuid4()}",
        "PAT_SPAMD_PORT": str(free_port()), "PAT_RELAY_POLL_INTERVAL": "0.2",
        "PAT_LOG_LEVEL": "WARNING"})
    running = Services(installed.pat, env, tmp_path)
    yield running
    for service in running.started:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait()


def _smtp_greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            return sock.makefile("rb").readline().startswith(b"220 ")
    except OSError:
        return False


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            status: int = answer.status
            return status
    except OSError:
        return 0


def _statuses(base_url: str) -> list[str]:
    with urllib.request.urlopen(f"{base_url}/api/v3/messages", timeout=10) as answer:
        return [message["status"] for message in json.loads(answer.read())["items"]]


def test_each_service_runs_from_the_installed_environment(services: Services) -> None:
    smtp_port = int(services.env["PAT_SMTP_PORT"])
    base_url = f"http://127.0.0.1:{services.env['PAT_HTTP_PORT']}"

    # One at a time at first: each upgrades the store's schema as it starts.
    gateway = services.start("gateway")
    gateway.wait_until("no SMTP 220 greeting", lambda: _smtp_greets(smtp_port))
    api = services.start("api")
    api.wait_until("/healthz and /readyz did not answer 200",
                   lambda: _http_status(f"{base_url}/healthz") == 200
                   and _http_status(f"{base_url}/readyz") == 200)
    worker = services.start("worker")

    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
        client.sendmail("app@example.test", ["dev@example.test"],
                        b"From: app@example.test\r\nTo: dev@example.test\r\n"
                        b"Subject: installed\r\n\r\nHello from a fresh install\r\n")
    worker.wait_until("the message was not processed",
                      lambda: _statuses(base_url) == ["processed"])

    for service in (api, gateway, worker):
        service.proc.send_signal(signal.SIGTERM)
    for service in (api, gateway, worker):
        try:
            status = service.proc.wait(30)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"pat {service.name} ignored SIGTERM\n"
                                 f"{service.output()}") from exc
        assert status == 0, f"pat {service.name} exited with {status}\n{service.output()}"
        assert "Traceback" not in service.output(), service.output()
