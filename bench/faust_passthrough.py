"""A faust app doing nothing but consume -> produce -> acknowledge, with exactly the worker's
faust configuration and checkpointing. Run by metadata_slice.py as a child process (settings
from CALLVAULT_* variables) to separate the framework's cost from Callvault's own processing."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faust
from faust.types import EventT, StreamT

from callvault.settings import load_settings
from callvault.topics import Topics
from streams.app import app_id, checkpointed, faust_config


def main() -> None:
    settings = load_settings()
    topics = Topics(settings)
    app = faust.App(app_id(settings), **faust_config(settings))
    src = app.topic(topics.ingest_metadata, value_serializer="raw", key_serializer="raw")

    async def forward(events: Sequence[EventT[Any]]) -> None:
        pending = [
            await app.producer.send(
                topics.sealed_metadata,
                key=e.message.key,
                value=e.message.value,
                partition=None,
                timestamp=None,
                headers=None,
            )
            for e in events
        ]
        await asyncio.gather(*pending)

    @app.agent(src, concurrency=1)
    async def passthrough(stream: StreamT[bytes]) -> None:
        await checkpointed(
            stream, settings.worker.batch_max, settings.worker.batch_within_s, forward
        )

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"ready": True})

    app.conf.datadir.mkdir(parents=True, exist_ok=True)
    faust.Worker(
        app, loglevel="warning", quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
