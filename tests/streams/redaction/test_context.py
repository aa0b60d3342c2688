"""Codes, PINs, expiries and DTMF: the keyword windows and who names a shared number."""

from __future__ import annotations

import pytest

from streams.redaction import redact


def kinds(text: str) -> tuple[str, ...]:
    return redact(text).kinds


def test_the_after_window_is_counted_in_words() -> None:
    eight = "which I think is written just about here"
    assert len(eight.split()) == 8
    assert kinds(f"security code {eight} 123") == ("security_code",)
    assert kinds(f"security code {eight} now 123") == ()


def test_number_words_and_fillers_do_not_use_up_the_window() -> None:
    assert kinds("cvv uh um er one two three") == ("security_code",)


def test_every_code_inside_the_window_goes() -> None:
    result = redact("the security code for card ending 0366 is 123")
    assert result.text == "the security code for card ending [REDACTED:cvv] is [REDACTED:cvv]"


def test_the_before_window_is_used_only_when_nothing_follows() -> None:
    assert redact("404 is the security code").text == "[REDACTED:cvv] is the security code"
    assert redact("room 404, and the security code is 7731").text == (
        "room 404, and the security code is [REDACTED:cvv]"
    )
    assert redact("404 and 505 is my pin code 1").text == "404 and 505 is my pin code 1"
    assert redact("my pin is 7 and 4321 is my pin").kinds == ("pin",)  # nearest before only


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cvv 12", ()),
        ("the cvv is a hundred", ("security_code",)),  # no digit and no digit word
        ("cvv 12345", ()),
        ("pin 123", ()),
        ("pin 1234567", ()),
        ("expires 13/25", ()),
        ("expires 12/19", ()),  # before 2020: a date, not a live card's expiry
        ("expires 12/2051", ()),
        ("expires 4/26", ("expiry",)),
        ("expires 12/2030", ("expiry",)),
        ("exp. 1229", ("expiry",)),
        ("good thru June, 2028", ("expiry",)),
        ("expires in May", ()),
        ("cvv 123B", ()),  # glued to letters: an identifier
        ("expires March 27th", ()),
    ],
)
def test_lengths_and_shapes(text: str, expected: tuple[str, ...]) -> None:
    assert kinds(text) == expected


def test_a_number_two_rules_claim_is_named_by_the_nearer_keyword() -> None:
    assert kinds("expiry 1225, cvv 1225") == ("expiry", "security_code")
    assert kinds("cvv 1225, expiry 1225") == ("security_code", "expiry")


def test_a_card_keyed_in_is_a_card() -> None:
    result = redact("DTMF: 4111 1111 1111 1111 #")
    assert result.text == "DTMF: [REDACTED:card]"
    assert result.kinds == ("card",)


def test_dtmf_takes_any_length_and_keypad_symbols() -> None:
    assert redact("pressed 5").text == "pressed [REDACTED:dtmf]"
    assert redact("pressed *72#").text == "pressed [REDACTED:dtmf]"
    assert redact("touch-tone input 98765432101234567890").kinds == ("dtmf",)


def test_a_dtmf_marker_marks_one_digit_string_and_a_closing_tag_marks_none() -> None:
    assert redact("<dtmf>1</dtmf> 2").text == "<dtmf>[REDACTED:dtmf]</dtmf> 2"
    assert redact("pressed 1, then 2").text == "pressed [REDACTED:dtmf], then 2"
    assert redact("pressed 1, then pressed 2").count == 2


def test_markers_from_an_earlier_pass_are_opaque() -> None:
    # The "cvv" inside the marker is not a keyword, and the marker satisfies the real keyword,
    # so the before-window does not wake up on the second pass.
    once = redact("room 404 and the security code is 123")
    assert once.text == "room 404 and the security code is [REDACTED:cvv]"
    assert redact(once.text).count == 0
    assert redact("[REDACTED:cvv] 123").count == 0


def test_a_card_glued_to_a_keyword_does_not_create_a_keyword_on_the_next_pass() -> None:
    once = redact("4532015112830366cvv 1234")
    assert once.text == "[REDACTED:card]cvv 1234"
    assert redact(once.text).count == 0
