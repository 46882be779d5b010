"""Sender authentication: DKIM, ARC, SPF and DMARC verdicts, and their RFC 8601
``Authentication-Results`` rendering.

Everything here is synchronous (dkimpy and pyspf are) and takes its DNS from a ``Lookup``;
callers run it in a thread. A broken signature, a malformed header or a DNS timeout is a
verdict with a reason, never an exception."""

from __future__ import annotations

import contextvars
import email.utils
import ipaddress
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

import dkim  # type: ignore[import-untyped]
import spf  # type: ignore[import-untyped]

from compliance.dns import DnsTimeout, Lookup
from compliance.result import CheckResult, Verdict, result

DKIM = "dkim"
ARC = "arc"
SPF = "spf"
DMARC = "dmarc"


class _Collect(logging.Handler):
    """Keeps dkimpy's log lines: they are the only place it says why a signature failed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.INFO:
            self.lines.append(record.getMessage())


def _quiet_logger() -> tuple[logging.Logger, _Collect]:
    logger = logging.Logger("pat.dkim")
    collector = _Collect()
    logger.addHandler(collector)
    return logger, collector


def _dkim_dns(lookup: Lookup) -> Any:
    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        answers = lookup.txt(name.decode("ascii", "replace").rstrip("."))
        return answers[0] if answers else None
    return txt


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def _headers(raw: bytes) -> Any:
    return BytesHeaderParser(policy=compat32).parsebytes(raw)


@dataclass
class Signature:
    domain: str
    selector: str
    signed_headers: list[str]
    verdict: str
    reason: str


def _verify_signature(raw: bytes, index: int, lookup: Lookup) -> Signature:
    logger, collected = _quiet_logger()
    verifier = dkim.DKIM(raw, logger=logger, timeout=lookup.config.timeout)
    domain = selector = ""
    signed: list[str] = []
    try:
        prep = verifier.verify_headerprep(index)
        if prep:
            sig = prep[0]
            domain, selector = _text(sig.get(b"d")), _text(sig.get(b"s"))
            signed = [_text(h) for h in prep[1]]
            ok = verifier.verify_sig(prep[0], prep[1], prep[2][index], _dkim_dns(lookup))
        else:
            ok = False
    except DnsTimeout as exc:
        return Signature(domain, selector, signed, Verdict.error.value,
                         f"temperror: {exc}")
    except dkim.DKIMException as exc:
        # RFC 6376 permerror: the signature cannot be evaluated at all.
        if not domain:
            domain, selector = _signature_tag(raw, index, "d"), _signature_tag(raw, index, "s")
        text = str(exc)
        if "x= value is past" in text:
            return Signature(domain, selector, signed, Verdict.fail.value,
                             f"the signature has expired ({text})")
        verdict = Verdict.fail if "body hash mismatch" in text else Verdict.error
        return Signature(domain, selector, signed, verdict.value, text)
    if ok:
        return Signature(domain, selector, signed, Verdict.passed.value,
                         f"signature by {domain} (selector {selector}) verifies")
    why = "; ".join(collected.lines) or "the signature does not match the signed headers"
    return Signature(domain, selector, signed, Verdict.fail.value, why)


def _signature_tag(raw: bytes, index: int, tag: str) -> str:
    values = _headers(raw).get_all("DKIM-Signature") or []
    if index >= len(values):
        return ""
    found = re.search(rf"(?:^|;)\s*{tag}\s*=\s*([^;\s]+)", str(values[index]))
    return found.group(1) if found else ""


def check_dkim(raw: bytes, lookup: Lookup) -> CheckResult:
    """Every DKIM-Signature, each verified on its own; the check passes if one does."""
    count = len(_headers(raw).get_all("DKIM-Signature") or [])
    if count == 0:
        return result(DKIM, Verdict.none, "the message has no DKIM-Signature header",
                      signatures=[])
    signatures = [_verify_signature(raw, i, lookup) for i in range(count)]
    rows = [vars(s) for s in signatures]
    for wanted in (Verdict.passed, Verdict.fail, Verdict.error):
        hit = next((s for s in signatures if s.verdict == wanted.value), None)
        if hit:
            return result(DKIM, wanted, hit.reason, signatures=rows)
    return result(DKIM, Verdict.neutral, "no signature could be evaluated", signatures=rows)


def check_arc(raw: bytes, lookup: Lookup) -> CheckResult:
    logger, _ = _quiet_logger()
    try:
        cv, instances, reason = dkim.arc_verify(raw, logger=logger, dnsfunc=_dkim_dns(lookup),
                                                timeout=lookup.config.timeout)
    except DnsTimeout as exc:
        return result(ARC, Verdict.error, f"temperror: {exc}")
    except dkim.DKIMException as exc:  # e.g. MessageFormatError: no header section to read
        return result(ARC, Verdict.error, f"permerror: {exc}")
    chain = [{"instance": i.get("instance"), "domain": _text(i.get("as-domain")),
              "seal_valid": bool(i.get("as-valid")), "signature_valid": bool(i.get("ams-valid"))}
             for i in instances]
    if cv == dkim.CV_Pass:
        return result(ARC, Verdict.passed, f"ARC chain of {len(chain)} set(s) validates",
                      chain=chain)
    if cv == dkim.CV_None or cv is None:
        return result(ARC, Verdict.none, str(reason), chain=chain)
    return result(ARC, Verdict.fail, str(reason), chain=chain)


# pyspf resolves through a module-level function; this routes it to the resolver of the check
# running in this context (thread pools copy the context), the system resolver otherwise.
_spf_lookup: contextvars.ContextVar[Lookup | None] = contextvars.ContextVar("spf_lookup",
                                                                           default=None)
_system_spf_dns = spf.DNSLookup


def _routed_spf_dns(name: str, qtype: str, strict: object = True,
                    timeout: float = 20) -> list[tuple[tuple[str, str], object]]:
    lookup = _spf_lookup.get()
    if lookup is None:
        answers: list[tuple[tuple[str, str], object]] = _system_spf_dns(name, qtype, strict,
                                                                       timeout)
        return answers
    try:
        return lookup.pyspf_answers(name, qtype)
    except DnsTimeout as exc:
        raise spf.TempError(f"DNS {exc}") from exc


spf.DNSLookup = _routed_spf_dns


@contextmanager
def _spf_resolver(lookup: Lookup) -> Iterator[None]:
    token = _spf_lookup.set(lookup)
    try:
        yield
    finally:
        _spf_lookup.reset(token)


def check_spf(ip: str, mail_from: str, helo: str, lookup: Lookup) -> CheckResult:
    """RFC 7208 for ``ip`` sending as ``mail_from`` (or postmaster@helo for a null sender)."""
    sender = mail_from or f"postmaster@{helo}"
    domain = sender.rpartition("@")[2]
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return result(SPF, Verdict.error, f"no IP address to evaluate SPF for ({ip!r}); set "
                      "PAT_SPF_EVALUATE_IP", ip=ip, domain=domain)
    with _spf_resolver(lookup):
        query = spf.query(i=ip, s=sender, h=helo or domain, timeout=lookup.config.timeout,
                          querytime=0)
        code, _, explanation = query.check()
    details = {"ip": ip, "domain": domain, "mail_from": sender, "record": query.get_header(
        code, receiver="pat") if code else ""}
    verdicts = {"pass": Verdict.passed, "fail": Verdict.fail, "softfail": Verdict.softfail,
                "neutral": Verdict.neutral, "none": Verdict.none}
    verdict = verdicts.get(code, Verdict.error)
    reason = f"{code}: {explanation}" if verdict is Verdict.error else explanation
    if verdict is Verdict.none:
        reason = f"{domain} publishes no SPF record"
    return result(SPF, verdict, reason, **details)


def organizational_domain(domain: str) -> str:
    """The registrable part of a domain, approximated as its last two labels (no public-suffix
    list ships with Pat; for names under e.g. co.uk this is too short, which makes relaxed
    alignment more lenient, never stricter)."""
    labels = domain.lower().rstrip(".").split(".")
    return ".".join(labels[-2:])


def _aligned(a: str, b: str, mode: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b if mode == "s" else organizational_domain(a) == organizational_domain(b)


def _dmarc_record(domain: str, lookup: Lookup) -> tuple[str, dict[str, str]] | None:
    for where in dict.fromkeys([domain, organizational_domain(domain)]):
        for txt in lookup.txt(f"_dmarc.{where}"):
            text = txt.decode("utf-8", "replace")
            if text.lower().startswith("v=dmarc1"):
                tags = {k.strip().lower(): v.strip() for k, _, v in
                        (p.partition("=") for p in text.split(";")) if k.strip()}
                return where, tags
    return None


def _unescaped(value: object) -> str:
    """compat32 keeps 8-bit header bytes as surrogates; SMTPUTF8 mail means them as UTF-8."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def from_domain(raw: bytes) -> str | None:
    # The stored values, not get_all(): compat32 wraps 8-bit values in Header objects whose
    # str() has lost the bytes.
    values = [v for k, v in _headers(raw)._headers if k.lower() == "from"]
    addresses = email.utils.getaddresses([_unescaped(v) for v in values])
    domains = {a.rpartition("@")[2].lower() for _, a in addresses if "@" in a}
    return domains.pop() if len(domains) == 1 else None


