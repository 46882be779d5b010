"""Deliverability checks benchmark (issues 3 and 8): checks per second and the time the checks
add to the pipeline (p50, p95), without a spam engine and with each engine.

    .venv/bin/python -m bench.checks_bench [--messages 64] [--workflows 100]
        [--spam-engine rspamd --spam-engine spamassassin | --spam-engine none]

Everything runs on 127.0.0.1, in a temporary directory removed at the end: a SQLite store
holding the messages of tests/corpus and tests/checks_corpus (the latter DKIM-signed for
example.test), an authoritative DNS server on loopback (tests.support.dns_server) with the SPF,
DKIM, DMARC and DNSBL records the checks ask for, so no query leaves the machine, the spam
engines as the tests start them (rspamd resolving through that server), and a Temporal dev
server.

1. "Direct" rows call each CheckActivities method over ``--messages`` messages, one call at a
   time (calls/s, p50, p95 of one call), then the spam check alone with ``--spam-concurrency``
   calls in flight (the messages/s the engine sustains), then all six at once per message with
   asyncio.gather, as the workflow runs them (messages/s and the time of the slowest of the six).
2. "Pipeline" rows run EmailPipeline end to end with ``workers.email.email_worker`` for
   ``--workflows`` messages, ``--concurrency`` at a time, with checks_enabled false and true,
   and time each run from start_workflow to its result; the difference is what the checks add.

Both are measured without a spam engine (PAT_SPAM_ENGINE=none) and with each ``--spam-engine``
(default: rspamd and spamassassin), each started fresh for each measurement."""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import dkim  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from activities.checks import CheckActivities, CheckInput
from compliance.result import CheckResult
from pat import temporal
from pat.cli import temporal_binary
from pat.domain import EmailPipelineInput, EmailPipelineResult, SpooledMessage, workflow_id_for
from pat.parsing import MalformedMessage, parse_message
from pat.settings import Settings
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from tests.support.check_fixtures import start_rspamd, start_spamd, stop_rspamd, stop_spamd
from tests.support.dns_server import DnsServer
from workers.email import email_worker

