"""Run a stream worker process (what ``callvault worker run`` calls)."""

from __future__ import annotations

from callvault.logging import configure_logging
from callvault.settings import Settings
from streams.app import create_app


def run_worker(settings: Settings) -> None:
    """Block until the worker is stopped (SIGTERM/SIGINT stop it gracefully).

    A graceful stop commits only what was acknowledged, i.e. what is durable; SIGKILL commits
    nothing more, and the uncommitted tail is consumed again on restart.
    """
    import faust  # deferred: importing faust costs ~0.5 s, not wanted for `callvault --help`

    configure_logging(settings)
    app = create_app(settings)
    app.conf.datadir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    worker = faust.Worker(
        app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
