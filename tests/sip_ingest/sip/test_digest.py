"""Digest authentication (RFC 3261, RFC 7616, RFC 8760) and the failure limiter."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import pytest

from sip_ingest.sip import (
    AuthError,
    DigestAuthenticator,
    FailureLimiter,
    VerdictKind,
    authorization_header,
    compute_response,
    ha1,
    parse_authorization,
    parse_challenge,
)

SECRET = b"0123456789abcdef-cluster-secret"
REALM = "callvault"
USER, PASSWORD = "trunk-acme", "Xk3mP9qLw2vR7tYz5nB8cD4f"  # 24 random characters, as issued
URI = "sip:+4930555000@198.51.100.7:5060"

# RFC 7616 section 3.9.1
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_SHA256 = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
RFC_MD5 = "8ca523f5e9506fed4657c9700eebdbec"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(
    username: str, realm: str = REALM, password: str = PASSWORD
) -> dict[tuple[str, str], str]:
    """What the control plane keeps: HA1 per algorithm, never the password."""
    return {(username, alg): ha1(username, realm, password, alg) for alg in ("MD5", "SHA-256")}


def lookup_for(table: dict[tuple[str, str], str]) -> Callable[[str, str], str | None]:
    return lambda username, algorithm: table.get((username, algorithm))


LOOKUP = lookup_for(store(USER))


def authenticator(clock: Clock | None = None, **kw: object) -> DigestAuthenticator:
    return DigestAuthenticator(REALM, SECRET, 300.0, clock=clock or Clock(), **kw)  # type: ignore[arg-type]


def answer(auth: DigestAuthenticator, algorithm: str = "SHA-256", nc: int = 1, **kw: object) -> str:
    challenge = next(c for c in map(parse_challenge, auth.challenges()) if c.algorithm == algorithm)
    args = {"username": USER, "password": PASSWORD, "method": "INVITE", "uri": URI, "nc": nc}
    args.update(kw)
    return authorization_header(challenge, **args)  # type: ignore[arg-type]


# --- RFC vectors ----------------------------------------------------------------------------


RFC_AUTHORIZATION = f"""Digest username="Mufasa",
       realm="http-auth@example.org",
       uri="/dir/index.html",
       algorithm=SHA-256,
       nonce="{RFC_NONCE}",
       nc=00000001,
       cnonce="{RFC_CNONCE}",
       qop=auth,
       response="{RFC_SHA256}",
       opaque="{RFC_OPAQUE}\""""


@pytest.mark.parametrize(("algorithm", "expected"), [("SHA-256", RFC_SHA256), ("MD5", RFC_MD5)])
def test_rfc7616_example_responses(algorithm: str, expected: str) -> None:
    h = ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    got = compute_response(
        ha1=h,
        nonce=RFC_NONCE,
        method="GET",
        uri="/dir/index.html",
        algorithm=algorithm,
        qop="auth",
        nc="00000001",
        cnonce=RFC_CNONCE,
    )
    assert got == expected


def test_rfc7616_example_through_parse_and_verify() -> None:
    creds = parse_authorization(RFC_AUTHORIZATION.replace("\n", "\r\n"))  # folded, as on the wire
    assert (creds.username, creds.algorithm, creds.qop, creds.nc) == (
        "Mufasa",
        "SHA-256",
        "auth",
        "00000001",
    )
    auth = DigestAuthenticator("http-auth@example.org", SECRET, clock=Clock())
    table = {
        ("Mufasa", alg): ha1("Mufasa", "http-auth@example.org", "Circle of Life", alg)
        for alg in ("MD5", "SHA-256")
    }
    # The digest is right; the nonce is the RFC's, not one we issued: retry silently (stale).
    verdict = auth.verify(creds, "GET", lookup_for(table))
    assert verdict.kind is VerdictKind.STALE and verdict.reason == "nonce not issued by this realm"
    md5 = dataclasses.replace(creds, algorithm="MD5", response=RFC_MD5)
    assert auth.verify(md5, "GET", lookup_for(table)).kind is VerdictKind.STALE
    wrong = dataclasses.replace(creds, response="0" * 64)
    assert auth.verify(wrong, "GET", lookup_for(table)).kind is VerdictKind.BAD_CREDENTIALS
    assert auth.verify(creds, "POST", lookup_for(table)).kind is VerdictKind.BAD_CREDENTIALS


