"""G.711 decoding for the recording sink.

The mu-law and A-law tables live in :mod:`sip_ingest.media.wav` (built from the ITU-T G.711
segment rules, bit-identical to ``audioop``); this module is the one seam through which sinks use
them, so moving the tables to a shared package later changes one import.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from sip_ingest.media.wav import decode_g711

__all__ = ["CODECS", "Codec", "decode", "silence"]

Codec = Literal["PCMU", "PCMA"]
CODECS: Final[frozenset[str]] = frozenset({"PCMU", "PCMA"})


def decode(payload: bytes | bytearray | memoryview, codec: str) -> npt.NDArray[np.int16]:
    """G.711 bytes (one byte per sample) to 16-bit linear samples."""
    if codec == "PCMU":
        return decode_g711(payload, "PCMU")
    if codec == "PCMA":
        return decode_g711(payload, "PCMA")
    raise ValueError(f"unsupported codec {codec!r} (PCMU or PCMA)")


def silence(samples: int) -> npt.NDArray[np.int16]:
    return np.zeros(samples, dtype=np.int16)
