"""The Checks tab of a message in a real browser, against ``pat up`` with the rspamd it starts."""

from __future__ import annotations

import smtplib

from playwright.sync_api import Page, expect

from tests.e2e.conftest import PatUp
from tests.e2e.test_web_ui import page  # noqa: F401  (the browser tab fixture)

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def test_checks_tab_shows_score_verdicts_rules_and_recommendations(
        pat_up: PatUp, page: Page) -> None:  # noqa: F811
    raw = (f"From: Promo <promo@shop.example>\r\nTo: dev@example.test\r\nSubject: Sale\r\n"
           f"Precedence: bulk\r\nList-Id: <promo.shop.example>\r\n"
           f"Content-Type: text/html; charset=utf-8\r\n\r\n"
           f"<p>{GTUBE}</p><img src=\"https://cdn.shop.example/sale.png\">\r\n")
    with smtplib.SMTP("127.0.0.1", pat_up.smtp_port) as client:
        client.sendmail("promo@shop.example", ["dev@example.test"], raw.encode())
    page.goto("/")
    row = page.locator(".message", has_text="Sale")
    expect(row.locator(".badge")).to_have_text("processed")
    row.locator("a").click()
    page.locator(".tabs [data-tab=checks]").click()
    score = page.locator("#deliverability-score strong")
    expect(score).to_be_visible()
    assert int(score.inner_text()) < 50
    verdicts = page.locator("#check-verdicts")
    expect(verdicts.locator("tr[data-check=spam]")).to_contain_text("fail")
    expect(verdicts.locator("tr[data-check=content]")).to_contain_text("fail")
    expect(page.locator(".checks")).to_contain_text("GTUBE")
    expect(page.locator(".checks h3", has_text="rspamd")).to_contain_text("action reject")
    expect(page.locator(".recommendations")).to_contain_text("List-Unsubscribe")
    expect(page.locator(".auth-results")).to_contain_text("dkim=none")
    page.screenshot(path="/tmp/pat-checks-tab.png", full_page=True)
