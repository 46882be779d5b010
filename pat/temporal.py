"""Connecting to Temporal, and the search attributes that make each email findable in its UI."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from pat.settings import Settings

log = logging.getLogger(__name__)

EMAIL_PIPELINE = "EmailPipeline"

SENDER = SearchAttributeKey.for_keyword("PatSender")
RECIPIENTS = SearchAttributeKey.for_keyword_list("PatRecipients")
SUBJECT = SearchAttributeKey.for_text("PatSubject")
TENANT = SearchAttributeKey.for_keyword("PatTenant")

# Memo fields of each EmailPipeline run: which message and which run of it, so that whoever
# lists runs (the sweep of ended runs) need not parse workflow ids.
MEMO_MESSAGE_ID = "message_id"
MEMO_RUN = "run"

_TYPES = {
    SENDER.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    RECIPIENTS.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
    SUBJECT.name: IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
    TENANT.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
}


# Temporal refuses a search attribute value over 2 KB (a keyword list counts whole), and the
# run with it: values are cut well below, on a character boundary; a list keeps the first
# items that fit (Pat's own search has them all).
SEARCH_VALUE_BYTES = 1000


def bounded(text: str, limit: int = SEARCH_VALUE_BYTES) -> str:
    """``text`` cut, on a character boundary, so that its JSON encoding (what Temporal
    measures: ``é`` is six bytes there) takes at most ``limit`` bytes; control characters
    removed."""
    kept: list[str] = []
    used = 2  # the quotes
    for char in text:
        if not (char.isprintable() or char == " "):
            continue
        used += len(json.dumps(char)) - 2
        if used > limit:
            break
        kept.append(char)
    return "".join(kept)


def bounded_list(items: list[str], limit: int = SEARCH_VALUE_BYTES) -> list[str]:
    """The first of ``items`` (each ``bounded``) that fit in ``limit`` bytes together."""
    kept: list[str] = []
    used = 0
    for item in items:
        value = bounded(item, limit)
        used += len(json.dumps(value)) + 1  # and the list's comma
        if used > limit:
            break
        kept.append(value)
    return kept


def dev_server_flags() -> list[str]:
    """``temporal server start-dev`` flags that register Pat's search attributes at start."""
    names = {IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
             IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
             IndexedValueType.INDEXED_VALUE_TYPE_TEXT: "Text"}
    flags: list[str] = []
    for name, kind in _TYPES.items():
        flags += ["--search-attribute", f"{name}={names[kind]}"]
    return flags


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register whichever of Pat's search attributes the server does not know yet."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace))
    missing = {name: kind for name, kind in _TYPES.items()
               if name not in existing.custom_attributes}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing))
        log.info("registered search attributes %s", ", ".join(missing))


def workflow_ui_url(settings: Settings, workflow_id: str) -> str:
    namespace = quote(settings.temporal_namespace, safe="")
    return (f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{namespace}"
            f"/workflows/{quote(workflow_id, safe='')}")