def check_dmarc(raw: bytes, dkim_result: CheckResult, spf_result: CheckResult,
                lookup: Lookup) -> CheckResult:
    header_from = from_domain(raw)
    if header_from is None:
        return result(DMARC, Verdict.error, "DMARC needs exactly one From domain; the message "
                      "has none or several")
    try:
        found = _dmarc_record(header_from, lookup)
    except DnsTimeout as exc:
        return result(DMARC, Verdict.error, f"temperror: {exc}", header_from=header_from)
    if found is None:
        return result(DMARC, Verdict.none, f"{header_from} publishes no DMARC record",
                      header_from=header_from, policy=None)
    where, tags = found
    policy = tags.get("p", "none") if where == header_from else tags.get("sp", tags.get("p",
                                                                                      "none"))
    adkim, aspf = tags.get("adkim", "r"), tags.get("aspf", "r")
    dkim_aligned = [s["domain"] for s in dkim_result.details.get("signatures", [])
                    if s["verdict"] == Verdict.passed.value
                    and _aligned(s["domain"], header_from, adkim)]
    spf_domain = str(spf_result.details.get("domain", ""))
    spf_aligned = spf_result.verdict == Verdict.passed.value and _aligned(spf_domain,
                                                                          header_from, aspf)
    details = {"header_from": header_from, "record_domain": where, "policy": policy,
               "adkim": adkim, "aspf": aspf, "dkim_aligned": bool(dkim_aligned),
               "spf_aligned": spf_aligned, "pct": tags.get("pct", "100")}
    if dkim_aligned or spf_aligned:
        how = " and ".join(x for x, ok in (("DKIM", dkim_aligned), ("SPF", spf_aligned)) if ok)
        return result(DMARC, Verdict.passed, f"{how} aligned with {header_from} "
                      f"(policy {policy})", **details)
    return result(DMARC, Verdict.fail, f"neither a passing DKIM signature nor a passing SPF "
                  f"domain aligns with {header_from}; receivers apply p={policy}", **details)


