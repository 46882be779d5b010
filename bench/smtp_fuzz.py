"""Seeded SMTP fuzzer: hostile sessions against the gateway. Every reply line must be well
formed, no reply may carry a client's control bytes or an exception's text, and every session
must end.

    .venv/bin/python -m bench.smtp_fuzz --sessions 10000 --seed 1
    .venv/bin/python -m bench.smtp_fuzz --host 127.0.0.1 --port 1025 [--tls-port 465] [--pid N]
    .venv/bin/python -m bench.smtp_fuzz --seed 1 --only 4242     # one session, with its bytes

Without ``--host`` it starts the gateway in a child process on free ports (the SMTP listeners
and the spool on a SQLite store in a temporary directory, on uvloop as ``pat gateway`` runs
them; no outbox relay, so no Temporal), with the implicit TLS port on, and reads its RSS.

Each session is drawn from its own generator seeded with ``<seed>-<number>``, so a session
is the same whatever the concurrency and can be replayed alone with ``--only``. Kinds: pipelined
bursts of commands with NUL, bare CR and LF, terminal escapes and bytes that are not UTF-8;
command lines up to 300 KB; AUTH with garbage answers; DATA with binary junk; STARTTLS followed
by bytes that are not TLS; hostile commands inside STARTTLS and on the implicit TLS port; and
any of them cut off at a random byte (closed or reset). A session that was not cut off ends
with ``CRLF . CRLF QUIT CRLF``, which ends DATA if it was in it, and must then see the server
close the connection within ``--timeout`` seconds; otherwise it counts as a hang.

Reply lines must match ``^\\d{3}[ -][\\x20-\\x7e]*\\r\\n$`` and must not contain ``Error: (``
(aiosmtpd's wording for an exception's text) or ``Traceback``."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import random
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

from pat.settings import Settings
from tests.support.gateway import running_gateway

WELL_FORMED = re.compile(rb"\d{3}[ -][\x20-\x7e]*\r\n\Z")
LEAKS = (b"Error: (", b"Traceback")
END_OF_SESSION = b"\r\n.\r\nQUIT\r\n"
STARTTLS_READY = b"220 Ready to start TLS"
HUGE_BODY = 11 * 1024 * 1024  # over the default message size limit
CHILD_MAX_CONNECTIONS = 64  # the child gateway's PAT_SMTP_MAX_CONNECTIONS


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    tls_port: int | None


@dataclass
class Figures:
    sessions: int = 0
    hangs: int = 0
    malformed: int = 0
    reply_lines: int = 0
    cut_off: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(text)


@dataclass
class Plan:
    """One session: what to send, and how."""

    kind: str
    chunks: list[bytes]
    tls: str = "none"  # "none", "starttls" (upgrade, then chunks) or "implicit"
    garbage_after_starttls: bytes | None = None
    cut_at: int | None = None  # send only this many bytes of the chunks, then drop
    reset: bool = False  # drop with a TCP reset rather than a close


# --- what hostile clients send ------------------------------------------------------------

VERBS = [b"EHLO", b"HELO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"RSET", b"NOOP", b"VRFY",
         b"EXPN", b"HELP", b"AUTH", b"STARTTLS", b"QUIT", b"mail from:", b"Rcpt To:", b"BDAT",
         b"ETRN", b"XCLIENT", b"TURN", b"\x00", b"GET / HTTP/1.1", b""]
ODD_BYTES = [b"\x00", b"\r", b"\n", b"\x1b[31m", b"\x1b]0;title\x07", b"\x7f", b"\x08", b"\t",
             b"\xff", b"\xfe", b"\xc3", b"\xc3\xa9", b"\xed\xa0\x80", b"\xe2\x80\xae",
             b"\xf0\x9f\x92\xa9", b"%s%n", b"\\", b'"', b"<", b">", b"@", b":", b"=", b" "]
PARAMS = [b"SIZE=1", b"SIZE=99999999999999", b"SIZE=x", b"BODY=8BITMIME", b"BODY=BINARYMIME",
          b"SMTPUTF8", b"SMTPUTF8=yes", b"NOTIFY=NEVER", b"RET=FULL", b"AUTH=<>", b"=", b"X"]


def hostile_text(rng: random.Random, longest: int = 80) -> bytes:
    parts: list[bytes] = []
    for _ in range(rng.randint(0, 6)):
        pick = rng.random()
        if pick < 0.3:
            parts.append(rng.choice(ODD_BYTES))
        elif pick < 0.5:
            parts.append(b"<%s@%s>" % (rng.randbytes(rng.randint(0, 8)).hex().encode(),
                                       rng.choice([b"example.test", b"[127.0.0.1]", b"", b"x"])))
        elif pick < 0.65:
            parts.append(rng.choice(PARAMS))
        elif pick < 0.8:
            parts.append(rng.randbytes(rng.randint(1, longest)))
        else:
            parts.append(bytes(rng.choice(b"abcxyzABC.-_ 019") for _ in range(rng.randint(1, 30))))
    return b"".join(parts)


def line_end(rng: random.Random) -> bytes:
    return rng.choices([b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r"], [80, 8, 4, 4, 4])[0]


def command_line(rng: random.Random) -> bytes:
    verb = rng.choice(VERBS)
    separator = rng.choice([b" ", b"", b"  ", b"\t"])
    return verb + separator + hostile_text(rng) + line_end(rng)


def ehlo(rng: random.Random) -> bytes:
    return rng.choice([b"EHLO fuzz.example.test\r\n", b"HELO fuzz\r\n",
                       b"EHLO " + hostile_text(rng) + b"\r\n"])


def pipelined_burst(rng: random.Random) -> list[bytes]:
    return [ehlo(rng) + b"".join(command_line(rng) for _ in range(rng.randint(1, 60)))]


def long_line(rng: random.Random) -> list[bytes]:
    length = rng.choice([513, 1001, 4097, 20_000, 70_000, 300_000])
    verb = rng.choice([b"MAIL FROM:<", b"RCPT TO:<", b"NOOP ", b"X", b"AUTH PLAIN ", b"EHLO "])
    filler = rng.choice([b"a", b"\x00", b"\xff", b"A="]) * length
    pieces = [filler[i:i + 65536] for i in range(0, len(filler), 65536)]
    return [ehlo(rng), verb, *pieces, line_end(rng), command_line(rng), b"NOOP\r\n"]


def auth_garbage(rng: random.Random) -> list[bytes]:
    chunks = [ehlo(rng)]
    for _ in range(rng.randint(1, 4)):
        mechanism = rng.choice([b"PLAIN", b"LOGIN", b"CRAM-MD5", b"XOAUTH2", b"plain", b"",
                                b"PLAIN PLAIN PLAIN", b"\x00", b"LOGIN\xff"])
        answer = rng.choice([
            base64.b64encode(rng.randbytes(rng.randint(0, 300))),
            base64.b64encode(b"\x00".join(hostile_text(rng) for _ in range(rng.randint(1, 5)))),
            b"*", b"", b"====", b"not base64!", rng.randbytes(rng.randint(1, 200)),
            b"QUFB" * rng.choice([1, 200, 2000])])
        if rng.random() < 0.5:
            chunks.append(b"AUTH " + mechanism + b" " + answer + line_end(rng))
        else:
            chunks.append(b"AUTH " + mechanism + b"\r\n" + answer + line_end(rng)
                          + hostile_text(rng) + line_end(rng))
    chunks.append(command_line(rng))
    return chunks


def junk_body(rng: random.Random) -> bytes:
    if rng.random() < 0.005:
        return (b"x" * 998 + b"\r\n") * (HUGE_BODY // 1000)
    parts = []
    for _ in range(rng.randint(0, 40)):
        pick = rng.random()
        if pick < 0.4:
            parts.append(rng.randbytes(rng.randint(0, 2000)))
        elif pick < 0.6:
            parts.append(rng.choice([b".", b"..", b".\n", b"\n.\n", b"\r.\r", b"\r\n..\r\n",
                                     b"\x00", b"\r", b"\n"]))
        elif pick < 0.7:
            parts.append(b"y" * rng.choice([1000, 5000, 100_000]))
        else:
            parts.append(b"Subject: " + hostile_text(rng) + b"\r\n")
    return b"".join(parts)


def data_junk(rng: random.Random) -> list[bytes]:
    chunks = [ehlo(rng)]
    for _ in range(rng.randint(1, 3)):
        recipients = b"".join(b"RCPT TO:<r%d@example.test>\r\n" % n
                              for n in range(rng.randint(0, 3)))
        chunks.append(b"MAIL FROM:<fuzz@example.test>\r\n" + recipients + b"DATA\r\n")
        chunks.append(junk_body(rng))
        chunks.append(rng.choice([b"\r\n.\r\n", b"\n.\n", b".\r\n", b""]))
    return chunks


def valid_delivery(rng: random.Random) -> list[bytes]:
    return [b"EHLO fuzz.example.test\r\nMAIL FROM:<fuzz@example.test>\r\n"
            b"RCPT TO:<dev@example.test>\r\nDATA\r\n",
            b"Subject: fuzz\r\n\r\nbody %d\r\n.\r\n" % rng.randint(0, 10**6)]


HOSTILE = {"pipelined_burst": pipelined_burst, "long_line": long_line,
           "auth_garbage": auth_garbage, "data_junk": data_junk}


def plan_session(seed: int, number: int, target: Target) -> Plan:
    rng = random.Random(f"{seed}-{number}")
    kind = rng.choices(["pipelined_burst", "long_line", "auth_garbage", "data_junk",
                        "valid_delivery", "starttls_garbage", "starttls_then_hostile",
                        "implicit_tls"], [24, 10, 16, 20, 6, 8, 8, 8])[0]
    if kind == "implicit_tls" and target.tls_port is None:
        kind = "starttls_then_hostile"
    if kind == "starttls_garbage":
        garbage = rng.choice([rng.randbytes(rng.randint(1, 4000)), b"EHLO again\r\n",
                              b"GET / HTTP/1.0\r\n\r\n"])
        if garbage[:1] == b"\x16":  # a TLS handshake record would wait for its missing rest
            garbage = b"\x00" + garbage
        return Plan(kind, [], tls="starttls", garbage_after_starttls=garbage)
    if kind in ("starttls_then_hostile", "implicit_tls"):
        inner = rng.choice(list(HOSTILE))
        return Plan(f"{kind}/{inner}", HOSTILE[inner](rng),
                    tls="starttls" if kind == "starttls_then_hostile" else "implicit")
    chunks = valid_delivery(rng) if kind == "valid_delivery" else HOSTILE[kind](rng)
    plan = Plan(kind, chunks)
    if rng.random() < 0.2:
        plan.cut_at = rng.randint(0, sum(len(c) for c in chunks))
        plan.reset = rng.random() < 0.5
    return plan


def cut(chunks: list[bytes], length: int | None) -> Iterator[bytes]:
    left = sum(len(c) for c in chunks) if length is None else length
    for chunk in chunks:
        if left <= 0:
            return
        yield chunk[:left]
        left -= len(chunk)


# --- running sessions ---------------------------------------------------------------------

def client_tls_context() -> ssl.SSLContext:
    # The fuzzer checks the gateway's replies, not its certificate (self-signed by default);
    # without verification there is no CA store to load, which costs more than a session.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


CLIENT_TLS = client_tls_context()


class Hang(Exception):
    pass


@dataclass
class Outcome:
    received: bytearray = field(default_factory=bytearray)
    hung: bool = False
    cut_off: bool = False  # by the client, on purpose
    reset: bool = False  # by the server: what it sent last may be lost, even half a line

    def incomplete_tail_expected(self) -> bool:
        return self.cut_off or self.reset


async def read_reply(reader: asyncio.StreamReader, outcome: Outcome, timeout: float) -> bytes:
    """Read one whole reply into the outcome; return its last line (empty once closed)."""
    while True:
        try:
            async with asyncio.timeout(timeout):
                line = await reader.readline()
        except TimeoutError as exc:
            raise Hang("no reply") from exc
        outcome.received += line
        if not line.endswith(b"\n") or line[3:4] != b"-":
            return line


async def until_closed(reader: asyncio.StreamReader, outcome: Outcome, timeout: float,
                       writer: asyncio.StreamWriter | None = None) -> None:
    """Read until the server closes the connection. A STARTTLS inside a burst makes the server
    wait for a TLS handshake, and what the burst sent after it was read before and is dropped
    (RFC 3207): with ``writer``, answer each such 220 with bytes that are not TLS, which the
    server must refuse by closing the connection."""
    tls_offers = outcome.received.count(STARTTLS_READY)
    # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that
    # comes as data arrives, and the session then waits out the whole timeout.
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                outcome.received += chunk
                if writer is not None and outcome.received.count(STARTTLS_READY) > tls_offers:
                    tls_offers = outcome.received.count(STARTTLS_READY)
                    writer.write(END_OF_SESSION)
    except TimeoutError as exc:
        raise Hang("the connection was not closed after QUIT") from exc


async def send(writer: asyncio.StreamWriter, plan: Plan, timeout: float) -> None:
    try:
        for chunk in cut(plan.chunks, plan.cut_at):
            writer.write(chunk)
            async with asyncio.timeout(timeout):
                await writer.drain()
    except TimeoutError as exc:
        raise Hang("the server stopped reading") from exc


async def run_session(plan: Plan, target: Target, timeout: float) -> Outcome:
    outcome = Outcome()
    context = CLIENT_TLS
    port = target.tls_port if plan.tls == "implicit" else target.port
    assert port is not None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                target.host, port, ssl=context if plan.tls == "implicit" else None)
    except TimeoutError:
        outcome.hung = True
        return outcome
    reading: asyncio.Task[None] | None = None
    try:
        if not (await read_reply(reader, outcome, timeout)).startswith(b"220 "):
            return outcome  # refused (421) or closed
        if plan.tls == "starttls":
            writer.write(b"EHLO fuzz.example.test\r\n")
            await read_reply(reader, outcome, timeout)
            writer.write(b"STARTTLS\r\n")
            if not (await read_reply(reader, outcome, timeout)).startswith(b"220 "):
                return outcome
            if plan.garbage_after_starttls is not None:
                writer.write(plan.garbage_after_starttls)
                writer.write_eof()
                await until_closed(reader, outcome, timeout)
                return outcome
            try:
                async with asyncio.timeout(timeout):
                    await writer.start_tls(context)
            except TimeoutError as exc:
                raise Hang("no TLS handshake after STARTTLS") from exc
        reading = asyncio.create_task(until_closed(reader, outcome, timeout, writer))
        await send(writer, plan, timeout)
        if plan.cut_at is not None:
            outcome.cut_off = True
            if plan.reset:
                writer.transport.abort()
            return outcome
        writer.write(END_OF_SESSION)
        await reading
    except Hang:
        outcome.hung = True
    except (ConnectionError, ssl.SSLError):
        outcome.reset = True
        if reading is not None and not outcome.cut_off:
            # The server may have closed the session itself (QUIT inside the burst, too many
            # unknown commands): then it still has to close our reading side in time.
            try:
                await reading
            except Hang:
                outcome.hung = True
            except (ConnectionError, ssl.SSLError):
                pass
    finally:
        if reading is not None and not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Hang, ConnectionError,
                                     ssl.SSLError):
                await reading
        writer.close()
    return outcome


def malformed_lines(outcome: Outcome) -> list[bytes]:
    lines = bytes(outcome.received).split(b"\n")
    tail = lines.pop()  # what follows the last LF: empty unless a reply was left unfinished
    bad = [line + b"\n" for line in lines
           if not WELL_FORMED.match(line + b"\n") or any(leak in line for leak in LEAKS)]
    if tail and not outcome.incomplete_tail_expected():
        bad.append(tail)
    return bad


async def fuzz(target: Target, *, sessions: int, seed: int, concurrency: int = 16,
               timeout: float = 30) -> Figures:
    figures = Figures()
    numbers = iter(range(sessions))

    async def worker() -> None:
        for number in numbers:
            plan = plan_session(seed, number, target)
            outcome = await run_session(plan, target, timeout)
            figures.sessions += 1
            figures.by_kind[plan.kind] = figures.by_kind.get(plan.kind, 0) + 1
            figures.cut_off += outcome.cut_off
            figures.reply_lines += outcome.received.count(b"\n")
            if outcome.hung:
                figures.hangs += 1
                figures.note(f"session {number} ({plan.kind}) hung")
            bad = malformed_lines(outcome)
            if bad:
                figures.malformed += len(bad)
                figures.note(f"session {number} ({plan.kind}): {bad[0][:200]!r}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return figures


# --- the gateway under test ---------------------------------------------------------------

def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def serve() -> None:
    """The child process: the gateway's SMTP listeners and spool until SIGTERM."""
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with running_gateway(Settings()):
            print("ready", flush=True)
            await stop.wait()

    uvloop.run(main())


