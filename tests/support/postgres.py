"""A throwaway PostgreSQL server from Debian's packages, on a free loopback port."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is missing: apt-get install postgresql "
                           "(make test installs it)")
    return found[-1]


class PostgresServer:
    """initdb + pg_ctl as the ``postgres`` user when run as root (initdb refuses root).

    With ``directory``, the cluster lives there and outlives ``stop``: a later server on the
    same directory starts on its data instead of running initdb (benchmarks keep a seeded
    database that way). ``settings`` are server settings (``-c name=value``) besides the
    defaults here; ``resume`` may replace them."""

    def __init__(self, directory: Path | None = None,
                 settings: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.kept = directory is not None
        if directory is None:
            self.dir = Path(tempfile.mkdtemp(prefix="pat-pg-"))
        else:
            self.dir = directory
            self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "data"
        self.settings = dict(settings or {})
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> str:
        if self._as_postgres:
            shutil.chown(self.dir, "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._run(_bin("initdb"), "-D", str(self.data), "-U", "pat", "--auth=trust",
                      "-E", "UTF8", "--no-sync")
        self.resume()
        return f"postgresql+asyncpg://pat@127.0.0.1:{self.port}/postgres"

    def pause(self) -> None:
        """Stop the server, keeping its data, as an outage would."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")

    def resume(self, settings: dict[str, str] | None = None) -> None:
        if settings is not None:
            self.settings = dict(settings)
        extra = "".join(f" -c {name}={value}" for name, value in self.settings.items())
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.dir / "log"),
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                        f"-c fsync=off -c max_connections=200{extra}", "start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.1)

    def create_database(self, name: str) -> str:
        self._run(_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "pat", name)
        return f"postgresql+asyncpg://pat@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the server; a kept cluster is shut down cleanly and stays, any other is
        removed."""
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-w",
                      "-m", "fast" if self.kept else "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        if not self.kept:
            shutil.rmtree(self.dir, ignore_errors=True)