def authentication_results(authserv_id: str, results: list[CheckResult]) -> str:
    """The RFC 8601 header value Pat would add as the receiving host."""
    words = {Verdict.error.value: "temperror", Verdict.unavailable.value: "temperror"}
    parts = [authserv_id]
    for res in results:
        word = words.get(res.verdict, res.verdict)
        if res.verdict == Verdict.error.value and "temperror" not in res.reason:
            word = "permerror"
        if res.name == DKIM:
            sigs = res.details.get("signatures") or []
            if not sigs:
                parts.append("dkim=none")
            for sig in sigs:
                sig_word = words.get(sig["verdict"], sig["verdict"])
                if sig["verdict"] == Verdict.error.value and "temperror" not in sig["reason"]:
                    sig_word = "permerror"
                parts.append(f"dkim={sig_word} header.d={sig['domain'] or 'unknown'} "
                             f"header.s={sig['selector'] or 'unknown'}")
        elif res.name == SPF:
            parts.append(f"spf={word} smtp.mailfrom={res.details.get('mail_from', '')}")
        elif res.name == DMARC:
            parts.append(f"dmarc={word} header.from={res.details.get('header_from') or ''}")
        elif res.name == ARC:
            parts.append(f"arc={word}")
    return ";\n\t".join(parts)


def check_authentication(raw: bytes, *, ip: str, mail_from: str, helo: str, lookup: Lookup,
                         authserv_id: str) -> CheckResult:
    """All four verdicts in one result; its own verdict is DMARC's, the one receivers act on."""
    dkim_result = check_dkim(raw, lookup)
    arc_result = check_arc(raw, lookup)
    spf_result = check_spf(ip, mail_from, helo, lookup)
    dmarc_result = check_dmarc(raw, dkim_result, spf_result, lookup)
    parts = [dkim_result, spf_result, dmarc_result, arc_result]
    header = authentication_results(authserv_id, parts)
    return CheckResult(name="auth", verdict=dmarc_result.verdict, reason=dmarc_result.reason,
                       details={"checks": {p.name: p.to_dict() for p in parts},
                                "authentication_results": header})
