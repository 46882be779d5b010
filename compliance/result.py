"""The shape every check returns.

No ``from __future__ import annotations`` here: these dataclasses cross the Temporal workflow
sandbox, where string annotations do not resolve (see pat/parsing.py)."""

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    """RFC 8601's result words, plus ``error`` (the check could not decide: a DNS timeout, a
    malformed header) and ``unavailable`` (the engine behind the check is not there)."""

    passed = "pass"
    fail = "fail"
    softfail = "softfail"
    neutral = "neutral"
    none = "none"
    error = "error"
    unavailable = "unavailable"


@dataclass
class CheckResult:
    """One check's verdict with the reason a developer reads, and the evidence behind it."""

    name: str
    verdict: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CheckResult":
        return cls(name=data["name"], verdict=data["verdict"], reason=data["reason"],
                   details=dict(data.get("details") or {}))


def result(name: str, verdict: Verdict, reason: str, **details: Any) -> CheckResult:
    return CheckResult(name=name, verdict=verdict.value, reason=reason, details=details)
