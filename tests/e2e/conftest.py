"""A whole ``pat up`` driven from outside: its own data directory and free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.postgres import free_port


@dataclass
class PatUp:
    data_dir: Path
    env: dict[str, str]
    smtp_port: int
    http_port: int
    temporal_port: int
    ui_port: int
    proc: subprocess.Popen[str] | None = None
    output: str = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 90) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pat", "up"], env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                self.output = "".join(lines)
                return
        raise AssertionError("pat up did not come up:\n" + "".join(lines))

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Stop as a user would (Ctrl-C sends SIGINT); return pat up's exit status."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            status = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            status = self.proc.wait()
        if self.proc.stdout:
            self.output += self.proc.stdout.read()
        self.proc = None
        return status


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def pat_up_config(tmp_path: Path) -> PatUp:
    smtp, http, temporal_port, ui = free_port(), free_port(), free_port(), free_port()
    env = {**os.environ, "PAT_DATA_DIR": str(tmp_path / "data"), "PAT_SMTP_PORT": str(smtp),
           "PAT_HTTP_PORT": str(http), "PAT_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
           "PAT_TEMPORAL_UI_PORT": str(ui), "PAT_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui}",
           "PAT_SPAMD_PORT": str(free_port()), "PAT_RSPAMD_PORT": str(free_port()),
           "PAT_LOG_LEVEL": "WARNING"}
    env.pop("PAT_DATABASE_URL", None)
    return PatUp(data_dir=tmp_path / "data", env=env, smtp_port=smtp, http_port=http,
                 temporal_port=temporal_port, ui_port=ui)


@pytest.fixture
def pat_up(pat_up_config: PatUp) -> Iterator[PatUp]:
    """``pat up`` running; stopped (and its ports checked closed) after the test."""
    pat_up_config.start()
    yield pat_up_config
    if pat_up_config.proc is not None:
        pat_up_config.stop()
    for port in (pat_up_config.smtp_port, pat_up_config.http_port,
                 pat_up_config.temporal_port, pat_up_config.ui_port):
        assert _port_closed(port), f"port {port} still open after pat up stopped"
