"""Content checks of the HTML and text bodies: which HTML and CSS features the message uses
and how many email clients support them (caniemail's data), text/HTML mismatch, images without
alt text, the image-to-text ratio, and the List-Unsubscribe headers that bulk mail needs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from compliance.result import CheckResult, Verdict, result

CONTENT = "content"
COMPATIBILITY = "html_compatibility"

# Tags whose caniemail slug is not simply "html-<tag>".
_TAG_FEATURES = {"h1": "html-h1-h6", "h2": "html-h1-h6", "h3": "html-h1-h6",
                 "h4": "html-h1-h6", "h5": "html-h1-h6", "h6": "html-h1-h6",
                 "ul": "html-lists", "ol": "html-lists", "dl": "html-lists",
                 "map": "html-image-maps", "s": "html-strike", "b": "html-strong",
                 "article": "html-semantics", "section": "html-semantics",
                 "header": "html-semantics", "footer": "html-semantics", "nav": "html-semantics",
                 "aside": "html-semantics", "main": "html-semantics"}
_ATTRIBUTE_FEATURES = {"srcset": "html-srcset", "loading": "html-loading-attribute",
                       "role": "html-role", "aria-label": "html-aria-label",
                       "aria-hidden": "html-aria-hidden", "aria-live": "html-aria-live",
                       "aria-labelledby": "html-aria-labelledby",
                       "aria-describedby": "html-aria-describedby", "lang": "html-lang",
                       "dir": "html-dir", "align": "html-align", "valign": "html-valign",
                       "width": "html-width", "height": "html-height",
                       "background": "html-background", "cellpadding": "html-cellpadding",
                       "cellspacing": "html-cellspacing", "target": "html-target",
                       "hidden": "html-hidden", "required": "html-required",
                       "popover": "html-popover"}
_INPUT_FEATURES = {"checkbox": "html-input-checkbox", "radio": "html-input-radio",
                   "hidden": "html-input-hidden", "submit": "html-input-submit",
                   "reset": "html-input-reset", "text": "html-input-text"}
# CSS found by pattern rather than by property name.
_CSS_PATTERNS = {
    "css-display-flex": re.compile(r"display\s*:\s*(?:inline-)?flex", re.I),
    "css-display-grid": re.compile(r"display\s*:\s*(?:inline-)?grid", re.I),
    "css-display-none": re.compile(r"display\s*:\s*none", re.I),
    "css-important": re.compile(r"!\s*important", re.I),
    "css-at-media": re.compile(r"@media\b", re.I),
    "css-at-font-face": re.compile(r"@font-face\b", re.I),
    "css-at-import": re.compile(r"@import\b", re.I),
    "css-at-keyframes": re.compile(r"@keyframes\b", re.I),
    "css-at-supports": re.compile(r"@supports\b", re.I),
    "css-at-media-prefers-color-scheme": re.compile(r"prefers-color-scheme", re.I),
    "css-variables": re.compile(r"var\(\s*--", re.I),
    "css-linear-gradient": re.compile(r"linear-gradient\(", re.I),
    "css-radial-gradient": re.compile(r"radial-gradient\(", re.I),
    "css-unit-calc": re.compile(r"calc\(", re.I),
    "css-rgba": re.compile(r"rgba\(", re.I),
    "css-unit-rem": re.compile(r"\d(?:\.\d+)?rem\b", re.I),
    "css-unit-vh": re.compile(r"\d(?:\.\d+)?vh\b", re.I),
    "css-unit-vw": re.compile(r"\d(?:\.\d+)?vw\b", re.I),
    "css-pseudo-class-hover": re.compile(r":hover\b", re.I),
}
_CSS_PROPERTY = re.compile(r"(?:^|[;{\s])([a-z-]+)\s*:", re.I)
_IMAGE_FORMATS = {"webp": "image-webp", "svg": "image-svg", "gif": "image-gif",
                  "png": "image-png", "jpg": "image-jpg", "jpeg": "image-jpg",
                  "avif": "image-avif", "bmp": "image-bmp", "ico": "image-ico",
                  "tif": "image-tiff", "tiff": "image-tiff", "heic": "image-heif",
                  "apng": "image-apng"}
_SUPPORT_VALUE = {"y": 1.0, "a": 0.5, "n": 0.0}
BULK_HEADERS = ("list-id", "list-unsubscribe", "feedback-id")
_WORD = re.compile(r"[^\W_]{2,}", re.UNICODE)


@dataclass
class HtmlFacts:
    """What an HTML body contains, gathered in one pass of the parser."""

    tags: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)
    input_types: set[str] = field(default_factory=set)
    css: list[str] = field(default_factory=list)
    images: list[dict[str, str | None]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)


class _Gather(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.facts = HtmlFacts()
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.facts.tags.add(tag)
        values = dict(attrs)
        self.facts.attributes.update(name for name, _ in attrs)
        if values.get("style"):
            self.facts.css.append(values["style"] or "")
        if tag == "input":
            self.facts.input_types.add((values.get("type") or "text").lower())
        if tag == "img":
            self.facts.images.append({"src": values.get("src"), "alt": values.get("alt")})
        if tag in ("style", "script", "head", "title"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self.lasttag == "style":
            self.facts.css.append(data)
        elif not self._skip:
            self.facts.text.append(data)


def html_facts(html: str) -> HtmlFacts:
    parser = _Gather()
    parser.feed(html)
    parser.close()
    return parser.facts


def features_used(facts: HtmlFacts, known: set[str]) -> set[str]:
    """caniemail slugs of the features this HTML uses, limited to those the data knows."""
    found: set[str] = set()
    for tag in facts.tags:
        found.add(_TAG_FEATURES.get(tag, f"html-{tag}"))
    found.update(_ATTRIBUTE_FEATURES[a] for a in facts.attributes if a in _ATTRIBUTE_FEATURES)
    found.update(_INPUT_FEATURES[t] for t in facts.input_types if t in _INPUT_FEATURES)
    css = "\n".join(facts.css)
    found.update(f"css-{p.lower()}" for p in _CSS_PROPERTY.findall(css))
    found.update(slug for slug, pattern in _CSS_PATTERNS.items() if pattern.search(css))
    for image in facts.images:
        src = (image["src"] or "").lower()
        if src.startswith("data:"):
            found.add("image-base64")
        suffix = src.split("?")[0].rsplit(".", 1)[-1] if "." in src else ""
        if suffix in _IMAGE_FORMATS:
            found.add(_IMAGE_FORMATS[suffix])
    return found & known


@lru_cache(maxsize=4)
def load_caniemail(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _latest(versions: dict[str, str]) -> str:
    # caniemail lists test results oldest first; the last one says what the client does now.
    value = list(versions.values())[-1] if versions else "u"
    return value.split()[0] if value else "u"


def compatibility(html: str | None, data_file: Path) -> CheckResult:
    """Per-client support of the features the HTML uses, and the overall percentage."""
    if html is None:
        return result(COMPATIBILITY, Verdict.none, "the message has no HTML part")
    if not data_file.is_file():
        return result(COMPATIBILITY, Verdict.unavailable,
                      f"caniemail data not found at {data_file}; run `make caniemail` (or "
                      "`make test`), or point PAT_CANIEMAIL_DATA at caniemail.json")
    data = load_caniemail(data_file)
    by_slug = {f["slug"]: f for f in data["data"]}
    names = data.get("nicenames", {})
    used = sorted(features_used(html_facts(html), set(by_slug)))
    clients: dict[str, dict[str, Any]] = {}
    features: list[dict[str, Any]] = []
    total = scored = 0.0
    for slug in used:
        feature = by_slug[slug]
        unsupported: list[str] = []
        partial: list[str] = []
        for family, platforms in feature["stats"].items():
            for platform, versions in platforms.items():
                client = (f"{names.get('family', {}).get(family, family)} "
                          f"{names.get('platform', {}).get(platform, platform)}")
                support = _latest(versions)
                row = clients.setdefault(client, {"client": client, "supported": 0,
                                                  "partial": 0, "unsupported": 0,
                                                  "unknown": 0})
                key = {"y": "supported", "a": "partial", "n": "unsupported"}.get(support,
                                                                                  "unknown")
                row[key] += 1
                if support in _SUPPORT_VALUE:
                    total += 1
                    scored += _SUPPORT_VALUE[support]
                if support == "n":
                    unsupported.append(client)
                elif support == "a":
                    partial.append(client)
        features.append({"slug": slug, "title": feature["title"], "url": feature["url"],
                         "unsupported_by": unsupported, "partial_in": partial})
    percent = round(100 * scored / total, 1) if total else 100.0
    table = sorted(clients.values(), key=lambda r: r["client"])
    for row in table:
        known = row["supported"] + row["partial"] + row["unsupported"]
        row["percent"] = round(100 * (row["supported"] + row["partial"] / 2) / known, 1) \
            if known else None
    worst = sorted((f for f in features if f["unsupported_by"]),
                   key=lambda f: -len(f["unsupported_by"]))
    details = {"support_percent": percent, "features": features, "clients": table,
               "data_updated": data.get("last_update_date")}
    if not worst:
        return result(COMPATIBILITY, Verdict.passed, f"{len(used)} features used; every "
                      f"tested client supports them ({percent}%)", **details)
    names_worst = ", ".join(f"{f['title']} ({len(f['unsupported_by'])} clients)"
                            for f in worst[:3])
    verdict = Verdict.fail if percent < 80 else Verdict.softfail
    return result(COMPATIBILITY, verdict, f"overall support {percent}% over {len(used)} "
                  f"features; least supported: {names_worst}", **details)


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def is_bulk(headers: list[tuple[str, str]]) -> bool:
    precedence = (_header(headers, "precedence") or "").strip().lower()
    return precedence in ("bulk", "list", "junk") or any(
        _header(headers, h) is not None for h in BULK_HEADERS)


def content_issues(html: str | None, text: str | None,
                   headers: list[tuple[str, str]]) -> CheckResult:
    issues: list[dict[str, str]] = []

    def issue(code: str, severity: str, message: str) -> None:
        issues.append({"code": code, "severity": severity, "message": message})

    facts = html_facts(html) if html is not None else None
    visible = " ".join(" ".join(facts.text).split()) if facts else ""
    metrics: dict[str, Any] = {}
    if html is not None and text is None:
        issue("no_text_part", "warning", "add a text/plain part: some clients and spam filters "
              "penalise HTML-only mail")
    if not (text or "").strip() and not visible.strip():
        issue("no_body", "error", "the message has no text to read: add a body (a text/plain "
              "part, and an HTML part if you design one)")
    if facts is not None and text is not None:
        html_words, text_words = _words(visible), _words(text)
        union = html_words | text_words
        similarity = len(html_words & text_words) / len(union) if union else 1.0
        metrics["text_html_similarity"] = round(similarity, 2)
        if similarity < 0.5:
            issue("text_html_mismatch", "warning", f"the text/plain part shares only "
                  f"{similarity:.0%} of its words with the HTML part; make them say the same")
    if facts is not None:
        missing_alt = [i["src"] or "" for i in facts.images if i["alt"] is None]
        metrics["images"] = len(facts.images)
        metrics["html_text_chars"] = len(visible)
        if missing_alt:
            issue("missing_alt", "warning", f"{len(missing_alt)} image(s) have no alt text "
                  f"(first: {missing_alt[0][:80]}); add alt for screen readers and blocked "
                  "images")
        if facts.images and len(visible) < 100 * len(facts.images):
            issue("image_heavy", "warning", f"{len(facts.images)} image(s) against "
                  f"{len(visible)} characters of text; mostly-image mail looks like spam, aim "
                  "for at least 100 characters of text per image")
    if is_bulk(headers):
        if _header(headers, "list-unsubscribe") is None:
            issue("missing_list_unsubscribe", "error", "bulk mail (Precedence/List-Id) without "
                  "a List-Unsubscribe header: Gmail and Yahoo require one")
        elif _header(headers, "list-unsubscribe-post") is None:
            issue("missing_one_click", "warning", "add 'List-Unsubscribe-Post: "
                  "List-Unsubscribe=One-Click' (RFC 8058) for one-click unsubscribe")
    if any(i["severity"] == "error" for i in issues):
        verdict = Verdict.fail
    elif issues:
        verdict = Verdict.softfail
    else:
        verdict = Verdict.passed
    reason = "; ".join(i["message"] for i in issues) or "no content problems found"
    return result(CONTENT, verdict, reason, issues=issues, **metrics)
