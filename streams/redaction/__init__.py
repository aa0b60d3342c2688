"""PCI redaction of transcripts and AI summaries, before anything is stored.

``redact(text) -> Redacted(text, count, kinds)``: card numbers, security codes, PINs, expiry
dates and keyed-in digits become ``[REDACTED:card|cvv|pin|expiry|dtmf]``; everything else is kept
character for character; the result reports how many redactions of which kind, never a value.
A second pass changes nothing (markers are opaque tokens), so a replayed or re-processed segment
cannot double-count.

How it reads numbers (``numbers``): written digits with spaces, ``- . , /`` between groups, and
spoken English digits (``oh``/``o``/``zero``, ``double four``, ``triple seven``,
``forty-five``, ``fifteen``, ``four hundred and twelve``, ``a hundred``), mixed freely, with ASR
punctuation and one filler (``uh``, ``um``, ``dash``) between groups. Letters glued to digits
(``221B``, ``SW1A``, ``1Z999AA1...``) make an identifier, not a number.

What it removes: ``cards`` (13-19 digits passing Luhn: the whole-sequence and group-aligned
window rules) and ``rules`` (security codes, PINs, expiries and DTMF digits near a keyword,
within the word windows ``context`` applies).

Known limits: English number words only; one text at a time, so a card split across two
transcript segments is seen as two short numbers (the processor should redact whole turns, or
carry a tail); ASR homophones ("for" for 4, "to" for 2) and "and" between digit blocks are not
read as digits; codes are only found near a keyword, and a code glued to other digits ("cvv 123
1225") is one 7-digit number and is missed; Luhn-valid non-cards (IMEIs, some 13-19 digit
identifiers, long spoken numbers) are redacted as cards, deliberately.
"""

from __future__ import annotations

from streams.redaction.cards import luhn_valid
from streams.redaction.kinds import REPLACEMENT, Kind
from streams.redaction.redactor import Redacted, redact

__all__ = ["REPLACEMENT", "Kind", "Redacted", "luhn_valid", "redact"]
