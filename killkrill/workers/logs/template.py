"""The composable index template for the daily log indices: the body is pure, installing is I/O.

Choice (documented in the issue): daily indices ``<index_prefix>-YYYY.MM.DD`` by the record's
own date rather than a data stream, because documents are written with our own ``_id`` (the
``index`` op, which overwrites on redelivery); data streams accept only ``create`` and would
answer a redelivered entry with a 409 conflict, and they need the stack's built-in templates.

Mappings: ``@timestamp``, ``timestamp`` and ``processed_at`` are dates; ``service``,
``level``, ``environment`` and ``version`` keywords; ``message`` text. The fields the syslog
receiver adds are mapped too, not left to dynamic mapping: ``hostname``, ``procid``,
``msgid``, ``facility``, ``severity``, ``syslog_format`` and the values under
``structured_data`` are keywords (exact values, as one filters on them; each keeps the
``.keyword`` sub-field dynamic mapping gave it, so queries written for that still work), and
``raw``, the line as received, is kept in ``_source`` but not indexed (search ``message`` and
the fields). Dynamic mapping made each of them analysed text plus a keyword, which cost
Elasticsearch 1.5 to 2 times the CPU per syslog document (``make bench SCENARIOS=doc-shape``;
figures in ``bench/README.md``).
Other fields are mapped dynamically (strings as text with a ``.keyword`` sub-field).
"""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch

__all__ = [
    "SYSLOG_KEYWORDS",
    "install_template",
    "template_body",
    "template_name",
    "template_priority",
]

_DATE = {"type": "date", "format": "strict_date_optional_time||epoch_millis"}
_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_SYSLOG_KEYWORD = {**_KEYWORD, "fields": {"keyword": _KEYWORD}}
"""An exact-value field that also answers to ``<name>.keyword`` (its dynamic-mapping name)."""
SYSLOG_KEYWORDS = ("hostname", "procid", "msgid", "facility", "severity", "syslog_format")
"""Fields of syslog records mapped as keywords."""


def template_name(index_prefix: str) -> str:
    """``killkrill-<index_prefix>``."""
    return f"killkrill-{index_prefix}"


def template_priority(index_prefix: str) -> int:
    """Longer (more specific) prefixes win: ``logs-test-*`` beats ``logs-*``.

    Two of our templates can only overlap when one prefix extends the other, so a priority
    growing with the prefix length never ties on overlapping patterns (Elasticsearch refuses
    overlapping templates of equal priority). It starts above the stack's built-in ``logs``
    template (priority 100, pattern ``logs-*-*``), which would turn our indices into data
    streams on a full distribution.
    """
    return 500 + len(index_prefix)


def template_body(index_prefix: str, *, number_of_replicas: int | None = None) -> dict[str, Any]:
    """The ``_index_template`` body for ``<index_prefix>-*`` (no data stream)."""
    settings: dict[str, Any] = {"index": {"refresh_interval": "1s"}}
    if number_of_replicas is not None:
        settings["index"]["number_of_replicas"] = number_of_replicas
    return {
        "index_patterns": [f"{index_prefix}-*"],
        "priority": template_priority(index_prefix),
        "template": {
            "settings": settings,
            "mappings": {
                "dynamic": True,
                "dynamic_templates": [
                    {
                        "structured_data": {
                            "path_match": "structured_data.*",
                            "match_mapping_type": "string",
                            "mapping": _SYSLOG_KEYWORD,
                        }
                    }
                ],
                "properties": {
                    "@timestamp": _DATE,
                    "timestamp": _DATE,
                    "processed_at": _DATE,
                    "service": {"type": "keyword", "ignore_above": 1024},
                    "level": {"type": "keyword"},
                    "environment": {"type": "keyword"},
                    "version": {"type": "keyword"},
                    "message": {"type": "text"},
                    "raw": {"type": "text", "index": False},
                    **dict.fromkeys(SYSLOG_KEYWORDS, _SYSLOG_KEYWORD),
                },
            },
        },
        "meta": {"managed_by": "killkrill", "description": "KillKrill log indices"},
    }


async def install_template(
    client: AsyncElasticsearch, index_prefix: str, *, number_of_replicas: int | None = None
) -> None:
    """Create or replace the template (idempotent; affects indices created from now on)."""
    body = template_body(index_prefix, number_of_replicas=number_of_replicas)
    await client.indices.put_index_template(name=template_name(index_prefix), **body)
