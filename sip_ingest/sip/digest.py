"""Server-side HTTP Digest for SIP (RFC 3261 22, RFC 7616, RFC 8760: SHA-256 and MD5).

Design points:

* **Stateless nonces.** A nonce is ``base64url(ms-timestamp || 12 random bytes || HMAC-SHA256(
  secret, realm || timestamp || random)[:16])``. Any ingest node holding the shared secret can
  verify and age it, so a client may be challenged by one node and answer another.
* **No passwords.** The control plane stores HA1 = H(username:realm:password) per algorithm;
  :meth:`DigestAuthenticator.verify` takes a lookup function and never sees a password. Verdict
  reasons are fixed strings: they never contain a password, an HA1 or a response value.
* **stale only when it is safe.** ``stale=true`` lets a client retry silently with the same
  password, so it is only returned when the digest itself is correct for the nonce the client
  used (RFC 7616 3.3) and just the nonce is expired, foreign (e.g. from before a secret
  rotation) or its count was reused.
* **Replay protection with bounded memory.** Each (nonce, nc) is accepted once and nc must
  grow per nonce. The last nc per nonce lives in an LRU of ``replay_capacity`` nonces. When a
  nonce is evicted, every nonce issued at or before it is treated as spent (stale), so eviction
  can never reopen a replay window; under extreme load clients just re-authenticate.
* **Constant-time** comparison of responses, and a dummy digest for unknown users so the
  timing of a 401 does not reveal which usernames exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final
from urllib.parse import unquote

from sip_ingest.sip.errors import AuthError

__all__ = [
    "ALGORITHMS",
    "DigestAuthenticator",
    "DigestChallenge",
    "DigestCredentials",
    "FailureLimiter",
    "Verdict",
    "VerdictKind",
    "authorization_header",
    "compute_response",
    "ha1",
    "parse_authorization",
    "parse_challenge",
]


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: Supported ``algorithm=`` values -> hex digest function. The ``-sess`` variants and
#: SHA-512-256 are refused: we never offer them and the control plane stores no HA1 for them.
ALGORITHMS: Final[dict[str, Callable[[bytes], str]]] = {"SHA-256": _sha256, "MD5": _md5}
_HEX_LEN: Final = {"SHA-256": 64, "MD5": 32}
_MAX_HEADER: Final = 4096
_NONCE_RAW: Final = 36  # 8 timestamp + 12 random + 16 MAC
_PARAM_NAME: Final = r"[A-Za-z0-9\-.!%*_+`'~]+"
_AUTH_PARAM_RE: Final = re.compile(
    r"[ \t\r\n]*(" + _PARAM_NAME + r"\*?)[ \t]*=[ \t]*(\"(?:[^\"\\]|\\.)*\"|[^\s,\"]*)[ \t]*", re.S
)
_NC_RE: Final = re.compile(r"[0-9a-fA-F]{8}")


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """HA1 = H(username:realm:password), hex; what the control plane stores per algorithm."""
    return _hash(algorithm)(f"{username}:{realm}:{password}".encode())


def compute_response(
    *,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    algorithm: str = "MD5",
    qop: str | None = "auth",
    nc: str = "00000001",
    cnonce: str = "",
) -> str:
    """The ``response`` value (RFC 7616 3.4.1) for a given HA1; qop=None is RFC 2069 style."""
    digest = _hash(algorithm)
    ha2 = digest(f"{method}:{uri}".encode())
    if qop is None:
        return digest(f"{ha1}:{nonce}:{ha2}".encode())
    return digest(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


def _hash(algorithm: str) -> Callable[[bytes], str]:
    try:
        return ALGORITHMS[algorithm.upper()]
    except KeyError:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}") from None


# --------------------------------------------------------------------------------------------
# Header parsing


def _parse_auth_params(text: str, what: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = 0
    n = len(text)
    while pos < n:
        if text[pos] in ", \t\r\n":  # empty list elements are allowed (RFC 7230 7)
            pos += 1
            continue
        m = _AUTH_PARAM_RE.match(text, pos)
        if m is None:
            raise AuthError(f"malformed {what} parameters")
        name = m[1].lower()
        if name in params:
            raise AuthError(f"duplicate {name!r} in {what}")
        raw = m[2]
        params[name] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        pos = m.end()
        if pos < n and text[pos] != ",":
            raise AuthError(f"malformed {what} parameters")
    return params


def _split_scheme(value: str, what: str) -> tuple[str, str]:
    if len(value) > _MAX_HEADER:
        raise AuthError(f"{what} header too long")
    scheme, _, rest = value.strip(" \t").partition(" ")
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported {what} scheme {scheme[:20]!r}")
    return scheme, rest


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """A parsed ``Authorization``/``Proxy-Authorization: Digest ...`` header."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str = field(repr=False)
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    userhash: bool = False


