"""``killkrill operator``: kopf in this process, over the handlers of :mod:`.handlers`.

Checks first that the API server answers with the credentials found (``KUBECONFIG`` or the
pod's service account) and that the ``pipelines.killkrill.io`` CRD is installed, and says
what to do when not (no traceback). Then runs until SIGTERM/SIGINT:

* every namespace, or only those given (``--namespace``, repeatable);
* kopf peering: operators of the same peering name (``killkrill`` by default) see each
  other and only the one of highest priority acts; the priority is random unless given,
  so of two replicas exactly one acts and the other takes over when it goes. Without the
  peering CRDs (``crds/kopf-peering.yaml``) the operator runs alone, with a warning;
* the ops port (``--health-port``, :class:`~killkrill.ops.OpsServer` on kopf's own event
  loop): ``/healthz`` and ``/readyz`` (200 while the loop serves: a wedged loop fails them)
  for the pod's probes, ``/metrics`` (:mod:`.metrics`) for Prometheus;
* kopf's progress and last-handled spec in small annotations (``killkrill.io/...``), not in
  the status the operator owns.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

import kopf

from killkrill.config.crd import CRD_NAME
from killkrill.errors import ConfigError, KubernetesApiError, ServiceUnavailable
from killkrill.operator.handlers import RECONCILE_SECONDS, login, registry
from killkrill.operator.kube import KubeClient, KubeConfig
from killkrill.operator.metrics import OperatorMetrics
from killkrill.ops import OpsServer
from killkrill.stackdump import install_stack_dump

__all__ = ["DEFAULT_PEERING", "run_operator"]

log = logging.getLogger("killkrill.operator")

DEFAULT_PEERING = "killkrill"


def check_cluster(client: KubeClient) -> str:
    """The server's version; a :class:`ConfigError` saying what to do when it does not
    answer, refuses the credentials, or lacks the CRD."""
    where = f"{client.config.server} (credentials from {client.config.source})"
    try:
        version = client.version()
    except ServiceUnavailable as exc:
        raise ConfigError(
            f"no Kubernetes API server answers at {where}: {exc}. Start one (`killkrill dev "
            'k8s up` and `eval "$(killkrill dev k8s env)"`) or point KUBECONFIG at a cluster'
        ) from None
    except KubernetesApiError as exc:
        raise ConfigError(f"the API server at {where} refused the credentials: {exc}") from None
    try:
        crd = client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD_NAME)
    except KubernetesApiError as exc:  # e.g. no RBAC to read CRDs: the watch will tell
        log.warning("cannot check that the CRD is installed (%s); going on", exc)
        return str(version.get("gitVersion", "?"))
    if crd is None:
        raise ConfigError(
            f"the CRD {CRD_NAME} is not installed in the cluster at {where}: install it with "
            "`kubectl apply --server-side -f crds/` (or `helm install killkrill "
            "charts/killkrill`)"
        )
    return str(version.get("gitVersion", "?"))


def run_operator(
    *,
    namespaces: Sequence[str] = (),
    peering: str | None = DEFAULT_PEERING,
    priority: int | None = None,
    health_port: int = 8081,
    interval: float = RECONCILE_SECONDS,
    kubeconfig: str | None = None,
) -> None:
    """Run the operator until SIGTERM/SIGINT (see the module doc)."""
    config = KubeConfig.load(kubeconfig)
    client = KubeClient(config)
    version = check_cluster(client)
    metrics = OperatorMetrics()
    reg = registry(client, interval=interval, metrics=metrics)
    chosen_priority = priority if priority is not None else random.randint(1, 2**30)

    @kopf.on.login(registry=reg)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        return login(config)

    @kopf.on.startup(registry=reg)
    def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="killkrill.io"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="killkrill.io", key="last-handled-configuration"
        )
        settings.posting.level = logging.WARNING  # our own Events say what matters
        settings.peering.mandatory = False

    log.info(
        "operator starting",
        extra={
            "server": config.server,
            "kubernetes": version,
            "namespaces": list(namespaces) or "all",
            "peering": peering or "standalone",
            "priority": chosen_priority,
            "health": f"http://0.0.0.0:{health_port}/healthz",
            "metrics": f"http://0.0.0.0:{health_port}/metrics",
        },
    )

    async def main() -> None:
        # kopf owns SIGTERM/SIGINT (its handlers replace any set before it starts): a stop
        # flag of ours would never be set, and kopf waits 5 s for the task watching it.
        install_stack_dump(asyncio.get_running_loop())

        async def ready() -> tuple[bool, str]:
            return True, "ok"

        ops = OpsServer("0.0.0.0", health_port, registry=metrics.registry, ready=ready)
        await ops.start()
        try:
            await kopf.operator(
                registry=reg,
                clusterwide=not namespaces,
                namespaces=list(namespaces),
                standalone=peering is None,
                peering_name=peering,
                priority=chosen_priority,
            )
        finally:
            await ops.stop()

    try:
        asyncio.run(main())
    finally:
        client.close()
    log.info("operator stopped")
