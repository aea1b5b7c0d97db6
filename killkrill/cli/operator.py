"""``killkrill operator``: reconcile ``Pipeline`` resources into running pipelines."""

from __future__ import annotations

import click

__all__ = ["operator"]


@click.command()
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    help="Watch only this namespace (repeat for several). Default: every namespace.",
)
@click.option(
    "--peering",
    default="killkrill",
    show_default=True,
    help="Peering name: operators sharing it elect one to act (kopf peering).",
)
@click.option("--standalone", is_flag=True, help="No peering: act whatever other operators do.")
@click.option("--priority", type=int, help="Peering priority (default: random per process).")
@click.option(
    "--health-port",
    default=8081,
    show_default=True,
    help="Port of /healthz, /readyz (probes) and /metrics.",
)
@click.option(
    "--interval",
    default=15.0,
    show_default=True,
    help="Seconds between two reconciles of each Pipeline (drift, status, autoscaling).",
)
@click.option("--kubeconfig", help="Kubeconfig file (default: $KUBECONFIG, or in-cluster).")
@click.option("--log-level", default="info", show_default=True, help="debug, info, warning.")
def operator(
    namespaces: tuple[str, ...],
    peering: str,
    standalone: bool,
    priority: int | None,
    health_port: int,
    interval: float,
    kubeconfig: str | None,
    log_level: str,
) -> None:
    """Run the operator: each Pipeline becomes receivers, workers, Services and config,
    kept as declared, with a status that says whether data flows. Uses KUBECONFIG (or the
    pod's service account); stops on SIGTERM."""
    from killkrill.jsonlog import configure_json_logging
    from killkrill.operator.run import run_operator

    configure_json_logging(log_level)
    run_operator(
        namespaces=namespaces,
        peering=None if standalone else peering,
        priority=priority,
        health_port=health_port,
        interval=interval,
        kubeconfig=kubeconfig,
    )
