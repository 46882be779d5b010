"""DNS for the checks: one resolver, pointed where the settings say, with a short timeout.

Every lookup a check makes goes through ``Lookup`` so that tests (and users with a private
resolver) decide which server answers, and so that a timeout becomes a verdict, not a hang."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.resolver
import dns.reversename


class DnsTimeout(Exception):
    """The resolver did not answer in time: callers report ``error`` (RFC 8601 temperror)."""


@dataclass(frozen=True)
class ResolverConfig:
    address: str = ""
    port: int = 53
    timeout: float = 5.0
    # How long an answer (NXDOMAIN and "no such record" too) is kept: at most its TTL and at
    # most this; 0 asks the resolver every time.
    cache_seconds: float = 0.0


class _Cache(dns.resolver.LRUCache):
    """dnspython's cache of answers, each kept at most ``seconds``."""

    def __init__(self, seconds: float, max_size: int = 10_000) -> None:
        super().__init__(max_size)
        self._seconds = seconds

    def put(self, key: Any, value: Any) -> None:
        value.expiration = min(value.expiration, time.time() + self._seconds)
        super().put(key, value)


class Lookup:
    """One resolver for the checks. Keep one per process: with ``cache_seconds`` it remembers
    answers, so that a test suite sending hundreds of mails from one domain asks for its SPF,
    DKIM key, DMARC policy and blocklist entries once, not once per mail (a busy or distant
    resolver made each pipeline wait seconds for the same answers)."""

    def __init__(self, config: ResolverConfig) -> None:
        if config.address:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [config.address]
        else:
            self._resolver = dns.resolver.Resolver()
        self._resolver.port = config.port
        self._resolver.timeout = config.timeout
        self._resolver.lifetime = config.timeout
        if config.cache_seconds > 0:
            self._resolver.cache = _Cache(config.cache_seconds)
        self.config = config

    def records(self, name: str, qtype: str) -> list[dns.rdata.Rdata]:
        """Answers for ``name``; [] when the name or the type does not exist."""
        try:
            return list(self._resolver.resolve(name, qtype, raise_on_no_answer=False))
        except dns.resolver.NXDOMAIN:
            return []
        except (dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
            raise DnsTimeout(f"no answer for {name} {qtype} from "
                             f"{self.describe()} within {self.config.timeout:g}s") from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsTimeout(f"the resolver {self.describe()} failed for {name} {qtype}: "
                             f"{exc}") from exc
        except (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong,
                dns.name.IDNAException):
            # A name DNS cannot carry has no records.
            return []

    def txt(self, name: str) -> list[bytes]:
        return [b"".join(r.strings) for r in self.records(name, "TXT")]  # type: ignore[attr-defined]

    def describe(self) -> str:
        return (f"{self.config.address}:{self.config.port}" if self.config.address
                else "the system resolver")

    def pyspf_answers(self, name: str, qtype: str) -> list[tuple[tuple[str, str], object]]:
        """Answers in the shape pyspf's DNSLookup returns."""
        out: list[tuple[tuple[str, str], object]] = []
        for rdata in self.records(name, qtype):
            value: object
            if qtype in ("A", "AAAA"):
                value = rdata.address  # type: ignore[attr-defined]
            elif qtype == "MX":
                value = (rdata.preference, rdata.exchange)  # type: ignore[attr-defined]
            elif qtype == "PTR":
                value = rdata.target.to_text(True)  # type: ignore[attr-defined]
            elif qtype in ("TXT", "SPF"):
                value = rdata.strings  # type: ignore[attr-defined]
            else:
                continue
            out.append(((name, qtype), value))
        return out


def reverse_ip(ip: str) -> str:
    """The DNSBL query prefix of an address: 192.0.2.1 -> 1.2.0.192 (nibbles for IPv6)."""
    name = dns.reversename.from_address(ip).to_text(omit_final_dot=True)
    return name.removesuffix(".in-addr.arpa").removesuffix(".ip6.arpa")
