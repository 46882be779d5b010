"""HTML compatibility (caniemail data), content issues, URL listing and the report's score."""

from __future__ import annotations

from pathlib import Path

import pytest

from compliance.html import compatibility, content_issues, features_used, html_facts
from compliance.links import LinkCheckConfig, check_links, extract_urls
from compliance.report import build_report
from compliance.result import CheckResult
from pat.settings import Settings

CANIEMAIL = Settings().caniemail_data
SIMPLE_HTML = "<p>Hello <b>there</b>, your order has shipped.</p>"
MODERN_HTML = ("<style>@media (max-width: 600px) { .c { display: flex; } }</style>"
               "<div class='c' style='display: grid; background-image: linear-gradient(red, "
               "blue)'><img src='https://cdn.example.test/a.webp'><p>Sale!</p></div>")


@pytest.fixture(scope="module")
def caniemail() -> Path:
    if not CANIEMAIL.is_file():
        pytest.fail(f"caniemail data missing at {CANIEMAIL}: run `make caniemail`")
    return CANIEMAIL


def test_features_used_are_found_in_tags_attributes_css_and_images(caniemail: Path) -> None:
    from compliance.html import load_caniemail
    known = {f["slug"] for f in load_caniemail(caniemail)["data"]}
    found = features_used(html_facts(MODERN_HTML), known)
    assert {"html-style", "html-div", "html-img", "css-at-media", "css-display-flex",
            "css-display-grid", "css-linear-gradient", "css-background-image",
            "image-webp"} <= found
    assert "css-display-none" not in found


def test_modern_css_loses_support_and_names_the_clients(caniemail: Path) -> None:
    modern = compatibility(MODERN_HTML, caniemail)
    simple = compatibility(SIMPLE_HTML, caniemail)
    assert modern.details["support_percent"] < simple.details["support_percent"]
    assert modern.verdict in ("fail", "softfail")
    grid = next(f for f in modern.details["features"] if f["slug"] == "css-display-grid")
    assert any(c.startswith("Outlook") for c in grid["unsupported_by"])
    outlook = next(r for r in modern.details["clients"] if r["client"] == "Outlook Windows")
    assert outlook["unsupported"] > 0
    assert 0 <= outlook["percent"] <= 100
    assert any("not supported by" in r for r in build_report([modern])["recommendations"])


def test_compatibility_without_data_or_html(tmp_path: Path) -> None:
    missing = compatibility(SIMPLE_HTML, tmp_path / "none.json")
    assert missing.verdict == "unavailable" and "make caniemail" in missing.reason
    assert compatibility(None, tmp_path / "none.json").verdict == "none"


def _codes(found: CheckResult) -> list[str]:
    return [i["code"] for i in found.details["issues"]]


def test_content_issues() -> None:
    clean = content_issues("<p>Your order 42 has shipped today</p>",
                           "Your order 42 has shipped today", [])
    assert clean.verdict == "pass" and _codes(clean) == []
    html_only = content_issues(SIMPLE_HTML, None, [])
    assert _codes(html_only) == ["no_text_part"] and html_only.verdict == "softfail"
    mismatch = content_issues("<p>Big summer sale on shoes and hats</p>",
                              "Your password reset code is 1234", [])
    assert "text_html_mismatch" in _codes(mismatch)
    images = content_issues('<img src="a.png"><img src="b.png" alt="b"><p>Hi</p>', "Hi", [])
    assert "missing_alt" in _codes(images) and "image_heavy" in _codes(images)
    assert "1 image(s) have no alt text" in images.reason
    bulk = content_issues(None, "News", [("List-Id", "<news.example.test>")])
    assert bulk.verdict == "fail" and "missing_list_unsubscribe" in _codes(bulk)
    one_click = content_issues(None, "News", [("Precedence", "bulk"),
                                              ("List-Unsubscribe", "<https://u.test/x>")])
    assert _codes(one_click) == ["missing_one_click"]
    ok = content_issues(None, "News", [("Precedence", "bulk"),
                                       ("List-Unsubscribe", "<https://u.test/x>"),
                                       ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")])
    assert ok.verdict == "pass"
    assert build_report([bulk])["score"] == 90


def test_every_link_and_image_is_listed_once_in_order() -> None:
    urls = extract_urls('<a href="https://a.test/1">x</a><img src="https://cdn.test/i.png">'
                        '<a href="mailto:me@a.test">m</a><a href="https://a.test/1">again</a>',
                        "Also see https://b.test/page. And https://a.test/1")
    assert [(u["kind"], u["url"]) for u in urls] == [
        ("link", "https://a.test/1"), ("image", "https://cdn.test/i.png"),
        ("link", "mailto:me@a.test"), ("link", "https://b.test/page")]


async def test_links_are_not_requested_unless_the_setting_says_so() -> None:
    found = await check_links('<a href="http://127.0.0.1:9/">x</a>', None, LinkCheckConfig())
    assert found.verdict == "neutral" and found.details["checked"] is False
    assert "status" not in found.details["urls"][0]
    assert (await check_links(None, "no links", LinkCheckConfig())).verdict == "none"


def test_report_score_is_100_minus_the_listed_deductions() -> None:
    spam = CheckResult("spam", "pass", "ok", {"score": 2.5, "threshold": 5.0, "rules": [
        {"rule": "HTML_MESSAGE", "points": 0.001, "description": "HTML included"},
        {"rule": "MISSING_DATE", "points": 1.4, "description": "Missing Date: header"}]})
    links = CheckResult("links", "fail", "1 of 1 URL(s) are broken", {})
    report = build_report([spam, links])
    assert [(d["check"], d["points"]) for d in report["deductions"]] == [("spam", 7.5),
                                                                        ("links", 10)]
    assert report["score"] == 82
    assert any("MISSING_DATE" in r for r in report["recommendations"])
    assert not any("HTML_MESSAGE" in r for r in report["recommendations"])
    unavailable = build_report([CheckResult("spam", "unavailable", "spamd is not there", {})])
    assert unavailable["score"] == 100 and unavailable["not_scored"] == [
        "spam: spamd is not there"]
