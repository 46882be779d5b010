"""DNSBL lookups of the sending IP and the sender's domains through the configured resolver."""

from __future__ import annotations

import ipaddress

from compliance.dns import DnsTimeout, Lookup, reverse_ip
from compliance.result import CheckResult, Verdict, result

BLOCKLISTS = "blocklists"


def _listing(lookup: Lookup, name: str) -> tuple[list[str], str | None]:
    """A-record answers of a DNSBL query, and the TXT reason when there is one."""
    addresses = [r.address for r in lookup.records(name, "A")]  # type: ignore[attr-defined]
    if not addresses:
        return [], None
    reasons = lookup.txt(name)
    return addresses, reasons[0].decode("utf-8", "replace") if reasons else None


def check_blocklists(ip: str, domains: list[str], lookup: Lookup, ip_zones: list[str],
                     domain_zones: list[str]) -> CheckResult:
    queries: list[tuple[str, str, str]] = []  # (what, zone, query name)
    skipped: list[str] = []
    try:
        if ipaddress.ip_address(ip).is_global:
            queries += [(ip, zone, f"{reverse_ip(ip)}.{zone}") for zone in ip_zones]
        else:
            skipped.append(f"{ip} is not a public address (set PAT_SPF_EVALUATE_IP to the "
                           "production sending IP)")
    except ValueError:
        skipped.append(f"no IP address to look up ({ip!r})")
    for domain in dict.fromkeys(d.lower() for d in domains if d):
        queries += [(domain, zone, f"{domain}.{zone}") for zone in domain_zones]
    rows: list[dict[str, object]] = []
    listed: list[dict[str, object]] = []
    errors: list[str] = []
    for what, zone, name in queries:
        try:
            answers, why = _listing(lookup, name)
        except DnsTimeout as exc:
            errors.append(str(exc))
            rows.append({"target": what, "zone": zone, "listed": None, "error": str(exc)})
            continue
        # 127.255.255.x answers are the list refusing the query (e.g. through a public
        # resolver), not a listing.
        real = [a for a in answers if not a.startswith("127.255.255.")]
        row: dict[str, object] = {"target": what, "zone": zone, "listed": bool(real),
                                  "answers": answers, "reason": why}
        rows.append(row)
        if real:
            listed.append(row)
    details = {"lookups": rows, "skipped": skipped}
    if listed:
        first = listed[0]
        return result(BLOCKLISTS, Verdict.fail, f"{first['target']} is listed on "
                      f"{first['zone']}" + (f": {first['reason']}" if first["reason"] else "")
                      + (f" (and {len(listed) - 1} more)" if len(listed) > 1 else ""),
                      **details)
    if errors:
        return result(BLOCKLISTS, Verdict.error, f"blocklist lookups failed: {errors[0]}",
                      **details)
    if not queries:
        return result(BLOCKLISTS, Verdict.none, "; ".join(skipped) or "no blocklists "
                      "configured", **details)
    return result(BLOCKLISTS, Verdict.passed, f"not listed on any of {len(queries)} "
                  "blocklist lookup(s)", **details)
