"""The rspamd that ``pat up`` runs for the spam check (PAT_RSPAMD_EMBEDDED), and the tests too.

It is Debian's rspamd as the package configures it (``/etc/rspamd/rspamd.conf`` and the
modules it includes), with rspamd's own override mechanism pointed at a directory Pat writes at
every start: ``LOCAL_CONFDIR`` (its ``local.d/`` and ``override.d/``), ``DBDIR`` and
``RUNDIR`` are that directory's, so nothing of ``/etc/rspamd`` or ``/var/lib/rspamd`` is
changed, and an rspamd of the system's, if one runs, is left alone. The overrides:

- the normal worker on Pat's address, no controller and no proxy worker (they would take
  rspamd's fixed ports 11334 and 11332; Pat needs neither);
- rspamd's DNS goes to PAT_DNS_RESOLVER, with PAT_DNS_TIMEOUT and one retransmit, so a
  resolver that does not answer costs seconds, not a hung check;
- modules that ask services on the network other than DNS (fuzzy_check: rspamd.com's fuzzy
  storage over UDP) or that duplicate a check of Pat's (rbl: the blocklists check makes its
  own DNSBL lookups; asn: only feeds modules that need redis) are off;
- logs go to the console, which ``pat up`` sends to ``<data_dir>/rspamd.log``.

Modules that need redis (Bayes, neural, ratelimit, greylisting, reputation) switch themselves
off without it; rspamd says so once in its log at start.

Compiling rspamd's regular expressions with hyperscan takes 10-15 s of CPU; the result
depends only on rspamd's version and rules, so one cache per account serves every data
directory (``~/.cache/pat/rspamd-hyperscan``) and later starts take about a second."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

RSPAMD_CONF = Path("/etc/rspamd/rspamd.conf")


class RspamdSetupError(Exception):
    """rspamd cannot be started here; the message says why and what to do."""


@dataclass(frozen=True)
class RspamdFiles:
    """Where one embedded rspamd's files live. ``disposable`` when they are outside the data
    directory (see ``place``) and are removed when it stops."""

    root: Path
    hyperscan: Path
    disposable: bool = False

    @property
    def db(self) -> Path:
        return self.root / "db"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def command(self, binary: str) -> list[str]:
        return [binary, "--no-fork", "--config", str(RSPAMD_CONF),
                "--var", f"LOCAL_CONFDIR={self.root}", "--var", f"DBDIR={self.db}",
                "--var", f"RUNDIR={self.run}", "--var", f"LOGDIR={self.run}"]


def rspamd_binary() -> str:
    """The rspamd executable, or RspamdSetupError saying how to install it."""
    binary = shutil.which("rspamd") or "/usr/bin/rspamd"
    if not os.access(binary, os.X_OK):
        raise RspamdSetupError("rspamd is not installed (Debian package rspamd; `make up` "
                               "installs it)")
    if not RSPAMD_CONF.is_file():
        raise RspamdSetupError(f"rspamd's configuration {RSPAMD_CONF} is missing (Debian "
                               "package rspamd installs it)")
    return binary


def service_account() -> pwd.struct_passwd:
    """Who rspamd runs as when started by root: the account Debian's package creates, else
    nobody. rspamd parses strangers' mail; it must not do so as root."""
    try:
        return pwd.getpwnam("_rspamd")
    except KeyError:
        return pwd.getpwnam("nobody")


