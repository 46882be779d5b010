"""Real services for the deliverability checks: an authoritative DNS server on loopback with
SPF, DKIM, DMARC and DNSBL records for keys generated here, and the spam engines: rspamd,
configured as ``pat up`` configures it and asking that DNS server, and SpamAssassin's spamd."""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import CanonicalizationPolicy  # type: ignore[import-untyped]
from dkim.crypto import parse_pem_private_key  # type: ignore[import-untyped]

from pat.rspamd_embedded import (
    RspamdFiles,
    RspamdListen,
    RspamdSetupError,
    prepare,
    remove,
    rspamd_answers,
    service_account,
)
from tests.support.dns_server import DnsServer
from tests.support.postgres import free_port

SENDING_IP = "1.2.3.4"          # authorised by example.test's SPF record
SENDING_HOST = "mta.example.test"  # SENDING_IP's name, forward-confirmed
LISTED_IP = "1.2.3.5"           # on the test blocklist bl.test
DOMAIN = "example.test"
SELECTOR = "sel"
FORWARDER = "forwarder.test"


@dataclass
class Keys:
    pem: bytes
    public_b64: str


def _key() -> Keys:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return Keys(pem, base64.b64encode(der).decode())


@dataclass
class SigningDns:
    server: DnsServer
    sender: Keys
    forwarder: Keys

    @property
    def port(self) -> int:
        return self.server.port

    def sign(self, message: bytes, headers: tuple[str, ...] = ("from", "to", "subject",
                                                               "date")) -> bytes:
        signature = dkim.sign(message, SELECTOR.encode(), DOMAIN.encode(), self.sender.pem,
                              include_headers=[h.encode() for h in headers])
        return bytes(signature) + message

    def sign_expired(self, message: bytes) -> bytes:
        """A valid signature whose x= lies 29 days in the past (dkimpy's sign() sets no x=)."""
        signer = dkim.DKIM(message)
        signer.hasher = hashlib.sha256  # what sign() sets before gen_header()
        canon = CanonicalizationPolicy.from_c_value(b"relaxed/simple")
        include = (b"from", b"to", b"subject")
        body_hash = base64.b64encode(hashlib.sha256(canon.canonicalize_body(signer.body))
                                     .digest())
        signed_at = int(time.time()) - 30 * 86400
        fields = [(b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/simple"),
                  (b"d", DOMAIN.encode()), (b"i", b"@" + DOMAIN.encode()),
                  (b"q", b"dns/txt"), (b"s", SELECTOR.encode()),
                  (b"t", str(signed_at).encode()), (b"x", str(signed_at + 86400).encode()),
                  (b"h", b" : ".join(include)), (b"bh", body_hash), (b"b", b"0" * 60)]
        header = signer.gen_header(fields, include, canon, b"DKIM-Signature",
                                   parse_pem_private_key(self.sender.pem))
        return b"DKIM-Signature: " + bytes(header) + message

    def arc_seal(self, message: bytes) -> bytes:
        """What a forwarder does: record its verdicts and seal them with ARC."""
        results = (f"Authentication-Results: {FORWARDER}; dkim=pass header.d={DOMAIN}; "
                   f"spf=pass smtp.mailfrom=bounce@{DOMAIN}\r\n").encode()
        with_results = results + message
        seal = dkim.arc_sign(with_results, b"arc", FORWARDER.encode(), self.forwarder.pem,
                             FORWARDER.encode(), include_headers=[b"from", b"to", b"subject"])
        return b"".join(seal) + with_results


@pytest.fixture(scope="session")
def test_dns() -> Iterator[SigningDns]:
    server = DnsServer()
    sender, forwarder = _key(), _key()
    server.txt(f"{SELECTOR}._domainkey.{DOMAIN}", f"v=DKIM1; k=rsa; p={sender.public_b64}")
    server.txt(f"arc._domainkey.{FORWARDER}", f"v=DKIM1; k=rsa; p={forwarder.public_b64}")
    server.txt(DOMAIN, f"v=spf1 ip4:{SENDING_IP} ip4:{LISTED_IP} -all")
    # The sending host as a receiving MTA expects it: a PTR name that resolves back, and a
    # sender domain that has an address and an MX (rspamd's host name rules look).
    server.ptr(SENDING_IP, SENDING_HOST)
    server.a(SENDING_HOST, SENDING_IP)
    server.a(DOMAIN, SENDING_IP)
    server.mx(DOMAIN, SENDING_HOST)
    server.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; adkim=r; aspf=r")
    server.txt("soft.test", "v=spf1 ~all")
    server.txt("_dmarc.soft.test", "v=DMARC1; p=none")
    server.txt("neutral.test", "v=spf1 ?all")
    server.txt(FORWARDER, f"v=spf1 ip4:{SENDING_IP} -all")
    server.txt("broken-spf.test", "v=spf1 ip4:not-an-ip -all")
    reversed_ip = ".".join(reversed(LISTED_IP.split(".")))
    server.a(f"{reversed_ip}.bl.test", "127.0.0.2")
    server.txt(f"{reversed_ip}.bl.test", "listed for testing")
    server.a("spammy.test.dbl.test", "127.0.1.2")
    server.txt("spammy.test", "v=spf1 -all")
    server.start()
    yield SigningDns(server, sender, forwarder)
    server.stop()


@dataclass
class Spamd:
    host: str
    port: int


def _spamd_answers(port: int) -> bool:
    """spamd's PING (the spamc protocol, plain text)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
            return b"PONG" in sock.recv(256)
    except OSError:
        return False


def _spamd_user() -> str:
    try:
        pwd.getpwnam("debian-spamd")  # created by Debian's spamd package
    except KeyError:
        return "nobody"
    return "debian-spamd"


def start_spamd(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("spamd") or "/usr/sbin/spamd"
    if not os.path.exists(binary):
        pytest.fail("spamd is not installed: run scripts/system-deps.sh (Debian packages "
                    "spamassassin and spamd)")
    port = free_port()
    command = [binary, "--listen", f"127.0.0.1:{port}", "--pidfile", str(tmp / "spamd.pid"),
               "--max-children", "2", "--min-children", "1", "-x", "-L",
               "--syslog", str(tmp / "spamd.log")]
    if os.geteuid() == 0:
        # spamd refuses to run its children as root.
        command += ["-u", _spamd_user()]
    # stderr goes to a file, not a pipe: nobody reads a pipe while spamd runs, and once it is
    # full spamd's parent blocks writing to it and stops serving.
    errors = tmp / "spamd.stderr"
    with errors.open("wb") as sink:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"spamd exited: {errors.read_text(errors='replace')}")
        if _spamd_answers(port):
            return process, port
        time.sleep(0.3)
    process.terminate()
    pytest.fail("spamd did not answer PING within 60 seconds")


def stop_spamd(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def spamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spamd]:
    process, port = start_spamd(tmp_path_factory.mktemp("spamd"))
    yield Spamd("127.0.0.1", port)
    stop_spamd(process)


@dataclass
class Rspamd:
    host: str
    port: int


def start_rspamd(tmp: Path, dns_port: int) -> tuple[subprocess.Popen[bytes], RspamdFiles, int]:
    """rspamd as ``pat up`` starts it (pat.rspamd_embedded), resolving through ``dns_port``."""
    account = service_account() if os.geteuid() == 0 else None
    port = free_port()
    try:
        binary, files = prepare(tmp, RspamdListen(host="127.0.0.1", port=port,
                                                  dns_resolver="127.0.0.1", dns_port=dns_port,
                                                  dns_timeout=1.0), account)
    except RspamdSetupError as exc:
        pytest.fail(f"{exc}: run scripts/system-deps.sh")
    as_account: dict[str, Any] = {}
    if account is not None:  # switched before exec, as pat up does
        as_account = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    log = tmp / "rspamd.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(files.command(binary), stdin=subprocess.DEVNULL,
                                   stdout=sink, stderr=subprocess.STDOUT, **as_account)
    # The first start on a machine compiles rspamd's rules into its hyperscan cache.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            remove(files)
            pytest.fail(f"rspamd exited: {log.read_text(errors='replace')[-3000:]}")
        if rspamd_answers("127.0.0.1", port):
            return process, files, port
        time.sleep(0.3)
    stop_rspamd(process, files)
    pytest.fail("rspamd did not answer /ping within 120 seconds")


def stop_rspamd(process: subprocess.Popen[bytes], files: RspamdFiles) -> None:
    stop_spamd(process)
    remove(files)


@pytest.fixture(scope="session")
def rspamd(tmp_path_factory: pytest.TempPathFactory, test_dns: SigningDns) -> Iterator[Rspamd]:
    """One rspamd for the session, resolving through ``test_dns``: its SPF, DKIM and DMARC
    rules see the records the check tests publish."""
    process, files, port = start_rspamd(tmp_path_factory.mktemp("rspamd"), test_dns.port)
    yield Rspamd("127.0.0.1", port)
    stop_rspamd(process, files)
