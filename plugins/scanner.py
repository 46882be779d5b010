"""The security scanner that runs before a plugin is installed.

It reads the source as text and reports findings; a finding of severity ``block`` refuses the
install. The isolate already denies what these patterns try, so the scanner is a second line:
it tells an author early, in words, why a plugin would misbehave, and it flags code that hides
what it does (obfuscation), which a reviewer cannot vouch for."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from plugins.manifest import Manifest

Severity = Literal["block", "warn"]


@dataclass
class Finding:
    check: str
    severity: Severity
    message: str
    line: int | None = None


@dataclass
class ScanReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(f.severity == "block" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "findings": [asdict(f) for f in self.findings]}


@dataclass(frozen=True)
class Source:
    text: str  # as written
    code: str  # comments blanked out, line breaks kept
    manifest: Manifest
    max_bytes: int


def _strip_comments(text: str) -> str:
    """Blank out comments, keeping strings, regex-free approximations and line numbers."""
    out: list[str] = []
    i, n = 0, len(text)
    quote: str | None = None
    while i < n:
        c = text[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == quote:
                quote = None
            i += 1
        elif c in "\"'`":
            quote = c
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:end]))
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _pattern_check(check: str, pattern: str, message: str, *, severity: Severity = "block",
                   raw: bool = False, flags: int = 0) -> Callable[[Source], Iterator[Finding]]:
    compiled = re.compile(pattern, flags)

    def run(source: Source) -> Iterator[Finding]:
        text = source.text if raw else source.code
        for match in compiled.finditer(text):
            yield Finding(check, severity, message, _line(text, match.start()))

    run.__name__ = check
    return run


def _named(check: str) -> Callable[[Callable[[Source], Iterator[Finding]]],
                                   Callable[[Source], Iterator[Finding]]]:
    def name(run: Callable[[Source], Iterator[Finding]]) -> Callable[[Source], Iterator[Finding]]:
        run.__name__ = check
        return run

    return name


_PERMISSION_USES = {"storage": r"\bpat\s*\.\s*storage\b", "http": r"\bpat\s*\.\s*http\b",
                    "smtp": r"\bpat\s*\.\s*email\s*\.\s*send\b",
                    "export": r"\bpat\s*\.\s*export\b"}


@_named("undeclared-permission")
def _undeclared_permissions(source: Source) -> Iterator[Finding]:
    for permission, pattern in _PERMISSION_USES.items():
        match = re.search(pattern, source.code)
        if match and permission not in source.manifest.permissions:
            yield Finding("undeclared-permission", "block",
                          f"uses the {permission!r} permission, which the manifest does not "
                          "declare: add it to permissions", _line(source.code, match.start()))


@_named("unused-permission")
def _unused_permissions(source: Source) -> Iterator[Finding]:
    for permission in source.manifest.permissions:
        if not re.search(_PERMISSION_USES[permission], source.code):
            yield Finding("unused-permission", "warn",
                          f"declares the {permission!r} permission but never uses it: "
                          "remove it")


@_named("undeclared-host")
def _undeclared_hosts(source: Source) -> Iterator[Finding]:
    for match in re.finditer(r"https?://([A-Za-z0-9.-]+)(:\d+)?", source.code):
        host = match.group(1).lower()
        port = (match.group(2) or "")[1:]
        declared = host in source.manifest.hosts or f"{host}:{port}" in source.manifest.hosts
        if not declared and re.search(r"pat\s*\.\s*http", source.code):
            yield Finding("undeclared-host", "warn",
                          f"mentions {host}, which the manifest's hosts do not declare; "
                          "pat.http will refuse it", _line(source.code, match.start()))


@_named("huge-file")
def _huge_file(source: Source) -> Iterator[Finding]:
    size = len(source.text.encode())
    if size > source.max_bytes:
        yield Finding("huge-file", "block", f"the source is {size} bytes, more than the "
                      f"{source.max_bytes} allowed (PAT_PLUGIN_MAX_SOURCE_BYTES)")


@_named("minified-code")
def _long_lines(source: Source) -> Iterator[Finding]:
    for number, line in enumerate(source.text.splitlines(), 1):
        if len(line) > 1000:
            yield Finding("minified-code", "warn", f"a line of {len(line)} characters: "
                          "minified code cannot be reviewed; install the readable source",
                          number)


def _closing_brace(code: str, start: int) -> int:
    depth = 0
    for index in range(start, len(code)):
        if code[index] == "{":
            depth += 1
        elif code[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return len(code)


@_named("busy-loop")
def _busy_loops(source: Source) -> Iterator[Finding]:
    loop = re.compile(r"\b(?:while\s*\(\s*(?:true|1|!0|!false)\s*\)|for\s*\(\s*;\s*;\s*\))\s*")
    for match in loop.finditer(source.code):
        after = match.end()
        if after < len(source.code) and source.code[after] == "{":
            body = source.code[after:_closing_brace(source.code, after) + 1]
        else:
            end = source.code.find(";", after)
            body = source.code[after:end if end >= 0 else len(source.code)]
        if not re.search(r"\b(break|return|throw)\b", body):
            yield Finding("busy-loop", "block", "an endless loop with no break, return or "
                          "throw: the hook would always hit its time limit",
                          _line(source.code, match.start()))


@_named("async-hook")
def _async_hooks(source: Source) -> Iterator[Finding]:
    pattern = r"\basync\s+function\s+(on[A-Z]\w*)|\b(on[A-Z]\w*)\s*[:=]\s*async\b"
    for match in re.finditer(pattern, source.code):
        yield Finding("async-hook", "block", "hooks must be synchronous: an async hook "
                      "returns a Promise, which Pat refuses", _line(source.code, match.start()))


CHECKS: list[Callable[[Source], Iterator[Finding]]] = [
    _pattern_check("eval", r"\beval\s*\(", "calls eval(): code built at run time cannot be "
                   "reviewed"),
    _pattern_check("function-constructor", r"\bnew\s+Function\b|\bFunction\s*\(|"
                   r"\bconstructor\s*\.\s*constructor\b|\[\s*['\"]constructor['\"]\s*\]",
                   "builds a function from a string (Function constructor)"),
    _pattern_check("proto-access", r"__proto__|__defineGetter__|__defineSetter__|"
                   r"__lookupGetter__", "touches __proto__ or legacy accessors: prototype "
                   "pollution"),
    _pattern_check("prototype-pollution",
                   r"\b(?:Object|Array|String|Number|Boolean|Function|JSON|Math|Promise)"
                   r"\s*\.\s*prototype\b|\bObject\s*\.\s*(?:setPrototypeOf|defineProperty)\s*"
                   r"\(\s*(?:Object|Array|String|Function)\b",
                   "modifies a built-in prototype: prototype pollution"),
    _pattern_check("dynamic-import", r"\bimport\s*\(", "dynamic import(): plugins cannot "
                   "load code"),
    _pattern_check("module-syntax", r"^\s*(?:import\s+[\w{*]|export\s+(?:default|const|"
                   r"function|\{))", "ES module syntax: a plugin is a script; use "
                   "module.exports", flags=re.MULTILINE),
    _pattern_check("require", r"\brequire\s*\(", "calls require(): there are no modules in "
                   "the sandbox"),
    _pattern_check("process", r"\bprocess\s*\.\s*(?:env|exit|binding|mainModule|argv)\b|"
                   r"\bchild_process\b", "reaches for the Node.js process object, which does "
                   "not exist here"),
    _pattern_check("network-api", r"\b(?:fetch|XMLHttpRequest|WebSocket|EventSource|"
                   r"navigator\s*\.\s*sendBeacon)\b\s*\(?", "uses a browser network API: use "
                   "pat.http with a declared host"),
    _pattern_check("filesystem", r"\b(?:fs\s*\.\s*(?:readFile|writeFile|open)|Deno\s*\.|"
                   r"Bun\s*\.|__dirname|__filename)", "tries to reach the file system"),
    _pattern_check("timers", r"\b(?:setTimeout|setInterval|setImmediate|queueMicrotask)\s*\(",
                   "uses timers: hooks run once and must finish synchronously"),
    _pattern_check("webassembly", r"\bWebAssembly\b", "loads WebAssembly, which cannot be "
                   "reviewed"),
    _pattern_check("shared-memory", r"\bSharedArrayBuffer\b|\bAtomics\s*\.\s*wait",
                   "uses shared memory or Atomics.wait, which can block the isolate"),
    _pattern_check("global-tampering", r"\bglobalThis\s*\[|\bwith\s*\(",
                   "indexes globalThis dynamically or uses with(): hides which names are used",
                   severity="warn"),
    _pattern_check("hex-blob", r"(?:\\x[0-9a-fA-F]{2}){20,}|[0-9a-fA-F]{200,}",
                   "a long hex blob or run of \\x escapes: obfuscated payload", raw=True),
    _pattern_check("base64-blob", r"[A-Za-z0-9+/]{200,}={0,2}", "a long base64 blob: "
                   "obfuscated payload", raw=True),
    _pattern_check("unicode-escapes", r"(?:\\u[0-9a-fA-F]{4}|\\u\{[0-9a-fA-F]+\}){10,}",
                   "a run of \\u escapes: obfuscated names or strings", raw=True),
    _pattern_check("char-code-building", r"String\s*\.\s*fromCharCode\s*\((?:[^)]*,){8,}",
                   "builds strings from character codes: obfuscation"),
    _pattern_check("debugger", r"\bdebugger\b", "a debugger statement", severity="warn"),
    _huge_file,
    _long_lines,
    _undeclared_permissions,
    _unused_permissions,
    _undeclared_hosts,
    _busy_loops,
    _async_hooks,
]


def scan(text: str, manifest: Manifest, *, max_bytes: int) -> ScanReport:
    source = Source(text=text, code=_strip_comments(text), manifest=manifest,
                    max_bytes=max_bytes)
    report = ScanReport()
    for check in CHECKS:
        report.findings.extend(check(source))
    report.findings.sort(key=lambda f: (f.severity != "block", f.line or 0, f.check))
    return report
