"""Reading Elasticsearch from tests while another process is still writing to it.

A daily index that a worker has just created has its shards initializing for a moment: a
search over a pattern that includes it answers 503 (``search_phase_execution_exception``,
no shard available). That is "not searchable yet", not a failure: :func:`count_docs`
answers ``None`` then, so ``wait_for(lambda: count_docs(...) == n)`` keeps waiting instead
of failing the test on a race with the index's creation.

``tests/integration/conftest.py`` puts this folder on ``sys.path`` (``from es_queries
import count_docs``).
"""

from __future__ import annotations

from typing import Any

from elasticsearch import ApiError, Elasticsearch

__all__ = ["count_docs"]


def count_docs(
    client: Elasticsearch, index: str, query: dict[str, Any] | None = None
) -> int | None:
    """Documents of ``index`` (a name or pattern) matching ``query``, after a refresh; ``None``
    while some matching index is not searchable yet (its shards are still starting)."""
    try:
        client.indices.refresh(index=index, allow_no_indices=True, ignore_unavailable=True)
        found = client.options(max_retries=0).count(
            index=index, query=query or {"match_all": {}}, allow_no_indices=True
        )
    except ApiError as exc:
        if exc.meta.status == 503:
            return None
        raise
    return int(found["count"])