@contextlib.contextmanager
def child_gateway(directory: Path) -> Iterator[tuple[Target, subprocess.Popen[bytes], Path]]:
    smtp, smtps = free_ports(2)
    env = {**os.environ, "PAT_DATA_DIR": str(directory), "PAT_DATABASE_URL": "",
           "PAT_SMTP_HOST": "127.0.0.1", "PAT_SMTP_PORT": str(smtp),
           "PAT_SMTP_TLS_PORT": str(smtps),
           "PAT_SMTP_MAX_CONNECTIONS": str(CHILD_MAX_CONNECTIONS)}
    log_path = directory / "gateway.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "bench.smtp_fuzz", "--serve"],
                                   env=env, stdout=subprocess.PIPE, stderr=log_file)
        try:
            assert process.stdout is not None
            if process.stdout.readline().strip() != b"ready":
                raise SystemExit(f"the gateway did not start: see {log_path}")
            yield Target("127.0.0.1", smtp, smtps), process, log_path
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def still_serves(target: Target) -> str:
    with smtplib.SMTP(target.host, target.port, timeout=30) as client:
        refused = client.sendmail("after@example.test", ["dev@example.test"],
                                  b"Subject: after the fuzz\r\n\r\nstill here\r\n")
    return "yes" if not refused else f"no: {refused}"