# --- challenge / response round trips -------------------------------------------------------


def test_challenges_sha256_first_then_md5() -> None:
    auth = authenticator()
    values = auth.challenges()
    parsed = [parse_challenge(v) for v in values]
    assert [c.algorithm for c in parsed] == ["SHA-256", "MD5"]
    assert all(c.realm == REALM and c.qop == ("auth",) and not c.stale for c in parsed)
    assert parsed[0].nonce == parsed[1].nonce and parsed[0].opaque == auth.opaque
    assert 'qop="auth"' in values[0] and "algorithm=SHA-256" in values[0]
    assert parse_challenge(auth.challenges(stale=True)[0]).stale
    assert parsed[0].nonce != parse_challenge(auth.challenges()[0]).nonce
    md5_first = authenticator(algorithms=("MD5", "SHA-256"))
    assert parse_challenge(md5_first.challenges()[0]).algorithm == "MD5"


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_full_round_trip(algorithm: str) -> None:
    auth = authenticator()
    creds = parse_authorization(answer(auth, algorithm))
    verdict = auth.verify(creds, "INVITE", LOOKUP, request_uri=URI)
    assert verdict.ok and verdict.username == USER and verdict.algorithm == algorithm
    assert not verdict.is_failure


def test_any_node_with_the_secret_verifies() -> None:
    clock = Clock()
    node_a, node_b = authenticator(clock), authenticator(clock)
    creds = parse_authorization(answer(node_a))
    assert node_b.verify(creds, "INVITE", LOOKUP).ok
    other_cluster = DigestAuthenticator(REALM, b"another-secret-of-16+", clock=clock)
    assert other_cluster.verify(creds, "INVITE", LOOKUP).kind is VerdictKind.STALE
    other_realm = DigestAuthenticator("elsewhere", SECRET, clock=clock)
    creds_other = dataclasses.replace(creds, realm="elsewhere")
    # same secret, other realm: the nonce does not carry over (realm is under the MAC)
    table = store(USER, realm="elsewhere")
    fresh = dataclasses.replace(
        creds_other,
        response=compute_response(
            ha1=table[(USER, "SHA-256")],
            nonce=creds.nonce,
            method="INVITE",
            uri=URI,
            algorithm="SHA-256",
            nc=creds.nc or "",
            cnonce=creds.cnonce or "",
        ),
    )
    assert other_realm.verify(fresh, "INVITE", lookup_for(table)).kind is VerdictKind.STALE


def test_sipp_style_md5_header() -> None:
    """sipp: no spaces, unquoted qop and nc, hex cnonce, algorithm after response."""
    auth = authenticator()
    challenge = parse_challenge(auth.challenges()[1])
    cnonce, nc = "6b8b4567", "00000001"
    h1 = hashlib.md5(f"{USER}:{REALM}:{PASSWORD}".encode()).hexdigest()
    h2 = hashlib.md5(f"INVITE:{URI}".encode()).hexdigest()
    resp = hashlib.md5(f"{h1}:{challenge.nonce}:{nc}:{cnonce}:auth:{h2}".encode()).hexdigest()
    header = (
        f'Digest username="{USER}",realm="{REALM}",cnonce="{cnonce}",nc={nc},qop=auth,'
        f'uri="{URI}",nonce="{challenge.nonce}",response="{resp}",algorithm=MD5,'
        f'opaque="{challenge.opaque}"'
    )
    assert auth.verify(parse_authorization(header), "INVITE", LOOKUP).ok


