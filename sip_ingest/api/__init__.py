"""The ingest node's authenticated local HTTP API for the voice agent (see ``server``)."""

from sip_ingest.api.registry import CallInfo, CallRegistry, InMemoryCallRegistry
from sip_ingest.api.server import IngestApi

__all__ = ["CallInfo", "CallRegistry", "InMemoryCallRegistry", "IngestApi"]
