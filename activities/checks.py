"""Activities of the deliverability checks.

``run_checks`` loads the message once (its bytes and the artifact the parse step stored), runs
the six checks at once, and stores their results and report, with the message's new status
when the workflow asks, in one write. The six ``check_*`` activities and ``save_checks`` are
the steps of runs started before checks were one step; they stay registered so that those runs
can finish. Each calls one pure check in ``compliance``.

A check that cannot decide returns a result saying why (``error``, ``unavailable``); a check
that fails is an ``error`` result; only a store that does not answer raises, so that Temporal
retries it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from temporalio import activity

from compliance import auth, blocklist, html, links, rspamd, spam
from compliance.dns import Lookup, ResolverConfig
from compliance.report import build_report
from compliance.result import CheckResult, Verdict, result
from pat.parsing import MessageReading
from pat.settings import Settings
from pat.store.models import Message, MessageStatus
from pat.store.repository import MessageStore

log = logging.getLogger(__name__)

AUTH = "auth"
CHECK_NAMES = (AUTH, spam.SPAM, html.CONTENT, html.COMPATIBILITY, links.LINKS,
               blocklist.BLOCKLISTS)


@dataclass
class CheckInput:
    message_id: str


@dataclass
class SaveChecksInput:
    message_id: str
    results: list[CheckResult]
    run: int | None = None


@dataclass
class RunChecksInput:
    message_id: str
    run: int | None = None
    # Mark the message processed in the same write as its results (when no plugin's
    # onEmailValidated has to run in between).
    mark_processed: bool = False


@dataclass
class ChecksSummary:
    """What the workflow learns of the checks: a verdict per check and the score. The
    results themselves are in the store."""

    verdicts: dict[str, str] = field(default_factory=dict)
    score: int = 0
    stored: bool = True  # False: the message was gone, or a newer run has superseded this one


@dataclass
class _Loaded:
    message: Message
    raw: bytes
    reading: MessageReading | None


class CheckActivities:
    def __init__(self, settings: Settings, store: MessageStore) -> None:
        self._settings = settings
        self._store = store
        self._spam = self._spam_engine(settings)
        # One resolver, and one cache of its answers, for every check this worker runs.
        self._resolver = Lookup(self._resolver_config(settings))

    @staticmethod
    def _spam_engine(s: Settings) -> spam.SpamEngine:
        if s.spam_engine == "rspamd":
            return rspamd.RspamdEngine(s.rspamd_host, s.rspamd_port, s.rspamd_timeout,
                                       CheckActivities._resolver_config(s))
        if s.spam_engine == "spamassassin":
            return spam.SpamdConfig(host=s.spamd_host, port=s.spamd_port,
                                    timeout=s.spamd_timeout)
        return spam.SpamCheckOff("the spam check is turned off (PAT_SPAM_ENGINE=none)")

    @staticmethod
    def _resolver_config(s: Settings) -> ResolverConfig:
        return ResolverConfig(address=s.dns_resolver, port=s.dns_port, timeout=s.dns_timeout,
                              cache_seconds=s.dns_cache_seconds)

    def _lookup(self) -> Lookup:
        return self._resolver

    def _sending_ip(self, message: Message) -> str:
        return self._settings.spf_evaluate_ip or message.peer

    async def _load(self, name: str, message_id: str) -> _Loaded | CheckResult:
        """The message, its bytes and its artifact, or the result of a check that has nothing
        to do."""
        if not self._settings.checks_enabled:
            return result(name, Verdict.none, "checks are turned off (PAT_CHECKS_ENABLED)")
        message = await self._store.get(message_id)
        raw = await self._store.get_raw(message_id) if message else None
        if message is None or raw is None:
            return result(name, Verdict.error, "the message is no longer in the store")
        return _Loaded(message, raw, await self._store.get_reading(message_id))

    @staticmethod
    def _unread(name: str) -> CheckResult:
        return result(name, Verdict.error, "the message could not be read as an email")

    async def _authentication(self, loaded: _Loaded) -> CheckResult:
        message = loaded.message
        return await asyncio.to_thread(
            auth.check_authentication, loaded.raw, ip=self._sending_ip(message),
            mail_from=message.mail_from, helo=message.helo, lookup=self._lookup(),
            authserv_id=self._settings.smtp_hostname)

    async def _spam_check(self, loaded: _Loaded) -> CheckResult:
        message = loaded.message
        return await self._spam.check(loaded.raw, spam.Envelope(
            ip=self._sending_ip(message), helo=message.helo, mail_from=message.mail_from,
            recipients=list(message.recipients), message_id=message.id))

    async def _content(self, loaded: _Loaded) -> CheckResult:
        if loaded.reading is None:
            return self._unread(html.CONTENT)
        reading = loaded.reading
        return await asyncio.to_thread(html.content_issues, reading.html, reading.text,
                                       reading.view.headers)

    async def _html_compatibility(self, loaded: _Loaded) -> CheckResult:
        if loaded.reading is None:
            return self._unread(html.COMPATIBILITY)
        return await asyncio.to_thread(html.compatibility, loaded.reading.html,
                                       self._settings.caniemail_data)

    async def _links(self, loaded: _Loaded) -> CheckResult:
        if loaded.reading is None:
            return self._unread(links.LINKS)
        s = self._settings
        return await links.check_links(loaded.reading.html, loaded.reading.text,
                                       links.LinkCheckConfig(
                                           network=s.link_check_network,
                                           allow_private=s.link_check_allow_private,
                                           concurrency=s.link_check_concurrency,
                                           timeout=s.link_check_timeout,
                                           max_links=s.link_check_max_links))

    async def _blocklists(self, loaded: _Loaded) -> CheckResult:
        message = loaded.message
        senders = loaded.reading.view.addresses.get("from", []) if loaded.reading else []
        from_domain = senders[0].address.rpartition("@")[2].lower() if senders else None
        domains = [d for d in (from_domain, message.mail_from.rpartition("@")[2]) if d]
        s = self._settings
        return await asyncio.to_thread(blocklist.check_blocklists, self._sending_ip(message),
                                       domains, self._lookup(), s.dnsbl_ip_zones,
                                       s.dnsbl_domain_zones)

    def _checks(self) -> list[tuple[str, Callable[[_Loaded], Awaitable[CheckResult]]]]:
        return [(AUTH, self._authentication), (spam.SPAM, self._spam_check),
                (html.CONTENT, self._content), (html.COMPATIBILITY, self._html_compatibility),
                (links.LINKS, self._links), (blocklist.BLOCKLISTS, self._blocklists)]

    async def _one(self, name: str, check: Callable[[_Loaded], Awaitable[CheckResult]],
                   loaded: _Loaded) -> CheckResult:
        try:
            return await check(loaded)
        except Exception as exc:  # a check's own failure is its result, never the pipeline's
            log.exception("the %s check failed on %s", name, loaded.message.id)
            return result(name, Verdict.error, f"the check did not complete: {exc}")

    async def _run_one(self, name: str, message_id: str) -> CheckResult:
        check = dict(self._checks())[name]
        loaded = await self._load(name, message_id)
        if isinstance(loaded, CheckResult):
            return loaded
        return await check(loaded)

    @activity.defn(name="run_checks")
    async def run_checks(self, params: RunChecksInput) -> ChecksSummary:
        """All six checks on one load of the message; results, report and (when asked) the
        new status stored in one write."""
        loaded = await self._load(AUTH, params.message_id)
        if isinstance(loaded, CheckResult):  # checks turned off, or the message is gone
            results = [CheckResult(name=name, verdict=loaded.verdict, reason=loaded.reason)
                       for name in CHECK_NAMES]
        else:
            results = list(await asyncio.gather(*(self._one(name, check, loaded)
                                                  for name, check in self._checks())))
        report = build_report(results)
        stored = await self._store.save_checks(
            params.message_id, {"results": {r.name: r.to_dict() for r in results},
                                "report": report}, run=params.run,
            status=MessageStatus.processed if params.mark_processed else None)
        return ChecksSummary(verdicts={r.name: r.verdict for r in results},
                             score=int(report.get("score", 0)), stored=stored)

    @activity.defn(name="check_authentication")
    async def check_authentication(self, params: CheckInput) -> CheckResult:
        return await self._run_one(AUTH, params.message_id)

    @activity.defn(name="check_spam")
    async def check_spam(self, params: CheckInput) -> CheckResult:
        return await self._run_one(spam.SPAM, params.message_id)

    @activity.defn(name="check_content")
    async def check_content(self, params: CheckInput) -> CheckResult:
        return await self._run_one(html.CONTENT, params.message_id)

    @activity.defn(name="check_html_compatibility")
    async def check_html_compatibility(self, params: CheckInput) -> CheckResult:
        return await self._run_one(html.COMPATIBILITY, params.message_id)

    @activity.defn(name="check_links")
    async def check_links(self, params: CheckInput) -> CheckResult:
        return await self._run_one(links.LINKS, params.message_id)

    @activity.defn(name="check_blocklists")
    async def check_blocklists(self, params: CheckInput) -> CheckResult:
        return await self._run_one(blocklist.BLOCKLISTS, params.message_id)

    @activity.defn(name="save_checks")
    async def save_checks(self, params: SaveChecksInput) -> bool:
        return await self._store.save_checks(params.message_id, {
            "results": {r.name: r.to_dict() for r in params.results},
            "report": build_report(params.results)}, run=params.run)
