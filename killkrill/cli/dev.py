"""``killkrill dev``: the local development services, a local Kubernetes control plane, a
Docker engine of the project's own and the container image, a kind cluster from a node
image built here, and a smoke check of the pipeline.

Each command imports what it drives when it runs: the services manager pulls in the Redis,
PostgreSQL and Elasticsearch clients (seconds on a busy machine), which ``killkrill dev k8s
env`` (evaluated by shells) has no use for."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from killkrill.dev.docker_engine import DockerEngine
    from killkrill.dev.kind.cluster import KindCluster

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


@dev.group()
def docker() -> None:
    """A Docker engine of the project's own (Debian's docker.io, installed when missing),
    its socket and state under the dev state dir, images kept in the cache dir."""


def _engine() -> DockerEngine:
    from killkrill.dev.docker_engine import DockerEngine

    return DockerEngine()


@docker.command("up")
def docker_up() -> None:
    """Install if missing and start dockerd; a no-op when it runs."""
    click.echo(_engine().up(), err=True)


@docker.command("down")
def docker_down() -> None:
    """Stop dockerd and wait until it, its containerd and every container are gone."""
    click.echo(_engine().down(), err=True)


@docker.command("status")
def docker_status() -> None:
    """Show the engine's state, socket and pid; exit 1 when it is not running."""
    status = _engine().status()
    click.echo(status.line())
    if status.state != "running":
        raise SystemExit(1)


@docker.command("env")
def docker_env() -> None:
    """Print ``export DOCKER_HOST=...``: ``eval "$(killkrill dev docker env)"``."""
    click.echo(f"export DOCKER_HOST={shlex.quote(_engine().local_url())}")


@docker.command("base")
@click.option("--rebuild", is_flag=True, help="Build even when images of this recipe exist.")
def docker_base(rebuild: bool) -> None:
    """Build the Debian 12 base images (debootstrap, cached by recipe hash): the runtime base
    killkrill/debian:bookworm and the build base killkrill/debian:bookworm-build."""
    from killkrill.dev.base_image import build_base_images

    build_base_images(_engine(), rebuild=rebuild, echo=lambda line: click.echo(line, err=True))


@docker.command("image")
@click.option(
    "--context",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The repository (its Dockerfile and sources).",
)
@click.option(
    "--base-image",
    help="Runtime base (default: the local killkrill/debian:bookworm, built when missing).",
)
@click.option("--build-image", help="Build stage base (default: the local build base).")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    help="Tag the image so (repeatable), instead of killkrill/killkrill:<version> and :dev.",
)
@click.option("--push", is_flag=True, help="Push every tag to its registry after the build.")
def docker_image(
    context: Path,
    base_image: str | None,
    build_image: str | None,
    tags: tuple[str, ...],
    push: bool,
) -> None:
    """Build the KillKrill image (killkrill/killkrill:<version> and :dev) with BuildKit, the
    host's pip settings and CA bundle passed as build secrets. skaffold's custom builder
    runs it with --tag "$IMAGE" (see skaffold.yaml)."""
    from killkrill.dev.image import build_image as build

    build(
        _engine(),
        context,
        base_image=base_image,
        build_image=build_image,
        tags=tags,
        push=push,
        echo=lambda line: click.echo(line, err=True),
    )


@dev.group()
def kind() -> None:
    """A real kind cluster (pods run) on the project's Docker engine, from a node image
    built here (killkrill/kind-node:<Kubernetes version>): no registry is needed."""


_cluster_name = click.option(
    "--name",
    default=None,
    help="Cluster name (default: $KILLKRILL_KIND_CLUSTER, else killkrill).",
)


def _cluster(name: str | None) -> KindCluster:
    import os

    from killkrill.dev.kind.cluster import DEFAULT_CLUSTER, KindCluster

    chosen = name or os.environ.get("KILLKRILL_KIND_CLUSTER") or DEFAULT_CLUSTER
    return KindCluster(chosen, echo=lambda line: click.echo(line, err=True))


