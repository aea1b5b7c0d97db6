"""Dead-letter replay keeps exactly-once indexing (issue 10, defect 3), on the real services.

A replayed entry is a new stream entry with a new ID; it carries the identity of the entry
it first was, and the worker derives the document ``_id`` from that identity. So an entry
that Elasticsearch had indexed after all (the worker's request timed out after Elasticsearch
accepted it) and that was dead-lettered later is one document after its replay, not two.
The commands are the real ``killkrill dlq`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from killkrill_command import killkrill
from log_worker_helpers import DEAD_LETTER, GROUP, STREAM, es_count, make_log, pending_count
from pending import crashed_deliveries
from polling import wait_for
from run_names import ES_INDEX_PREFIX

from log_worker.worker import LogWorker


def _seqs(es) -> list[int]:
    es.indices.refresh(index=f"{ES_INDEX_PREFIX}-*")
    hits = es.search(index=f"{ES_INDEX_PREFIX}-*", size=100, query={"match_all": {}})["hits"][
        "hits"
    ]
    return sorted(hit["_source"]["seq"] for hit in hits)


@pytest.mark.slow
def test_an_entry_indexed_and_dead_lettered_is_one_document_after_replay(
    redis_client, elasticsearch_client, log_worker_config, managed_elasticsearch, redis_url
):
    """The entry reaches Elasticsearch while the worker's request times out (Elasticsearch
    frozen with SIGSTOP, then resumed: it reads the request it was sent and indexes it), is
    left pending, and the workers that take it over next crash holding it (its delivery
    count, as Redis keeps it after such crashes), so it is dead-lettered. Replayed, it is
    indexed under the ``_id`` of its first entry: one document."""
    config = {**log_worker_config, "timeout": 1, "max_deliveries": 2}
    with LogWorker(config) as worker:
        worker.process_batch(count=1)  # template installed, connection open
        first_id = redis_client.xadd(STREAM, {"data": json.dumps(make_log(7))}).decode()
        pid = managed_elasticsearch.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            timed_out = worker.process_batch(count=1, max_retries=0)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (timed_out["success"], timed_out.pending) == (0, 1)
        wait_for(
            lambda: es_count(elasticsearch_client) == 1,
            60,
            "Elasticsearch to index the _bulk it had received before the client timed out",
        )
    crashed_deliveries(redis_client, STREAM, GROUP, 2)
    with LogWorker(config) as successor:
        again = successor.process_batch(count=1)
    assert again.dead_lettered == 1
    assert "delivered 3 times" in again.errors[0]
    assert redis_client.xlen(STREAM) == 0

    out = killkrill(redis_url, "dlq", "replay", "--all")
    assert out.returncode == 0, out.stderr
    assert "replayed 1 dead letter(s) from logs-stream:dead-letter; 0 left" in out.stdout
    [(new_id, fields)] = redis_client.xrange(STREAM)
    assert new_id.decode() != first_id
    assert (fields[b"origin_stream"], fields[b"origin_id"]) == (STREAM.encode(), first_id.encode())

    with LogWorker(log_worker_config) as worker:
        assert worker.process_batch(count=5)["success"] == 1
    assert es_count(elasticsearch_client) == 1
    assert _seqs(elasticsearch_client) == [7]
    doc = elasticsearch_client.get(
        index=f"{ES_INDEX_PREFIX}-2024.01.06", id=f"default:{STREAM}:{first_id}"
    )
    assert doc["_source"]["seq"] == 7
    assert (redis_client.xlen(STREAM), pending_count(redis_client)) == (0, 0)


def test_a_dead_lettered_entry_replayed_twice_is_indexed_once_under_its_first_id(
    redis_client, elasticsearch_client, log_worker_config, redis_url
):
    """Never indexed (its daily index maps ``service`` as a number: a mapping error, 400),
    dead-lettered, replayed, dead-lettered again, replayed again once the index is fixed:
    one document, ``_id`` from the first entry."""
    index = f"{ES_INDEX_PREFIX}-2024.01.06"
    elasticsearch_client.indices.create(
        index=index, mappings={"properties": {"service": {"type": "long"}}}
    )
    first_id = redis_client.xadd(STREAM, {"data": json.dumps(make_log(3))}).decode()
    with LogWorker(log_worker_config) as worker:
        for replays in (0, 1):  # dead-lettered the first time, and after one replay
            if replays:
                out = killkrill(redis_url, "dlq", "replay", "--all")
                assert out.returncode == 0, out.stderr
            result = worker.process_batch(count=1)
            assert result.dead_lettered == 1
            assert "failed to parse field [service]" in result.errors[0]
    [letter] = redis_client.xrange(DEAD_LETTER)
    fields = letter[1]
    assert fields[b"source_id"] != first_id.encode()  # the letter of the replayed entry
    assert fields[b"origin_id"] == first_id.encode()  # still naming the first one
    listed = killkrill(redis_url, "dlq", "list", "--json")
    [shown] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (shown["origin_stream"], shown["origin_id"]) == (STREAM, first_id)
    elasticsearch_client.indices.delete(index=index)  # the fix: the template's mapping again
    out = killkrill(redis_url, "dlq", "replay", "--all")
    assert out.returncode == 0, out.stderr
    with LogWorker(log_worker_config) as worker:
        assert worker.process_batch(count=5)["success"] == 1
    assert _seqs(elasticsearch_client) == [3]
    doc = elasticsearch_client.get(index=index, id=f"default:{STREAM}:{first_id}")
    assert doc["_source"]["seq"] == 3
    assert redis_client.xlen(DEAD_LETTER) == 0
