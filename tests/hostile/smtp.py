"""Sends a message's bytes over SMTP exactly as they are.

``smtplib`` changes what it sends: it dot-stuffs after bare LF too (so a bare-LF message whose
line starts with a dot arrives with two) and refuses nothing, but also offers no way to send
bytes it would rewrite. This client speaks the few commands it needs on a plain socket and
dot-stuffs only what SMTP defines as a line (after CRLF), so the server receives the file."""

from __future__ import annotations

import re
import socket
from typing import BinaryIO

SENDER = "hostile@example.test"
RECIPIENT = "dev@example.test"
_QUEUED = re.compile(rb"queued as (\S+)")


class SmtpRefused(RuntimeError):
    """The server answered a command with something other than the expected code."""


def _reply(stream: BinaryIO, expect: bytes) -> bytes:
    lines: list[bytes] = []
    while True:
        line = stream.readline()
        if not line:
            raise SmtpRefused("the server closed the connection")
        lines.append(line)
        if line[3:4] != b"-":
            break
    answer = b"".join(lines)
    if not answer.startswith(expect):
        raise SmtpRefused(answer.decode("utf-8", "replace").strip())
    return answer


def dot_stuffed(data: bytes) -> bytes:
    """``data`` as the DATA section carries it: a dot doubled at the start of each line, a
    CRLF at the end so that the terminating dot stands on a line of its own."""
    stuffed = (b"." + data if data.startswith(b".") else data).replace(b"\r\n.", b"\r\n..")
    return stuffed if stuffed.endswith(b"\r\n") else stuffed + b"\r\n"


def send_raw(port: int, data: bytes, *, host: str = "127.0.0.1", timeout: float = 120,
             sender: str = SENDER, recipient: str = RECIPIENT) -> str:
    """Send ``data`` in one SMTP transaction; the id the server queued it as."""
    with socket.create_connection((host, port), timeout=timeout) as sock, \
            sock.makefile("rb") as stream:
        _reply(stream, b"220")
        for command, expect in ((b"EHLO hostile.example.test", b"250"),
                                (f"MAIL FROM:<{sender}>".encode(), b"250"),
                                (f"RCPT TO:<{recipient}>".encode(), b"250"),
                                (b"DATA", b"354")):
            sock.sendall(command + b"\r\n")
            _reply(stream, expect)
        sock.sendall(dot_stuffed(data) + b".\r\n")
        answer = _reply(stream, b"250")
        sock.sendall(b"QUIT\r\n")
    found = _QUEUED.search(answer)
    if found is None:
        raise SmtpRefused(f"no queue id in {answer!r}")
    return found.group(1).decode()
