"""What no other pipeline operator reports: whether data flows. The status follows the
pipeline's real Redis (a backlog, a dead letter, a drain by real worker processes) and the
built-in autoscaler sets worker replicas from the lag."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import redis
from killkrill_command import KillkrillProcess
from operator_helpers import condition, dump, pipeline_status_says
from polling import wait_for

from killkrill.operator.kube import KubeClient


def _log(i: int) -> bytes:
    return json.dumps(
        {"timestamp": "2024-01-06T12:00:00Z", "service": "op", "level": "info",
         "message": f"log {i}"}
    ).encode()  # fmt: skip


def _backlog(client: redis.Redis, stream: str, n: int) -> None:
    with client.pipeline(transaction=False) as pipe:
        for i in range(n):
            pipe.xadd(stream, {"data": _log(i)})
        pipe.execute()


def _flowing(p: dict[str, Any]) -> dict[str, Any]:
    return condition(p, "DataFlowing") or {}


def test_status_follows_the_data_plane(
    operator: Any,
    kube: KubeClient,
    kube_namespace: str,
    pipeline_spec: dict[str, Any],
    apply_pipeline: Any,
    redis_client: redis.Redis,
    redis_url: str,
    elasticsearch_url: str,
    database_schema: str,
    tmp_path: Path,
) -> None:
    ns, name = kube_namespace, "flow"
    stream = f"{name}:logs-stream"
    apply_pipeline(name, pipeline_spec)
    _backlog(redis_client, stream, 500)
    stuck = wait_for(
        pipeline_status_says(
            kube, ns, name,
            lambda p: _flowing(p).get("reason") in ("Stalled", "NoWorkers", "Backlogged")
            and p["status"]["health"]["lag"] == 500,
        ),
        60,
        "DataFlowing False with the lag",
    )  # fmt: skip
    assert _flowing(stuck)["status"] == "False"
    assert condition(stuck, "Ready")["status"] == "False"  # type: ignore[index]
    [logs] = [s for s in stuck["status"]["health"]["streams"] if s["name"] == stream]
    assert logs["lag"] == 500 and logs["length"] == 500

    redis_client.xadd(stream, {"data": b"{not json"})  # a poison record
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "ELASTICSEARCH_URL": elasticsearch_url,
        "DATABASE_URL": database_schema,
        "KILLKRILL_CONSUMER__HEARTBEAT_SECONDS": "0.5",
        "KILLKRILL_ELASTICSEARCH__INDEX_PREFIX": pipeline_spec["elasticsearch"]["indexPrefix"],
    }
    workers = [
        KillkrillProcess(
            [*command, "--pipeline", name, "--ops-port", "0"], env, tmp_path / f"{i}.log"
        )
        for i, command in enumerate((["worker", "logs"], ["worker", "metrics"]))
    ]
    try:
        lettered = wait_for(
            pipeline_status_says(
                kube, ns, name, lambda p: p["status"]["health"]["deadLetters"] == 1
            ),
            60,
            "the dead letter in the status",
        )
        assert lettered["status"]["health"]["lag"] == 0 or _flowing(lettered)["reason"]
        # drained, both workers alive; the dead letter is news for 5 minutes
        drained = wait_for(
            pipeline_status_says(
                kube, ns, name,
                lambda p: _flowing(p).get("reason") in ("DeadLettering", "Healthy")
                and p["status"]["health"]["lag"] == 0 and p["status"]["health"]["workers"] == 2,
            ),
            60,
            "the backlog drained",
        )  # fmt: skip
        assert (
            "dead letter" in _flowing(drained)["message"] or _flowing(drained)["status"] == "True"
        )
        redis_client.delete(f"{stream}:dead-letter")  # purged: nothing left to report
        healthy = wait_for(
            pipeline_status_says(kube, ns, name, lambda p: _flowing(p).get("status") == "True"),
            60,
            "DataFlowing True",
        )
        assert _flowing(healthy)["reason"] == "Healthy"
        # pods are still not ready here (no kubelet): Ready stays False, honestly
        assert condition(healthy, "Ready")["reason"] == "PodsNotReady"  # type: ignore[index]
    finally:
        for worker in workers:
            worker.close()


def test_the_autoscaler_follows_the_lag_within_bounds(
    operator: Any,
    kube: KubeClient,
    kube_namespace: str,
    pipeline_spec: dict[str, Any],
    apply_pipeline: Any,
    redis_client: redis.Redis,
) -> None:
    ns, name = kube_namespace, "scale"
    spec = {
        **pipeline_spec,
        "logWorker": {
            "autoscaling": {
                "enabled": True, "minReplicas": 1, "maxReplicas": 4,
                "targetLag": 100, "cooldownSeconds": 3,
            }
        },
    }  # fmt: skip

    def replicas() -> int | None:
        d = kube.get("apps/v1", "Deployment", f"{name}-log-worker", ns)
        return None if d is None else int(d["spec"]["replicas"])

    apply_pipeline(name, spec)
    wait_for(lambda: replicas() == 1, 60, "1 replica while nothing waits")
    _backlog(redis_client, f"{name}:logs-stream", 250)
    wait_for(lambda: replicas() == 3, 30, "3 replicas for 250 waiting (targetLag 100)")
    _backlog(redis_client, f"{name}:logs-stream", 1000)
    wait_for(lambda: replicas() == 4, 30, "the maximum, 4")
    decided = wait_for(
        pipeline_status_says(
            kube, ns, name,
            lambda p: p["status"].get("autoscaling", {}).get("logWorker", {}).get("lag") == 1250,
        ),
        30,
        "the decision in the status",
    )  # fmt: skip
    decision = decided["status"]["autoscaling"]["logWorker"]
    assert decision["replicas"] == 4 and "within [1, 4]" in decision["reason"], dump(decision)
    redis_client.delete(f"{name}:logs-stream")  # the lag is gone
    wait_for(lambda: replicas() == 1, 30, "back to 1 after the cooldown")
