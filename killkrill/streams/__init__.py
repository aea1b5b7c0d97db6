"""Redis Streams access: stream names, connections, appending, consumer groups, dead letters.

Every component touches Redis only through this package, so the on-the-wire shape of an
entry (field ``data`` holding the JSON record, field ``v`` the schema version) and the
invariants around it (no MAXLEN trimming, ack only what is durable) live in one place.
"""

from killkrill.streams.append import append_records, stream_backlog
from killkrill.streams.connection import async_client, redis_url, sync_client
from killkrill.streams.names import (
    DATA_FIELD,
    SCHEMA_VERSION,
    VERSION_FIELD,
    StreamNames,
    stream_names,
)

__all__ = [
    "DATA_FIELD",
    "SCHEMA_VERSION",
    "VERSION_FIELD",
    "StreamNames",
    "append_records",
    "async_client",
    "redis_url",
    "stream_backlog",
    "stream_names",
    "sync_client",
]