def parse_authorization(value: str) -> DigestCredentials:
    """Parse credentials; tolerant of spacing and quoting, strict about what is required."""
    _, rest = _split_scheme(value, "Authorization")
    params = _parse_auth_params(rest, "Authorization")
    if "username*" in params:
        if "username" in params:
            raise AuthError("both username and username* present")
        params["username"] = _decode_ext_value(params.pop("username*"))
    missing = [p for p in ("username", "realm", "nonce", "uri", "response") if p not in params]
    if missing:
        raise AuthError("Authorization lacks " + ", ".join(missing))
    userhash = params.get("userhash", "false").lower()
    if userhash not in ("true", "false"):
        raise AuthError("malformed userhash")
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=params.get("algorithm", "MD5").upper(),
        qop=params.get("qop"),
        nc=params.get("nc"),
        cnonce=params.get("cnonce"),
        opaque=params.get("opaque"),
        userhash=userhash == "true",
    )


def _decode_ext_value(value: str) -> str:
    # RFC 8187 ext-value: charset'lang'pct-encoded (RFC 7616 3.4.4 username*)
    charset, _, rest = value.partition("'")
    _, _, encoded = rest.partition("'")
    if charset.upper() != "UTF-8":
        raise AuthError("username* must be UTF-8")
    try:
        return unquote(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise AuthError("username* is not valid UTF-8") from None


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A parsed ``WWW-Authenticate: Digest ...`` (for the test client and UAC side)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> DigestChallenge:
    _, rest = _split_scheme(value, "WWW-Authenticate")
    params = _parse_auth_params(rest, "WWW-Authenticate")
    if "realm" not in params or "nonce" not in params:
        raise AuthError("challenge lacks realm or nonce")
    qop = tuple(q.strip() for q in params.get("qop", "").split(",") if q.strip())
    return DigestChallenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5").upper(),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "false").lower() == "true",
    )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization_header(
    challenge: DigestChallenge,
    *,
    username: str,
    method: str,
    uri: str,
    password: str | None = None,
    ha1_hex: str | None = None,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """Answer a challenge (client side: ``callvault call`` and tests). Give password or HA1."""
    if (password is None) == (ha1_hex is None):
        raise ValueError("give exactly one of password and ha1_hex")
    algorithm = challenge.algorithm
    if ha1_hex is None:
        assert password is not None
        ha1_hex = ha1(username, challenge.realm, password, algorithm)
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
    ]
    if "auth" in challenge.qop:
        cnonce = cnonce or secrets.token_hex(8)
        nc_text = f"{nc:08x}"
        response = compute_response(
            ha1=ha1_hex,
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            algorithm=algorithm,
            qop="auth",
            nc=nc_text,
            cnonce=cnonce,
        )
        parts += [f"response={_quote(response)}", f"algorithm={algorithm}", "qop=auth"]
        parts += [f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    else:
        response = compute_response(
            ha1=ha1_hex,
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            algorithm=algorithm,
            qop=None,
        )
        parts += [f"response={_quote(response)}", f"algorithm={algorithm}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Verification


class VerdictKind(StrEnum):
    OK = "ok"
    #: Right password, unusable nonce: answer 401 with a fresh challenge and ``stale=true``.
    STALE = "stale"
    BAD_CREDENTIALS = "bad_credentials"
    UNKNOWN_USER = "unknown_user"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    #: Why, for audit events and logs; never contains secrets.
    reason: str
    username: str | None = None
    algorithm: str | None = None
    #: The request reused a (nonce, nc) pair: a replay or a broken client; worth an audit event.
    replay: bool = False

    @property
    def ok(self) -> bool:
        return self.kind is VerdictKind.OK

    @property
    def stale(self) -> bool:
        """Answer with a fresh challenge carrying ``stale=true``; not an auth failure."""
        return self.kind is VerdictKind.STALE

    @property
    def is_failure(self) -> bool:
        """Counts towards the per-source failure limit (a stale nonce does not, a replay does)."""
        return self.kind not in (VerdictKind.OK, VerdictKind.STALE) or self.replay


class DigestAuthenticator:
    """Issues challenges and verifies credentials for one realm (see the module docstring).

    ``algorithms`` is the offer order; RFC 8760 wants SHA-256 before MD5. Clients that only
    look at the first challenge and know only MD5 need ``("MD5", "SHA-256")``.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        nonce_ttl_s: float = 300.0,
        *,
        clock: Callable[[], float] = time.time,
        algorithms: Iterable[str] = ("SHA-256", "MD5"),
        replay_capacity: int = 100_000,
        max_clock_skew_s: float = 5.0,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        if '"' in realm or "\\" in realm:
            raise ValueError("realm must not contain quotes or backslashes")
        self.realm = realm
        self.nonce_ttl_s = nonce_ttl_s
        self.algorithms = tuple(a.upper() for a in algorithms)
        if not self.algorithms or any(a not in ALGORITHMS for a in self.algorithms):
            raise ValueError(f"algorithms must be a subset of {tuple(ALGORITHMS)}")
        self._secret = secret
        self._clock = clock
        self._realm_bytes = realm.encode("utf-8")
        self._capacity = replay_capacity
        self._skew_ms = int(max_clock_skew_s * 1000)
        # nonce -> (highest nc accepted, nonce timestamp ms)
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._evicted_upto_ms = -1
        mac = hmac.new(secret, b"opaque\x00" + self._realm_bytes, hashlib.sha256).digest()
        self.opaque = base64.urlsafe_b64encode(mac[:12]).decode("ascii")

    def __repr__(self) -> str:
        return f"DigestAuthenticator(realm={self.realm!r}, algorithms={self.algorithms})"

    def _mac(self, stamp_random: bytes) -> bytes:
        msg = self._realm_bytes + b"\x00" + stamp_random
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:16]

    def new_nonce(self) -> str:
        stamp = int(self._clock() * 1000).to_bytes(8, "big")
        body = stamp + secrets.token_bytes(12)
        return base64.urlsafe_b64encode(body + self._mac(body)).decode("ascii")

    def challenges(self, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate values, one per algorithm, sharing one fresh nonce."""
        nonce = self.new_nonce()
        tail = ", stale=true" if stale else ""
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", opaque="{self.opaque}", '
            f'algorithm={algorithm}, qop="auth"{tail}'
            for algorithm in self.algorithms
        ]

    def _nonce_time(self, nonce: str) -> int | None:
        """Issue time (ms) of a nonce we minted; None if not ours (or not for this realm)."""
        if len(nonce) != 48:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return None
        if len(raw) != _NONCE_RAW:
            return None
        if not hmac.compare_digest(raw[20:], self._mac(raw[:20])):
            return None
        return int.from_bytes(raw[:8], "big")

    def verify(
        self,
        creds: DigestCredentials,
        method: str,
        lookup_ha1: Callable[[str, str], str | None],
        *,
        request_uri: str | None = None,
    ) -> Verdict:
        """Check credentials for a request with ``method``.

        ``lookup_ha1(username, algorithm)`` returns the stored hex HA1 for that algorithm or
        None. ``request_uri``, when given, must equal the digest ``uri`` (RFC 3261 22.4 lets a
        UAS insist; leave it None if proxies in front rewrite the Request-URI).
        """
        user = creds.username
        algorithm = creds.algorithm

        def verdict(kind: VerdictKind, reason: str, replay: bool = False) -> Verdict:
            return Verdict(kind, reason, user, algorithm, replay)

        if algorithm not in self.algorithms:
            return verdict(VerdictKind.MALFORMED, "unsupported algorithm")
        if creds.userhash:
            return verdict(VerdictKind.MALFORMED, "userhash is not supported")
        if creds.realm != self.realm:
            return verdict(VerdictKind.BAD_CREDENTIALS, "wrong realm")
        if creds.qop != "auth":
            return verdict(VerdictKind.MALFORMED, "qop=auth is required")
        if creds.nc is None or not _NC_RE.fullmatch(creds.nc):
            return verdict(VerdictKind.MALFORMED, "missing or malformed nc")
        if not creds.cnonce:
            return verdict(VerdictKind.MALFORMED, "missing cnonce")
        if not creds.uri:
            return verdict(VerdictKind.MALFORMED, "missing digest uri")
        if request_uri is not None and creds.uri != request_uri:
            return verdict(VerdictKind.MALFORMED, "digest uri does not match the Request-URI")

        stored = lookup_ha1(user, algorithm)
        known = stored is not None and len(stored) == _HEX_LEN[algorithm]
        expected = compute_response(
            ha1=stored.lower() if known and stored is not None else "0" * _HEX_LEN[algorithm],
            nonce=creds.nonce,
            method=method,
            uri=creds.uri,
            algorithm=algorithm,
            qop="auth",
            nc=creds.nc,
            cnonce=creds.cnonce,
        )
        matches = hmac.compare_digest(
            expected.encode("ascii"), creds.response.lower().encode("utf-8", "replace")
        )
        if not known:
            return verdict(VerdictKind.UNKNOWN_USER, "unknown user")
        if not matches:
            return verdict(VerdictKind.BAD_CREDENTIALS, "wrong response")

        issued_ms = self._nonce_time(creds.nonce)
        if issued_ms is None:
            return verdict(VerdictKind.STALE, "nonce not issued by this realm")
        if creds.opaque is not None and not hmac.compare_digest(
            creds.opaque.encode("utf-8", "replace"), self.opaque.encode("ascii")
        ):
            return verdict(VerdictKind.MALFORMED, "opaque does not match")
        now_ms = int(self._clock() * 1000)
        if now_ms - issued_ms > self.nonce_ttl_s * 1000:
            return verdict(VerdictKind.STALE, "nonce expired")
        if issued_ms - now_ms > self._skew_ms:
            return verdict(VerdictKind.STALE, "nonce from the future")
        nc = int(creds.nc, 16)
        seen = self._seen.get(creds.nonce)
        if seen is None:
            if issued_ms <= self._evicted_upto_ms:
                return verdict(VerdictKind.STALE, "nonce aged out of the replay window")
        elif nc <= seen[0]:
            return verdict(VerdictKind.STALE, "nonce count reused", replay=True)
        self._remember(creds.nonce, nc, issued_ms)
        return verdict(VerdictKind.OK, "ok")

    def _remember(self, nonce: str, nc: int, issued_ms: int) -> None:
        seen = self._seen
        seen[nonce] = (nc, issued_ms)
        seen.move_to_end(nonce)
        while len(seen) > self._capacity:
            _, (_, evicted_ms) = seen.popitem(last=False)
            self._evicted_upto_ms = max(self._evicted_upto_ms, evicted_ms)


# --------------------------------------------------------------------------------------------
# Rate limiting


class FailureLimiter:
    """Sliding-window count of authentication failures per source address.

    ``allow(ip)`` is False once ``limit_per_minute`` failures fell within the last
    ``window_s`` seconds; the caller then answers 403 without a challenge (and still audits).
    At most ``max_sources`` addresses are tracked, least recently failing dropped first, each
    holding at most ``limit_per_minute`` timestamps. A flood from very many spoofed addresses
    can therefore push an attacker out of the table: that is the price of bounded memory, and
    a reason to also rate-limit at the network edge.
    """

    def __init__(
        self,
        limit_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        window_s: float = 60.0,
        max_sources: int = 50_000,
    ) -> None:
        if limit_per_minute < 1:
            raise ValueError("limit_per_minute must be at least 1")
        self.limit = limit_per_minute
        self.window_s = window_s
        self._clock = clock
        self._max_sources = max_sources
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, ip: str, now: float) -> list[float] | None:
        stamps = self._failures.get(ip)
        if stamps is None:
            return None
        cutoff = now - self.window_s
        drop = 0
        while drop < len(stamps) and stamps[drop] <= cutoff:
            drop += 1
        if drop:
            del stamps[:drop]
        if not stamps:
            del self._failures[ip]
            return None
        return stamps

    def allow(self, ip: str) -> bool:
        stamps = self._recent(ip, self._clock())
        return stamps is None or len(stamps) < self.limit

    def record_failure(self, ip: str) -> None:
        now = self._clock()
        stamps = self._recent(ip, now)
        if stamps is None:
            stamps = self._failures[ip] = []
        stamps.append(now)
        if len(stamps) > self.limit:
            del stamps[: len(stamps) - self.limit]
        self._failures.move_to_end(ip)
        while len(self._failures) > self._max_sources:
            self._failures.popitem(last=False)

    def reset(self, ip: str) -> None:
        self._failures.pop(ip, None)

    def __len__(self) -> int:
        return len(self._failures)