def reachable(path: Path, account: pwd.struct_passwd) -> bool:
    """Whether ``account``, with its primary group only (as rspamd runs), may pass through
    every existing directory on the way to ``path``."""
    for directory in (path, *path.parents):
        try:
            info = directory.stat()
        except FileNotFoundError:
            continue
        if info.st_uid == account.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == account.pw_gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def place(data_dir: Path, account: pwd.struct_passwd | None) -> RspamdFiles:
    """``<data_dir>/rspamd``, with the hyperscan cache in the user's cache directory.

    ``account`` is who rspamd will run as when that is not the current user (``pat up`` run as
    root). Debian gives rspamd's account a home of its own (/var/lib/rspamd), which then holds
    the hyperscan cache; if that account cannot reach the data directory (one under a private
    directory, as pytest's temporary ones are), rspamd's files go there too, in a directory
    named for the data directory, removed when rspamd stops."""
    root = data_dir.resolve() / "rspamd"
    if account is None:
        try:
            return RspamdFiles(root, Path.home() / ".cache" / "pat" / "rspamd-hyperscan")
        except RuntimeError:  # no home directory: the cache stays with the rest
            return RspamdFiles(root, root / "hyperscan")
    home = Path(account.pw_dir)
    own_home = home.is_dir() and home.stat().st_uid == account.pw_uid
    if reachable(root, account):
        return RspamdFiles(root, home / "pat-hyperscan" if own_home else root / "hyperscan")
    if not own_home:
        raise RspamdSetupError(
            f"rspamd runs as {account.pw_name}, which cannot reach {root}: set PAT_DATA_DIR "
            f"to a directory {account.pw_name} may pass through, or run pat up as an "
            "ordinary user")
    named = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return RspamdFiles(home / f"pat-{named}", home / "pat-hyperscan", disposable=True)


@dataclass(frozen=True)
class RspamdListen:
    """What the written configuration tells rspamd: where to listen and which DNS to ask."""

    host: str
    port: int
    dns_resolver: str
    dns_port: int
    dns_timeout: float


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def write_config(files: RspamdFiles, listen: RspamdListen,
                 account: pwd.struct_passwd | None) -> None:
    """Write the overrides (the whole of ``local.d`` and ``override.d``: what an earlier start
    wrote is replaced) and make the directories rspamd writes its account's."""
    for directory in (files.root, files.db, files.run, files.hyperscan):
        directory.mkdir(parents=True, exist_ok=True)
    nameserver = (f'nameserver = ["{_address(listen.dns_resolver, listen.dns_port)}"]; '
                  if listen.dns_resolver else "")
    configs = {
        "local.d/options.inc": (
            f'hs_cache_dir = "{files.hyperscan}/";\n'
            f"dns {{ {nameserver}timeout = {listen.dns_timeout:g}s; retransmits = 1; }}\n"),
        "override.d/logging.inc": 'type = "console";\nlevel = "warning";\n',
        "override.d/worker-normal.inc": (
            f'bind_socket = "{_address(listen.host, listen.port)}";\n'),
        "override.d/worker-controller.inc": "count = -1;\n",
        "override.d/worker-proxy.inc": "count = -1;\n",
        "local.d/rbl.conf": "enabled = false;\n",
        "local.d/fuzzy_check.conf": "enabled = false;\n",
        "local.d/asn.conf": "enabled = false;\n",
    }
    for section in ("local.d", "override.d"):
        shutil.rmtree(files.root / section, ignore_errors=True)
        (files.root / section).mkdir()
    for name, text in configs.items():
        (files.root / name).write_text(
            "# Written by Pat at every start of its rspamd (pat/rspamd_embedded.py); "
            "edits are lost.\n" + text)
    if account is not None:
        for directory in (files.db, files.run, files.hyperscan):
            os.chown(directory, account.pw_uid, account.pw_gid)


def prepare(data_dir: Path, listen: RspamdListen,
            account: pwd.struct_passwd | None) -> tuple[str, RspamdFiles]:
    """The rspamd executable and its files, configured: what is left is to run
    ``files.command(binary)`` as ``account`` (or as the current user when None)."""
    binary = rspamd_binary()
    files = place(data_dir, account)
    try:
        write_config(files, listen, account)
    except OSError as exc:
        raise RspamdSetupError(f"cannot write rspamd's configuration: {exc}") from exc
    return binary, files


def remove(files: RspamdFiles) -> None:
    if files.disposable:
        shutil.rmtree(files.root, ignore_errors=True)


def rspamd_answers(host: str, port: int) -> bool:
    """rspamd's ``GET /ping`` (it answers "pong" and closes the connection)."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
            answer = b""
            with contextlib.suppress(TimeoutError):
                while len(answer) < 4096 and (chunk := sock.recv(1024)):
                    answer += chunk
            return answer.startswith(b"HTTP/1.") and b"pong" in answer
    except OSError:
        return False
