"""The whole pipeline from a real SIP call: SIPREC with SRTP into the ingest node, a real worker
process, and what lands: a recording in the region's bucket that decrypts to an MP3 an
independent decoder (mpg123) plays as the two tones that were sent, one per channel, and the
call's row in ClickHouse."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
from typing import Any

import numpy as np
import pytest

from callvault.analytics_client import query
from callvault.control.keys import open_keys
from callvault.crypto.envelope import Aad
from callvault.crypto.segmented import decrypt_stream
from callvault.worker_process import WorkerProcess
from sinks.objects import layout
from sinks.objects.store import ObjectStore
from sip_ingest.client import place_call
from sip_ingest.media.wav import encode_g711, sine_pcm16
from tests.sip_ingest.conftest import NodeEnv
from tests.sip_ingest.test_client_calls import options
from tests.sip_ingest.test_sipp_calls import audio_of, call_events

pytestmark = pytest.mark.integration

SECONDS = 3


async def _eventually(check: Any, what: str, worker: WorkerProcess, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{worker.log_tail()}"
        await asyncio.sleep(0.2)
    return result


def _dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(len(samples), 1 / 8000)[int(np.argmax(spectrum))])


async def test_a_sip_call_ends_as_a_playable_encrypted_recording(node_env: NodeEnv, tmp_path):
    settings = node_env.settings
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    store = ObjectStore(settings)
    try:
        await worker.wait_healthy()
        caller = encode_g711(sine_pcm16(440, SECONDS * 1000), "PCMU")
        agent = encode_g711(sine_pcm16(1000, SECONDS * 1000), "PCMU")
        outcome = await place_call(
            options(node_env, siprec=True, srtp=True, audio=caller, agent_audio=agent)
        )
        assert outcome.status == 200
        ended = (await call_events(node_env))[-1]
        call_id, started = ended["call_id"], ended["call_started_at"]
        chunks = await audio_of(node_env, call_id)
        assert ended["audio_chunks"] == {
            leg: 1 + max(c["seq"] for c in chunks if c["leg"] == leg) for leg in ("CALLER", "AGENT")
        }

        async def manifest() -> dict | None:
            key = layout.manifest_key("acme", call_id, started)
            return json.loads(await store.get(key)) if await store.head(key) else None

        doc = await _eventually(manifest, "the recording", worker)
        rec = doc["artifacts"]["recording"]
        body = await store.get(rec["key"])
        assert hashlib.sha256(body).hexdigest() == rec["ciphertext_sha256"]
        async with open_keys(settings) as keys:
            key = await keys.ring.key_for(rec["key_id"], workspace_id="acme", call_id=call_id)
        mp3 = b"".join(decrypt_stream(key, [body], Aad("acme", call_id, "recording", "eu")))
        assert hashlib.sha256(mp3).hexdigest() == rec["plaintext_sha256"]
        assert rec["duration_ms"] == SECONDS * 1000

        # an independent decoder: raw 16-bit stereo at the file's own rate
        decoder = await asyncio.create_subprocess_exec(
            "mpg123", "-q", "-s", "-", stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        decoded, _ = await decoder.communicate(mp3)
        assert decoder.returncode == 0
        pcm = np.frombuffer(decoded, dtype=np.int16).reshape(-1, 2)
        assert abs(len(pcm) / 8000 - SECONDS) < 0.3, len(pcm)
        middle = pcm[8000 : 8000 * (SECONDS - 1)]  # away from the encoder's delay and padding
        assert abs(_dominant_hz(middle[:, 0]) - 440) < 10  # left: the caller
        assert abs(_dominant_hz(middle[:, 1]) - 1000) < 10  # right: the agent

        async def row() -> list:
            res = await asyncio.to_thread(
                query, settings,
                f"SELECT state, duration_ms FROM callvault.calls FINAL WHERE call_id = '{call_id}'",
            )  # fmt: skip
            return res.rows if res.rows and res.rows[0][0] == "ENDED" else []

        [(state, duration_ms)] = await _eventually(row, "the call's row", worker)
        assert state == "ENDED" and duration_ms == ended["duration_ms"]

    finally:
        store.close()
        worker.stop()
