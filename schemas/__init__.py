"""The Avro contract between every Callvault stage.

``*.avsc`` in this directory are the current schemas, ``history/`` holds every released version
frozen, and :mod:`schemas.codec` frames records with Avro single-object encoding so a reader can
always find the writer schema. Importing this package loads nothing; the schemas are parsed on the
first :func:`get_codec` call.
"""

from schemas.codec import Codec, freeze, get_codec
from schemas.errors import (
    SchemaDecodeError,
    SchemaDefinitionError,
    SchemaEncodeError,
    SchemaError,
)

__all__ = [
    "Codec",
    "SchemaDecodeError",
    "SchemaDefinitionError",
    "SchemaEncodeError",
    "SchemaError",
    "freeze",
    "get_codec",
]
