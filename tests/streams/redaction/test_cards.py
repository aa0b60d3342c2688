"""The card rules on their own: Luhn, the whole-sequence rule, group-aligned windows."""

from __future__ import annotations

import pytest

from streams.redaction import luhn_valid, redact
from streams.redaction.cards import is_card
from streams.redaction.numbers import build_sequences, parse_groups
from streams.redaction.tokens import tokenize
from tests.streams.redaction import corpus


def card(text: str, *, after_plus: bool = False) -> bool:
    tokens = tokenize(text)
    (seq,) = build_sequences(tokens, parse_groups(tokens), keypad=False)
    return is_card(seq, after_plus=after_plus)


@pytest.mark.parametrize(
    "pan",
    [corpus.VISA, corpus.VISA_2, corpus.VISA_13, corpus.VISA_19, corpus.MC, corpus.MC_2,
     corpus.AMEX, corpus.AMEX_2, corpus.DISCOVER, corpus.DINERS, corpus.JCB, corpus.MAESTRO_19,
     corpus.UNIONPAY],
)  # fmt: skip
def test_test_pans_pass_luhn_and_are_cards(pan: str) -> None:
    assert luhn_valid(pan)
    assert card(pan)


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("4532015112830367")


def test_length_bounds() -> None:
    assert card("4222222222222")  # 13
    assert not card("422222222222")  # 12, even though it is a prefix of a card
    assert not card("41111111111111111113")  # 20 digits in one block: an identifier


def test_a_leading_zero_is_never_a_card() -> None:
    assert luhn_valid("0" + corpus.VISA_13)
    assert not card("0" + corpus.VISA_13)


def test_plus_prefixed_numbers_up_to_e164_length_are_phones() -> None:
    assert luhn_valid("8613800138002")
    assert not card("86 138 0013 8002", after_plus=True)
    assert card("86 138 0013 8002")  # without "+", a Luhn-valid 13 digits is redacted
    assert card(corpus.VISA, after_plus=True)  # 16 digits is longer than any phone number


def test_windows_follow_group_boundaries() -> None:
    assert card("4532015112830366 1")
    assert card("1 4532 0151 1283 0366")
    assert not card("45320151128303661")  # one block: the window would cut through it


def test_windows_need_a_pci_brand_and_its_length() -> None:
    # 13 digits starting 4 inside a longer run: a Visa length.
    assert card("9 4222222222222")
    # Luhn-valid 14 digits starting 8 inside a longer run: not a PCI brand, not a window.
    assert luhn_valid("80000000000003")
    assert not card("9 80000000000003")
    # Luhn-valid 13 digits starting 5: no brand issues 13-digit 5-cards in a window.
    assert luhn_valid("5000000000005")
    assert not card("9 5000000000005")


def test_luhn_valid_non_cards_are_redacted_deliberately() -> None:
    # An IMEI is Luhn-valid by design. Redacting it is the accepted cost of catching cards.
    assert redact("IMEI 35 209900 176148 1").kinds == ("card",)