ROOT = Path(__file__).resolve().parents[1]
SENDING_IP = "1.2.3.4"      # authorised by example.test's SPF record
SENDING_HOST = "mail.example.test"  # its forward-confirmed name, the HELO of every sample
DOMAIN = "example.test"
SELECTOR = "sel"
WARMUP = 3  # calls, gathers or workflows before each timed run
CHECKS = ["check_authentication", "check_spam", "check_content", "check_html_compatibility",
          "check_links", "check_blocklists"]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def start_dns() -> tuple[DnsServer, bytes]:
    """The loopback DNS server with example.test's records, and the DKIM key they publish."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    server = DnsServer()
    server.txt(f"{SELECTOR}._domainkey.{DOMAIN}",
               f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}")
    server.txt(DOMAIN, f"v=spf1 ip4:{SENDING_IP} -all")
    server.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; adkim=r; aspf=r")
    server.txt("soft.test", "v=spf1 ~all")
    server.txt("_dmarc.soft.test", "v=DMARC1; p=none")
    server.a("spammy.test.dbl.test", "127.0.1.2")
    server.txt("spammy.test", "v=spf1 -all")
    server.ptr(SENDING_IP, SENDING_HOST)  # the sending host, as a receiving MTA expects it
    server.a(SENDING_HOST, SENDING_IP)
    server.start()
    return server, pem


def load_corpus(pem: bytes) -> list[tuple[str, bytes, bool]]:
    """(name, bytes, parses) of every sample; those of checks_corpus DKIM-signed."""
    corpus: list[tuple[str, bytes, bool]] = []
    for path in sorted((ROOT / "tests" / "checks_corpus").glob("*.eml")):
        raw = path.read_bytes()
        try:
            raw = bytes(dkim.sign(raw, SELECTOR.encode(), DOMAIN.encode(), pem,
                                  include_headers=[b"from", b"to", b"subject", b"date"])) + raw
        except Exception:  # a sample dkimpy cannot sign stays unsigned
            pass
        corpus.append((f"checks_corpus/{path.name}", raw, True))
    for path in sorted((ROOT / "tests" / "corpus").glob("*.eml")):
        raw = path.read_bytes()
        try:
            parse_message(raw)
            parses = True
        except MalformedMessage:
            parses = False
        corpus.append((f"corpus/{path.name}", raw, parses))
    return corpus


async def insert(store: MessageStore, corpus: list[tuple[str, bytes, bool]], count: int,
                 prefix: str) -> list[str]:
    ids = [f"{prefix}-{index}" for index in range(count)]
    await store.insert_batch([SpooledMessage(
        id=message_id, tenant="default", mail_from=f"bounce@{DOMAIN}",
        recipients=["dev@example.test"], helo=SENDING_HOST, peer=SENDING_IP,
        data=corpus[index % len(corpus)][1]) for index, message_id in enumerate(ids)])
    return ids


def row(name: str, latencies: list[float], elapsed: float, unit: str, note: str = "") -> None:
    print(f"  {name:<26} {len(latencies) / elapsed:8.1f} {unit:<10} p50 "
          f"{statistics.median(latencies):8.2f} ms   p95 {percentile(latencies, 0.95):8.2f} ms"
          f"   max {max(latencies):7.0f} ms   {note}", flush=True)


async def call(method: Callable[[CheckInput], Awaitable[CheckResult]],
               message_id: str) -> CheckResult | str:
    """The check's result, or the name of the exception it raised (a check is meant to
    return ``error`` rather than raise; in the pipeline Temporal would retry it)."""
    try:
        return await method(CheckInput(message_id))
    except Exception as exc:
        return f"raised {type(exc).__name__}"


def verdicts(results: list[CheckResult | str]) -> str:
    counted = collections.Counter(r if isinstance(r, str) else r.verdict for r in results)
    return " ".join(f"{verdict}={n}" for verdict, n in sorted(counted.items()))


class SpamEngineService:
    """A spam engine started as tests/support/check_fixtures.py starts it, fresh for each
    measurement so that each one starts from the same state."""

    def __init__(self, tmp: Path, spam_engine: str, dns_port: int) -> None:
        self.spam_engine = spam_engine
        self._tmp = tmp
        self._dns_port = dns_port
        self._stop: Callable[[], None] | None = None
        self._starts = 0

    def restart(self) -> dict[str, Any]:
        """Start the engine afresh; the settings that point the checks at it."""
        self.stop()
        self._starts += 1
        directory = self._tmp / f"{self.spam_engine}-{self._starts}"
        directory.mkdir()
        if self.spam_engine == "rspamd":
            rspamd, files, port = start_rspamd(directory, self._dns_port)
            self._stop = lambda: stop_rspamd(rspamd, files)
            return {"spam_engine": "rspamd", "rspamd_port": port}
        spamd, port = start_spamd(directory)
        self._stop = lambda: stop_spamd(spamd)
        return {"spam_engine": "spamassassin", "spamd_port": port}

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


Fresh = Callable[[], Settings]  # the settings of the next measurement (a fresh engine)


async def direct(fresh: Fresh, store: MessageStore, ids: list[str],
                 spam_concurrency: int) -> None:
    checks = CheckActivities(fresh(), store)
    methods: dict[str, Callable[[CheckInput], Awaitable[CheckResult]]] = {
        name: getattr(checks, name) for name in CHECKS}
    for method in methods.values():  # warm up: imports, caniemail data, the spam engine
        for message_id in ids[:WARMUP]:
            await call(method, message_id)
    for name, method in methods.items():
        latencies: list[float] = []
        results: list[CheckResult | str] = []
        started = time.perf_counter()
        for message_id in ids:
            begin = time.perf_counter()
            results.append(await call(method, message_id))
            latencies.append((time.perf_counter() - begin) * 1000)
        row(name, latencies, time.perf_counter() - started, "calls/s", verdicts(results))
    await spam_in_flight(CheckActivities(fresh(), store), ids, spam_concurrency)
    checks = CheckActivities(fresh(), store)
    methods = {name: getattr(checks, name) for name in CHECKS}
    for message_id in ids[:2]:
        await asyncio.gather(*(call(method, message_id) for method in methods.values()))
    latencies = []
    results = []
    started = time.perf_counter()
    for message_id in ids:
        begin = time.perf_counter()
        results += await asyncio.gather(*(call(method, message_id)
                                          for method in methods.values()))
        latencies.append((time.perf_counter() - begin) * 1000)
    row("all six (gather)", latencies, time.perf_counter() - started, "msgs/s",
        verdicts(results))


async def spam_in_flight(checks: CheckActivities, ids: list[str], concurrency: int) -> None:
    """The spam check alone, ``concurrency`` calls in flight: what the engine sustains when
    several pipelines ask it at once, as a busy worker does."""
    for message_id in ids[:WARMUP]:
        await call(checks.check_spam, message_id)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def timed(message_id: str) -> CheckResult | str:
        async with gate:
            begin = time.perf_counter()
            outcome = await call(checks.check_spam, message_id)
            latencies.append((time.perf_counter() - begin) * 1000)
            return outcome

    started = time.perf_counter()
    results = list(await asyncio.gather(*(timed(message_id) for message_id in ids)))
    row(f"check_spam, {concurrency} in flight", latencies, time.perf_counter() - started,
        "msgs/s", verdicts(results))


async def pipeline(client: Client, settings: Settings, store: MessageStore,
                   corpus: list[tuple[str, bytes, bool]], count: int, concurrency: int,
                   label: str) -> list[float]:
    """Durations (ms) of ``count`` EmailPipeline runs, start_workflow to result."""
    task_queue = f"bench-checks-{uuid.uuid4()}"
    parseable = [sample for sample in corpus if sample[2]]  # checks run only on these
    prefix = uuid.uuid4().hex[:8]
    warmup = await insert(store, parseable, WARMUP, f"{prefix}-warm")
    ids = await insert(store, parseable, count, prefix)
    statuses: collections.Counter[str] = collections.Counter()
    gate = asyncio.Semaphore(concurrency)

    names = {message_id: parseable[index % len(parseable)][0]
             for index, message_id in enumerate(ids)}
    timed: list[tuple[float, str]] = []

    async def run(message_id: str) -> float:
        async with gate:
            begin = time.perf_counter()
            handle = await client.start_workflow(
                temporal.EMAIL_PIPELINE, EmailPipelineInput(message_id=message_id),
                id=workflow_id_for(message_id), task_queue=task_queue,
                result_type=EmailPipelineResult, execution_timeout=timedelta(minutes=2),
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(temporal.SENDER, f"bounce@{DOMAIN}"),
                    SearchAttributePair(temporal.RECIPIENTS, ["dev@example.test"]),
                    SearchAttributePair(temporal.TENANT, "default")]))
            outcome = await handle.result()
            statuses[outcome.status] += 1
            took = (time.perf_counter() - begin) * 1000
            timed.append((took, names.get(message_id, "warm-up")))
            return took

    async with email_worker(client, store, task_queue, settings):
        for message_id in warmup:
            await run(message_id)
        statuses.clear()
        started = time.perf_counter()
        durations = list(await asyncio.gather(*(run(message_id) for message_id in ids)))
        elapsed = time.perf_counter() - started
    row(label, durations, elapsed, "wf/s", " ".join(f"{s}={n}" for s, n in statuses.items()))
    print("    slowest: " + ", ".join(f"{name} {took:.0f} ms"
                                      for took, name in sorted(timed, reverse=True)[:3]))
    return durations


async def phase(name: str, fresh: Fresh, store: MessageStore, client: Client,
                corpus: list[tuple[str, bytes, bool]], args: Any) -> None:
    print(f"\n== {name} ==", flush=True)
    print(f"direct calls, {args.messages} messages, one at a time:", flush=True)
    await direct(fresh, store, await insert(store, corpus, args.messages,
                                            uuid.uuid4().hex[:8]), args.spam_concurrency)
    settings = fresh()
    print(f"pipeline, {args.workflows} workflows, {args.concurrency} at a time "
          f"(start_workflow -> result):", flush=True)
    off = await pipeline(client, settings.model_copy(update={"checks_enabled": False}), store,
                         corpus, args.workflows, args.concurrency, "checks_enabled=false")
    on = await pipeline(client, settings, store, corpus, args.workflows, args.concurrency,
                        "checks_enabled=true")
    print(f"  checks add: p50 {statistics.median(on) - statistics.median(off):+.2f} ms, "
          f"p95 {percentile(on, 0.95) - percentile(off, 0.95):+.2f} ms", flush=True)


async def main(args: Any) -> None:
    with tempfile.TemporaryDirectory(prefix="pat-checks-bench-") as tmp_name:
        tmp = Path(tmp_name)
        dns, pem = start_dns()
        corpus = load_corpus(pem)
        settings = Settings(
            data_dir=tmp, database_url="", dns_resolver="127.0.0.1", dns_port=dns.port,
            dnsbl_ip_zones=["bl.test"], dnsbl_domain_zones=["dbl.test"], spam_engine="none",
            link_check_network=False, checks_enabled=True)
        engine = make_engine(settings.store_url)
        services = [SpamEngineService(tmp, name, dns.port)
                    for name in dict.fromkeys(args.spam_engine) if name != "none"]
        env = None
        try:
            await migrate(engine)
            store = MessageStore(engine)
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_binary(),
                search_attributes=[temporal.SENDER, temporal.RECIPIENTS, temporal.SUBJECT,
                                   temporal.TENANT])
            print(f"{len(corpus)} samples ({sum(not s[2] for s in corpus)} not parseable, "
                  f"left out of the pipeline runs); DNS on 127.0.0.1:{dns.port}", flush=True)
            await phase("without a spam engine (PAT_SPAM_ENGINE=none)",
                        lambda: settings, store, env.client, corpus, args)
            for service in services:
                def fresh(service: SpamEngineService = service) -> Settings:
                    return settings.model_copy(update=service.restart())

                await phase(f"with {service.spam_engine} (restarted before each measurement)",
                            fresh, store, env.client, corpus, args)
                service.stop()
            outside = sorted({name for name, _ in dns.queries
                              if name != "test" and not name.endswith(".test")})
            print(f"\nDNS queries, all answered by the loopback server: {len(dns.queries)}"
                  + (f"; names outside .test: {', '.join(outside)}"
                     if outside else ""))
        finally:
            for service in services:
                service.stop()
            if env is not None:
                await env.shutdown()
            await engine.dispose()
            dns.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=64,
                        help="messages each check is called on (direct rows)")
    parser.add_argument("--workflows", type=int, default=100,
                        help="EmailPipeline runs per configuration")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="pipeline runs in flight at once (1: latency without queueing)")
    parser.add_argument("--spam-concurrency", type=int, default=8,
                        help="spam checks in flight at once in the spam engine's own row")
    parser.add_argument("--spam-engine", action="append",
                        choices=["rspamd", "spamassassin", "none"],
                        help="engine to measure besides the run without one (repeatable; "
                             "default: rspamd and spamassassin; none: only that run)")
    args = parser.parse_args()
    args.spam_engine = args.spam_engine or ["rspamd", "spamassassin"]
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
