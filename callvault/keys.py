"""The master key provider named by the settings (``settings.keys``).

:func:`build_provider` is what every process uses to get its master key provider;
:func:`ensure_local_master_key` is what ``callvault dev up`` uses to create the dev key file.
The Kafka-backed key store and :func:`~callvault.control.keys.open_keyring` live in
:mod:`callvault.control.keys`.

The local key file is created on first use outside production, so a fresh clone (and the test
stack) works without a setup step. In production a missing key file is an error, never silently
created: a new master key there would wrap new workspace keys while the real one is missing,
splitting the data between two masters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from callvault.crypto.errors import KeyProviderError
from callvault.crypto.providers import AwsKmsProvider, LocalKeyFileProvider, MasterKeyProvider
from callvault.settings import Settings

__all__ = ["MasterKeyState", "build_provider", "ensure_local_master_key", "master_key_state"]


def build_provider(settings: Settings) -> MasterKeyProvider:
    """The master key provider of ``settings.keys`` (creating the dev key file if needed)."""
    keys = settings.keys
    if keys.provider == "aws-kms":
        assert keys.kms_key_id is not None  # the settings validator guarantees it
        return AwsKmsProvider(keys.kms_key_id, region=keys.kms_region)
    path = settings.master_key_file
    if settings.environment == "production":
        if not path.exists():
            raise KeyProviderError(
                f"master key file {path} does not exist; in production it is never created "
                "implicitly: restore it (mode 0600) or set keys.provider=aws-kms"
            )
        return LocalKeyFileProvider(path)
    return LocalKeyFileProvider.create_if_missing(path)


def ensure_local_master_key(settings: Settings) -> Path | None:
    """Create the local master key file if it is missing; the path, or None for KMS.

    Refuses (:class:`KeyProviderError`) in production, where the key must be provisioned.
    """
    if settings.keys.provider != "local":
        return None
    provider = build_provider(settings)
    assert isinstance(provider, LocalKeyFileProvider)
    return provider.path


@dataclass(frozen=True)
class MasterKeyState:
    """Where the master key is, for status displays: never the key itself."""

    provider: str
    location: str
    present: bool | None  # None: not checkable locally (KMS)
    path: Path | None = None


def master_key_state(settings: Settings) -> MasterKeyState:
    keys = settings.keys
    if keys.provider == "aws-kms":
        region = f" ({keys.kms_region})" if keys.kms_region else ""
        return MasterKeyState("aws-kms", f"{keys.kms_key_id}{region}", None)
    path = settings.master_key_file.expanduser().absolute()
    return MasterKeyState("local", str(path), path.is_file(), path)
