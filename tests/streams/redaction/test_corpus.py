"""The corpus: every utterance redacted exactly as expected, with nothing of a secret left."""

from __future__ import annotations

import pytest

from streams.redaction import redact
from tests.streams.redaction.corpus import CASES, NEAR_MISSES, Case
from tests.streams.redaction.traces import leaked, literals_kept


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60
    assert len(NEAR_MISSES) >= 20


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_corpus(case: Case) -> None:
    result = redact(case.text)
    assert result.kinds == case.kinds, result.text
    assert result.count == len(case.kinds)
    if not case.kinds:
        assert result.text == case.text
    if case.expected is not None:
        assert result.text == case.expected
    assert literals_kept(case.text, result.text)
    for secret in case.secrets:
        assert not leaked(secret, result.text), result.text


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_corpus_is_idempotent(case: Case) -> None:
    once = redact(case.text)
    twice = redact(once.text)
    assert (twice.text, twice.count) == (once.text, 0)


def test_the_leak_check_would_see_a_card_in_any_form() -> None:
    card = "4532015112830366"
    assert leaked(card, "card 4532 0151 1283 0366")
    assert leaked(card, "zero one five one")
    assert leaked(card, "forty-five thirty-two")
    assert not leaked(card, "[REDACTED:card] room 404")


def test_counts_are_reported_by_kind_never_values() -> None:
    result = redact("Visa 4111 1111 1111 1111, CVV 123, and again 4532015112830366")
    assert result.by_kind() == {"card": 2, "security_code": 1}
    assert "4111" not in repr(result) and "123" not in repr(result)
