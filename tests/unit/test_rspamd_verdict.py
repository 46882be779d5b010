"""rspamd's answer turned into the spam check's verdict: which actions make a message spam,
the score reaching the reject score, and the symbols shown as SpamAssassin's rules are."""

from __future__ import annotations

import pytest

from compliance.report import build_report
from compliance.rspamd import CheckReply, verdict

WHERE = "rspamd at 127.0.0.1:11433"


def _reply(score: float, action: str, required: float = 15.0) -> CheckReply:
    return CheckReply.model_validate({
        "score": score, "required_score": required, "action": action,
        "symbols": {
            "R_SPF_ALLOW": {"name": "R_SPF_ALLOW", "score": -0.2, "metric_score": -0.2,
                            "description": "SPF verification allows sending",
                            "options": ["+ip4:1.2.3.4", "c"]},
            "HFILTER_HOSTNAME_UNKNOWN": {"name": "HFILTER_HOSTNAME_UNKNOWN", "score": 2.5},
            "ARC_NA": {"name": "ARC_NA", "score": 0.0, "description": "ARC signature absent"},
        }})


@pytest.mark.parametrize("action", ["reject", "rewrite subject", "add header"])
def test_actions_that_mark_spam_fail_and_say_so(action: str) -> None:
    found = verdict(_reply(7.0, action), WHERE)
    assert found.verdict == "fail"
    assert f"action {action}" in found.reason
    assert found.details["is_spam"] is True and found.details["action"] == action


@pytest.mark.parametrize("action", ["no action", "greylist", "soft reject"])
def test_actions_that_let_mail_through_pass(action: str) -> None:
    found = verdict(_reply(4.0, action), WHERE)
    assert found.verdict == "pass", found.reason
    assert found.details["is_spam"] is False


def test_a_score_reaching_the_reject_score_fails_whatever_the_action() -> None:
    found = verdict(_reply(15.0, "no action"), WHERE)
    assert found.verdict == "fail"
    assert "the score reaches 15" in found.reason


def test_symbols_are_rules_with_points_and_descriptions_highest_first() -> None:
    found = verdict(_reply(2.3, "no action"), WHERE)
    assert found.details["rules"] == [
        {"rule": "HFILTER_HOSTNAME_UNKNOWN", "points": 2.5, "description": ""},
        {"rule": "ARC_NA", "points": 0.0, "description": "ARC signature absent"},
        {"rule": "R_SPF_ALLOW", "points": -0.2,
         "description": "SPF verification allows sending [+ip4:1.2.3.4, c]"}]
    assert found.details["threshold"] == 15.0 and found.details["engine"] == "rspamd"


def test_the_report_names_rspamd_and_its_symbols() -> None:
    report = build_report([verdict(_reply(7.0, "add header"), WHERE)])
    assert report["score"] == 70
    assert report["deductions"][0]["reason"].startswith("rspamd score 7")
    assert "rspamd symbol HFILTER_HOSTNAME_UNKNOWN (+2.5)" in " ".join(report["recommendations"])