def test_baresip_style_sha256_header() -> None:
    """baresip/libre: ", " separators, quoted values, 16 hex digit cnonce."""
    auth = authenticator()
    challenge = parse_challenge(auth.challenges()[0])
    cnonce, nc = "0123456789abcdef", "00000001"
    h1 = hashlib.sha256(f"{USER}:{REALM}:{PASSWORD}".encode()).hexdigest()
    h2 = hashlib.sha256(f"INVITE:{URI}".encode()).hexdigest()
    resp = hashlib.sha256(f"{h1}:{challenge.nonce}:{nc}:{cnonce}:auth:{h2}".encode()).hexdigest()
    header = (
        f'Digest username="{USER}", realm="{REALM}", nonce="{challenge.nonce}", uri="{URI}", '
        f'response="{resp.upper()}", algorithm=SHA-256, cnonce="{cnonce}", qop=auth, nc={nc}'
    )
    assert auth.verify(parse_authorization(header), "INVITE", LOOKUP).ok


# --- failures -------------------------------------------------------------------------------


def test_replay_is_rejected_and_nc_must_grow() -> None:
    auth = authenticator()
    header = answer(auth, nc=1)
    creds = parse_authorization(header)
    assert auth.verify(creds, "INVITE", LOOKUP).ok
    replay = auth.verify(creds, "INVITE", LOOKUP)
    assert replay.kind is VerdictKind.STALE and replay.replay and replay.is_failure
    nonce = creds.nonce
    challenge = parse_challenge(auth.challenges()[0])
    challenge = dataclasses.replace(challenge, nonce=nonce)

    def with_nc(n: int) -> object:
        value = authorization_header(
            challenge, username=USER, password=PASSWORD, method="BYE", uri=URI, nc=n
        )
        return auth.verify(parse_authorization(value), "BYE", LOOKUP)

    assert with_nc(3).ok  # type: ignore[attr-defined]
    assert with_nc(2).replay  # type: ignore[attr-defined]
    assert with_nc(3).replay  # type: ignore[attr-defined]
    assert with_nc(4).ok  # type: ignore[attr-defined]


def test_a_failed_attempt_does_not_burn_the_nonce_count() -> None:
    auth = authenticator()
    creds = parse_authorization(answer(auth, nc=5))
    bogus = dataclasses.replace(creds, nc="ffffffff", response="0" * 64)
    assert auth.verify(bogus, "INVITE", LOOKUP).kind is VerdictKind.BAD_CREDENTIALS
    assert auth.verify(creds, "INVITE", LOOKUP).ok


def test_stale_nonce() -> None:
    clock = Clock()
    auth = authenticator(clock)
    creds = parse_authorization(answer(auth))
    clock.now += 301
    verdict = auth.verify(creds, "INVITE", LOOKUP)
    assert verdict.kind is VerdictKind.STALE and verdict.reason == "nonce expired"
    assert verdict.stale and not verdict.is_failure
    wrong = dataclasses.replace(creds, response="1" * 64)
    assert auth.verify(wrong, "INVITE", LOOKUP).kind is VerdictKind.BAD_CREDENTIALS
    clock.now -= 1000  # a nonce from the future (clock went backwards a lot)
    assert auth.verify(creds, "INVITE", LOOKUP).reason == "nonce from the future"


def test_tampered_nonce_is_stale_even_with_a_matching_digest() -> None:
    auth = authenticator()
    challenge = parse_challenge(auth.challenges()[0])
    nonce = challenge.nonce
    forged = nonce[:10] + ("A" if nonce[10] != "A" else "B") + nonce[11:]
    forged_challenge = dataclasses.replace(challenge, nonce=forged)
    header = authorization_header(
        forged_challenge, username=USER, password=PASSWORD, method="INVITE", uri=URI
    )
    assert auth.verify(parse_authorization(header), "INVITE", LOOKUP).kind is VerdictKind.STALE


