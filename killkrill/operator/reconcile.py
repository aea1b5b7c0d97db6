"""One reconcile of one Pipeline: read -> decide -> render -> apply -> observe -> status.

:func:`reconcile` is the whole of it, a plain function the kopf handlers call (and tests
call directly):

1. parse the spec (an invalid one: ``Degraded``/``InvalidSpec``, nothing applied);
2. read every referenced Secret (a missing Secret or key: ``Degraded``/``SecretMissing``
   naming it and the field that references it, nothing applied until it exists);
3. read the data plane's health with the pipeline's own credentials (the Secrets' values in
   a private temporary directory, removed at once); Redis not answering: ``Degraded``;
4. decide worker replicas from the lag (the built-in autoscaler), render, apply, prune;
5. read back the Deployments and derive the status; write it only when it changed, and an
   Event for every condition that changed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from killkrill.config.pipeline import (
    API_VERSION,
    KIND,
    ComponentSettings,
    Pipeline,
    component_settings,
    parse_pipeline,
)
from killkrill.config.status import AutoscalingStatus, PipelineStatus
from killkrill.errors import ConfigError, KubernetesApiError, ServiceUnavailable
from killkrill.health import UNKNOWN, HealthTarget, PipelineHealth, Thresholds, check
from killkrill.operator.apply import apply_objects, prune
from killkrill.operator.autoscale import decide
from killkrill.operator.kube import KubeClient
from killkrill.operator.render import (
    LOG_WORKER,
    METRICS_WORKER,
    Rendered,
    object_name,
    render,
)
from killkrill.operator.status import Problem, derive, rfc3339, transitions

__all__ = ["Outcome", "reconcile"]

log = logging.getLogger("killkrill.operator")

_STATUS_KEY = {LOG_WORKER: "logWorker", METRICS_WORKER: "metricsWorker"}
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    """What one reconcile found and did."""

    status: PipelineStatus
    problem: Problem | None
    written: bool
    """Whether the status was written (it had changed)."""


def _lock(key: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _previous(body: Mapping[str, Any]) -> PipelineStatus:
    try:
        return PipelineStatus.model_validate(body.get("status") or {})
    except PydanticValidationError:
        return PipelineStatus()  # written by someone else, or an older operator


class _Secrets:
    """The Secrets a pipeline references: their resourceVersions and values."""

    def __init__(self) -> None:
        self.versions: dict[str, str] = {}
        self.values: dict[str, dict[str, bytes]] = {}

    @classmethod
    def read(
        cls, client: KubeClient, namespace: str, wanted: Mapping[str, list[str]]
    ) -> tuple[_Secrets, Problem | None]:
        secrets = cls()
        for name, keys in sorted(wanted.items()):
            obj = client.get("v1", "Secret", name, namespace)
            if obj is None:
                return secrets, Problem(
                    "SecretMissing",
                    f"Secret {namespace}/{name} does not exist (the spec references it); "
                    "create it, or fix the secretRef",
                )
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            missing = [k for k in keys if k not in data]
            if missing:
                return secrets, Problem(
                    "SecretMissing",
                    f"Secret {namespace}/{name} has no key {', '.join(missing)} (the spec "
                    "references it); add it, or fix the secretRef's key",
                )
            secrets.versions[name] = str(obj["metadata"].get("resourceVersion", ""))
            secrets.values[name] = data
        return secrets, None

    @contextlib.contextmanager
    def files(self) -> Iterator[Path]:
        """The values as files ``<dir>/<secret>/<key>`` in a private temporary directory,
        removed when the block ends."""
        with tempfile.TemporaryDirectory(prefix="killkrill-operator-") as tmp:
            root = Path(tmp)
            root.chmod(0o700)
            for name, data in self.values.items():
                (root / name).mkdir()
                for key, value in data.items():
                    path = root / name / key
                    path.write_bytes(value)
                    os.chmod(path, 0o600)
            yield root


def _health(pipeline: Pipeline, secrets: _Secrets, thresholds: Thresholds) -> PipelineHealth:
    with secrets.files() as root:
        derived = component_settings(pipeline, secrets_dir=root)
        loaded = ComponentSettings(
            derived.receiver.with_password_files(),
            derived.log_worker.with_password_files(),
            derived.metrics_worker.with_password_files(),
        )
        target = HealthTarget.from_settings(loaded)
        return asyncio.run(check(target, thresholds))


def _worker_lag(report: PipelineHealth | None, kind: str) -> int | None:
    if report is None or report.verdict == UNKNOWN:
        return None
    group_kind = "log-worker" if kind == LOG_WORKER else "metrics-worker"
    return sum(s.lag for s in report.streams if s.group.endswith(group_kind))


def _autoscale(
    pipeline: Pipeline,
    previous: PipelineStatus,
    report: PipelineHealth | None,
    now: datetime,
) -> tuple[dict[str, int | None], dict[str, AutoscalingStatus]]:
    replicas: dict[str, int | None] = {}
    decisions: dict[str, AutoscalingStatus] = {}
    for kind, spec in (
        (LOG_WORKER, pipeline.spec.log_worker),
        (METRICS_WORKER, pipeline.spec.metrics_worker),
    ):
        scaling = spec.autoscaling
        if scaling.external or not scaling.enabled:
            continue
        key = _STATUS_KEY[kind]
        last = previous.autoscaling.get(key)
        lag = _worker_lag(report, kind)
        if lag is None:  # nothing known: keep what runs
            if last is not None:
                replicas[kind] = last.replicas
                decisions[key] = last
            continue
        since = datetime.fromisoformat(last.decided_at) if last is not None else None
        decision = decide(
            scaling,
            current=last.replicas if last is not None else None,
            lag=lag,
            last_change=since,
            now=now,
        )
        replicas[kind] = decision.replicas
        decided_at = rfc3339(now) if decision.changed or last is None else last.decided_at
        decisions[key] = AutoscalingStatus(
            replicas=decision.replicas, lag=lag, reason=decision.reason, decided_at=decided_at
        )
    return replicas, decisions


def _comparable(status: PipelineStatus) -> dict[str, Any]:
    data = status.model_dump(mode="json")
    health = data.get("health")
    if health:
        health.pop("checkedAt", None)
        for stream in health.get("streams", []):
            stream.pop("oldestPendingSeconds", None)
    return data


def reconcile(
    client: KubeClient,
    body: Mapping[str, Any],
    *,
    thresholds: Thresholds | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Bring one Pipeline's objects and status in line (see the module doc)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    with _lock(f"{namespace}/{name}"):
        return _reconcile(client, body, thresholds or Thresholds(), now or datetime.now(UTC))


def _reconcile(
    client: KubeClient, body: Mapping[str, Any], thresholds: Thresholds, now: datetime
) -> Outcome:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    generation = int(meta.get("generation", 0))
    previous = _previous(body)
    problem: Problem | None = None
    report: PipelineHealth | None = None
    rendered: Rendered | None = None
    autoscaling: dict[str, AutoscalingStatus] = {}
    try:
        pipeline = parse_pipeline(dict(body), source=f"Pipeline {namespace}/{name}")
    except ConfigError as exc:
        pipeline = None
        problem = Problem("InvalidSpec", str(exc))
    if pipeline is not None:
        wanted = render(pipeline, namespace=namespace).secrets
        secrets, problem = _Secrets.read(client, namespace, wanted)
        if problem is None:
            try:
                report = _health(pipeline, secrets, thresholds)
            except (ConfigError, ServiceUnavailable) as exc:
                problem = Problem("HealthCheckFailed", str(exc))
            if report is not None and report.verdict == UNKNOWN:
                problem = Problem("RedisUnreachable", report.reason)
            replicas, autoscaling = _autoscale(pipeline, previous, report, now)
            rendered = render(
                pipeline,
                namespace=namespace,
                secret_versions=secrets.versions,
                replicas=replicas,
            )
            try:
                apply_objects(client, rendered.objects, body)
                gone = prune(client, namespace, name, rendered.objects)
                if gone:
                    log.info("pruned", extra={"pipeline": name, "objects": gone})
            except KubernetesApiError as exc:
                problem = Problem("ApplyFailed", f"the API refused an object: {exc}")
    components = (
        [LOG_WORKER, METRICS_WORKER]
        if rendered is None
        else [
            o["metadata"]["labels"]["app.kubernetes.io/component"]
            for o in rendered.objects
            if o["kind"] == "Deployment"
        ]
    )
    deployments = {
        c: client.get("apps/v1", "Deployment", object_name(name, c), namespace) for c in components
    }
    status = derive(
        previous,
        generation=generation,
        now=now,
        deployments=deployments,
        problem=problem,
        health=report,
        autoscaling=autoscaling or dict(previous.autoscaling),
        log_worker_selector=(
            f"app.kubernetes.io/name=killkrill,app.kubernetes.io/instance={name},"
            f"app.kubernetes.io/component={LOG_WORKER}"
        ),
    )
    written = _comparable(status) != _comparable(previous)
    if written:
        client.patch_status(
            API_VERSION, KIND, name, namespace, status.model_dump(mode="json", by_alias=True)
        )
        for changed in transitions(previous, status):
            _event(client, body, changed.type, changed.status, changed.reason, changed.message)
    return Outcome(status, problem, written)


def _event(
    client: KubeClient,
    body: Mapping[str, Any],
    kind: str,
    status: str,
    reason: str,
    message: str,
) -> None:
    """An Event on the Pipeline for a condition that changed (Warning when it is bad)."""
    bad = (kind == "Degraded" and status == "True") or (kind != "Degraded" and status == "False")
    meta = body["metadata"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        },
        "type": "Warning" if bad else "Normal",
        "reason": reason,
        "message": f"{kind}={status}: {message}"[:1000],
        "source": {"component": "killkrill-operator"},
        "firstTimestamp": rfc3339(datetime.now(UTC)),
        "lastTimestamp": rfc3339(datetime.now(UTC)),
        "count": 1,
    }
    try:
        client.request("POST", client.path("v1", "Event", meta["namespace"]), body=event)
    except (KubernetesApiError, ServiceUnavailable) as exc:  # an Event is best effort
        log.warning("cannot post an event", extra={"error": str(exc)})
