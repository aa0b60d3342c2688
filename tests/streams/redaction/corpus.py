"""Realistic utterances as ASR and the AI summariser write them, with what must be redacted.

Card numbers are the public test PANs of each brand (all pass Luhn). Near misses are the numbers
a call really contains: phone, order, tracking, amounts, dates, rooms, postcodes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    text: str
    #: Kinds in text order; empty for a near miss (the text must come back unchanged).
    kinds: tuple[str, ...] = ()
    #: Digit strings that must not survive in any form (digits or words) in the output.
    secrets: tuple[str, ...] = ()
    #: The exact output, where spelling it out pins down what is kept byte for byte.
    expected: str | None = None

    @property
    def id(self) -> str:
        return self.text[:48]


VISA = "4111111111111111"
VISA_2 = "4532015112830366"
VISA_13 = "4222222222222"
VISA_19 = "4000000000000000006"
MC = "5555555555554444"
MC_2 = "2223003122003222"
AMEX = "378282246310005"
AMEX_2 = "371449635398431"
DISCOVER = "6011111111111117"
DINERS = "30569309025904"
JCB = "3530111333300000"
MAESTRO_19 = "6304000000000000000"
UNIONPAY = "6200000000000005"

CARDS = [
    Case(
        "Sure, my card number is 4111 1111 1111 1111.",
        ("card",),
        (VISA,),
        "Sure, my card number is [REDACTED:card].",
    ),
    Case(
        "It's 4532-0151-1283-0366, expiring next year",
        ("card",),
        (VISA_2,),
        "It's [REDACTED:card], expiring next year",
    ),
    Case("4532015112830366", ("card",), (VISA_2,), "[REDACTED:card]"),
    Case("the number's 5555 5555 5555 4444 and that's a Mastercard", ("card",), (MC,)),
    Case("new Mastercard, 2223 0031 2200 3222", ("card",), (MC_2,)),
    Case("Amex: 3782 822463 10005", ("card",), (AMEX,), "Amex: [REDACTED:card]"),
    Case("caller gave amex 371449635398431 for the deposit", ("card",), (AMEX_2,)),
    Case("Discover card 6011.1111.1111.1117 please", ("card",), (DISCOVER,)),
    Case("it's a Diners Club, 3056 930902 5904", ("card",), (DINERS,)),
    Case("JCB 3530 1113 3330 0000, exp soon", ("card",), (JCB,)),
    Case("old Visa with 13 digits: 4222 2222 22222", ("card",), (VISA_13,)),
    Case("Maestro 6304 0000 0000 0000 000", ("card",), (MAESTRO_19,)),
    Case("UnionPay 6200/0000/0000/0005", ("card",), (UNIONPAY,)),
    Case("the 19 digit one is 4000 0000 0000 0000 006", ("card",), (VISA_19,)),
    Case(
        "four five three two zero one five one one two eight three zero three six six",
        ("card",),
        (VISA_2,),
        "[REDACTED:card]",
    ),
    Case(
        "Four, five, three, two. Oh, one, five, one. One, two, eight, three. Oh, three, six, six.",
        ("card",),
        (VISA_2,),
        "[REDACTED:card].",
    ),
    Case(
        "Caller: four triple one, one one one one, double one double one, one one one one.",
        ("card",),
        (VISA,),
        "Caller: [REDACTED:card].",
    ),
    Case(
        "ok 4532 zero one five one one two eight three zero three six six thanks",
        ("card",),
        (VISA_2,),
        "ok [REDACTED:card] thanks",
    ),
    Case(
        "forty-five thirty-two oh one fifty-one twelve eighty-three oh three sixty-six",
        ("card",),
        (VISA_2,),
    ),
    Case(
        "fifty five fifty five, fifty five fifty five, fifty five fifty five, "
        "forty four forty four",
        ("card",),
        (MC,),
    ),
    Case(
        "four one one one um one one one one uh one one one one er one one one one",
        ("card",),
        (VISA,),
    ),
    Case(
        "four five three two dash zero one five one dash one two eight three dash zero three six "
        "six",
        ("card",),
        (VISA_2,),
    ),
    Case(
        "FOUR FIVE THREE TWO ZERO ONE FIVE ONE ONE TWO EIGHT THREE ZERO THREE SIX SIX",
        ("card",),
        (VISA_2,),
    ),
    Case("it is 4532 0151 1283 0366 12 25 123", ("card",), (VISA_2,), "it is [REDACTED:card]"),
    Case("4111 1111 1111 1111, I'll repeat, 4111 1111 1111 1111", ("card", "card"), (VISA,)),
    Case("oh 4532 0151 1283 0366 is the one", ("card",), (VISA_2,), "[REDACTED:card] is the one"),
    Case("my card is 4532015112830366 1", ("card",), (VISA_2,), "my card is [REDACTED:card]"),
    Case(
        "Agent: the long number on the front?\nCaller: 3 7 1 4 4 9 6 3 5 3 9 8 4 3 1",
        ("card",),
        (AMEX_2,),
        "Agent: the long number on the front?\nCaller: [REDACTED:card]",
    ),
    Case("card\n4532\n0151\n1283\n0366\n", ("card",), (VISA_2,), "card\n[REDACTED:card]\n"),
    Case("Visa ٤١١١١١١١١١١١١١١١ (Arabic-Indic digits)", ("card",), (VISA,)),
    Case(
        "The caller paid with Visa 4532015112830366 exp 04/27, CVV 123.",
        ("card", "expiry", "security_code"),
        (VISA_2,),
        "The caller paid with Visa [REDACTED:card] exp [REDACTED:expiry], CVV [REDACTED:cvv].",
    ),
    Case(
        "caller keyed in 4111111111111111# at the prompt",
        ("card",),
        (VISA,),
        "caller keyed in [REDACTED:card] at the prompt",
    ),
]

CODES = [
    Case(
        "Caller's card number: 4532 0151 1283 0366; CVV: 123; expiry: 04/27.",
        ("card", "security_code", "expiry"),
        (VISA_2,),
        "Caller's card number: [REDACTED:card]; CVV: [REDACTED:cvv]; expiry: [REDACTED:expiry].",
    ),
    Case(
        "Agent: Could I take the card number please? Caller: Yeah it's uh four five three two, "
        "oh one five one, one two eight three, oh three six six. Agent: And the expiry? Caller: "
        "Oh four twenty seven. Agent: And the three digits on the back? Caller: One two three.",
        ("card", "expiry", "security_code"),
        (VISA_2,),
        "Agent: Could I take the card number please? Caller: Yeah it's uh [REDACTED:card]. "
        "Agent: And the expiry? Caller: [REDACTED:expiry]. Agent: And the three digits on the "
        "back? Caller: [REDACTED:cvv].",
    ),
    Case(
        "What's the CVV? It's 123.",
        ("security_code",),
        expected="What's the CVV? It's [REDACTED:cvv].",
    ),
    Case(
        "the three digit code on the back is seven three one",
        ("security_code",),
        expected="the three digit code on the back is [REDACTED:cvv]",
    ),
    Case("and the four digit code on the front, 4 3 2 1", ("security_code",)),
    Case("CVC: 987", ("security_code",), expected="CVC: [REDACTED:cvv]"),
    Case(
        "My security code is nine eight seven.",
        ("security_code",),
        expected="My security code is [REDACTED:cvv].",
    ),
    Case(
        "737 is the security code",
        ("security_code",),
        expected="[REDACTED:cvv] is the security code",
    ),
    Case(
        "the cvv is a hundred and twelve", ("security_code",), expected="the cvv is [REDACTED:cvv]"
    ),
    Case("Card verification value: 456", ("security_code",)),
    Case(
        "Agent: can you read me the digits on the back? Caller: yeah, uh, it's 5 5 2",
        ("security_code",),
    ),
    Case("my PIN is 4 3 2 1", ("pin",), expected="my PIN is [REDACTED:pin]"),
    Case("1234 is my pin, don't tell anyone", ("pin",)),
    Case("it expires 08/27", ("expiry",), expected="it expires [REDACTED:expiry]"),
    Case(
        "expiry date is March twenty twenty-seven",
        ("expiry",),
        expected="expiry date is [REDACTED:expiry]",
    ),
    Case("valid thru oh four twenty-six", ("expiry",), expected="valid thru [REDACTED:expiry]"),
    Case("the card expires in December 2026", ("expiry",)),
]

DTMF = [
    Case("[caller pressed 1 2 3 4 #]", ("dtmf",), expected="[caller pressed [REDACTED:dtmf]]"),
    Case("<dtmf>5 5 1 2</dtmf>", ("dtmf",), expected="<dtmf>[REDACTED:dtmf]</dtmf>"),
    Case("DTMF: 4 5 3 2", ("dtmf",), expected="DTMF: [REDACTED:dtmf]"),
    Case("Caller typed 9876 on the keypad", ("dtmf",)),
    Case("I pressed star one two three pound", ("dtmf",), expected="I pressed [REDACTED:dtmf]"),
    Case("the caller pressed 0 for the operator", ("dtmf",)),
    Case(
        "DTMF digits received: 1234#5678",
        ("dtmf",),
        expected="DTMF digits received: [REDACTED:dtmf]",
    ),
    Case("entered 2468 on the keypad", ("dtmf",)),
]

NEAR_MISSES = [
    Case("You can reach me on +44 20 7946 0958 any time."),
    Case("Call me on 07700 900123."),
    Case("Our toll-free number is 1-800-555-0199."),
    Case("my cell is (415) 555-2671"),
    Case("International, +86 138 0013 8002, that's my mobile"),  # passes Luhn; '+' makes it a phone
    Case("spoken: oh seven seven oh oh, nine double oh one two three"),
    Case("order 4532015112830367 hasn't arrived"),  # one digit off a test Visa: fails Luhn
    Case("Reference 1234 5678 9012 3456"),
    Case("A 16 digit number that fails Luhn: 5555 5555 5555 4445"),
    Case("Your ticket number is 12345678901234"),
    Case("The total was $1,234.56 including tax"),
    Case("about twelve thousand dollars a year"),
    Case("I was born in 1987"),
    Case("twenty twenty-four was a good year"),
    Case("the meeting is on 12/05/2024 at 10:30"),
    Case("room 404 on the fourth floor"),
    Case("I have three kids and two dogs"),
    Case("My postcode is SW1A 1AA"),
    Case("221B Baker Street, London NW1 6XE"),
    Case("UPS tracking 1Z999AA10123456784"),
    Case("USPS tracking 9400111899223344556677"),
    Case("FedEx tracking number 7489 2345 6789"),
    Case("The IBAN is GB82 WEST 1234 5698 7654 32"),
    Case("flight BA 117 departs at 14:05"),
    Case("I pressed the button twice"),
    Case("the security code? I don't have it with me"),
    Case("my card ends in 0366"),
    Case("the offer expires in 365 days"),
    Case("version 3.14.159 of the app"),
    Case("I live at 4 Privet Drive"),
    Case("the code for the door is 1234"),  # no card-code keyword: a door code is not PCI data
    Case("we have 3 locations and 25 staff"),
    Case("order #12345 and I typed my email"),  # "typed" only looks forward
    Case("My account number is 12345678 and sort code 20-00-00"),
    Case("I'll call back on oh two oh seven nine four six oh nine five eight"),
    Case("[00:01:23.456 --> 00:01:25.789] it's nine to five, twenty four seven"),
]

CASES = CARDS + CODES + DTMF + NEAR_MISSES
