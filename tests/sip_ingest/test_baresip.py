"""A third-party softphone against the node: the Debian ``baresip`` (baresip-core 1.0.0, libre
1.1.0) calls over SIP/TLS with SDES-SRTP (``mediaenc=srtp-mand``) and digest auth, streams a
3 s 440 Hz WAV with the ``aufile`` module and hangs up when the file ends.

What this baresip cannot do, and how the test deals with it:

* Digest: libre 1.1.0 computes MD5 only, and it gives up on a 401 (``ENOSYS``, "Function not
  implemented") as soon as *any* of its challenges names another algorithm, even one listed
  after MD5. The node is therefore configured with ``digest_algorithms=("MD5",)``.
* TLS: baresip 1.0.0 has no switch to verify the server's certificate (``sip_verify_server``
  came in later versions; libre 1.1.0 never calls ``tls_set_verify_server`` for SIP), so the
  connection is encrypted but not authenticated. ``sip_cafile`` still points at the test's CA.
* Dialog routing: libre (1.1.0, and still 4.x) sends in-dialog requests only to ``sip:``
  targets, so the node's 200 OK must carry a ``sip:`` Contact for a ``sip:`` INVITE over TLS.
  A ``sips:`` Contact there leaves baresip unable to ACK (the call closes with ``ENOSYS``); the
  failure message then says so.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from sip_ingest.media.wav import decode_g711, sine_pcm16, write_wav
from tests.ports import rtp_port_range
from tests.sip_ingest.baresip import BaresipAccount, BaresipResult, run_baresip, write_config
from tests.sip_ingest.conftest import free_port, node_settings, start_node
from tests.sip_ingest.test_client_calls import self_signed
from tests.sip_ingest.test_sipp_calls import audio_of, call_events

pytestmark = pytest.mark.integration

TONE_HZ, TONE_MS = 440, 3000
RATE = 8000
FRAME = RATE // 50  # 20 ms


def dominant_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / RATE)[int(np.argmax(spectrum))])


def loud_frames(pcm: np.ndarray, threshold: float = 1000.0) -> np.ndarray:
    """The 20 ms frames whose RMS is above ``threshold`` (the tone's is ~6950), concatenated."""
    frames = pcm[: len(pcm) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    return frames[np.sqrt((frames**2).mean(axis=1)) > threshold].reshape(-1)


def explain(result: BaresipResult) -> str:
    """baresip's output, led by a diagnosis when the failure is a known one."""
    hint = ""
    if "Contact: <sips:" in result.output and "Function not implemented" in result.output:
        hint = (
            "node bug: the 200 OK to a sip: INVITE over TLS carries a sips: Contact "
            "(IngestUAS._our_contact); libre routes in-dialog requests to sip: URIs only, so "
            "baresip could not send the ACK and closed the call (ENOSYS)\n"
        )
    return hint + result.describe()


async def test_baresip_calls_over_tls_with_srtp_and_digest_auth(stack_settings, tmp_path):
    cert, key = self_signed(tmp_path)
    settings = node_settings(
        stack_settings, tmp_path, tls_port=free_port(), tls_cert_file=cert, tls_key_file=key,
        digest_algorithms=("MD5",),  # libre 1.1.0: MD5 only, and no other challenge beside it
    )  # fmt: skip
    tls_port = settings.ingest.tls_port
    env = await start_node(settings, tmp_path)
    try:
        wav = tmp_path / "tone.wav"
        write_wav(wav, sine_pcm16(TONE_HZ, TONE_MS), encoding="pcm16")
        username = env.trunk.credential.username
        account = BaresipAccount(username, env.trunk.password, "127.0.0.1", tls_port)
        config = write_config(
            tmp_path / "baresip", account, sip_port=free_port(), rtp_ports=rtp_port_range(16),
            audio_source=wav, ca_file=cert,
        )  # fmt: skip
        # the account's ";transport=tls" is appended to the dialled URI by baresip
        result = await run_baresip(
            config, f"/dial sip:agent-7@127.0.0.1:{tls_port}", quit_after_s=6, timeout_s=15
        )
        assert not result.timed_out, explain(result)
        out = result.output

        assert "Call established" in out, explain(result)
        # signalling: INVITE over TLS to the TLS port, one 401 challenge, then digest credentials
        assert re.search(rf"TLS 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{tls_port}\r?\nINVITE ", out), (
            explain(result)
        )
        assert out.count("SIP/2.0 401 Unauthorized") == 1, explain(result)
        assert f'Authorization: Digest username="{username}"' in out, explain(result)
        assert "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)" in out, explain(result)

        events = await call_events(env)
        assert [e["kind"] for e in events] == ["STARTED", "ANSWERED", "ENDED"], explain(result)
        ended = events[-1]
        assert ended["end_reason"] == "CALLER_HANGUP"
        assert ended["agent_id"] == "agent-7" and ended["callee_number"] == "agent-7"
        assert ended["caller_number"] == username
        assert ended["trunk_id"] == "pbx1" and ended["workspace_id"] == "acme"
        assert ended["codec"] == "PCMU"
        assert ended["packets_received"] > 0

        chunks = await audio_of(env, ended["call_id"])
        assert chunks and {(c["leg"], c["codec"]) for c in chunks} == {("CALLER", "PCMU")}
        pcm = decode_g711(b"".join(c["payload"] for c in chunks), "PCMU")
        # baresip notices the end of the file within a second and keeps sending silence
        # until then: the tone itself must last 3 s, the whole stream at most 1 s longer
        total_s = len(pcm) / RATE
        tone = loud_frames(pcm)
        tone_s = len(tone) / RATE
        assert abs(tone_s - TONE_MS / 1000) <= 0.5, (tone_s, total_s)
        assert TONE_MS / 1000 - 0.5 <= total_s <= TONE_MS / 1000 + 1.5, (tone_s, total_s)
        assert abs(dominant_hz(tone) - TONE_HZ) < 5
    finally:
        await env.node.stop()
