"""A corpus of messages with the verdicts and report score each must get, through the real
parse and check activities, a real DNS server (tests/support/check_fixtures.py) and each real
spam engine: rspamd and SpamAssassin's spamd.

tests/checks_corpus/cases.json lists each case: the message file, how the test signs it
(keys are generated per run, so signatures cannot be stored), the connecting IP and envelope
sender, the verdicts expected, and the report's score. Where the engines disagree, the spam
verdict and the score are given per engine (``{"rspamd": ..., "spamassassin": ...}``): each
scores by its own rules, and the spam deduction is proportional to the engine's score against
its threshold. Scores may differ by SCORE_SLACK points: rule scores move a little between rule
updates."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.checks import CheckActivities, RunChecksInput
from activities.parse import EmailActivities, ParseInput
from compliance.report import build_report
from compliance.result import CheckResult
from pat.domain import SpooledMessage
from pat.settings import Settings
from pat.store.db import make_engine, migrate
from pat.store.repository import MessageStore
from tests.support.check_fixtures import Rspamd, SigningDns, Spamd

TESTS = Path(__file__).resolve().parent.parent
CASES = json.loads((TESTS / "checks_corpus" / "cases.json").read_text())
SCORE_SLACK = 3
GARBAGE_RECEIVED = b"Received: from [[[garbage ((( by ; ;;\r\nReceived: \r\n"


def _prepare(raw: bytes, sign: str, dns: SigningDns) -> bytes:
    if sign == "none":
        return raw
    if sign == "expired":
        return dns.sign_expired(raw)
    if sign == "no_subject":
        return dns.sign(raw, headers=("from", "to", "date"))
    signed = dns.sign(raw)
    if sign == "tampered":
        return signed.replace(b"Thursday", b"Friday")
    if sign == "arc":
        return dns.arc_seal(signed)
    if sign == "garbage_received":
        return GARBAGE_RECEIVED + signed
    assert sign == "good", f"unknown signing mode {sign}"
    return signed


ENGINES = ["rspamd", "spamassassin"]


def _engine_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "rspamd":
        found: Rspamd = request.getfixturevalue("rspamd")
        return {"spam_engine": "rspamd", "rspamd_host": found.host, "rspamd_port": found.port,
                "rspamd_timeout": 20}
    spamd: Spamd = request.getfixturevalue("spamd")
    return {"spam_engine": "spamassassin", "spamd_host": spamd.host,
            "spamd_port": spamd.port, "spamd_timeout": 20}


@pytest.fixture(scope="module", params=ENGINES)
async def corpus_checks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                        test_dns: SigningDns) -> AsyncIterator[tuple[CheckActivities,
                                                                     MessageStore, str]]:
    tmp = tmp_path_factory.mktemp("corpus")
    engine = make_engine(f"sqlite+aiosqlite:///{tmp / 'pat.db'}")
    await migrate(engine)
    store = MessageStore(engine)
    settings = Settings(data_dir=tmp, dns_resolver="127.0.0.1", dns_port=test_dns.port,
                        dns_timeout=2.0, dnsbl_ip_zones=["bl.test"],
                        dnsbl_domain_zones=["dbl.test"], **_engine_settings(request))
    yield CheckActivities(settings, store), store, request.param
    await engine.dispose()


def _for_engine(expected: Any, spam_engine: str) -> Any:
    return expected[spam_engine] if isinstance(expected, dict) else expected


async def _run(checks: CheckActivities, store: MessageStore,
               message_id: str) -> list[CheckResult]:
    """The pipeline's two steps: parse and store, then every check on what was stored. (The
    pipeline stops at a message that is not an email; the checks that need no parse still
    have something to say about it.)"""
    with contextlib.suppress(ApplicationError):
        await EmailActivities(store).parse_and_store(ParseInput(message_id))
    await checks.run_checks(RunChecksInput(message_id))
    message = await store.get(message_id)
    assert message is not None and message.checks is not None
    return [CheckResult.from_dict(found) for found in message.checks["results"].values()]


def _verdicts(results: list[CheckResult]) -> dict[str, str]:
    found = {r.name: r.verdict for r in results}
    for result in results:
        for name, sub in (result.details.get("checks") or {}).items():
            found[name] = sub["verdict"]
    return found


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 20
    assert all(case["score"] is not None for case in CASES)
    engine_specific = [want for case in CASES for want in (case["score"], *case["expect"].values())
                       if isinstance(want, dict)]
    assert all(sorted(want) == sorted(ENGINES) for want in engine_specific)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_corpus_case(case: dict[str, Any], test_dns: SigningDns,
                           corpus_checks: tuple[CheckActivities, MessageStore, str]) -> None:
    checks, store, spam_engine = corpus_checks
    raw = _prepare((TESTS / case["file"]).read_bytes(), case["sign"], test_dns)
    message_id = f"{uuid.uuid4()}@corpus"
    await store.insert_batch([SpooledMessage(
        id=message_id, tenant="default", mail_from=case["mail_from"],
        recipients=["dev@example.test"], helo="mta.example.test", peer=case["peer"],
        data=raw)])
    results = await _run(checks, store, message_id)
    verdicts = _verdicts(results)
    report = build_report(results)
    expect = {name: _for_engine(want, spam_engine) for name, want in case["expect"].items()}
    wrong = {name: (verdicts.get(name), want) for name, want in expect.items()
             if verdicts.get(name) != want}
    assert wrong == {}, {r.name: r.reason for r in results}
    assert abs(report["score"] - _for_engine(case["score"], spam_engine)) <= SCORE_SLACK, report
