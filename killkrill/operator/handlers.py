"""The kopf handlers: thin, each one a call of :func:`~killkrill.operator.reconcile.reconcile`.

* a Pipeline created, changed or found at start (``resume``): reconcile now;
* every ``RECONCILE_SECONDS`` (a timer, level-based): reconcile again - undoes drift,
  refreshes the data plane's status, runs the autoscaler;
* an owned Deployment, Service or ConfigMap edited or deleted by hand: reconcile its
  Pipeline at once (it is put back);
* no finalizer: a Pipeline is deleted whether an operator runs or not (see
  :func:`_without_finalizers`);
* a problem (missing Secret, Redis down, an object refused): kopf retries with backoff
  (:class:`kopf.TemporaryError`), the status and an Event say what to fix; never a
  traceback loop.

Registered on a registry of their own (:func:`registry`), so tests and the CLI run exactly
these.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._core.intents import handlers as kopf_handlers

from killkrill.config.pipeline import GROUP, PLURAL, VERSION
from killkrill.errors import ServiceUnavailable
from killkrill.health import Thresholds
from killkrill.operator.kube import KubeClient, KubeConfig
from killkrill.operator.metrics import ERROR, OK, PROBLEM, OperatorMetrics
from killkrill.operator.reconcile import reconcile
from killkrill.operator.render import MANAGED_BY

__all__ = ["RECONCILE_SECONDS", "registry"]

log = logging.getLogger("killkrill.operator")

RECONCILE_SECONDS = 15.0
"""Seconds between two level-based reconciles of every Pipeline (the timer)."""

_OWNED = {"app.kubernetes.io/managed-by": MANAGED_BY}


def registry(
    client: KubeClient,
    *,
    interval: float = RECONCILE_SECONDS,
    thresholds: Thresholds | None = None,
    metrics: OperatorMetrics | None = None,
) -> kopf.OperatorRegistry:
    """The operator's handlers over ``client`` (counting reconciles in ``metrics``)."""
    reg = kopf.OperatorRegistry()
    counted = metrics or OperatorMetrics()

    def run(body: Mapping[str, Any], logger: logging.Logger | Any) -> None:
        started = time.monotonic()
        try:
            outcome = reconcile(client, body, thresholds=thresholds)
        except ServiceUnavailable as exc:
            counted.observe(ERROR, time.monotonic() - started)
            raise kopf.TemporaryError(str(exc), delay=10) from exc
        except Exception:
            counted.observe(ERROR, time.monotonic() - started)
            raise
        took = time.monotonic() - started
        counted.observe(OK if outcome.problem is None else PROBLEM, took)
        meta = body.get("metadata") or {}
        log.log(
            logging.INFO if outcome.written or outcome.problem else logging.DEBUG,
            "reconciled",
            extra={
                "pipeline": meta.get("name"),
                "namespace": meta.get("namespace"),
                "seconds": round(took, 3),
                "status_changed": outcome.written,
                "problem": outcome.problem.reason if outcome.problem else None,
            },
        )
        if outcome.problem is not None:
            raise kopf.TemporaryError(
                f"{outcome.problem.reason}: {outcome.problem.message}", delay=10
            )

    @kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile", registry=reg)
    @kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile", registry=reg)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", id="reconcile", registry=reg)
    def changed(body: kopf.Body, logger: Any, **_: Any) -> None:
        run(body, logger)

    @kopf.timer(
        GROUP, VERSION, PLURAL, interval=interval, initial_delay=interval, id="periodic",
        registry=reg,
    )  # fmt: skip
    def periodic(body: kopf.Body, logger: Any, **_: Any) -> None:
        try:
            there = still_there(client, body)
        except ServiceUnavailable as exc:
            raise kopf.TemporaryError(str(exc), delay=10) from exc
        if not there:
            raise kopf.TemporaryError(GONE, delay=STALE_TIMER_DELAY)
        run(body, logger)

    def owner_changed(meta: kopf.Meta, namespace: str | None, logger: Any, **_: Any) -> None:
        pipeline = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
        if not pipeline or not namespace:
            return
        body = client.get(f"{GROUP}/{VERSION}", "Pipeline", pipeline, namespace)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return  # the Pipeline is going: its objects go with it
        log.info(
            "an owned object changed; reconciling its pipeline",
            extra={"pipeline": pipeline, "namespace": namespace, "object": meta.get("name")},
        )
        run(body, logger)

    for api, plural, declared in (
        ("apps/v1", "deployments", "spec"),
        ("v1", "services", "spec"),
        ("v1", "configmaps", "data"),
    ):
        kopf.on.update(api, plural, field=declared, labels=_OWNED, registry=reg)(owner_changed)
        kopf.on.delete(api, plural, labels=_OWNED, optional=True, registry=reg)(owner_changed)
    _without_finalizers(reg)
    return reg


STALE_TIMER_DELAY = 3600.0
"""Seconds between two looks of a timer whose Pipeline is gone (see :func:`still_there`)."""
GONE = "the Pipeline is gone (its namespace was deleted): nothing to reconcile"


def still_there(client: KubeClient, body: Mapping[str, Any]) -> bool:
    """Whether the Pipeline of ``body`` (the same object: its uid) still exists.

    kopf stops a Pipeline's timer when it sees the Pipeline deleted; when the whole
    namespace goes, the namespace's watch ends first and kopf never sees it, so the timer
    ran on with the last body it had: reconciling a Pipeline that no longer exists (every
    minute, failing) and, were the namespace made again with the same Secrets, applying the
    old Pipeline's objects into it. Such a timer now only looks, once an hour."""
    meta = body.get("metadata") or {}
    current = client.get(f"{GROUP}/{VERSION}", "Pipeline", meta.get("name", ""),
                         meta.get("namespace"))  # fmt: skip
    return current is not None and current["metadata"].get("uid") == meta.get("uid")


def _without_finalizers(reg: kopf.OperatorRegistry) -> None:
    """The timer without kopf's finalizer on every Pipeline.

    kopf gives every object one of its timers serves a finalizer (so that the timer stops
    before the object goes). A Pipeline needs none: all it makes is owned by it (garbage-
    collected) and a reconcile is idempotent; kopf stops the timer when the object is gone.
    With one, a Pipeline could not be deleted once no operator ran: ``helm uninstall``
    deletes the operator before the example Pipeline, and a namespace holding Pipelines
    stayed Terminating for ever. kopf has no option for it: the registered handler is
    replaced by a copy without (and kopf removes the finalizer it added to existing ones)."""
    spawning = reg._spawning
    spawning._handlers = [
        dataclasses.replace(h, requires_finalizer=False)
        if isinstance(h, kopf_handlers.TimerHandler)
        else h
        for h in spawning._handlers
    ]


def login(config: KubeConfig) -> kopf.ConnectionInfo:
    """kopf's credentials: the same ones our own client uses."""
    return kopf.ConnectionInfo(
        server=config.server,
        ca_path=config.ca_file,
        insecure=not config.verify,
        certificate_path=config.client_cert,
        private_key_path=config.client_key,
        token=config.bearer(),
        default_namespace=None,
    )
