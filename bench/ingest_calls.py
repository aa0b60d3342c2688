"""Concurrent two-leg calls one ingest node sustains, beside a raw UDP receive baseline
measured in the same run.

    python bench/ingest_calls.py [--steps 50,100,200,400] [--seconds 10]

Needs the dev stack (`callvault dev up`).

Per step: N SIPREC calls (two recorded legs each) are set up through the real node — SIP over
UDP with digest auth — then one separate process streams 50 packets/s of G.711 into every leg
for ``--seconds`` (the same sendmmsg-paced sender bench/rtp_receive.py uses), then every call
hangs up. A step passes when the node received at least 99.9% of what was sent (its own
ENDED metadata, packets_received per call) and published every received frame to ingest.audio
(AudioChunk bytes = 160 x packets received). The baseline runs the same sender against the
same number of plain sockets read by a minimal non-blocking reader (bench/rtp_receive.py,
mode "raw").
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.rtp_receive import measure, sender_worker
from callvault.control.trunks import TrunkDirectory
from callvault.control.workspaces import WorkspaceDirectory
from callvault.settings import Settings, load_settings
from callvault.topics import Topics, ensure_topics
from callvault.worker_process import ingest_node_process
from schemas.codec import get_codec
from sip_ingest.client import CallOptions, place_call
from sip_ingest.media.ports import RtpPortAllocator
from tests.kafka_read import read_all

LOSS_LIMIT = 0.001


def node_settings(base: Settings, tmp: Path) -> Settings:
    return base.model_copy(
        update={
            "home": tmp / "home",
            "log_level": "WARNING",
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"ic{uuid.uuid4().hex[:8]}."}),
            "ingest": base.ingest.model_copy(
                update={
                    "sip_port": 25060,
                    "api_port": 25070,
                    "rtp_port_min": 20000,
                    "rtp_port_max": 24998,
                    "journal_dir": tmp / "journal",
                    "nonce_secret": SecretStr("bench-nonce-secret-0123456789"),
                    "rtp_inactivity_s": 120.0,
                }
            ),
        }
    )


async def setup(settings: Settings) -> tuple[str, str]:
    await ensure_topics(settings)
    async with WorkspaceDirectory(settings) as d:
        await d.create("bench", region=settings.region)
    async with TrunkDirectory(settings, actor="bench") as t:
        issued = await t.create("bench", "loadgen")
    return issued.credential.username, issued.password


async def node_step(
    settings: Settings, creds: tuple[str, str], calls: int, seconds: float, conn
) -> dict:
    ready: asyncio.Queue[list[tuple[str, int]]] = asyncio.Queue()
    hang_up = asyncio.Event()

    async def media(legs) -> None:
        await ready.put([remote for remote, _sock in legs])
        await hang_up.wait()

    sem = asyncio.Semaphore(50)  # set-up pace: a PBX does not open 500 calls in one tick

    async def one_call() -> str:
        async with sem:
            opts = CallOptions(
                host="127.0.0.1", port=settings.ingest.sip_port, username=creds[0],
                password=creds[1], siprec=True, media=media, timeout_s=60,
            )  # fmt: skip
        return (await place_call(opts)).sip_call_id

    tasks = [asyncio.create_task(one_call()) for _ in range(calls)]
    dests: list[tuple[str, int]] = []
    while len(dests) < 2 * calls:
        dests += await asyncio.wait_for(ready.get(), 120)
    start_at = time.monotonic() + 0.5 + len(dests) / 20000
    conn.send((dests, seconds, start_at, None, True, 20))
    report = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    hang_up.set()
    sip_ids = set(await asyncio.gather(*tasks))
    # every call's ENDED snapshot and audio, as published by the node
    codec = get_codec()
    deadline = time.monotonic() + 60
    while True:
        events = [
            codec.decode("CallEvent", m.value)
            for m in await read_all(settings, Topics(settings).ingest_metadata)
        ]
        ended = {
            e["call_id"]: e for e in events if e["kind"] == "ENDED" and e["sip_call_id"] in sip_ids
        }
        if len(ended) == calls or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    audio = 0
    for m in await read_all(settings, Topics(settings).name("ingest.audio")):
        chunk = codec.decode("AudioChunk", m.value)
        if chunk["call_id"] in ended:
            audio += len(chunk["payload"])
    received = sum(e["packets_received"] or 0 for e in ended.values())
    return {
        "calls": calls,
        "sent": report.packets_sent,
        "received": received,
        "ended": len(ended),
        "published_frames": audio // 160,
        "sender_pps": report.packets_per_second,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="50,100,200,400")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    parent, child = multiprocessing.Pipe()
    sender = multiprocessing.Process(target=sender_worker, args=(child,), daemon=True)
    sender.start()
    base = load_settings()
    results_node, results_raw = {}, {}
    with tempfile.TemporaryDirectory(prefix="cv-ingest-bench-") as tmpdir:
        tmp = Path(tmpdir)
        settings = node_settings(base, tmp)
        creds = asyncio.run(setup(settings))
        node = ingest_node_process(settings, tmp / "node.log")
        node.start()
        try:
            asyncio.run(node.wait_healthy())
            for calls in steps:
                res = asyncio.run(node_step(settings, creds, calls, args.seconds, parent))
                loss = 1 - res["received"] / res["sent"] if res["sent"] else 1.0
                complete = res["published_frames"] == res["received"] and res["ended"] == calls
                ok = loss <= LOSS_LIMIT and complete
                results_node[calls] = ok
                print(f"node  {calls:5d} calls  {2 * calls:5d} legs  sent {res['sent']:8d}  "
                      f"received {res['received']:8d}  loss {loss * 100:6.3f}%  published "
                      f"{res['published_frames']:8d}  {'ok' if ok else 'FAIL'}",
                      flush=True)  # fmt: skip
        finally:
            node.stop()
            keep = Path(tempfile.gettempdir()) / "callvault-ingest-bench-node.log"
            keep.write_text(node.log_tail(2000))
            print(f"node log: {keep}")
    ns = argparse.Namespace(step_s=args.seconds, srtp=False, sendto=False, slots=20)
    alloc = RtpPortAllocator(20000, 24998)
    for calls in steps:
        res = measure("asyncio", "raw", 2 * calls, ns, parent, alloc)
        results_raw[calls] = bool(res.passed)
    parent.send(None)
    best_node = max((c for c, ok in results_node.items() if ok), default=0)
    best_raw = max((c for c, ok in results_raw.items() if ok), default=0)
    print(f"max calls with <=0.1% loss and every frame published: node {best_node}, "
          f"raw UDP baseline {best_raw} (ratio {best_node / best_raw if best_raw else 0:.2f}); "
          f"steps tried: {steps}")  # fmt: skip


if __name__ == "__main__":
    main()
