"""Two pipelines on one set of services, each run from its Pipeline document
(``killkrill up -f``): each one's logs only in its indices, each one's aggregates only
under its name, each one's dead letters apart."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from elasticsearch import Elasticsearch
from es_queries import count_docs
from killkrill_command import REPO, KillkrillProcess, killkrill
from polling import wait_for
from run_names import ES_INDEX_PREFIX

from killkrill.config.pipeline import parse_pipeline
from killkrill.dev.pipeline import LocalPipeline
from killkrill.dev.process import free_port


@pytest.fixture
def two_pipelines(
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    redis_client: Any,
    elasticsearch_url: str,
    elasticsearch_client: Elasticsearch,
    database_schema: str,
    tmp_path: Path,
) -> Iterator[dict[str, tuple[LocalPipeline, int, str]]]:
    """``{name: (running pipeline, http port, index prefix)}`` for two pipelines."""
    for key, value in {
        "REDIS_URL": redis_url,
        "ELASTICSEARCH_URL": elasticsearch_url,
        "DATABASE_URL": database_schema,
        "KILLKRILL_CONSUMER__BLOCK_MS": "200",
    }.items():
        monkeypatch.setenv(key, value)
    tag = uuid.uuid4().hex[:6]
    running: dict[str, tuple[LocalPipeline, int, str]] = {}
    try:
        for short in ("alpha", "beta"):
            name, port, prefix = f"{short}-{tag}", free_port(), f"{ES_INDEX_PREFIX}-{short}"
            document = parse_pipeline(
                {
                    "apiVersion": "killkrill.io/v1alpha1",
                    "kind": "Pipeline",
                    "metadata": {"name": name},
                    "spec": {
                        "elasticsearch": {"indexPrefix": prefix, "numberOfReplicas": 0},
                        "receivers": {
                            "http": {"port": port, "auth": {"enabled": False}},
                            "syslog": {"enabled": False},
                        },
                    },
                }
            )
            log = (tmp_path / f"{name}.log").open("wb")
            local = LocalPipeline.from_pipeline(document, secrets_dir=tmp_path, log=log)
            local.start()
            running[name] = (local, port, prefix)
        yield running
    finally:
        codes = {name: local.stop() for name, (local, _, _) in running.items()}
        assert all(c == 0 for per in codes.values() for c in per.values()), codes


def _post(port: int, path: str, body: str, content_type: str) -> None:
    answer = httpx.post(
        f"http://127.0.0.1:{port}{path}",
        content=body,
        headers={"content-type": content_type},
        timeout=10,
    )
    assert answer.status_code in (200, 202, 207), answer.text


def test_two_pipelines_share_services_without_seeing_each_other(
    two_pipelines: dict[str, tuple[LocalPipeline, int, str]],
    elasticsearch_client: Elasticsearch,
    database_schema: str,
    redis_url: str,
    redis_client: Any,
) -> None:
    counts = dict(zip(two_pipelines, (20, 30), strict=True))
    for name, (_, port, _) in two_pipelines.items():
        logs = [
            {"timestamp": "2024-01-06T12:00:00Z", "service": name, "level": "info",
             "message": f"{name} {i}"}
            for i in range(counts[name])
        ]  # fmt: skip
        _post(port, "/api/v1/logs", json.dumps(logs), "application/json")
        metrics = "\n".join(f"kk_two_pipelines_total {i}" for i in range(counts[name] // 10))
        _post(port, "/api/v1/metrics", metrics + "\n", "text/plain; version=0.0.4")
        # a record the receivers would refuse, as a buggy producer might write it directly
        redis_client.xadd(f"{name}:logs-stream", {"data": b"{not json"})

    for name, (_, _, prefix) in two_pipelines.items():
        wait_for(
            lambda p=prefix, n=name: count_docs(elasticsearch_client, f"{p}-*") == counts[n],
            60,
            f"{counts[name]} documents of {name}",
        )
        services = {
            h["_source"]["service"]
            for h in elasticsearch_client.search(index=f"{prefix}-*", size=100)["hits"]["hits"]
        }
        assert services == {name}  # nothing of the other pipeline in its indices

    def aggregated() -> dict[str, int]:
        conn = psycopg2.connect(database_schema)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pipeline, sum(count)::int FROM aggregated_metrics "
                    "WHERE name = 'kk_two_pipelines_total' GROUP BY pipeline"
                )
                return dict(cur.fetchall())
        finally:
            conn.close()

    want = {name: n // 10 for name, n in counts.items()}
    wait_for(lambda: aggregated() == want, 60, f"aggregates {want}")

    for name in two_pipelines:
        listed = killkrill(redis_url, "dlq", "list", "--pipeline", name, "--json")
        assert listed.returncode == 0, listed.stderr
        letters = [json.loads(line) for line in listed.stdout.splitlines()]
        assert len(letters) == 1
        assert letters[0]["source_stream"] == f"{name}:logs-stream"


def test_the_example_document_runs_with_up_f(
    redis_url: str,
    elasticsearch_url: str,
    elasticsearch_client: Elasticsearch,
    database_schema: str,
    tmp_path: Path,
) -> None:
    """The README's ``killkrill up -f examples/pipeline.yaml``: the environment's URLs (and
    ports, index prefix) over the document's, a log posted and found, a clean stop."""
    port, syslog = free_port(), free_port()
    prefix = f"{ES_INDEX_PREFIX}-example"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ELASTICSEARCH_URL": elasticsearch_url,
        "DATABASE_URL": database_schema,
        "KILLKRILL_HTTP__PORT": str(port),
        "KILLKRILL_SYSLOG__PORT": str(syslog),
        "KILLKRILL_SYSLOG__UDP_PORT": str(syslog),
        "KILLKRILL_ELASTICSEARCH__INDEX_PREFIX": prefix,
    }
    up = KillkrillProcess(
        ["up", "-f", str(REPO / "examples" / "pipeline.yaml")], env, tmp_path / "up.log"
    )
    try:
        wait_for(lambda: "pipeline example up" in up.output(), 60, "the pipeline to start")
        log = {"timestamp": "2024-01-06T12:00:00Z", "service": "example", "level": "info",
               "message": "hello from the example"}  # fmt: skip
        _post(port, "/api/v1/logs", json.dumps(log), "application/json")
        wait_for(lambda: count_docs(elasticsearch_client, f"{prefix}-*") == 1, 60, "the log")
        [hit] = elasticsearch_client.search(index=f"{prefix}-*")["hits"]["hits"]
        assert hit["_source"]["cluster"] == "local"  # the document's enrichment
        assert hit["_id"].startswith("example:example:logs-stream:")
    finally:
        code = up.stop(60)
    assert code == 0, up.output()[-4000:]
