"""The deliverability report: one score out of 100, each point lost with its reason, and
recommendations a developer can act on. Pure: it reads the checks' results and nothing else."""

from __future__ import annotations

from typing import Any

from compliance.auth import ARC, DKIM, DMARC, SPF
from compliance.blocklist import BLOCKLISTS
from compliance.html import COMPATIBILITY, CONTENT
from compliance.links import LINKS
from compliance.result import CheckResult, Verdict
from compliance.spam import SPAM

# Points lost per verdict; verdicts not listed cost nothing. ``error`` and ``unavailable`` cost
# nothing either: a check that could not run says nothing about the message, and the report
# says which checks were not scored.
_AUTH_COST = {
    DKIM: {"fail": 20, "none": 15, "error": 10},
    SPF: {"fail": 15, "softfail": 8, "none": 8, "neutral": 4},
    DMARC: {"fail": 15, "none": 8},
    ARC: {"fail": 5},
}
SPAM_MAX = 30
CONTENT_MAX = 20
COMPATIBILITY_MAX = 10


def _sub(results: dict[str, CheckResult]) -> dict[str, CheckResult]:
    """Auth's four verdicts as results of their own, next to the other checks."""
    flat = dict(results)
    auth = results.get("auth")
    if auth:
        for name, data in (auth.details.get("checks") or {}).items():
            flat[name] = CheckResult.from_dict(data)
    return flat


def _auth_recommendations(checks: dict[str, CheckResult]) -> list[str]:
    out: list[str] = []
    dkim = checks.get(DKIM)
    if dkim and dkim.verdict == Verdict.none.value:
        out.append("sign the message with DKIM (a DKIM-Signature for the From domain)")
    if dkim and dkim.verdict == Verdict.fail.value:
        out.append(f"fix the DKIM signature: {dkim.reason}")
    for sig in (dkim.details.get("signatures") or []) if dkim else []:
        signed = {h.lower() for h in sig.get("signed_headers") or []}
        if sig["verdict"] == Verdict.passed.value:
            for header in ("subject", "to", "date"):
                if signed and header not in signed:
                    out.append(f"DKIM signature of {sig['domain']} does not cover "
                               f"{header.capitalize()}; add it to the signed headers (h=)")
    spf = checks.get(SPF)
    if spf and spf.verdict in (Verdict.none.value, Verdict.neutral.value):
        out.append(f"publish an SPF record for {spf.details.get('domain')} that lists the "
                   "sending IP and ends in -all or ~all")
    if spf and spf.verdict in (Verdict.fail.value, Verdict.softfail.value):
        out.append(f"SPF of {spf.details.get('domain')} does not authorise "
                   f"{spf.details.get('ip')}: add it to the record (or set "
                   "PAT_SPF_EVALUATE_IP to the real sending IP)")
    dmarc = checks.get(DMARC)
    if dmarc and dmarc.verdict == Verdict.none.value:
        out.append(f"publish a DMARC record at _dmarc.{dmarc.details.get('header_from')}")
    if dmarc and dmarc.details.get("policy") == "none":
        out.append("DMARC policy is none: once reports look clean, move to p=quarantine "
                   "or p=reject")
    if dmarc and dmarc.verdict == Verdict.fail.value:
        out.append("align DKIM (d=) or SPF (MAIL FROM domain) with the From domain")
    return out


def build_report(results: list[CheckResult]) -> dict[str, Any]:
    checks = _sub({r.name: r for r in results})
    deductions: list[dict[str, Any]] = []
    recommendations: list[str] = []
    not_scored: list[str] = []

    def lose(check: str, points: float, reason: str) -> None:
        if points > 0:
            deductions.append({"check": check, "points": round(points, 1), "reason": reason})

    for name, costs in _AUTH_COST.items():
        found = checks.get(name)
        if found is None:
            continue
        if found.verdict in (Verdict.error.value, Verdict.unavailable.value) and name != DKIM:
            not_scored.append(f"{name}: {found.reason}")
        lose(name, costs.get(found.verdict, 0), f"{name}={found.verdict}: {found.reason}")
    dmarc = checks.get(DMARC)
    if dmarc and dmarc.verdict == Verdict.passed.value and dmarc.details.get("policy") == "none":
        lose(DMARC, 3, "DMARC passes but its policy is none")
    recommendations += _auth_recommendations(checks)

    spam = checks.get(SPAM)
    if spam and spam.verdict in (Verdict.passed.value, Verdict.fail.value):
        score = float(spam.details["score"])
        threshold = float(spam.details["threshold"]) or 5.0
        # Spam loses everything; below the threshold, points in proportion to the way there.
        points = SPAM_MAX if spam.verdict == Verdict.fail.value else min(
            SPAM_MAX / 2, max(0.0, score) / threshold * SPAM_MAX / 2)
        # Results stored before rspamd was an engine name none: they are SpamAssassin's.
        engine = str(spam.details.get("engine", "SpamAssassin"))
        rule_word = "symbol" if engine == "rspamd" else "rule"
        lose(SPAM, points, f"{engine} score {score:g} of threshold {threshold:g}")
        for rule in [r for r in spam.details.get("rules", []) if float(r["points"]) >= 1][:5]:
            described = f": {rule['description']}" if rule["description"] else ""
            recommendations.append(f"{engine} {rule_word} {rule['rule']} "
                                   f"({rule['points']:+g}){described}")
    elif spam:
        not_scored.append(f"spam: {spam.reason}")

    blocklists = checks.get(BLOCKLISTS)
    if blocklists and blocklists.verdict == Verdict.fail.value:
        lose(BLOCKLISTS, 25, blocklists.reason)
        recommendations.append(f"get delisted: {blocklists.reason}")
    elif blocklists and blocklists.verdict == Verdict.error.value:
        not_scored.append(f"blocklists: {blocklists.reason}")

    content = checks.get(CONTENT)
    if content:
        issues = content.details.get("issues") or []
        cost = sum(10 if i["severity"] == "error" else 4 for i in issues)
        lose(CONTENT, min(CONTENT_MAX, cost), content.reason)
        recommendations += [i["message"] for i in issues]

    compat = checks.get(COMPATIBILITY)
    if compat and "support_percent" in compat.details:
        percent = float(compat.details["support_percent"])
        lose(COMPATIBILITY, min(COMPATIBILITY_MAX, max(0.0, 90 - percent) / 4),
             f"HTML/CSS features supported in {percent}% of client tests (full marks from 90%)")
        for feature in sorted(compat.details.get("features", []),
                              key=lambda f: -len(f["unsupported_by"]))[:3]:
            if feature["unsupported_by"]:
                recommendations.append(f"{feature['title']} is not supported by "
                                       f"{len(feature['unsupported_by'])} client(s), e.g. "
                                       f"{', '.join(feature['unsupported_by'][:3])}")
    elif compat and compat.verdict == Verdict.unavailable.value:
        not_scored.append(f"html_compatibility: {compat.reason}")

    links = checks.get(LINKS)
    if links and links.verdict == Verdict.fail.value:
        lose(LINKS, 10, links.reason)
        recommendations.append(f"fix broken links: {links.reason}")

    score = max(0, round(100 - sum(d["points"] for d in deductions)))
    return {"score": score, "out_of": 100,
            "method": "100 minus the points each check lost (listed in deductions); checks "
                      "that could not run are listed in not_scored and cost nothing",
            "deductions": deductions, "not_scored": not_scored,
            "recommendations": list(dict.fromkeys(recommendations))}
