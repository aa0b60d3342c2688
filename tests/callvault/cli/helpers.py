"""What the CLI tests share: reading a command's JSON, asserting a refusal, and settings for tests
that need only control topics (own topic prefix, workspaces created)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from callvault.cli.main import EXIT_REFUSED
from callvault.control.workspaces import WorkspaceDirectory
from callvault.settings import Settings
from callvault.topics import Topics, ensure_topics
from tests.conftest import topic_prefix


def ok_json(result: tuple[int, str, str]) -> Any:
    code, out, err = result
    assert code == 0, err
    return json.loads(out)


def refused(result: tuple[int, str, str], *needles: str) -> None:
    """Exit code 3 (refused), with every needle in the message."""
    code, _, err = result
    assert code == EXIT_REFUSED, err
    for needle in needles:
        assert needle in err, err


def control_settings(
    stack_settings: Settings, tmp_path: Path, letter: str, topics: Iterable[str],
    workspaces: Mapping[str, str],
) -> Settings:  # fmt: skip
    """Settings with their own home and topic prefix; ``topics`` created, ``workspaces``
    (id -> region) created in them."""
    settings = stack_settings.model_copy(
        update={
            "home": tmp_path / "home",
            "kafka": stack_settings.kafka.model_copy(update={"topic_prefix": topic_prefix(letter)}),
        }
    )

    async def setup() -> None:
        specs = Topics(settings).specs
        await ensure_topics(settings, [specs[name] for name in topics])
        async with WorkspaceDirectory(settings) as d:
            for workspace_id, region in workspaces.items():
                await d.create(workspace_id, region=region)

    asyncio.run(setup())
    return settings
