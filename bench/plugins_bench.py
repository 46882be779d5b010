"""Plugin sandbox benchmark: hook calls per second, the latency a trivial hook adds (p50, p99;
target p99 <= 5 ms), memory per isolate, and isolate start time.

    .venv/bin/python -m bench.plugins_bench [--calls 2000]

"Sandbox" rows time one hook call in the sandbox: isolate opened, plugin loaded, hook called,
result decoded and checked, isolate closed (``plugins.host.execute``). The "with the store" row
times the hook activity's body (``PluginHost.run_hook``) on a SQLite store: it also reads the
message and the changes earlier plugins recorded, and records the run. Temporal's own activity
round trip comes on top of that and is the same for any activity."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from py_mini_racer import MiniRacer

from pat.domain import SpooledMessage
from pat.parsing import parse_message
from pat.settings import Settings
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from plugins.host import PluginHost, email_for_plugins, execute
from plugins.manifest import Manifest, load_plugin_files
from plugins.store import PluginStore

TRIVIAL = "function onEmailReceived(email) { return null; }"
RAW = (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: Benchmark\r\n"
       b"Message-ID: <bench@example.test>\r\n\r\nHello https://example.test/\r\n")
SAMPLES = Path(__file__).resolve().parents[1] / "plugins" / "samples"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def hook_latencies(manifest: Manifest, code: str, calls: int
                         ) -> tuple[list[float], float, int]:
    settings = Settings()
    parsed = parse_message(RAW)
    email = email_for_plugins(RAW, parsed, message_id="bench", tenant="default",
                              mail_from="a@example.test", recipients=["b@example.test"],
                              received_ns=time.time_ns())
    latencies: list[float] = []
    failures = 0
    started = time.perf_counter()
    for _ in range(calls):
        begin = time.perf_counter()
        outcome, _ = await execute(manifest, code, "onEmailReceived", [email], tenant="default",
                                   plugin_settings=manifest.resolve_settings({}), storage={},
                                   settings=settings)
        latencies.append((time.perf_counter() - begin) * 1000)
        failures += outcome.status != "ok"
    return latencies, time.perf_counter() - started, failures


async def isolate_figures(count: int) -> dict[str, float]:
    MiniRacer().close()  # the first isolate also initialises V8: not a per-isolate cost
    starts: list[float] = []
    heaps: list[float] = []
    for _ in range(count):
        begin = time.perf_counter()
        racer = MiniRacer()
        starts.append((time.perf_counter() - begin) * 1000)
        await racer.eval_cancelable("0")
        heaps.append(racer.heap_stats()["total_heap_size"] / 1024)
        racer.close()
    return {"start_p50_ms": statistics.median(starts), "start_p99_ms": percentile(starts, 0.99),
            "heap_kb": statistics.median(heaps)}


async def store_latencies(manifest: Manifest, code: str, calls: int
                          ) -> tuple[list[float], float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp}/pat.db")
        await migrate(engine)
        messages = MessageStore(engine)
        # A message of its own per call, as in a pipeline.
        await messages.insert_batch([SpooledMessage(
            id=f"bench-{index}", tenant="default", mail_from="a@example.test",
            recipients=["b@example.test"], helo="h", peer="127.0.0.1", data=RAW)
            for index in range(calls)])
        plugins = PluginStore(engine)
        await plugins.register("default", manifest, code, "", {}, {})
        host = PluginHost(plugins, messages, Settings(data_dir=Path(tmp)))
        latencies: list[float] = []
        failures = 0
        started = time.perf_counter()
        for index in range(calls):
            begin = time.perf_counter()
            run = await host.run_hook("default", manifest.id, "onEmailReceived",
                                      message_id=f"bench-{index}")
            latencies.append((time.perf_counter() - begin) * 1000)
            failures += run.status != "ok"
        elapsed = time.perf_counter() - started
        await engine.dispose()
    return latencies, elapsed, failures


def report(name: str, latencies: list[float], elapsed: float, failures: int) -> None:
    print(f"{name:<28} {len(latencies) / elapsed:8.0f} calls/s   p50 "
          f"{statistics.median(latencies):6.2f} ms   p99 {percentile(latencies, 0.99):6.2f} ms"
          f"   failed {failures}")


async def main(calls: int) -> None:
    trivial = Manifest(id="trivial", name="Trivial", version="1.0.0", hooks=["onEmailReceived"])
    figures = await isolate_figures(200)
    print(f"isolate start: p50 {figures['start_p50_ms']:.2f} ms, p99 "
          f"{figures['start_p99_ms']:.2f} ms; heap per fresh isolate "
          f"{figures['heap_kb']:.0f} KB", flush=True)
    await hook_latencies(trivial, TRIVIAL, 50)  # warm up
    report("trivial hook", *await hook_latencies(trivial, TRIVIAL, calls))
    report("trivial hook, with the store", *await store_latencies(trivial, TRIVIAL, calls // 4))
    scorer, code = load_plugin_files(SAMPLES / "spam_scorer")
    report("spam scorer sample", *await hook_latencies(scorer, code, calls // 2))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args: Any = parser.parse_args()
    asyncio.run(main(args.calls))


if __name__ == "__main__":
    cli()