def test_wrong_password_realm_user() -> None:
    auth = authenticator()
    bad_pw = parse_authorization(answer(auth, password="not-the-password"))
    assert auth.verify(bad_pw, "INVITE", LOOKUP).kind is VerdictKind.BAD_CREDENTIALS
    good = parse_authorization(answer(auth))
    wrong_realm = dataclasses.replace(good, realm="other")
    verdict = auth.verify(wrong_realm, "INVITE", LOOKUP)
    assert verdict.kind is VerdictKind.BAD_CREDENTIALS and verdict.reason == "wrong realm"
    stranger = parse_authorization(answer(auth, username="nobody"))
    verdict = auth.verify(stranger, "INVITE", LOOKUP)
    assert verdict.kind is VerdictKind.UNKNOWN_USER and verdict.is_failure
    # a revoked credential looks like an unknown user: the lookup returns None
    assert auth.verify(good, "INVITE", lambda u, a: None).kind is VerdictKind.UNKNOWN_USER
    # so does a corrupt stored HA1
    assert auth.verify(good, "INVITE", lambda u, a: "abc").kind is VerdictKind.UNKNOWN_USER


def test_malformed_credentials() -> None:
    auth = authenticator()
    good = parse_authorization(answer(auth))
    cases = {
        "unsupported algorithm": dataclasses.replace(good, algorithm="MD5-SESS"),
        "qop=auth is required": dataclasses.replace(good, qop="auth-int"),
        "missing or malformed nc": dataclasses.replace(good, nc="1"),
        "missing cnonce": dataclasses.replace(good, cnonce=None),
        "missing digest uri": dataclasses.replace(good, uri=""),
        "userhash is not supported": dataclasses.replace(good, userhash=True),
    }
    for reason, creds in cases.items():
        verdict = auth.verify(creds, "INVITE", LOOKUP)
        assert (verdict.kind, verdict.reason) == (VerdictKind.MALFORMED, reason)
    no_qop = dataclasses.replace(good, qop=None)
    assert auth.verify(no_qop, "INVITE", LOOKUP).kind is VerdictKind.MALFORMED
    verdict = auth.verify(good, "INVITE", LOOKUP, request_uri="sip:other@198.51.100.7")
    assert verdict.kind is VerdictKind.MALFORMED
    wrong_opaque = dataclasses.replace(good, opaque="forged")
    assert auth.verify(wrong_opaque, "INVITE", LOOKUP).reason == "opaque does not match"
    sha_only = authenticator(algorithms=("SHA-256",))
    md5 = parse_authorization(answer(auth, "MD5"))
    assert sha_only.verify(md5, "INVITE", LOOKUP).kind is VerdictKind.MALFORMED


def test_reasons_never_leak_secrets() -> None:
    auth = authenticator()
    table = store(USER)
    secrets_ = [PASSWORD, *table.values()]
    headers = [answer(auth), answer(auth, password="guess"), answer(auth, username="x")]
    for header in headers:
        creds = parse_authorization(header)
        for variant in (
            creds,
            dataclasses.replace(creds, realm="r"),
            dataclasses.replace(creds, nc="z"),
        ):
            verdict = auth.verify(variant, "INVITE", lookup_for(table))
            rendered = repr(verdict) + verdict.reason
            assert not any(s in rendered for s in secrets_)
            assert creds.response not in rendered
        assert creds.response not in repr(creds)
    assert "0123456789abcdef" not in repr(auth)


def test_replay_memory_is_bounded_and_eviction_does_not_reopen_replays() -> None:
    clock = Clock()
    auth = authenticator(clock, replay_capacity=2)
    headers = []
    for _ in range(3):
        headers.append(answer(auth))
        clock.now += 1
    first, second, third = (parse_authorization(h) for h in headers)
    assert auth.verify(first, "INVITE", LOOKUP).ok
    assert auth.verify(second, "INVITE", LOOKUP).ok
    assert auth.verify(third, "INVITE", LOOKUP).ok  # evicts `first`
    assert len(auth._seen) == 2
    replay = auth.verify(first, "INVITE", LOOKUP)
    assert (
        replay.kind is VerdictKind.STALE and replay.reason == "nonce aged out of the replay window"
    )
    # a fresh nonce still works after evictions
    assert auth.verify(parse_authorization(answer(auth)), "INVITE", LOOKUP).ok


