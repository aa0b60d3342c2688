"""Properties over generated text: cards in any form are caught, plain text is untouched, a
second pass changes nothing, and no input makes the redactor slow."""

from __future__ import annotations

import random
import re
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streams.redaction import luhn_valid, redact
from tests.streams.redaction.traces import digit_runs, literals_kept

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]  # fmt: skip
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
NUMBERISH = {*DIGIT_WORDS, *TEENS, *TENS, "oh", "o", "nought", "naught", "double", "triple",
             "treble", "hundred", "fourty"}  # fmt: skip
PROSE = ["my", "card", "number", "is", "the", "please", "thanks", "sure", "Visa", "okay", "it's",
         "right", "so", "um", "uh", "yes", "account", "pressed", "expires", "code", "cvv", "and",
         "again", "that", "was", "London", "Mastercard", "reading", "slowly"]  # fmt: skip
SEPARATORS = [" ", "  ", "-", " - ", ". ", ", ", "/", " uh ", "\n", " dash "]

prose = st.lists(st.sampled_from(PROSE), max_size=8).map(" ".join)


@st.composite
def pans(draw: st.DrawFn) -> str:
    """A Luhn-valid 13-19 digit number that does not start with 0."""
    length = draw(st.integers(13, 19))
    body = str(draw(st.integers(1, 9))) + "".join(
        str(draw(st.integers(0, 9))) for _ in range(length - 2)
    )
    check = next(d for d in "0123456789" if luhn_valid(body + d))
    return body + check


def say_digits(chunk: str, rng: random.Random) -> str:
    words, i = [], 0
    while i < len(chunk):
        d = int(chunk[i])
        if i + 1 < len(chunk) and chunk[i + 1] == chunk[i] and rng.random() < 0.3:
            words.append(f"double {rng.choice(['oh', 'zero']) if d == 0 else DIGIT_WORDS[d]}")
            i += 2
            continue
        words.append(rng.choice(["oh", "o", "zero"]) if d == 0 else DIGIT_WORDS[d])
        i += 1
    return rng.choice([" ", ", ", "-"]).join(words)


def render(pan: str, rng: random.Random) -> str:
    """The PAN as a caller or ASR might write it: blocks of digits, digit words, pairs, mixed."""
    out, i = [], 0
    while i < len(pan):
        size = rng.randint(1, 4)
        chunk = pan[i : i + size]
        i += size
        style = rng.random()
        if style < 0.4:
            piece = chunk
        elif len(chunk) == 2 and chunk[0] != "0" and chunk[1] != "0" and style < 0.7:
            tens, unit = int(chunk[0]), int(chunk[1])
            piece = (
                TEENS[unit]
                if tens == 1
                else f"{TENS[tens]}{rng.choice(['-', ' '])}" + (DIGIT_WORDS[unit])
            )
        else:
            piece = say_digits(chunk, rng)
        if rng.random() < 0.2:
            piece = piece.upper()
        out.append(piece)
    glue = [rng.choice(SEPARATORS) for _ in out[1:]]
    return out[0] + "".join(sep + piece for sep, piece in zip(glue, out[1:], strict=True))


@settings(max_examples=400, deadline=None)
@given(pan=pans(), before=prose, after=prose, seed=st.integers(0, 2**32))
def test_any_luhn_valid_pan_in_any_form_is_redacted(
    pan: str, before: str, after: str, seed: int
) -> None:
    spoken = render(pan, random.Random(seed))
    text = f"{before} {spoken} {after}".strip()
    result = redact(text)
    assert "card" in result.kinds, (text, result.text)
    assert not digit_runs(result.text), (text, result.text)  # nothing of the PAN in any form
    assert literals_kept(text, result.text)


def number_free(text: str) -> bool:
    return not any(w.lower() in NUMBERISH for w in re.findall(r"[^\W\d_]+", text))


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Nd", "Cs")), max_size=400))
def test_text_without_digits_or_number_words_is_unchanged(text: str) -> None:
    assume(number_free(text))
    assert redact(text).text == text
    assert redact(text).count == 0


def test_prose_with_keywords_and_no_numbers_is_unchanged() -> None:
    text = "The CVV, security code, PIN, expiry and keypad DTMF: pressed, typed. Star pound hash."
    assert redact(text).text == text


FRAGMENTS = [
    "4111 1111 1111 1111", "4532015112830366", "5555-5555-5555-4444", "378282246310005",
    "4532015112830367", "1234", "123", "12/25", "04/27", "7", "0", "2024", "+44 20 7946 0958",
    "+", "#", "*", "four", "five", "oh", "o", "double", "triple", "forty", "forty-five", "twelve",
    "hundred", "a", "and", "uh", "dash", "-", ".", ",", "/", ":", "cvv", "security code", "pin",
    "expires", "expiry", "March", "pressed", "DTMF", "<dtmf>", "</dtmf>", "keypad", "typed",
    "star", "pound", "the", "is", "my", "card", "room", "B", "x", "[REDACTED:card]", "\n",
    "digits on the back", "valid thru", "one", "two", "three", "nine", "six", "ten",
]  # fmt: skip


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(FRAGMENTS), st.sampled_from(["", " ", " ", ", ", "-", "\n"])),
        max_size=60,
    )
)
def test_redaction_is_idempotent_and_keeps_everything_else(parts: list[tuple[str, str]]) -> None:
    text = "".join(f + sep for f, sep in parts)
    once = redact(text)
    assert literals_kept(text, once.text)
    assert once.text.count("[REDACTED:") == text.count("[REDACTED:") + once.count
    twice = redact(once.text)
    assert (twice.text, twice.count) == (once.text, 0)


@pytest.mark.timeout(60)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.large_base_example])
@given(
    st.lists(st.sampled_from(FRAGMENTS), min_size=2000, max_size=4000),
    st.sampled_from([" ", "", ", "]),
)
def test_long_generated_transcripts_stay_fast(parts: list[str], sep: str) -> None:
    text = sep.join(parts)
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 2.0


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "text",
    [
        "1 " * 50_000,
        "4" * 100_000,
        "one " * 30_000,
        "forty-five " * 20_000,
        "cvv 1:" * 20_000,
        "pressed 1#" * 20_000,
        "cvv " * 20_000 + "1:" * 20_000,
        "1:" * 20_000 + "pin " * 20_000,
        "double " * 30_000,
        "a hundred and " * 10_000,
        "March 2027 expires " * 10_000,
        "- " * 50_000 + "1",
        "".join(random.Random(7).choice("0123456789 -.,") for _ in range(200_000)),
    ],
    ids=lambda t: f"{t[:12]!r}x{len(t)}",
)
def test_pathological_inputs_are_linear(text: str) -> None:
    started = time.perf_counter()
    redact(text)
    assert time.perf_counter() - started < 5.0