@kind.command("image")
@click.option("--rebuild", is_flag=True, help="Build even when the image of this recipe exists.")
def kind_image(rebuild: bool) -> None:
    """Build the kind node image when missing or when its recipe changed: binaries from
    source (cached), Debian bases (debootstrap, cached), kubeadm's images preloaded."""
    from killkrill.dev.kind.node_image import build_node_image

    engine = _engine()
    if not engine.running():
        click.echo(engine.up(), err=True)
    built = build_node_image(engine, rebuild=rebuild, echo=lambda line: click.echo(line, err=True))
    click.echo(built.line(), err=True)
    click.echo(built.tag)


@kind.command("up")
@_cluster_name
@click.option(
    "--no-build", is_flag=True, help="Use the node image as it is (fail when it is missing)."
)
def kind_up(name: str | None, no_build: bool) -> None:
    """Build what is missing, create the cluster (one node) and wait until the node is Ready
    and CoreDNS runs; a no-op when it runs already. Kubeconfig: see `env`."""
    cluster = _cluster(name)
    click.echo(cluster.up(build=not no_build), err=True)


@kind.command("down")
@_cluster_name
def kind_down(name: str | None) -> None:
    """Delete the cluster; no container of it is left."""
    click.echo(_cluster(name).down(), err=True)


@kind.command("status")
@_cluster_name
def kind_status(name: str | None) -> None:
    """Show the cluster's state; exit 1 unless it runs and its API server is ready."""
    status = _cluster(name).status()
    click.echo(status.line())
    if status.state != "running":
        raise SystemExit(1)


@kind.command("env")
@_cluster_name
def kind_env(name: str | None) -> None:
    """Print `export` lines for KUBECONFIG (the kind cluster's) and PATH (kubectl first):
    ``eval "$(killkrill dev kind env)"``."""
    env = _cluster(name).env()
    click.echo(f"export KUBECONFIG={shlex.quote(env['KUBECONFIG'])}")
    click.echo(f'export PATH={shlex.quote(env["BIN_DIR"])}:"$PATH"')


@kind.command("load")
@_cluster_name
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
def kind_load(name: str | None, images: tuple[str, ...]) -> None:
    """Load images from the project's Docker engine into the cluster's node
    (`kind load docker-image`); pods use them with imagePullPolicy IfNotPresent or Never."""
    click.echo(_cluster(name).load(images), err=True)


@kind.command("services-image")
@click.option("--rebuild", is_flag=True, help="Build even when an image of this recipe exists.")
@click.argument("names", nargs=-1, type=click.Choice(["redis", "postgres", "elasticsearch"]))
def kind_services_image(rebuild: bool, names: tuple[str, ...]) -> None:
    """Build the images of Redis, PostgreSQL and Elasticsearch (NAMES, default all) on the
    local Debian base, from the packages and distribution the service manager uses; cached
    by recipe hash. Prints the tags manifests use (killkrill/redis:7...)."""
    from killkrill.dev.kind.services import build_service_images

    engine = _engine()
    if not engine.running():
        click.echo(engine.up(), err=True)
    built = build_service_images(
        engine, only=names, rebuild=rebuild, echo=lambda line: click.echo(line, err=True)
    )
    for result in built:
        click.echo(result.tag)


@kind.command("services-manifest")
@click.option(
    "--postgres-password-secret",
    metavar="SECRET/KEY",
    help="A Secret key holding the PostgreSQL owner's password (default: trust, no password).",
)
def kind_services_manifest(postgres_password_secret: str | None) -> None:
    """Print Deployments and Services redis, postgres and elasticsearch (the images of
    `services-image`) as YAML: `... | kubectl apply -n NS -f -`."""
    import yaml

    from killkrill.dev.kind.services import service_manifests

    secret = None
    if postgres_password_secret:
        name, _, key = postgres_password_secret.partition("/")
        if not key:
            raise click.BadParameter("SECRET/KEY", param_hint="--postgres-password-secret")
        secret = (name, key)
    click.echo(yaml.safe_dump_all(service_manifests(postgres_password_secret=secret)), nl=False)
