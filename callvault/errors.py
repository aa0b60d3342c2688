"""The one error tree of the ``callvault`` package.

Every error carries ``retriable`` so a caller (a sink loop, the CLI) can decide between backing
off and giving up without string-matching messages — the httpx/aiokafka convention.
"""

from __future__ import annotations


class CallvaultError(Exception):
    """Root of every error Callvault raises on purpose."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class SettingsError(CallvaultError):
    """Configuration is missing or invalid; the message names the offending key."""


class DevStackError(CallvaultError):
    """A local service could not be installed, started, stopped or reached."""


class ControlError(CallvaultError):
    """A control-plane request was refused (unknown workspace, invalid policy, ...)."""


class KafkaUnavailable(CallvaultError):
    """The broker could not be reached or refused a metadata/admin request."""

    retriable = True


class PermissionDenied(ControlError):
    """An authenticated principal lacks a permission in a workspace (wrong role, wrong workspace);
    the message names who, what and where."""


class AuthenticationFailed(ControlError):
    """A presented API token is malformed, unknown, revoked, expired, or its user is disabled."""
