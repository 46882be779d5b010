"""rspamd's verdict through its HTTP API (``POST /checkv2`` on the normal worker): the score,
the action, and every symbol with its score and description, in the details SpamAssassin's
verdict has (``score``, ``threshold``, ``rules``), so the report and the UI read either.

Pat is the receiving MTA here: it passes the envelope as an MTA does (client IP, HELO, the
client's forward-confirmed host name, MAIL FROM, RCPT TO), so that rspamd's SPF and host name
rules judge the message as a production receiver would."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from compliance.dns import DnsTimeout, Lookup, ResolverConfig
from compliance.result import CheckResult, Verdict, result
from compliance.spam import SPAM, Envelope

# rspamd's actions that mark a message as spam; the others (no action, greylist, soft reject)
# let it through, greylisting and soft rejects only delaying it.
SPAM_ACTIONS = ("reject", "rewrite subject", "add header")


class Symbol(BaseModel):
    name: str
    score: float = 0.0
    description: str = ""
    options: list[str] = []


class CheckReply(BaseModel):
    """The part of ``/checkv2``'s answer the check uses; ``required_score`` is the score of
    the reject action."""

    score: float
    required_score: float
    action: str
    symbols: dict[str, Symbol] = {}


def _rules(symbols: dict[str, Symbol]) -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []
    for symbol in symbols.values():
        options = ", ".join(symbol.options)
        description = " ".join(part for part in (
            symbol.description, f"[{options}]" if options else "") if part)
        rules.append({"rule": symbol.name, "points": round(symbol.score, 3),
                      "description": description})
    rules.sort(key=lambda r: (-float(r["points"]), str(r["rule"])))  # type: ignore[arg-type]
    return rules


def verdict(reply: CheckReply, where: str) -> CheckResult:
    score, required, action = reply.score, reply.required_score, reply.action
    rules = _rules(reply.symbols)
    spam = action in SPAM_ACTIONS or score >= required
    details = {"engine": "rspamd", "score": round(score, 3), "threshold": required,
               "action": action, "is_spam": spam, "rules": rules, "rspamd": where}
    scored = f"rspamd scores {score:g} (reject at {required:g})"
    if not spam:
        return result(SPAM, Verdict.passed, f"{scored}, action {action}: not spam", **details)
    top = ", ".join(str(r["rule"]) for r in rules[:3]) or "none"
    why = (f"action {action}" if action in SPAM_ACTIONS
           else f"the score reaches {required:g} (action {action})")
    return result(SPAM, Verdict.fail, f"{scored}, {why}: spam; top symbols {top}", **details)


def confirmed_hostname(ip: str, lookup: Lookup) -> str | None:
    """The client's name as an MTA tells rspamd: the PTR name of ``ip`` whose own A/AAAA
    records include ``ip`` (forward-confirmed), or None. Without it rspamd scores every
    message as coming from a host without a name (HFILTER_HOSTNAME_UNKNOWN)."""
    address = ipaddress.ip_address(ip)
    try:
        names = [r.target.to_text(True) for r in  # type: ignore[attr-defined]
                 lookup.records(address.reverse_pointer, "PTR")]
        for name in names:
            qtype = "A" if address.version == 4 else "AAAA"
            if any(ipaddress.ip_address(r.address) == address  # type: ignore[attr-defined]
                   for r in lookup.records(name, qtype)):
                return str(name)
    except DnsTimeout:
        pass  # no name, as an MTA whose lookup timed out says "unknown"
    return None


def _header_value(text: str) -> bytes:
    """SMTP gave these; a control character would make an invalid HTTP header."""
    return "".join(c for c in text if c >= " " and c != "\x7f").encode()


class RspamdEngine:
    """One HTTP client for the worker's life: building one loads the CA bundle, the cost the
    spamd client had per call before it was kept. rspamd closes each connection after its
    answer, so no idle connection can go stale in the pool."""

    def __init__(self, host: str, port: int, timeout: float, resolver: ResolverConfig) -> None:
        self.where = f"rspamd at {host}:{port}"
        self.timeout = timeout
        self._base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._lookup = Lookup(resolver)
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        """The client of the running event loop: a client's connections belong to the loop
        that made them (a worker has one loop; tests may have several)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            # trust_env off: an HTTP proxy from the environment must not carry the mail.
            self._client = httpx.AsyncClient(
                base_url=self._base_url, trust_env=False,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)))
            self._client_loop = loop
        return self._client

    async def _headers(self, envelope: Envelope) -> list[tuple[bytes, bytes]]:
        headers = [(b"Queue-Id", _header_value(envelope.message_id))]
        try:
            address = ipaddress.ip_address(envelope.ip)
        except ValueError:
            address = None
        if address is not None:
            headers.append((b"IP", str(address).encode()))
            if address.is_global:
                hostname = await asyncio.to_thread(confirmed_hostname, str(address),
                                                   self._lookup)
                if hostname:
                    headers.append((b"Hostname", _header_value(hostname)))
        if envelope.helo:
            headers.append((b"Helo", _header_value(envelope.helo)))
        if envelope.mail_from:
            headers.append((b"From", _header_value(envelope.mail_from)))
        headers += [(b"Rcpt", _header_value(rcpt)) for rcpt in envelope.recipients]
        return headers

    async def check(self, raw: bytes, envelope: Envelope) -> CheckResult:
        where = self.where
        try:
            answer = await self._http().post("/checkv2", content=raw,
                                             headers=await self._headers(envelope))
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return result(SPAM, Verdict.unavailable, f"{where} is not reachable ({exc}); "
                          "install rspamd (Debian package rspamd) or set "
                          "PAT_RSPAMD_HOST/PAT_RSPAMD_PORT", rspamd=where)
        except httpx.TimeoutException:
            return result(SPAM, Verdict.error, f"{where} did not answer within "
                          f"{self.timeout:g}s", rspamd=where)
        except httpx.HTTPError as exc:
            return result(SPAM, Verdict.error, f"{where} failed: {type(exc).__name__}: {exc}",
                          rspamd=where)
        if answer.status_code != 200:
            return result(SPAM, Verdict.error, f"{where} answered HTTP {answer.status_code}: "
                          f"{_error_text(answer)}", rspamd=where)
        try:
            reply = CheckReply.model_validate_json(answer.content)
        except ValidationError as exc:
            first: Any = exc.errors()[0]
            place = ".".join(str(part) for part in first["loc"]) or "the body"
            return result(SPAM, Verdict.error, f"{where} answered something that is not a "
                          f"checkv2 reply ({place}: {first['msg']})", rspamd=where)
        return verdict(reply, where)


def _error_text(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])[:300]
    return answer.text[:300] or answer.reason_phrase
