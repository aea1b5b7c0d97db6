"""The chart and Pipelines in kind, data really flowing: the operator installed with
``helm install`` (``helm test`` passes), Pipelines pointing at the in-cluster services
(``kind_services``) become Ready, logs over HTTP and syslog over TCP (util-linux ``logger``)
land in Elasticsearch exactly once and enriched, metric samples are aggregated exactly in
PostgreSQL; a worker pod deleted mid-load loses and doubles nothing; the log workers follow
the spec's replicas; an unreachable Elasticsearch is reported, and once fixed the backlog
drains; a deleted Pipeline's objects are garbage-collected.

Every Pipeline, index, metric name and record marker is unique to the run; everything is
reached through port-forwards on 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from kind_cluster import APP_IMAGE, RUN_ID, KindEnv
from kind_stack import (
    Services,
    Stack,
    install_chart,
    make_namespace,
    post_json,
    run_logger,
    uninstall_chart,
    wait_for,
)

from killkrill import __version__

_HTTP_PORT = 8080
_SYSLOG_PORT = 5141


@pytest.fixture(scope="module")
def stack(kind_env: KindEnv, kind_image: str, kind_services: Services) -> Iterator[Stack]:
    """The chart installed in a namespace of this module's own, its operator Ready."""
    namespace = f"kk-e2e-{RUN_ID}-pipeline"
    make_namespace(kind_env, namespace)
    stack = install_chart(kind_env, kind_services, namespace, f"kk-{RUN_ID}")
    try:
        yield stack
    finally:
        uninstall_chart(stack)
        kind_env.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(autouse=True)
def _report_on_failure(request: pytest.FixtureRequest, kind_env: KindEnv) -> Iterator[None]:
    """When a test failed: the pipeline namespace's pods, events and logs."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        namespace = f"kk-e2e-{RUN_ID}-pipeline"
        for args in (
            ("get", "pods,deploy,kkp", "-o", "wide"),
            ("get", "events", "--sort-by=.lastTimestamp"),
            ("logs", "--all-containers", "--prefix", "--tail=30",
             "-l", "app.kubernetes.io/part-of=killkrill"),
        ):  # fmt: skip
            kind_env.run("kubectl", "-n", namespace, *args)


def _token() -> str:
    return uuid.uuid4().hex[:12]


def _logs(token: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    return [
        {
            "timestamp": now,
            "service": "e2e-http",
            "level": "info",
            "message": f"e2e log {i}",
            "e2e_run": token,
            "seq": i,
        }
        for i in range(start, start + count)
    ]


def _send_logs(port: int, token: str, count: int, batch: int = 100, start: int = 0) -> None:
    for first in range(start, start + count, batch):
        answer = post_json(
            f"http://127.0.0.1:{port}/api/v1/logs",
            _logs(token, min(batch, start + count - first), first),
        )
        assert answer["accepted"] == min(batch, start + count - first), answer


def _es_count(es: Elasticsearch, prefix: str, field: str, value: str) -> tuple[int, int]:
    """(documents, distinct ``seq``) of ``prefix-*`` whose ``field`` is ``value``."""
    es.indices.refresh(index=f"{prefix}-*", allow_no_indices=True, ignore_unavailable=True)
    found = es.search(
        index=f"{prefix}-*",
        query={"term": {field: value}},
        size=0,
        track_total_hits=True,
        aggs={"seqs": {"cardinality": {"field": "seq", "precision_threshold": 40000}}},
        allow_no_indices=True,
        ignore_unavailable=True,
    )
    total = int(found["hits"]["total"]["value"])
    distinct = int(found.get("aggregations", {}).get("seqs", {}).get("value", 0))
    return total, distinct


def _wait_indexed(
    es: Elasticsearch, prefix: str, token: str, expected: int, timeout: float = 300
) -> None:
    """Until exactly ``expected`` documents carry ``token``, each ``seq`` once."""

    def probe() -> bool:
        total, distinct = _es_count(es, prefix, "e2e_run.keyword", token)
        assert total <= expected, f"{total} documents for {expected} logs: doubled"
        return total == expected and distinct == expected

    wait_for(probe, timeout, f"{expected} logs of run {token} in {prefix}-*", interval=2)


def _pg_totals(conn: Any, pipeline: str, name: str) -> dict[str, tuple[int, float, float, float]]:
    """Per ``shard`` label: (count, sum, min, max) over every bucket of metric ``name``."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT labels->>'shard', sum(count), sum(sum), min(min), max(max) "
            "FROM aggregated_metrics WHERE pipeline = %s AND name = %s GROUP BY 1",
            (pipeline, name),
        )
        return {
            row[0]: (int(row[1]), float(row[2]), float(row[3]), float(row[4]))
            for row in cur.fetchall()
        }


