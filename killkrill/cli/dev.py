"""``killkrill dev``: the local development services, a local Kubernetes control plane and a
smoke check of the pipeline.

Each command imports what it drives when it runs: the services manager pulls in the Redis,
PostgreSQL and Elasticsearch clients (seconds on a busy machine), which ``killkrill dev k8s
env`` (evaluated by shells) has no use for."""

from __future__ import annotations

import shlex

import click

__all__ = ["dev"]

_names = click.argument("names", nargs=-1, metavar="[redis|postgres|elasticsearch]...")


@click.group()
def dev() -> None:
    """Local development helpers."""


@dev.group()
def services() -> None:
    """Real Redis, PostgreSQL and Elasticsearch on loopback (installed when missing)."""


@services.command()
@_names
def up(names: tuple[str, ...]) -> None:
    """Install if missing and start the services; a no-op for those already running."""
    from killkrill.dev import ServiceManager

    ServiceManager(names, echo=lambda line: click.echo(line, err=True)).up()


@services.command()
@_names
def down(names: tuple[str, ...]) -> None:
    """Stop the services and wait until no process of theirs is left."""
    from killkrill.dev import ServiceManager

    ServiceManager(names, echo=lambda line: click.echo(line, err=True)).down()


@services.command()
@_names
def status(names: tuple[str, ...]) -> None:
    """Show each service's state, URL and pid; exit 1 when one is not running."""
    from killkrill.dev import ServiceManager

    statuses = ServiceManager(names).status()
    for st in statuses:
        click.echo(st.line())
    if any(st.state == "stopped" for st in statuses):
        raise SystemExit(1)


@services.command()
@_names
def env(names: tuple[str, ...]) -> None:
    """Print ``export`` lines for the services' URLs: ``eval "$(killkrill dev services env)"``."""
    from killkrill.dev import ServiceManager

    for key, value in ServiceManager(names).env().items():
        click.echo(f"export {key}={shlex.quote(value)}")


@dev.command()
@click.option(
    "--pipeline/--services-only",
    default=True,
    help="Also run the whole pipeline end to end on sample data (default).",
)
@click.option("--logs", default=1000, show_default=True, help="Log records to send through.")
def smoke(pipeline: bool, logs: int) -> None:
    """Check the services (XADD/XRANGE, INSERT/SELECT, index/search), then run the pipeline
    (receivers, log worker, metrics worker) end to end on sample data and show what arrived."""
    from killkrill.dev import ServiceManager
    from killkrill.dev.smoke import run_pipeline_smoke, run_smoke

    env = ServiceManager().env()
    for line in run_smoke(env):
        click.echo(line)
    if pipeline:
        for line in run_pipeline_smoke(env, logs=logs):
            click.echo(line)


@dev.group()
def k8s() -> None:
    """A Kubernetes control plane on loopback (etcd, kube-apiserver, kube-controller-manager)
    and its tools (kubectl, helm, kind, skaffold), built from source into the cache.

    No scheduler, no kubelet: Deployments get ReplicaSets and Pods, which stay Pending.
    With KUBECONFIG set, that cluster is used and nothing is started."""


_all_tools = click.option(
    "--all",
    "all_tools",
    is_flag=True,
    help="Also build kind, skaffold and etcdctl (`up` builds the control plane, kubectl, helm).",
)


@k8s.command("up")
@_all_tools
def k8s_up(all_tools: bool) -> None:
    """Build what is missing (first time: ~15 min), then start the control plane and wait
    for /readyz; a no-op when it is running. Writes an admin kubeconfig: see `env`."""
    from killkrill.dev.k8s.cluster import ControlPlane

    ControlPlane(echo=lambda line: click.echo(line, err=True)).up(all_tools=all_tools)


@k8s.command("down")
def k8s_down() -> None:
    """Stop the control plane and wait until none of its processes is left."""
    from killkrill.dev.k8s.cluster import ControlPlane

    ControlPlane(echo=lambda line: click.echo(line, err=True)).down()


@k8s.command("status")
def k8s_status() -> None:
    """Show each process's state and pid; exit 1 when one is not running."""
    from killkrill.dev.k8s.cluster import ControlPlane

    statuses = ControlPlane().status()
    for st in statuses:
        click.echo(st.line())
    if any(st.state == "stopped" for st in statuses):
        raise SystemExit(1)


@k8s.command("env")
def k8s_env() -> None:
    """Print `export` lines for KUBECONFIG and PATH (built tools first):
    ``eval "$(killkrill dev k8s env)"``."""
    from killkrill.dev.k8s.cluster import ControlPlane

    env = ControlPlane().env()
    click.echo(f"export KUBECONFIG={shlex.quote(env['KUBECONFIG'])}")
    click.echo(f'export PATH={shlex.quote(env["BIN_DIR"])}:"$PATH"')


@k8s.command("build")
@_all_tools
@click.argument("names", nargs=-1, metavar="[BINARY]...")
def k8s_build(all_tools: bool, names: tuple[str, ...]) -> None:
    """Build binaries into the cache (never rebuilding one that is there): by name (e.g.
    kubelet kubeadm kube-scheduler kube-proxy for a node image), else what `up` needs, plus
    kind, skaffold and etcdctl with --all. Prints where they are."""
    from killkrill.dev.k8s.gobuild import bin_dir, build
    from killkrill.dev.k8s.versions import EXTRA_TOOLS, UP_TOOLS

    wanted = list(names) or list(UP_TOOLS)
    if all_tools:
        wanted += [*UP_TOOLS, *EXTRA_TOOLS]
    build(wanted, echo=lambda line: click.echo(line, err=True))
    click.echo(bin_dir())
