"""Reading digits the way callers say and write them."""

from __future__ import annotations

import pytest

from streams.redaction.numbers import build_sequences, parse_groups
from streams.redaction.tokens import tokenize


def sequences(text: str, *, keypad: bool = False) -> list[str]:
    tokens = tokenize(text)
    return [s.digits for s in build_sequences(tokens, parse_groups(tokens), keypad=keypad)]


@pytest.mark.parametrize(
    ("spoken", "digits"),
    [
        ("four five three two", "4532"),
        ("oh", "0"),
        ("o four", "04"),
        ("zero nought naught", "000"),
        ("fifteen", "15"),
        ("forty-five", "45"),
        ("forty five", "45"),
        ("Forty\u2013Five", "45"),
        ("forty", "40"),
        ("forty oh", "400"),  # "oh" is its own digit, never the unit of "forty"
        ("double four", "44"),
        ("double 4", "44"),
        ("triple seven", "777"),
        ("treble oh", "000"),
        ("four hundred", "400"),
        ("four hundred and twelve", "412"),
        ("nine hundred ninety-nine", "999"),
        ("a hundred and five", "105"),
        ("forty five hundred", "4500"),
        ("nineteen eighty-five", "1985"),
        ("one-two-three", "123"),
        ("4532 zero one", "453201"),
        ("four, five. three/two", "4532"),
        ("four uh five", "45"),
        ("four dash five", "45"),
        ("FOUR FIVE", "45"),
    ],
)
def test_spoken_and_mixed_digits(spoken: str, digits: str) -> None:
    assert sequences(spoken) == [digits]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("two kids and three dogs", ["2", "3"]),  # "and" is not a separator
        ("twelve thousand", ["12"]),  # amounts stop at "thousand"
        ("10:30", ["10", "30"]),
        ("(415) 555-2671", ["415", "5552671"]),
        ("four uh um five", ["4", "5"]),  # one filler between groups, not a monologue
        ("1 ,,, 2", ["1", "2"]),  # at most two separator marks
        ("1" + " " * 20 + "2", ["1", "2"]),  # a long gap is a new number
        ("221B", ["221"]),
        ("double trouble", []),
        ("a hundred", ["100"]),
        ("hundred", []),
        ("someone", []),
        ("O'Brien at five o'clock", ["5"]),
    ],
)
def test_what_does_not_join(text: str, expected: list[str]) -> None:
    assert sequences(text) == expected


def test_letters_glued_to_digits_make_an_identifier_of_their_own() -> None:
    tokens = tokenize("A12 34")
    seqs = build_sequences(tokens, parse_groups(tokens), keypad=False)
    assert [(s.digits, s.glued) for s in seqs] == [("12", True), ("34", False)]


def test_keypad_symbols_are_digits_only_for_dtmf() -> None:
    assert sequences("1234#5678") == ["1234", "5678"]
    assert sequences("1234#5678", keypad=True) == ["1234#5678"]
    assert sequences("star one pound", keypad=True) == ["*1#"]


def test_non_ascii_digits_are_read_as_digits() -> None:
    assert sequences("\u0664\u0665 \uff13\uff12") == ["4532"]
