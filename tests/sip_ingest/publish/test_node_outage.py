"""The whole ingest node through a real Kafka outage: calls keep being answered and recorded
while the broker is gone (trunk and policy views serve from memory, the publisher spools to its
journal), and everything arrives exactly, in order, once the broker is back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from callvault.settings import Settings
from sip_ingest.client import place_call
from sip_ingest.media.wav import encode_g711, sine_pcm16
from tests.sip_ingest.conftest import node_settings, start_node
from tests.sip_ingest.publish.support import PrivateKafka, wait_for, with_bootstrap
from tests.sip_ingest.test_client_calls import options
from tests.sip_ingest.test_sipp_calls import audio_of, call_events

pytestmark = pytest.mark.integration


async def test_calls_during_a_kafka_outage_are_recorded_exactly_after_recovery(
    stack_settings: Settings, tmp_path: Path, broker: PrivateKafka
) -> None:
    settings = node_settings(with_bootstrap(stack_settings, broker.bootstrap), tmp_path)
    env = await start_node(settings, tmp_path)
    try:
        await broker.astop()
        caller = encode_g711(sine_pcm16(440, 1500), "PCMU")
        agent = encode_g711(sine_pcm16(660, 1500), "PCMU")
        t0 = time.monotonic()
        outcome = await place_call(
            options(env, siprec=True, audio=caller, agent_audio=agent, paced=True)
        )
        assert outcome.status == 200
        assert time.monotonic() - t0 < 5, "SIP must not wait for Kafka"
        # the publisher gives up on the dead broker and spools (delivery timeout 10 s)
        await wait_for(lambda: env.node.publisher.status().journal_bytes > 0, 60)
        assert not env.node.publisher.status().kafka_up
        await broker.astart()
        events = await call_events(env)  # flushes: waits for the journal to drain
        assert [e["kind"] for e in events] == ["STARTED", "ANSWERED", "ENDED"]
        chunks = await audio_of(env, events[-1]["call_id"])
        for leg, sent in (("CALLER", caller), ("AGENT", agent)):
            assert b"".join(c["payload"] for c in chunks if c["leg"] == leg) == sent
        assert env.node.publisher.status().kafka_up
    finally:
        await env.node.stop()
