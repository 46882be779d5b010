"""The authentication check answers bytes that are not an email with verdicts, not an
exception."""

from __future__ import annotations

from pathlib import Path

from compliance.auth import check_authentication
from compliance.dns import Lookup, ResolverConfig

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def test_binary_junk_gets_error_verdicts_with_reasons() -> None:
    found = check_authentication(
        (CORPUS / "not_an_email.eml").read_bytes(), ip="127.0.0.1", mail_from="a@example.test",
        helo="client.example.test", authserv_id="pat.test",
        lookup=Lookup(ResolverConfig(address="127.0.0.1", port=9, timeout=0.2)))
    assert found.verdict == "error"
    checks = found.details["checks"]
    assert checks["arc"]["verdict"] == "error"
    assert checks["arc"]["reason"].startswith("permerror: ")
    assert checks["dmarc"]["verdict"] == "error"