def test_constructor_guards() -> None:
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, b"short")
    with pytest.raises(ValueError):
        DigestAuthenticator('bad"realm', SECRET)
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, SECRET, algorithms=("SHA-512-256",))


# --- header parsing -----------------------------------------------------------------------------


def test_parse_authorization_tolerance() -> None:
    creds = parse_authorization(
        'digest   username = "a\\"b" ,realm=r,  nonce="n", uri="sip:x@y", response="ab",,'
        " algorithm=sha-256, qop=auth, nc=00000002, cnonce=c"
    )
    assert creds.username == 'a"b' and creds.realm == "r" and creds.algorithm == "SHA-256"
    assert (creds.nc, creds.cnonce, creds.opaque) == ("00000002", "c", None)
    ext = parse_authorization(
        "Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=r, nonce=n, uri=u, response=x"
    )
    assert ext.username == "Jäsøn Doe"


@pytest.mark.parametrize(
    "value",
    [
        "Basic dXNlcjpwYXNz",
        "NoOneKnowsThisScheme opaque-data=here",
        "Digest",
        'Digest username="a", realm="r", nonce="n", uri="u"',
        'Digest username="a", username="b", realm="r", nonce="n", uri="u", response="x"',
        'Digest username="unterminated, realm="r"',
        'Digest username="a" realm="r", nonce="n", uri="u", response="x"',
        "Digest username*=ISO-8859-1''x, realm=r, nonce=n, uri=u, response=x",
        "Digest username*=UTF-8''%ff, realm=r, nonce=n, uri=u, response=x",
        "Digest username=\"a\", username*=UTF-8''b, realm=r, nonce=n, uri=u, response=x",
        "Digest userhash=maybe, username=a, realm=r, nonce=n, uri=u, response=x",
        "Digest " + "a=b, " * 2000,
    ],
)
def test_parse_authorization_errors(value: str) -> None:
    with pytest.raises(AuthError) as info:
        parse_authorization(value)
    assert info.value.status == 401


# --- failure limiter -----------------------------------------------------------------------------


def test_failure_limiter_sliding_window() -> None:
    clock = Clock(1000.0)
    limiter = FailureLimiter(3, clock)
    for _ in range(2):
        limiter.record_failure("192.0.2.1")
        clock.now += 10
    assert limiter.allow("192.0.2.1")
    limiter.record_failure("192.0.2.1")  # t=1020: three within a minute
    assert not limiter.allow("192.0.2.1")
    assert limiter.allow("192.0.2.2")  # per source
    clock.now = 1060.5  # the t=1000 failure slid out of the window
    assert limiter.allow("192.0.2.1")
    limiter.record_failure("192.0.2.1")
    assert not limiter.allow("192.0.2.1")
    clock.now = 2000.0
    assert limiter.allow("192.0.2.1") and len(limiter) == 0  # expired entries are dropped
    limiter.record_failure("192.0.2.9")
    limiter.reset("192.0.2.9")
    assert limiter.allow("192.0.2.9")


def test_failure_limiter_memory_is_bounded() -> None:
    clock = Clock(0.0)
    limiter = FailureLimiter(2, clock, max_sources=100)
    for i in range(1000):
        limiter.record_failure(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    for _ in range(50):
        limiter.record_failure("192.0.2.1")
    assert len(limiter._failures["192.0.2.1"]) == 2
    assert not limiter.allow("192.0.2.1")
    with pytest.raises(ValueError):
        FailureLimiter(0)
