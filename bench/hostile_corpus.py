"""Time and memory a whole ``pat up`` spends on the hostile corpus (tests/hostile/).

Starts ``pat up`` in a temporary data directory on free loopback ports (as
``bench/smtp_throughput.py`` does), sends every corpus message over SMTP as its exact bytes,
waits until every pipeline has ended (processed or failed), then times the API answers that
show the biggest messages. Prints, per message, how long its pipeline took (from acceptance to
its final status, read from the store) and its final status; the peak RSS of each process under
``pat up`` (the worker's above all: it parses every message several times) while the corpus was
processed; and the API timings. A benchmark, not a test: it prints figures, and exits 1 only if
a message was refused or a pipeline did not end.

    .venv/bin/python -m bench.hostile_corpus [--skip-huge] [--drain-timeout 1800] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.smtp_throughput import HOST, BenchError, MemoryWatch, Pat, _label_pat, log_tail
from tests.hostile import corpus as hostile
from tests.hostile.smtp import SmtpRefused, send_raw

FINAL = ("processed", "failed")


@dataclass
class Outcome:
    name: str
    size: int
    status: str = "received"
    seconds: float | None = None
    reason: str | None = None


def read_outcomes(database: Path, sent: dict[str, Outcome]) -> None:
    """Status, failure reason and pipeline time of each sent message, read from the SQLite
    store (read-only, beside the running Pat: WAL lets readers in)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute("SELECT id, status, failure_reason, created_ns, updated_ns "
                            "FROM messages").fetchall()
    for message_id, status, reason, created_ns, updated_ns in rows:
        outcome = sent.get(message_id)
        if outcome is not None:
            outcome.status, outcome.reason = status, reason
            if status in FINAL:
                outcome.seconds = (updated_ns - created_ns) / 1e9


def wait_final(pat: Pat, sent: dict[str, Outcome], timeout: float, stall: float) -> bool:
    deadline = time.monotonic() + timeout
    last, changed = "", time.monotonic()
    while True:
        read_outcomes(pat.data_dir / "pat.db", sent)
        now = "".join(o.status for o in sent.values())
        if now != last:
            last, changed = now, time.monotonic()
        if all(o.status in FINAL for o in sent.values()):
            return True
        if time.monotonic() > deadline or time.monotonic() - changed > stall:
            return False
        assert pat.proc is not None
        if pat.proc.poll() is not None:
            raise BenchError(f"pat up exited with status {pat.proc.returncode}\n"
                             f"--- {pat.log} ---\n{log_tail(pat.log)}")
        time.sleep(1)


def timed_get(pat: Pat, path: str) -> tuple[int, int, float]:
    """Status, body size and seconds of one GET."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://{HOST}:{pat.http_port}{path}",
                                    timeout=600) as answer:
            body = answer.read()
            status = answer.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    return status, len(body), time.perf_counter() - started


def run(args: argparse.Namespace, workdir: Path) -> int:
    pat = Pat(workdir)
    print(f"[pat] starting pat up (data {pat.data_dir}) ...", flush=True)
    sent: dict[str, Outcome] = {}
    api: list[tuple[str, int, int, float]] = []
    try:
        pat.start()
        assert pat.proc is not None
        with MemoryWatch(pat.proc.pid, _label_pat) as memory:
            started = time.perf_counter()
            for name, raw in hostile.corpus():
                if args.skip_huge and name in {i.name for i in hostile.huge()}:
                    continue
                try:
                    message_id = send_raw(pat.smtp_port, raw, timeout=300)
                except SmtpRefused as refused:
                    raise BenchError(f"{name} was refused: {refused}") from refused
                sent[message_id] = Outcome(name, len(raw))
            accepted = time.perf_counter() - started
            print(f"[pat] {len(sent)} messages accepted in {accepted:.1f}s; waiting for "
                  "their pipelines ...", flush=True)
            done = wait_final(pat, sent, args.drain_timeout, args.stall)
            drained = time.perf_counter() - started
            pipelines_hwm = dict(memory.hwm_kib)
            for path in ["/api/v1/messages", "/api/v2/messages?limit=50",
                         "/api/v2/search?kind=containing&query=hostile",
                         "/api/v3/messages?limit=1000"]:
                api.append((path, *timed_get(pat, path)))
            for message_id, outcome in sent.items():
                if outcome.size > 1_000_000:
                    for path in (f"/api/v1/messages/{message_id}",
                                 f"/api/v3/messages/{message_id}"):
                        api.append((f"{path} ({outcome.name})", *timed_get(pat, path)))
    finally:
        pat.stop()
    names = memory.names
    print()
    print(f"{'message':32} {'bytes':>10} {'status':>10} {'pipeline s':>11}  reason")
    for outcome in sorted(sent.values(), key=lambda o: -(o.seconds or 1e9)):
        seconds = f"{outcome.seconds:.1f}" if outcome.seconds is not None else "-"
        print(f"{outcome.name:32} {outcome.size:>10,} {outcome.status:>10} {seconds:>11}  "
              f"{(outcome.reason or '')[:80]}")
    print()
    print(f"accepted all {len(sent)} in {accepted:.1f}s; every pipeline ended: {done} "
          f"({drained:.1f}s after the first was sent)")
    print("peak RSS while the corpus was processed (VmHWM):")
    for pid, kib in sorted(pipelines_hwm.items(), key=lambda item: -item[1]):
        print(f"  {names.get(pid, str(pid)):24} {kib / 1024:8.0f} MiB")
    print("peak RSS after the API answers below:")
    for pid, kib in sorted(memory.hwm_kib.items(), key=lambda item: -item[1]):
        print(f"  {names.get(pid, str(pid)):24} {kib / 1024:8.0f} MiB")
    print("API answers:")
    for path, status, size, seconds in api:
        print(f"  {status} {size:>12,} B {seconds:7.2f}s  GET {path}")
    return 0 if done else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--drain-timeout", type=float, default=1800,
                        help="seconds to wait for every pipeline to end")
    parser.add_argument("--stall", type=float, default=300,
                        help="stop waiting after this many seconds without a status change")
    parser.add_argument("--skip-huge", action="store_true",
                        help="leave out the three huge messages (nesting 1,500 deep, 100,000 "
                             "parts, 5 MB of headers)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and log")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM ends the run as Ctrl-C does, so the finally blocks stop what was started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="pat-hostile-"))
    try:
        return run(args, workdir)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
