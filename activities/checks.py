"""Activities of the deliverability checks: each loads the message from the store, calls one
pure check in ``compliance`` and returns its result; ``save_checks`` adds the report and stores
everything with the message.

A check that cannot decide returns a result saying why (``error``, ``unavailable``); only a
store that does not answer raises, so that Temporal retries it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio import activity

from compliance import auth, blocklist, html, links, rspamd, spam
from compliance.dns import Lookup, ResolverConfig
from compliance.report import build_report
from compliance.result import CheckResult, Verdict, result
from pat.parsing import MalformedMessage, parse_message, part_text
from pat.settings import Settings
from pat.store.models import Message
from pat.store.repository import MessageStore

AUTH = "auth"


@dataclass
class CheckInput:
    message_id: str


@dataclass
class SaveChecksInput:
    message_id: str
    results: list[CheckResult]
    run: int | None = None


@dataclass
class _Loaded:
    message: Message
    raw: bytes


@dataclass
class _Bodies:
    html: str | None
    text: str | None
    headers: list[tuple[str, str]]


class CheckActivities:
    def __init__(self, settings: Settings, store: MessageStore) -> None:
        self._settings = settings
        self._store = store
        self._spam = self._spam_engine(settings)

    @staticmethod
    def _spam_engine(s: Settings) -> spam.SpamEngine:
        if s.spam_engine == "rspamd":
            return rspamd.RspamdEngine(s.rspamd_host, s.rspamd_port, s.rspamd_timeout,
                                       ResolverConfig(address=s.dns_resolver, port=s.dns_port,
                                                      timeout=s.dns_timeout))
        if s.spam_engine == "spamassassin":
            return spam.SpamdConfig(host=s.spamd_host, port=s.spamd_port,
                                    timeout=s.spamd_timeout)
        return spam.SpamCheckOff("the spam check is turned off (PAT_SPAM_ENGINE=none)")

    def _lookup(self) -> Lookup:
        s = self._settings
        return Lookup(ResolverConfig(address=s.dns_resolver, port=s.dns_port,
                                     timeout=s.dns_timeout))

    def _sending_ip(self, message: Message) -> str:
        return self._settings.spf_evaluate_ip or message.peer

    async def _load(self, name: str, message_id: str) -> _Loaded | CheckResult:
        """The message and its bytes, or the result of a check that has nothing to do."""
        if not self._settings.checks_enabled:
            return result(name, Verdict.none, "checks are turned off (PAT_CHECKS_ENABLED)")
        message = await self._store.get(message_id)
        raw = await self._store.get_raw(message_id) if message else None
        if message is None or raw is None:
            return result(name, Verdict.error, "the message is no longer in the store")
        return _Loaded(message, raw)

    @staticmethod
    def _bodies(raw: bytes) -> _Bodies:
        """Parsing is CPU work (a 260 KB header section takes a quarter of a second): callers
        run it in a thread so the worker's event loop keeps serving workflow tasks."""
        parsed = parse_message(raw)
        return _Bodies(html=part_text(raw, parsed.html_part),
                       text=part_text(raw, parsed.text_part), headers=parsed.headers)

    @activity.defn(name="check_authentication")
    async def check_authentication(self, params: CheckInput) -> CheckResult:
        loaded = await self._load(AUTH, params.message_id)
        if isinstance(loaded, CheckResult):
            return loaded
        message = loaded.message
        return await asyncio.to_thread(
            auth.check_authentication, loaded.raw, ip=self._sending_ip(message),
            mail_from=message.mail_from, helo=message.helo, lookup=self._lookup(),
            authserv_id=self._settings.smtp_hostname)

    @activity.defn(name="check_spam")
    async def check_spam(self, params: CheckInput) -> CheckResult:
        loaded = await self._load(spam.SPAM, params.message_id)
        if isinstance(loaded, CheckResult):
            return loaded
        message = loaded.message
        return await self._spam.check(loaded.raw, spam.Envelope(
            ip=self._sending_ip(message), helo=message.helo, mail_from=message.mail_from,
            recipients=list(message.recipients), message_id=message.id))

    @activity.defn(name="check_content")
    async def check_content(self, params: CheckInput) -> CheckResult:
        loaded = await self._load(html.CONTENT, params.message_id)
        if isinstance(loaded, CheckResult):
            return loaded
        try:
            bodies = await asyncio.to_thread(self._bodies, loaded.raw)
        except MalformedMessage as exc:
            return result(html.CONTENT, Verdict.error, str(exc))
        return await asyncio.to_thread(html.content_issues, bodies.html, bodies.text,
                                       bodies.headers)

    @activity.defn(name="check_html_compatibility")
    async def check_html_compatibility(self, params: CheckInput) -> CheckResult:
        loaded = await self._load(html.COMPATIBILITY, params.message_id)
        if isinstance(loaded, CheckResult):
            return loaded
        try:
            bodies = await asyncio.to_thread(self._bodies, loaded.raw)
        except MalformedMessage as exc:
            return result(html.COMPATIBILITY, Verdict.error, str(exc))
        return await asyncio.to_thread(html.compatibility, bodies.html,
                                       self._settings.caniemail_data)

    @activity.defn(name="check_links")
    async def check_links(self, params: CheckInput) -> CheckResult:
        loaded = await self._load(links.LINKS, params.message_id)
        if isinstance(loaded, CheckResult):
            return loaded
        try:
            bodies = await asyncio.to_thread(self._bodies, loaded.raw)
        except MalformedMessage as exc:
            return result(links.LINKS, Verdict.error, str(exc))
        s = self._settings
        return await links.check_links(bodies.html, bodies.text, links.LinkCheckConfig(
            network=s.link_check_network, allow_private=s.link_check_allow_private,
            concurrency=s.link_check_concurrency, timeout=s.link_check_timeout,
            max_links=s.link_check_max_links))

    @activity.defn(name="check_blocklists")
    async def check_blocklists(self, params: CheckInput) -> CheckResult:
        loaded = await self._load(blocklist.BLOCKLISTS, params.message_id)
        if isinstance(loaded, CheckResult):
            return loaded
        message = loaded.message
        domains = [d for d in (auth.from_domain(loaded.raw),
                               message.mail_from.rpartition("@")[2]) if d]
        s = self._settings
        return await asyncio.to_thread(blocklist.check_blocklists, self._sending_ip(message),
                                       domains, self._lookup(), s.dnsbl_ip_zones,
                                       s.dnsbl_domain_zones)

    @activity.defn(name="save_checks")
    async def save_checks(self, params: SaveChecksInput) -> bool:
        return await self._store.save_checks(params.message_id, {
            "results": {r.name: r.to_dict() for r in params.results},
            "report": build_report(params.results)}, run=params.run)
