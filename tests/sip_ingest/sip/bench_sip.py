"""Micro-benchmarks of the SIP protocol layer (not collected by pytest).

Run: ``python -m tests.sip_ingest.sip.bench_sip``. Prints the best of many short repeats, which
is the figure least disturbed by other processes on a shared machine.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from sip_ingest.sip import (
    DigestAuthenticator,
    SessionDescription,
    StreamFramer,
    answer,
    authorization_header,
    ha1,
    make_response,
    parse_authorization,
    parse_challenge,
    parse_message,
    parse_multipart,
    parse_recording_metadata,
)
from tests.sip_ingest.sip.samples import (
    ASTERISK_INVITE,
    ASTERISK_SDP,
    OPTIONS_PING,
    SIPP_INVITE,
    SIPREC_INVITE,
    SIPREC_METADATA,
)


def best_us(fn: Callable[[], object], number: int = 200, repeat: int = 50) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    invite = parse_message(ASTERISK_INVITE)
    sdp = SessionDescription.parse(ASTERISK_SDP)
    siprec = parse_message(SIPREC_INVITE)
    auth = DigestAuthenticator("callvault", b"0123456789abcdef0123456789abcdef")
    table = {
        (u, a): ha1("trunk", "callvault", "pw", a) for u in ("trunk",) for a in ("MD5", "SHA-256")
    }

    def lookup(user: str, algorithm: str) -> str | None:
        return table.get((user, algorithm))

    def verify(algorithm: str) -> Callable[[], object]:
        challenge = next(
            c for c in map(parse_challenge, auth.challenges()) if c.algorithm == algorithm
        )
        counter = iter(range(1, 10**9))

        def run() -> object:
            header = authorization_header(
                challenge,
                username="trunk",
                password="pw",
                method="INVITE",
                uri="sip:x@y",
                nc=next(counter),
                cnonce="0a1b2c3d",
            )
            return auth.verify(parse_authorization(header), "INVITE", lookup)

        return run

    def verify_only(algorithm: str) -> Callable[[], object]:
        challenge = next(
            c for c in map(parse_challenge, auth.challenges()) if c.algorithm == algorithm
        )
        creds = [
            parse_authorization(
                authorization_header(
                    challenge,
                    username="trunk",
                    password="pw",
                    method="INVITE",
                    uri="sip:x@y",
                    nc=n,
                    cnonce="0a1b2c3d",
                )
            )
            for n in range(1, 200_001)
        ]
        it = iter(creds)
        return lambda: auth.verify(next(it), "INVITE", lookup)

    framer_data = OPTIONS_PING * 20
    rows = [
        (
            f"parse_message Asterisk INVITE+SDP ({len(ASTERISK_INVITE)} B)",
            lambda: parse_message(ASTERISK_INVITE),
        ),
        (
            f"parse_message sipp uac INVITE ({len(SIPP_INVITE)} B)",
            lambda: parse_message(SIPP_INVITE),
        ),
        (f"parse_message OPTIONS ({len(OPTIONS_PING)} B)", lambda: parse_message(OPTIONS_PING)),
        (
            f"parse_message SIPREC INVITE ({len(SIPREC_INVITE)} B)",
            lambda: parse_message(SIPREC_INVITE),
        ),
        ("StreamFramer.feed, per OPTIONS (20 per read)", lambda: StreamFramer().feed(framer_data)),
        ("make_response 100 Trying + to_bytes", lambda: make_response(invite, 100).to_bytes()),  # type: ignore[arg-type]
        ("SessionDescription.parse (Asterisk)", lambda: SessionDescription.parse(ASTERISK_SDP)),
        (
            "sdp.answer + to_bytes",
            lambda: answer(sdp, local_ip="198.51.100.7", ports=[20000])[0].to_bytes(),
        ),
        (
            "parse_multipart (SIPREC body)",
            lambda: parse_multipart(siprec.headers["content-type"], siprec.body),
        ),
        ("parse_recording_metadata", lambda: parse_recording_metadata(SIPREC_METADATA)),
        ("digest verify only, SHA-256", verify_only("SHA-256")),
        ("digest verify only, MD5", verify_only("MD5")),
        ("digest client header + parse + verify, SHA-256", verify("SHA-256")),
    ]
    for label, fn in rows:
        us = best_us(fn)
        if label.startswith("StreamFramer"):
            us /= 20
        print(f"{label:52s} {us:8.1f} us")


if __name__ == "__main__":
    main()
