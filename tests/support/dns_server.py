"""A real authoritative DNS server on loopback (dnslib's), serving the records a test adds.

Names it knows but for which a type has no records answer NOERROR with no answers; unknown
names answer NXDOMAIN, as an authoritative server does."""

from __future__ import annotations

import socket
from collections import defaultdict
from typing import Any

from dnslib import MX, PTR, QTYPE, RCODE, RR, TXT, A  # type: ignore[import-untyped]
from dnslib.server import (  # type: ignore[import-untyped]
    BaseResolver,
    DNSLogger,
    DNSServer,
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[Any]] = defaultdict(list)
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        reply.header.aa = 1
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        self.queries.append((name, qtype))
        for rdata in self.records.get((name, qtype), []):
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
        if not any(known == name for known, _ in self.records):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class DnsServer:
    def __init__(self) -> None:
        self.port = free_udp_port()
        self._zone = _Zone()
        self._server = DNSServer(self._zone, address="127.0.0.1", port=self.port,
                                 logger=DNSLogger(log="-request,-reply,-truncated,-error",
                                                  prefix=False))

    def txt(self, name: str, text: str) -> None:
        data = text.encode()
        # One TXT record of several <=255-byte strings, as long DKIM keys are published.
        chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
        self._zone.records[(name.lower(), "TXT")].append(TXT(chunks))

    def a(self, name: str, address: str) -> None:
        self._zone.records[(name.lower(), "A")].append(A(address))

    def ptr(self, ip: str, name: str) -> None:
        reverse = ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
        self._zone.records[(reverse, "PTR")].append(PTR(name))

    def mx(self, name: str, exchange: str) -> None:
        self._zone.records[(name.lower(), "MX")].append(MX(exchange))

    @property
    def queries(self) -> list[tuple[str, str]]:
        return self._zone.queries

    def start(self) -> None:
        self._server.start_thread()

    def stop(self) -> None:
        self._server.stop()
