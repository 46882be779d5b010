"""The spam check's engines: SpamAssassin's verdict through a real ``spamd`` (aiospamc's REPORT
command) here, rspamd's in ``compliance.rspamd``. Each gives the score, the threshold and every
rule that hit, with its points and description, in the same details, so the report and the UI
read either."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import aiospamc  # type: ignore[import-untyped]
from aiospamc.client import Client  # type: ignore[import-untyped]
from aiospamc.connections import TcpConnectionManager  # type: ignore[import-untyped]
from aiospamc.exceptions import (  # type: ignore[import-untyped]
    AIOSpamcConnectionFailed,
    ClientException,
    ClientTimeoutException,
)
from aiospamc.requests import Request  # type: ignore[import-untyped]
from aiospamc.responses import ResponseException  # type: ignore[import-untyped]

from compliance.result import CheckResult, Verdict, result

SPAM = "spam"
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")


@dataclass(frozen=True)
class Envelope:
    """What the SMTP dialogue told Pat about a message, for engines whose rules use it (SPF,
    the sending host's name): ``ip`` is the address SPF is evaluated for."""

    ip: str
    helo: str
    mail_from: str
    recipients: list[str]
    message_id: str


class SpamEngine(Protocol):
    async def check(self, raw: bytes, envelope: Envelope) -> CheckResult: ...


@dataclass(frozen=True)
class SpamCheckOff:
    reason: str

    async def check(self, raw: bytes, envelope: Envelope) -> CheckResult:
        return result(SPAM, Verdict.none, self.reason)


@dataclass(frozen=True)
class SpamdConfig:
    host: str
    port: int
    timeout: float

    @cached_property
    def client(self) -> Any:
        """aiospamc's client, built once per config: its one-call helpers (``aiospamc.report``)
        build an SSL context, loading the CA bundle, on every call even without TLS, which
        was a quarter of a busy worker's CPU."""
        timeout = aiospamc.Timeout(total=self.timeout, connection=min(self.timeout, 5.0))
        return Client(TcpConnectionManager(self.host, self.port, timeout=timeout))

    async def check(self, raw: bytes, envelope: Envelope) -> CheckResult:
        """spamc's protocol carries no envelope: spamd reads the Received headers."""
        return await check_spam(raw, self)


def parse_rules(report: str) -> list[dict[str, object]]:
    """Rule rows of SpamAssassin's report table; wrapped descriptions are joined."""
    rules: list[dict[str, object]] = []
    in_table = False
    for line in report.splitlines():
        if line.startswith("---- "):
            in_table = True
            continue
        if not in_table or not line.strip():
            continue
        found = _RULE.match(line)
        if found:
            rules.append({"rule": found.group(2), "points": float(found.group(1)),
                          "description": found.group(3).strip()})
        elif rules and line.startswith(" "):
            rules[-1]["description"] = f"{rules[-1]['description']} {line.strip()}"
    return rules


async def check_spam(raw: bytes, config: SpamdConfig) -> CheckResult:
    where = f"spamd at {config.host}:{config.port}"
    try:
        response = await config.client.request(Request("REPORT", body=raw))
    except AIOSpamcConnectionFailed as exc:
        return result(SPAM, Verdict.unavailable, f"{where} is not reachable ({exc}); install "
                      "SpamAssassin (Debian package spamd) or set PAT_SPAMD_HOST/PAT_SPAMD_PORT",
                      spamd=where)
    except (ClientTimeoutException, TimeoutError):
        return result(SPAM, Verdict.error, f"{where} did not answer within "
                      f"{config.timeout:g}s", spamd=where)
    except (ClientException, ResponseException, OSError, ValueError) as exc:
        return result(SPAM, Verdict.error, f"{where} failed: {type(exc).__name__}: {exc}",
                      spamd=where)
    spam = response.headers["Spam"]
    score, threshold = float(spam.score), float(spam.threshold)
    rules = parse_rules(response.body.decode("utf-8", "replace"))
    rules.sort(key=lambda r: -float(r["points"]))  # type: ignore[arg-type]
    details = {"engine": "SpamAssassin", "score": score, "threshold": threshold,
               "is_spam": bool(spam.value), "rules": rules, "spamd": where}
    if spam.value:
        top = ", ".join(str(r["rule"]) for r in rules[:3])
        return result(SPAM, Verdict.fail, f"SpamAssassin scores {score:g} (threshold "
                      f"{threshold:g}): spam; top rules {top}", **details)
    return result(SPAM, Verdict.passed, f"SpamAssassin scores {score:g} (threshold "
                  f"{threshold:g}): not spam", **details)
