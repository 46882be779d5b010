"""How fast a whole ``pat up`` processes mail, beside what its parts can do alone.

Starts ``pat up`` on free loopback ports in a temporary data directory, then, in one run:

1. warm-up: ``--warmup`` messages from one session, waited for until processed;
2. Pat: postfix's ``smtp-source`` sends ``--messages`` messages of ``--size`` body bytes over
   ``--sessions`` sessions (accepted msg/s while pipelines run); the benchmark waits until
   every pipeline has ended and reads from the store (SQLite, read-only) when each message
   was spooled (just before its 250) and when it was marked processed: processed/s =
   messages / (last processed - first spooled), and the p50/p95 of 250 -> processed;
3. bare workflow: a workflow with two trivial local activities, defined here and run by a
   worker in this process on the same Temporal dev server, ``--bare-workflows`` times (start
   all, wait all): completions/s end to end, what Temporal itself allows on this machine;
4. spam engine alone: the same messages sent to the spamd (REPORT) or rspamd (/checkv2) that
   ``pat up`` started, as many at once as the worker would have in flight: its own rate.

Then one table: Pat's processed/s as a ratio of the bare workflow's and of the spam engine's,
against the targets of issue 8. Everything runs on 127.0.0.1 and is stopped at the end.

    .venv/bin/python -m bench.pipeline_throughput --messages 3000 --spam-engine spamassassin
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.worker import Worker

# The sandbox re-imports this module to check BareWorkflow: everything else passes through.
with workflow.unsafe.imports_passed_through():
    import aiospamc  # type: ignore[import-untyped]
    import httpx
    from aiospamc.client import Client as SpamcClient  # type: ignore[import-untyped]
    from aiospamc.connections import TcpConnectionManager  # type: ignore[import-untyped]
    from aiospamc.requests import Request as SpamcRequest  # type: ignore[import-untyped]

    from bench._harness import (
        PatUnderTest,
        SpamEndpoint,
        StatusCounts,
        add_pat_arguments,
        answering_spam_engine,
        check_pat_arguments,
        label_processes,
        machine_load,
        message_times,
        raw_messages,
        wait_pipelines,
    )
    from bench.smtp_throughput import (
        SMTP_SOURCE,
        BenchError,
        LoadResult,
        cpu_seconds,
        run_latency_client,
        run_smtp_source,
    )
    from pat.settings import Settings

# Issue 8's targets.
MIN_ACCEPTED_PER_S = 500
MIN_RATIO_TO_BARE = 0.6      # with rspamd: Pat's processed/s against the bare workflow's
MIN_RATIO_TO_SPAMD = 0.8     # with SpamAssassin: Pat's processed/s against spamd's alone


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


@dataclass
class Rate:
    """``count`` things done between two moments, and how long each took."""

    count: int
    seconds: float
    latencies: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("nan")

    def p(self, pct: float) -> float:
        return percentile(self.latencies, pct)


# --------------------------------------------------------------------------------------------
# the bare workflow


@activity.defn(name="bench_bare_first_step")
async def bare_first_step(number: int) -> int:
    return number + 1


@activity.defn(name="bench_bare_second_step")
async def bare_second_step(number: int) -> int:
    return number * 2


@workflow.defn(name="BenchBareWorkflow")
class BareWorkflow:
    """Two local activities that do nothing: the cost of a workflow run on this server."""

    @workflow.run
    async def run(self, number: int) -> int:
        first: int = await workflow.execute_local_activity(
            bare_first_step, number, start_to_close_timeout=timedelta(seconds=30))
        second: int = await workflow.execute_local_activity(
            bare_second_step, first, start_to_close_timeout=timedelta(seconds=30))
        return second


async def _wait_closed(client: Client, query: str, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        closed = (await client.count_workflows(f"{query} AND ExecutionStatus != 'Running'")).count
        if closed >= expected:
            return
        await asyncio.sleep(0.5)
    raise BenchError(f"the bare workflows did not all complete within {timeout:.0f}s")


async def _bare_runs(client: Client, runs: int, settings: Settings, timeout: float) -> Rate:
    """Start ``runs`` bare workflows, as many starts in flight as Pat's relay keeps, and
    wait until all are closed. Times come from the server (start and close time of each run),
    as Pat's come from its store."""
    task_queue = f"bench-bare-{uuid.uuid4()}"
    # The same slots and the same workflow sandbox as Pat's worker.
    worker = Worker(client, task_queue=task_queue, workflows=[BareWorkflow],
                    activities=[bare_first_step, bare_second_step],
                    max_concurrent_activities=settings.worker_activity_slots,
                    max_concurrent_local_activities=settings.worker_activity_slots,
                    max_concurrent_workflow_tasks=settings.worker_workflow_task_slots)
    starts = asyncio.Semaphore(settings.relay_concurrency)

    async def start(number: int) -> None:
        async with starts:
            await client.start_workflow(
                BareWorkflow.run, number, id=f"{task_queue}-{number}", task_queue=task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)

    query = f"TaskQueue = '{task_queue}'"
    async with worker:
        await asyncio.gather(*(start(n) for n in range(runs)))
        await _wait_closed(client, query, runs, timeout)
    started, closed = [], []
    async for run in client.list_workflows(query):
        if run.close_time is not None:
            started.append(run.start_time.timestamp())
            closed.append(run.close_time.timestamp())
    if len(closed) < runs:
        raise BenchError(f"only {len(closed)} of {runs} bare workflows are listed as closed")
    return Rate(runs, max(closed) - min(started), [c - s for s, c in zip(started, closed,
                                                                         strict=True)])


