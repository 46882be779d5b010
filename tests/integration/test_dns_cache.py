"""The checks' resolver remembers answers for PAT_DNS_CACHE_SECONDS (at most their TTL):
mail from one domain is looked up once, not once per message; 0 asks every time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from compliance.dns import Lookup, ResolverConfig
from tests.support.dns_server import DnsServer


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer()
    server.txt("example.test", "v=spf1 -all")
    server.start()
    yield server
    server.stop()


def _asked(dns: DnsServer, name: str) -> int:
    return sum(1 for asked, _ in dns.queries if asked.rstrip(".").lower() == name)


def test_answers_and_missing_names_are_asked_once_while_cached(dns: DnsServer) -> None:
    lookup = Lookup(ResolverConfig("127.0.0.1", dns.port, 2.0, cache_seconds=60))
    for _ in range(5):
        assert lookup.txt("example.test") == [b"v=spf1 -all"]
        assert lookup.records("missing.example.test", "A") == []
    assert _asked(dns, "example.test") == 1
    assert _asked(dns, "missing.example.test") == 1


def test_an_answer_is_asked_again_once_its_time_is_up(dns: DnsServer) -> None:
    lookup = Lookup(ResolverConfig("127.0.0.1", dns.port, 2.0, cache_seconds=0.2))
    lookup.txt("example.test")
    lookup.txt("example.test")
    time.sleep(0.3)
    dns.txt("example.test", "v=spf1 ip4:192.0.2.1 -all")
    assert sorted(lookup.txt("example.test")) == [b"v=spf1 -all",
                                                  b"v=spf1 ip4:192.0.2.1 -all"]
    assert _asked(dns, "example.test") == 2


def test_without_a_cache_every_lookup_asks(dns: DnsServer) -> None:
    lookup = Lookup(ResolverConfig("127.0.0.1", dns.port, 2.0, cache_seconds=0))
    for _ in range(3):
        lookup.txt("example.test")
    assert _asked(dns, "example.test") == 3
