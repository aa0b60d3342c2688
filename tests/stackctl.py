"""``python -m tests.stackctl up|down|status``: the test stack (own home and ports) from a shell,
so scripts/test.sh can start it before pytest and stop it whatever pytest does."""

from __future__ import annotations

import shutil
import sys

from callvault.devstack import kafka, stack
from tests.conftest import load_test_settings


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "status"
    settings = load_test_settings()
    if action == "up":
        if kafka.status(settings).state != "running":
            # The test broker's data is disposable: a stopped stack starts empty, so topics
            # left by earlier runs (thousands of per-test prefixes) never slow this one down.
            shutil.rmtree(kafka.data_dir(settings), ignore_errors=True)
        services = stack.up(settings)
    elif action == "down":
        stack.down(settings)
        services = stack.status(settings)
    elif action == "status":
        services = stack.status(settings)
    else:
        print(f"usage: python -m tests.stackctl up|down|status (not {action!r})", file=sys.stderr)
        return 2
    for s in services:
        print(f"test stack: {s.name:<10} {s.state:<16} {s.endpoint}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