def run_bare_workflows(address: str, runs: int, warmup: int, timeout: float) -> Rate:
    settings = Settings()

    async def measure() -> Rate:
        client = await Client.connect(address, namespace=settings.temporal_namespace)
        await _bare_runs(client, warmup, settings, timeout)
        return await _bare_runs(client, runs, settings, timeout)

    return asyncio.run(measure())


# --------------------------------------------------------------------------------------------
# the spam engine alone


async def _spamd_rate(endpoint: SpamEndpoint, messages: list[tuple[str, list[str], bytes]],
                      concurrency: int) -> tuple[Rate, collections.Counter[str]]:
    """REPORT, as Pat's spam check asks spamd, through aiospamc's client built once."""
    client = SpamcClient(TcpConnectionManager(
        endpoint.host, endpoint.port, timeout=aiospamc.Timeout(total=60, connection=5)))

    async def ask(raw: bytes) -> str:
        response = await client.request(SpamcRequest("REPORT", body=raw))
        return "spam" if response.headers["Spam"].value else "ham"

    return await _timed(messages, concurrency, lambda m: ask(m[2]))


async def _rspamd_rate(endpoint: SpamEndpoint, messages: list[tuple[str, list[str], bytes]],
                       concurrency: int) -> tuple[Rate, collections.Counter[str]]:
    """POST /checkv2 on rspamd's normal worker, with the envelope as request headers."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://{endpoint.host}:{endpoint.port}",
                                 limits=limits, timeout=60) as client:

        async def ask(message: tuple[str, list[str], bytes]) -> str:
            sender, recipients, raw = message
            headers = [("IP", "127.0.0.1"), ("Helo", "bench.localhost"), ("From", sender),
                       *(("Rcpt", r) for r in recipients)]
            response = await client.post("/checkv2", content=raw, headers=headers)
            response.raise_for_status()
            return str(response.json().get("action", "?"))

        return await _timed(messages, concurrency, ask)


async def _timed(messages: list[tuple[str, list[str], bytes]], concurrency: int,
                 ask: Callable[[tuple[str, list[str], bytes]], Awaitable[str]],
                 ) -> tuple[Rate, collections.Counter[str]]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    verdicts: collections.Counter[str] = collections.Counter()

    async def one(message: tuple[str, list[str], bytes]) -> None:
        async with gate:
            began = time.perf_counter()
            try:
                verdicts[await ask(message)] += 1
            except Exception as exc:  # an engine's failure is a figure, not the end of the run
                verdicts[f"error: {type(exc).__name__}"] += 1
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(one(m) for m in messages))
    return Rate(len(messages), time.perf_counter() - started, latencies), verdicts


def run_spam_alone(endpoint: SpamEndpoint, messages: list[tuple[str, list[str], bytes]],
                   concurrency: int) -> tuple[Rate, collections.Counter[str]]:
    measure = _rspamd_rate if endpoint.engine == "rspamd" else _spamd_rate
    warm = messages[:min(len(messages), concurrency)]
    asyncio.run(measure(endpoint, warm, concurrency))
    return asyncio.run(measure(endpoint, messages, concurrency))


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class Figures:
    load_from_ns: int = 0  # smtp-source's messages are those spooled from then on
    accepted: LoadResult | None = None
    load_cpu: list[tuple[str, float]] = field(default_factory=list)
    counts: StatusCounts | None = None
    processed: Rate | None = None
    drain_after_last_250: float | None = None
    failure_reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    bare: Rate | None = None
    spam_endpoint: SpamEndpoint | None = None
    spam_banner: str = ""
    spam_concurrency: int = 0
    spam_alone: Rate | None = None
    spam_verdicts: collections.Counter[str] = field(default_factory=collections.Counter)
    load_before: str = ""
    load_after: str = ""
    notes: list[str] = field(default_factory=list)


def measure_pat(args: argparse.Namespace, pat: PatUnderTest, figures: Figures) -> None:
    assert pat.proc is not None
    warm_from = time.time_ns()
    run_latency_client(pat.smtp_port, args.warmup, 1, args.size, 120, first=10**9)
    wait_pipelines(pat, warm_from, args.warmup, timeout=300, stall=120, what="warm-up")
    labels = label_processes(pat.proc.pid)
    print(f"[pat] warm: {args.warmup} messages processed; processes: "
          f"{', '.join(sorted(labels.values()))}", flush=True)
    print(f"[pat] smtp-source: {args.messages} x {args.size} B over {args.sessions} "
          "sessions ...", flush=True)
    figures.load_from_ns = load_from = time.time_ns()
    cpu_before = cpu_seconds(list(labels))
    figures.accepted = run_smtp_source(pat.smtp_port, args.messages, args.sessions, args.size,
                                       args.load_timeout)
    cpu_after = cpu_seconds(list(labels))
    last_250 = time.monotonic()
    figures.load_cpu = sorted(((labels[p], cpu_after[p] - cpu_before[p]) for p in cpu_after
                               if p in cpu_before), key=lambda x: -x[1])
    print(f"[pat] {figures.accepted.rate:,.0f} msg/s accepted; waiting for "
          f"{args.messages} pipelines ...", flush=True)
    figures.counts = wait_pipelines(pat, load_from, args.messages, timeout=args.drain_timeout,
                                    stall=args.stall, what="pat")
    figures.drain_after_last_250 = time.monotonic() - last_250
    times = message_times(pat.store_file, load_from)
    if len(times) != args.messages:
        figures.notes.append(f"the store holds {len(times)} messages of the load, "
                             f"{args.messages} were sent")
    first_250 = min(t.created_ns for t in times)
    last_ended = max(t.updated_ns for t in times)
    figures.processed = Rate(len(times), (last_ended - first_250) / 1e9,
                             [(t.updated_ns - t.created_ns) / 1e9 for t in times
                              if t.status == "processed"])
    figures.failure_reasons.update((t.failure_reason or "?")[:120] for t in times
                                   if t.status == "failed")


def measure_spam_alone(args: argparse.Namespace, pat: PatUnderTest, figures: Figures) -> None:
    endpoint = answering_spam_engine(pat)
    figures.spam_endpoint = endpoint
    if endpoint is None:
        figures.notes.append("no spam engine answers on the ports given to pat up: "
                             "nothing to measure alone")
        return
    if endpoint.engine != args.spam_engine:
        figures.notes.append(f"--spam-engine {args.spam_engine} was asked, but {endpoint} "
                             "is what answers (does this code know PAT_SPAM_ENGINE?)")
    samples = raw_messages(pat.store_file, figures.load_from_ns, args.spam_messages)
    if not samples:
        figures.notes.append("no stored message to send to the spam engine")
        return
    messages = [samples[i % len(samples)] for i in range(args.spam_messages)]
    figures.spam_concurrency = args.spam_concurrency or (
        Settings().worker_activity_slots * (args.worker_processes or 1))
    print(f"[spam] {endpoint} alone: {len(messages)} messages, "
          f"{figures.spam_concurrency} at once ...", flush=True)
    figures.spam_alone, figures.spam_verdicts = run_spam_alone(
        endpoint, messages, figures.spam_concurrency)


def run(args: argparse.Namespace, workdir: Path) -> Figures:
    figures = Figures(load_before=machine_load())
    pat = PatUnderTest(workdir, args.spam_engine, args.worker_processes)
    pat.announce("pat")
    try:
        pat.start()
        measure_pat(args, pat, figures)
        figures.spam_banner = pat.banner_spam_line()  # printed once spamd answers
        print(f"[bare] {args.bare_workflows} bare workflows on the same dev server ...",
              flush=True)
        figures.bare = run_bare_workflows(f"127.0.0.1:{pat.temporal_port}",
                                          args.bare_workflows, args.warmup, args.drain_timeout)
        measure_spam_alone(args, pat, figures)
    finally:
        pat.stop()
    figures.load_after = machine_load()
    return figures


# --------------------------------------------------------------------------------------------
# report


def _s(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def report(args: argparse.Namespace, figures: Figures) -> None:
    print()
    workers = ("Pat's default" if args.worker_processes is None else str(args.worker_processes))
    print(f"=== pipeline throughput: {args.messages} messages x {args.size} B body over "
          f"{args.sessions} sessions; spam engine {args.spam_engine}; worker processes "
          f"{workers} ===")
    overrides = sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("PAT_"))
    if overrides:
        print("settings from the environment: " + " ".join(overrides))
    print(f"machine: {figures.load_before} before, {figures.load_after} after")
    if figures.spam_banner:
        print(f"pat up's banner: Spam check {figures.spam_banner}")
    rows: list[tuple[str, str, str]] = []
    if figures.accepted:
        rows.append(("SMTP accepted while pipelines run", f"{figures.accepted.rate:,.0f} msg/s",
                     f">= {MIN_ACCEPTED_PER_S} msg/s: "
                     f"{_verdict(figures.accepted.rate >= MIN_ACCEPTED_PER_S)}"))
    pat = figures.processed
    if pat and figures.counts:
        rows.append(("Pat processed (first 250 -> last ended)", f"{pat.per_second:,.1f} /s",
                     f"{figures.counts.processed} processed, {figures.counts.failed} failed "
                     f"in {pat.seconds:,.1f} s"))
        rows.append(("  250 -> processed, p50 / p95", f"{_s(pat.p(50))} / {_s(pat.p(95))}", ""))
    if figures.drain_after_last_250 is not None:
        rows.append(("  drain after smtp-source ended", _s(figures.drain_after_last_250), ""))
    bare = figures.bare
    if bare:
        rows.append(("bare workflow, 2 local activities", f"{bare.per_second:,.1f} /s",
                     f"{bare.count} runs in {bare.seconds:,.1f} s; start -> close p50 "
                     f"{_s(bare.p(50))}, p95 {_s(bare.p(95))}"))
    spam = figures.spam_alone
    if spam and figures.spam_endpoint:
        verdicts = ", ".join(f"{n} {v}" for v, n in figures.spam_verdicts.most_common())
        rows.append((f"{figures.spam_endpoint} alone", f"{spam.per_second:,.1f} /s",
                     f"{spam.count} in {spam.seconds:,.1f} s, {figures.spam_concurrency} at "
                     f"once; p50 {_s(spam.p(50))}, p95 {_s(spam.p(95))}; {verdicts}"))
    if pat and bare:
        ratio = pat.per_second / bare.per_second
        with_rspamd = (args.spam_engine == "rspamd" and figures.spam_endpoint is not None
                       and figures.spam_endpoint.engine == "rspamd")
        target = (f">= {MIN_RATIO_TO_BARE} with rspamd: {_verdict(ratio >= MIN_RATIO_TO_BARE)}"
                  if with_rspamd else "(the target applies when rspamd answers)")
        rows.append(("Pat / bare workflow", f"{ratio:.2f}", target))
    if pat and spam and figures.spam_endpoint:
        ratio = pat.per_second / spam.per_second
        target = (f">= {MIN_RATIO_TO_SPAMD} with SpamAssassin: "
                  f"{_verdict(ratio >= MIN_RATIO_TO_SPAMD)}"
                  if figures.spam_endpoint.engine == "spamassassin" == args.spam_engine
                  else "(the target applies with --spam-engine spamassassin)")
        rows.append((f"Pat / {figures.spam_endpoint.engine} alone", f"{ratio:.2f}", target))
    width = max(len(r[0]) for r in rows) if rows else 0
    for what, figure, note in rows:
        print(f"  {what:<{width}}  {figure:>18}   {note}".rstrip())
    if figures.load_cpu and figures.accepted:
        wall = figures.accepted.seconds
        print("CPU while smtp-source ran: " + ", ".join(
            f"{name} {secs:.1f} s ({secs / wall:.0%})" for name, secs in figures.load_cpu
            if secs >= 0.05))
    for reason, count in figures.failure_reasons.most_common(5):
        print(f"failed: {count} x {reason}")
    for note in figures.notes:
        print(f"note: {note}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000, help="messages smtp-source sends")
    parser.add_argument("--sessions", type=int, default=20, help="concurrent SMTP sessions")
    parser.add_argument("--size", type=int, default=4096,
                        help="body bytes per message (about 130 bytes of headers come on top)")
    add_pat_arguments(parser)
    parser.add_argument("--bare-workflows", type=int, default=None,
                        help="runs of the bare workflow (default: --messages)")
    parser.add_argument("--spam-messages", type=int, default=None,
                        help="messages sent to the spam engine alone (default: --messages)")
    parser.add_argument("--spam-concurrency", type=int, default=None,
                        help="requests in flight to the spam engine alone (default: "
                             "PAT_WORKER_ACTIVITY_SLOTS x worker processes, what the workers "
                             "could have in flight)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="messages (and bare workflows) run before anything is timed")
    parser.add_argument("--load-timeout", type=float, default=600,
                        help="seconds smtp-source may take")
    parser.add_argument("--drain-timeout", type=float, default=3600,
                        help="seconds to wait for every pipeline (and bare workflow) to end")
    parser.add_argument("--stall", type=float, default=180,
                        help="give up when no pipeline ends for this many seconds")
    args = parser.parse_args(argv)
    check_pat_arguments(parser, args)
    for name in ("messages", "sessions", "size", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    args.bare_workflows = args.bare_workflows or args.messages
    args.spam_messages = args.spam_messages or args.messages
    if args.spam_concurrency is not None and args.spam_concurrency < 1:
        parser.error("--spam-concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not os.access(SMTP_SOURCE, os.X_OK):
        print(f"{SMTP_SOURCE} is missing: run `scripts/system-deps.sh bench` (Debian package "
              "postfix)", file=sys.stderr)
        return 2
    # SIGTERM ends the run as Ctrl-C does, so the finally blocks stop what was started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = Path(tempfile.mkdtemp(prefix="pat-pipeline-bench-"))
    try:
        figures = run(args, workdir)
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
    report(args, figures)
    complete = figures.counts is not None and figures.counts.ended == args.messages
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