async def sessions_admitted(target: Target, count: int, settle: float = 10) -> int:
    """How many of ``count`` sessions opened at once are greeted 220. A session the client has
    just left holds its slot until the server has seen it close, so a shortfall is measured
    again for up to ``settle`` seconds: a slot that is never released stays missing."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    while True:
        admitted = await _admit(target, count)
        if admitted == count or loop.time() > deadline:
            return admitted
        await asyncio.sleep(0.2)


async def _admit(target: Target, count: int) -> int:
    opened: list[asyncio.StreamWriter] = []
    admitted = 0
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection(target.host, target.port)
            opened.append(writer)
            async with asyncio.timeout(30):
                admitted += (await reader.readline()).startswith(b"220 ")
    finally:
        for writer in opened:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    return admitted


def report(figures: Figures, elapsed: float) -> None:
    print(f"sessions run        {figures.sessions} in {elapsed:.1f} s "
          f"({figures.sessions / elapsed:.0f}/s), {figures.cut_off} cut off by the client")
    print(f"reply lines checked {figures.reply_lines}")
    print(f"hangs               {figures.hangs}")
    print(f"malformed replies   {figures.malformed}")
    for example in figures.examples:
        print(f"  {example}")
    print("kinds               " + ", ".join(f"{kind} {count}" for kind, count
                                              in sorted(figures.by_kind.items())))


def replay_one(target: Target, seed: int, number: int, timeout: float) -> None:
    plan = plan_session(seed, number, target)
    print(f"session {number}: {plan.kind}, tls {plan.tls}, cut at {plan.cut_at}")
    for chunk in cut(plan.chunks, plan.cut_at):
        print(f">> {chunk[:300]!r}{' ...' if len(chunk) > 300 else ''}")
    outcome = asyncio.run(run_session(plan, target, timeout))
    for line in bytes(outcome.received).split(b"\n"):
        print(f"<< {line[:300]!r}")
    print(f"hung {outcome.hung}, reset {outcome.reset}, malformed {malformed_lines(outcome)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=30,
                        help="seconds without an awaited reply or close that count as a hang")
    parser.add_argument("--host", help="fuzz a running gateway instead of starting one")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--tls-port", type=int, help="its implicit TLS port, if any")
    parser.add_argument("--pid", type=int, help="its process id, to report its RSS")
    parser.add_argument("--only", type=int, metavar="N", help="replay session N, verbosely")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    with contextlib.ExitStack() as stack:
        if args.host:
            target, pid, log_path = Target(args.host, args.port, args.tls_port), args.pid, None
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            target, process, log_path = stack.enter_context(child_gateway(directory))
            pid = process.pid
            print(f"gateway pid {pid}: SMTP {target.port}, implicit TLS {target.tls_port}")
        if args.only is not None:
            replay_one(target, args.seed, args.only, args.timeout)
            return 0
        before = rss_mib(pid) if pid else None
        started = time.monotonic()
        figures = asyncio.run(fuzz(target, sessions=args.sessions, seed=args.seed,
                                   concurrency=args.concurrency, timeout=args.timeout))
        report(figures, time.monotonic() - started)
        after = rss_mib(pid) if pid else None
        if before and after:
            print(f"gateway RSS         {before[0]:.1f} MiB before, {after[0]:.1f} MiB after "
                  f"(peak {after[1]:.1f} MiB)")
        print(f"still delivers      {still_serves(target)}")
        if log_path:
            admitted = asyncio.run(sessions_admitted(target, CHILD_MAX_CONNECTIONS))
            print(f"sessions admitted   {admitted} of {CHILD_MAX_CONNECTIONS} (its limit) opened "
                  "at once after the run")
            errors = [line for line in log_path.read_text().splitlines() if " ERROR " in line]
            print(f"gateway errors      {len(errors)} logged")
            for line in errors[:5]:
                print(f"  {line}")
        return 1 if figures.hangs or figures.malformed else 0


if __name__ == "__main__":
    sys.exit(main())