def _samples(name: str, token: str, count: int, shards: int = 4) -> list[dict[str, Any]]:
    return [
        {"name": name, "value": float(i), "labels": {"run": token, "shard": str(i % shards)}}
        for i in range(count)
    ]


def _expected(count: int, shards: int = 4) -> dict[str, tuple[int, float, float, float]]:
    """What the samples of :func:`_samples` aggregate to, computed by hand: shard ``s``
    holds ``s, s + shards, ...``."""
    out = {}
    for s in range(shards):
        values = range(s, count, shards)
        out[str(s)] = (len(values), float(sum(values)), float(values[0]), float(values[-1]))
    return out


def _pods_ready(stack: Stack, name: str, component: str, count: int) -> bool:
    """Exactly ``count`` pods of the component, all Ready (none starting or going)."""
    pods = stack.kind_env.get(
        "pods", "-n", stack.namespace,
        "-l", f"app.kubernetes.io/instance={name},app.kubernetes.io/component={component}",
    )["items"]  # fmt: skip
    return len(pods) == count and len(stack.ready_pods(name, component)) == count


def _note(text: str) -> None:
    """Echoed, and appended to ``$KILLKRILL_E2E_REPORT`` when set: what a run showed."""
    sys.stdout.write(text)
    path = os.environ.get("KILLKRILL_E2E_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as report:
            report.write(text)


def _ready(stack: Stack, name: str, timeout: float = 300) -> None:
    stack.wait_condition(name, "Ready", "True", timeout=timeout)
    _note(stack.cluster_report())


def test_the_operator_is_ready_and_helm_test_passes(stack: Stack) -> None:
    env = stack.kind_env
    (deployment,) = env.get(
        "deployments", "-n", stack.namespace, "-l", "app.kubernetes.io/component=operator"
    )["items"]
    assert deployment["status"]["readyReplicas"] == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == APP_IMAGE
    # No --logs: the test pod is deleted once it passed (hook-delete-policy hook-succeeded).
    done = env.run("helm", "test", stack.release, "-n", stack.namespace, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Phase:          Succeeded" in done.stdout


def test_logs_syslog_and_metrics_arrive_exactly_once_and_enriched(stack: Stack) -> None:
    name, token = f"flow-{RUN_ID}", _token()
    enrichment = {"environment": "e2e", "fields": {"cluster": "kind", "e2e_pipeline": name}}
    stack.apply(stack.pipeline(name, {"elasticsearch": {"enrichment": enrichment}}))
    _ready(stack, name)
    pipeline = stack.get(name)
    assert pipeline["status"]["observedGeneration"] == pipeline["metadata"]["generation"]
    assert pipeline["status"]["receivers"] == "1/1"
    assert pipeline["status"]["workers"] == "2/2"
    metric = f"e2e_samples_{token}"
    tag = f"e2e-syslog-{token}"
    env = stack.kind_env
    with (
        env.port_forward(stack.namespace, f"service/{name}-receiver", _HTTP_PORT) as http,
        env.port_forward(stack.namespace, f"service/{name}-syslog", _SYSLOG_PORT) as syslog,
    ):
        _send_logs(http, token, 1000)
        sent = run_logger(syslog, tag, [f"e2e syslog {token} {i}" for i in range(100)])
        assert sent.returncode == 0, sent.stderr
        samples = _samples(metric, token, 1000)
        for first in range(0, 1000, 100):
            answer = post_json(
                f"http://127.0.0.1:{http}/api/v1/metrics", samples[first : first + 100]
            )
            assert answer["accepted"] == 100, answer
    prefix = f"logs-{name}"
    with stack.services.elasticsearch() as es:
        _wait_indexed(es, prefix, token, 1000)
        wait_for(
            lambda: _es_count(es, prefix, "service", tag)[0] == 100,
            300,
            f"100 syslog lines of {tag}",
            interval=2,
        )
        assert _es_count(es, prefix, "service", tag)[0] == 100
        hits = es.search(index=f"{prefix}-*", query={"term": {"e2e_run.keyword": token}}, size=5)[
            "hits"
        ]["hits"]
        for hit in hits:
            doc = hit["_source"]
            assert doc["environment"] == "e2e"
            assert doc["cluster"] == "kind"
            assert doc["e2e_pipeline"] == name
            assert doc["version"] == __version__
            assert doc["processed_at"] >= doc["timestamp"][:19]
            assert doc["@timestamp"] == doc["timestamp"]
        syslog_doc = es.search(index=f"{prefix}-*", query={"term": {"service": tag}}, size=1)[
            "hits"
        ]["hits"][0]["_source"]
        assert syslog_doc["message"].startswith(f"e2e syslog {token} ")
        assert syslog_doc["environment"] == "e2e"
        _note(
            f"elasticsearch: {_es_count(es, prefix, 'e2e_run.keyword', token)[0]} HTTP logs, "
            f"{_es_count(es, prefix, 'service', tag)[0]} syslog lines\n"
        )
    expected = _expected(1000)
    with stack.services.postgres() as conn:

        def aggregated() -> dict[str, tuple[int, float, float, float]] | None:
            totals = _pg_totals(conn, name, metric)
            return totals if totals == expected else None

        totals = wait_for(aggregated, 300, f"1000 samples of {metric} aggregated", interval=2)
        assert sum(c for c, *_ in totals.values()) == 1000
        assert sum(s for _, s, *_ in totals.values()) == 499500.0
        _note(f"postgres: {metric}: {totals}\n")
    stack.wait_condition(name, "DataFlowing", "True", reason="Healthy", timeout=120)
    stack.kind_env.kubectl("delete", "pipeline", "-n", stack.namespace, name)


def test_a_worker_pod_deleted_mid_load_loses_and_doubles_nothing(stack: Stack) -> None:
    name, token = f"kill-{RUN_ID}", _token()
    fixed = {"replicas": 2, "autoscaling": {"enabled": False}}
    stack.apply(stack.pipeline(name, {"logWorker": fixed, "metricsWorker": fixed}))
    _ready(stack, name)
    metric, logs, batches = f"e2e_kill_{token}", 5000, 50
    errors: list[BaseException] = []
    env = stack.kind_env
    with (
        env.port_forward(stack.namespace, f"service/{name}-receiver", _HTTP_PORT) as http,
        stack.services.elasticsearch() as es,
    ):

        def load() -> None:
            try:
                samples = _samples(metric, token, 2000)
                for b in range(batches):
                    _send_logs(http, token, logs // batches, start=b * (logs // batches))
                    chunk = samples[b * 40 : (b + 1) * 40]
                    answer = post_json(f"http://127.0.0.1:{http}/api/v1/metrics", chunk)
                    assert answer["accepted"] == len(chunk), answer
            except BaseException as exc:  # reported by the test's thread
                errors.append(exc)

        sender = threading.Thread(target=load, name="e2e-load")
        sender.start()
        # Mid-load: some logs indexed, not all; then one pod of each worker goes.
        wait_for(
            lambda: 0 < _es_count(es, f"logs-{name}", "e2e_run.keyword", token)[0] < logs,
            120,
            "the first logs indexed",
            interval=0.5,
        )
        for component in ("log-worker", "metrics-worker"):
            victim = stack.ready_pods(name, component)[0]
            env.kubectl("delete", "pod", "-n", stack.namespace, victim, "--wait=false")
        sender.join(timeout=600)
        assert not sender.is_alive()
        assert not errors, errors
        _wait_indexed(es, f"logs-{name}", token, logs)
    with stack.services.postgres() as conn:
        expected = _expected(2000)
        wait_for(
            lambda: _pg_totals(conn, name, metric) == expected,
            300,
            f"2000 samples of {metric} aggregated exactly",
            interval=2,
        )
    for component in ("log-worker", "metrics-worker"):
        wait_for(partial(_pods_ready, stack, name, component, 2), 180, f"2 {component}s")
    health = stack.wait_condition(name, "Ready", "True")
    assert health["reason"] == "Ready"
    assert stack.get(name)["status"]["health"]["deadLetters"] == 0
    env.kubectl("delete", "pipeline", "-n", stack.namespace, name)


def test_the_log_workers_follow_the_spec_replicas(stack: Stack) -> None:
    name = f"scale-{RUN_ID}"
    stack.apply(stack.pipeline(name, {"logWorker": {"replicas": 1}}))
    _ready(stack, name)
    for replicas in (3, 1):
        generation = stack.patch(name, {"logWorker": {"replicas": replicas}})
        wait_for(
            partial(_pods_ready, stack, name, "log-worker", replicas),
            240,
            f"{replicas} log-worker pods",
        )
        stack.wait_condition(name, "Ready", "True")
        status = stack.get(name)["status"]
        assert status["observedGeneration"] == generation
        assert status["components"]["logWorker"]["ready"] == replicas
        assert status["logWorkerReplicas"] == replicas
    stack.kind_env.kubectl("delete", "pipeline", "-n", stack.namespace, name)


def test_an_unreachable_elasticsearch_is_reported_and_the_backlog_drains_once_fixed(
    stack: Stack,
) -> None:
    name, token = f"broken-{RUN_ID}", _token()
    good = stack.services.spec(pg_secret=stack.pg_secret, index_prefix=f"logs-{name}")
    good_url = good["elasticsearch"]["url"]
    broken_url = f"http://nowhere.{stack.services.namespace}.svc.cluster.local:9200"
    stack.apply(stack.pipeline(name, {"elasticsearch": {"url": broken_url}}))
    flowing = stack.wait_condition(name, "DataFlowing", "False", reason="SinkDegraded")
    assert broken_url in flowing["message"]
    ready = stack.wait_condition(name, "Ready", "False")
    _note(f"broken: Ready {ready['reason']}: {ready['message']}\n")
    env = stack.kind_env
    # The receivers need Redis only: they take logs while nothing can be indexed.
    wait_for(partial(_pods_ready, stack, name, "receiver", 1), 180, "the receiver Ready")
    with env.port_forward(stack.namespace, f"service/{name}-receiver", _HTTP_PORT) as http:
        _send_logs(http, token, 500)  # accepted: Redis holds them
    wait_for(
        lambda: (
            (stack.get(name)["status"].get("health") or {}).get("lag", 0)
            + sum(s["pending"] for s in stack.get(name)["status"]["health"]["streams"])
            >= 500
        ),
        120,
        "the backlog in the status",
        interval=2,
    )
    stack.patch(name, {"elasticsearch": {"url": good_url}})
    stack.wait_condition(name, "Ready", "True")
    with stack.services.elasticsearch() as es:
        _wait_indexed(es, f"logs-{name}", token, 500)
    # Broken again while running: reported with the URL; fixed: Ready.
    stack.patch(name, {"elasticsearch": {"url": broken_url}})
    flowing = stack.wait_condition(name, "DataFlowing", "False", reason="SinkDegraded")
    assert broken_url in flowing["message"]
    stack.patch(name, {"elasticsearch": {"url": good_url}})
    stack.wait_condition(name, "Ready", "True")
    env.kubectl("delete", "pipeline", "-n", stack.namespace, name)


def test_a_deleted_pipeline_leaves_no_object_behind(stack: Stack) -> None:
    name = f"gc-{RUN_ID}"
    stack.apply(stack.pipeline(name))
    env = stack.kind_env
    kinds = "deployments,services,configmaps,poddisruptionbudgets,serviceaccounts,pods"
    selector = f"app.kubernetes.io/instance={name}"

    def owned() -> set[str]:
        items = env.get(kinds, "-n", stack.namespace, "-l", selector)["items"]
        return {f"{o['kind']}/{o['metadata']['name']}" for o in items}

    wait_for(
        lambda: (
            {
                f"Deployment/{name}-receiver",
                f"Deployment/{name}-log-worker",
                f"Deployment/{name}-metrics-worker",
                f"Service/{name}-receiver",
                f"Service/{name}-syslog",
                f"ConfigMap/{name}-config",
            }
            <= owned()
        ),
        120,
        f"the objects of {name}",
    )
    uid = stack.get(name)["metadata"]["uid"]
    for obj in env.get("deployments,services,configmaps", "-n", stack.namespace,
                       "-l", selector)["items"]:  # fmt: skip
        assert [r["uid"] for r in obj["metadata"]["ownerReferences"]] == [uid]
    env.kubectl("delete", "pipeline", "-n", stack.namespace, name, "--wait=true")
    wait_for(lambda: owned() == set(), 180, f"no object of {name} left", interval=1)
