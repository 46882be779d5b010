"""DKIM, ARC, SPF, DMARC and blocklist verdicts, every one from real DNS answers given by the
test's own authoritative server, for messages signed here with keys generated here."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from compliance.auth import check_authentication, check_dkim, check_spf
from compliance.blocklist import check_blocklists
from compliance.dns import Lookup, ResolverConfig
from compliance.report import build_report
from compliance.result import CheckResult
from tests.support.check_fixtures import DOMAIN, LISTED_IP, SENDING_IP, SigningDns

PLAIN = (b"From: App <app@example.test>\r\nTo: dev@example.test\r\nSubject: Your receipt\r\n"
         b"Date: Mon, 23 Nov 2026 05:00:00 +0000\r\nMessage-ID: <r1@example.test>\r\n\r\n"
         b"Thanks for your order.\r\n")


@pytest.fixture
def lookup(test_dns: SigningDns) -> Lookup:
    return Lookup(ResolverConfig("127.0.0.1", test_dns.port, 2.0))


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A UDP port that is bound but never read: queries sent there get no answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def _auth(raw: bytes, lookup: Lookup, ip: str = SENDING_IP,
          mail_from: str = f"bounce@{DOMAIN}") -> CheckResult:
    return check_authentication(raw, ip=ip, mail_from=mail_from, helo="mta.example.test",
                                lookup=lookup, authserv_id="pat.test")


def _sub(found: CheckResult, name: str) -> CheckResult:
    return CheckResult.from_dict(found.details["checks"][name])


def test_good_signature_spf_and_dmarc_pass(test_dns: SigningDns, lookup: Lookup) -> None:
    found = _auth(test_dns.sign(PLAIN), lookup)
    assert _sub(found, "dkim").verdict == "pass"
    assert _sub(found, "spf").verdict == "pass"
    assert _sub(found, "dmarc").verdict == "pass"
    assert _sub(found, "arc").verdict == "none"
    assert found.verdict == "pass"
    header = found.details["authentication_results"]
    assert header.startswith("pat.test;")
    assert f"dkim=pass header.d={DOMAIN} header.s=sel" in header
    assert f"spf=pass smtp.mailfrom=bounce@{DOMAIN}" in header
    assert f"dmarc=pass header.from={DOMAIN}" in header
    report = build_report([found])
    assert report["score"] == 100, report


def test_body_changed_after_signing_fails_with_body_hash_mismatch(
        test_dns: SigningDns, lookup: Lookup) -> None:
    tampered = test_dns.sign(PLAIN).replace(b"Thanks for your order.", b"Pay this invoice.")
    found = check_dkim(tampered, lookup)
    assert found.verdict == "fail"
    assert "body hash mismatch" in found.reason


def test_signed_header_removed_fails(test_dns: SigningDns, lookup: Lookup) -> None:
    signed = test_dns.sign(PLAIN)
    without_subject = signed.replace(b"Subject: Your receipt\r\n", b"")
    found = check_dkim(without_subject, lookup)
    assert found.verdict == "fail"
    assert found.details["signatures"][0]["domain"] == DOMAIN


def test_signature_not_covering_subject_passes_with_a_recommendation(
        test_dns: SigningDns, lookup: Lookup) -> None:
    found = _auth(test_dns.sign(PLAIN, headers=("from", "to", "date")), lookup)
    assert _sub(found, "dkim").verdict == "pass"
    recommendations = build_report([found])["recommendations"]
    assert any("does not cover Subject" in r for r in recommendations), recommendations


def test_expired_signature_fails(test_dns: SigningDns, lookup: Lookup) -> None:
    found = check_dkim(test_dns.sign_expired(PLAIN), lookup)
    assert found.verdict == "fail"
    assert "expired" in found.reason


def test_arc_sealed_forward_validates_and_tampering_breaks_it(
        test_dns: SigningDns, lookup: Lookup) -> None:
    sealed = test_dns.arc_seal(test_dns.sign(PLAIN))
    found = _auth(sealed, lookup)
    arc = _sub(found, "arc")
    assert arc.verdict == "pass", arc.reason
    assert arc.details["chain"][0]["domain"] == "forwarder.test"
    assert "arc=pass" in found.details["authentication_results"]
    broken = _sub(_auth(sealed.replace(b"Your receipt", b"Your refund"), lookup), "arc")
    assert broken.verdict == "fail"


def test_malformed_dkim_signature_is_an_error_with_the_reason(lookup: Lookup) -> None:
    raw = b"DKIM-Signature: v=1; a=rsa-sha256; this is not a tag list\r\n" + PLAIN
    found = check_dkim(raw, lookup)
    assert found.verdict == "error"
    assert found.reason
    assert _auth(raw, lookup).details["authentication_results"].count("dkim=permerror") == 1


def test_unsigned_message_has_dkim_none_and_loses_points(lookup: Lookup) -> None:
    found = _auth(PLAIN, lookup)
    assert _sub(found, "dkim").verdict == "none"
    assert _sub(found, "dmarc").verdict == "pass"  # SPF alone aligns
    report = build_report([found])
    assert report["score"] == 85
    assert any("sign the message with DKIM" in r for r in report["recommendations"])


@pytest.mark.parametrize(("ip", "mail_from", "verdict"), [
    (SENDING_IP, f"bounce@{DOMAIN}", "pass"),
    ("9.9.9.9", f"bounce@{DOMAIN}", "fail"),
    ("9.9.9.9", "a@soft.test", "softfail"),
    ("9.9.9.9", "a@neutral.test", "neutral"),
    ("9.9.9.9", "a@nothing.test", "none"),
    ("9.9.9.9", "a@broken-spf.test", "error"),
    ("127.0.0.1", "", "none"),
])
def test_spf_verdicts(lookup: Lookup, ip: str, mail_from: str, verdict: str) -> None:
    found = check_spf(ip, mail_from, "mta.nothing.test", lookup)
    assert found.verdict == verdict, found.reason


def test_spf_without_an_ip_is_an_error_naming_the_setting(lookup: Lookup) -> None:
    found = check_spf("", "a@example.test", "h", lookup)
    assert found.verdict == "error" and "PAT_SPF_EVALUATE_IP" in found.reason


def test_dmarc_fails_when_nothing_aligns_and_reports_the_policy(
        test_dns: SigningDns, lookup: Lookup) -> None:
    found = _auth(PLAIN, lookup, ip="9.9.9.9", mail_from="bounce@soft.test")
    dmarc = _sub(found, "dmarc")
    assert dmarc.verdict == "fail" and dmarc.details["policy"] == "reject"
    assert "p=reject" in dmarc.reason


def test_dmarc_policy_none_is_recommended_against(lookup: Lookup) -> None:
    raw = PLAIN.replace(b"app@example.test", b"app@soft.test")
    found = _auth(raw, lookup, ip="9.9.9.9", mail_from="bounce@soft.test")
    assert _sub(found, "dmarc").details["policy"] == "none"
    assert any("DMARC policy is none" in r for r in build_report([found])["recommendations"])


def test_blocklists_list_the_listed_ip_and_domain(lookup: Lookup) -> None:
    listed = check_blocklists(LISTED_IP, ["example.test"], lookup, ["bl.test"], ["dbl.test"])
    assert listed.verdict == "fail" and "listed for testing" in listed.reason
    clean = check_blocklists(SENDING_IP, ["example.test"], lookup, ["bl.test"], ["dbl.test"])
    assert clean.verdict == "pass"
    domain = check_blocklists(SENDING_IP, ["spammy.test"], lookup, ["bl.test"], ["dbl.test"])
    assert domain.verdict == "fail" and "spammy.test" in domain.reason
    private = check_blocklists("127.0.0.1", [], lookup, ["bl.test"], [])
    assert private.verdict == "none" and "PAT_SPF_EVALUATE_IP" in private.reason
    assert build_report([listed])["score"] == 75


def test_dns_timeouts_give_error_verdicts_quickly(test_dns: SigningDns, silent_port: int) -> None:
    slow = Lookup(ResolverConfig("127.0.0.1", silent_port, 0.3))
    found = _auth(test_dns.sign(PLAIN), slow)
    assert _sub(found, "dkim").verdict == "error"
    assert "temperror" in _sub(found, "dkim").reason
    assert _sub(found, "spf").verdict == "error"
    assert _sub(found, "dmarc").verdict == "error"
    assert "dkim=temperror" in found.details["authentication_results"]
    blocked = check_blocklists(SENDING_IP, [], slow, ["bl.test"], [])
    assert blocked.verdict == "error"
    report = build_report([found, blocked])
    assert any(s.startswith("spf:") for s in report["not_scored"])


def test_malformed_received_headers_do_not_break_the_checks(
        test_dns: SigningDns, lookup: Lookup) -> None:
    raw = (b"Received: from [[[garbage ((( by ; ;;\r\nReceived: \r\n"
           + test_dns.sign(PLAIN))
    found = _auth(raw, lookup)
    assert _sub(found, "dkim").verdict == "pass"
    assert _sub(found, "spf").verdict == "pass"
