"""Values Pat gives Temporal as search attributes fit Temporal's limit, as Temporal measures
them (the JSON encoding), whatever a message carries: Temporal refuses the whole run
otherwise."""

from __future__ import annotations

import json

import pytest

from pat.temporal import SEARCH_VALUE_BYTES, bounded, bounded_list

HOSTILE = ["a" * 5000, "é" * 3000, '"\\' * 2000, "\x00\x1b[31m" * 500, "😀" * 1000,
           "=?utf-8?b?" + "x" * 3000]


@pytest.mark.parametrize("text", HOSTILE, ids=["ascii", "latin", "quotes", "control", "emoji",
                                               "encoded-word"])
def test_a_value_is_cut_to_what_temporal_takes(text: str) -> None:
    value = bounded(text)
    assert len(json.dumps(value)) <= SEARCH_VALUE_BYTES
    printable = "".join(c for c in text if c.isprintable() or c == " ")
    assert value and printable.startswith(value)


def test_a_list_keeps_the_first_items_that_fit_together() -> None:
    items = [f"{'r' * 200}{n}@example.test" for n in range(100)]
    kept = bounded_list(items)
    assert 0 < len(kept) < len(items) and kept == items[:len(kept)]
    assert len(json.dumps(kept)) <= SEARCH_VALUE_BYTES


def test_short_values_are_kept_whole() -> None:
    assert bounded("Invoice 1042 for Ada") == "Invoice 1042 for Ada"
    assert bounded_list(["a@example.test", "b@example.test"]) == ["a@example.test",
                                                                  "b@example.test"]
