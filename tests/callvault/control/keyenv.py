"""Per-test isolation for key tests on the shared broker: own topic prefix and home, and only
the topics the key store needs (creating all of them per test costs the broker for nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callvault.settings import Settings
from callvault.topics import Topics, ensure_topics
from schemas.codec import get_codec
from tests.conftest import topic_prefix
from tests.kafka_read import read_all

KEY_TOPICS = ("control.keys", "control.workspaces", "audit.events")


def key_settings(base: Settings, tmp: Path) -> Settings:
    prefix = topic_prefix("k")
    return base.model_copy(
        update={
            "home": tmp / "home",
            "kafka": base.kafka.model_copy(update={"topic_prefix": prefix}),
        }
    )


async def ensure_key_topics(settings: Settings) -> None:
    topics = Topics(settings)
    await ensure_topics(settings, [topics.specs[name] for name in KEY_TOPICS])


async def audit_events(settings: Settings) -> list[dict[str, Any]]:
    codec = get_codec()
    return [
        codec.decode("AuditEvent", m.value)
        for m in await read_all(settings, Topics(settings).audit_events)
        if m.value is not None
    ]
