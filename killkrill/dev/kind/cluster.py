"""A kind cluster from the node image built here, on the project's Docker engine.

``killkrill dev kind up|down|status|env|load`` drive :class:`KindCluster`. Where things are:

* the cluster's kubeconfig, the generated kind config and failure logs:
  ``<state dir>/kind/<name>/`` (never ``~/.kube``); the API server on a free port of
  127.0.0.1;
* the ``kind`` and ``kubectl`` binaries: the k8s build cache (built when missing);
* the node image: ``killkrill/kind-node:<version>`` (:mod:`.node_image`, built when missing
  or when its recipe changed; a cluster running an older image is created again).

kind runs ``docker`` from PATH. It is given a small shim first (``<state dir>/kind/bin/
docker``) that passes everything to the real client, except the ``/lib/modules`` bind mount
kind gives every node: a host without ``/lib/modules`` (this sandbox) gets an empty directory
of the project's mounted there instead of a directory docker would create on the host.

After ``kind create cluster`` (whose config skips kubeadm's CoreDNS phase), the ``coredns``
ConfigMap is created with :func:`~.recipe.corefile` and kubeadm's ``addon/coredns`` phase is run
in the node, which keeps a Corefile it finds; then ``up`` waits for the node to be Ready and
for kube-proxy, CoreDNS and the local-path provisioner (the ``standard`` StorageClass) to be
rolled out.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from killkrill.dev.docker_engine import DockerEngine
from killkrill.dev.k8s import gobuild
from killkrill.dev.kind.node_image import build_node_image, prune_old_node_images
from killkrill.dev.kind.recipe import corefile, kind_cluster_config, node_image_tag
from killkrill.dev.process import state_dir
from killkrill.errors import DevServiceError

__all__ = ["DEFAULT_CLUSTER", "DOCKER_SHIM", "KindCluster", "KindStatus"]

Echo = Callable[[str], None]
DEFAULT_CLUSTER = "killkrill"
CLUSTER_LABEL = "io.x-k8s.kind.cluster"
"""The label kind puts on every container of a cluster (its value: the cluster's name)."""
_CREATE_TIMEOUT = 900.0
_READY_TIMEOUT = 300

DOCKER_SHIM = """\
#!/bin/sh
# Written by killkrill (killkrill/dev/kind/cluster.py): the `docker` kind runs. kind mounts
# the host's /lib/modules into its nodes; where the host has none, the mount's source is an
# empty directory of the project's ($KILLKRILL_KIND_MODULES). All else goes to docker as is.
for arg do
  shift
  case $arg in
    /lib/modules:/lib/modules:ro) arg="$KILLKRILL_KIND_MODULES:/lib/modules:ro" ;;
  esac
  set -- "$@" "$arg"
done
exec "$KILLKRILL_KIND_DOCKER" "$@"
"""


@dataclass(frozen=True)
class KindStatus:
    """What ``killkrill dev kind status`` reports."""

    name: str
    node: str
    state: str
    """``running`` (node container up and the API server ready), ``not ready`` (container
    up, API not answering), ``stopped`` (container not running) or ``absent``."""
    server: str | None = None
    image: str | None = None

    def line(self) -> str:
        parts = [f"kind cluster {self.name}: {self.state}"]
        if self.server:
            parts.append(f"API {self.server}")
        if self.image:
            parts.append(f"node {self.node} ({self.image})")
        return ", ".join(parts)


class KindCluster:
    """One kind cluster, by name, on the project's Docker engine."""

    def __init__(
        self,
        name: str = DEFAULT_CLUSTER,
        *,
        engine: DockerEngine | None = None,
        echo: Echo = print,
    ) -> None:
        self.name = name
        self.engine = engine or DockerEngine()
        self.echo = echo
        self.image = node_image_tag()

    # -- paths -------------------------------------------------------------------------
    @property
    def top(self) -> Path:
        return state_dir() / "kind"

    @property
    def home(self) -> Path:
        return self.top / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    @property
    def config_file(self) -> Path:
        return self.home / "kind-config.yaml"

    @property
    def node(self) -> str:
        return f"{self.name}-control-plane"

    @property
    def modules_dir(self) -> Path:
        """The source of the nodes' ``/lib/modules``: the host's, else an empty directory."""
        host = Path("/lib/modules")
        return host if host.is_dir() else self.top / "empty-lib-modules"

    # -- running tools -----------------------------------------------------------------
    def kind_env(self) -> dict[str, str]:
        """The environment ``kind`` runs in: our engine, the docker shim first on PATH."""
        shim_dir = self.top / "bin"
        return {
            **self.engine.client_env(),
            "PATH": os.pathsep.join([str(shim_dir), str(gobuild.bin_dir()), os.environ["PATH"]]),
            "KILLKRILL_KIND_DOCKER": self.engine.docker(),
            "KILLKRILL_KIND_MODULES": str(self.modules_dir),
            "KUBECONFIG": str(self.kubeconfig),
        }

    def _write_shim(self) -> None:
        shim = self.top / "bin" / "docker"
        shim.parent.mkdir(parents=True, exist_ok=True)
        tmp = shim.with_suffix(".tmp")
        tmp.write_text(DOCKER_SHIM)
        tmp.chmod(0o755)
        tmp.replace(shim)
        self.modules_dir.mkdir(parents=True, exist_ok=True)

    def kind(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the built ``kind`` with ``args``; DevServiceError with its output on failure
        when ``check``."""
        return _run_tool("kind", list(args), env=self.kind_env(), timeout=timeout, check=check)

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the built ``kubectl`` against this cluster."""
        return _run_tool(
            "kubectl", ["--kubeconfig", str(self.kubeconfig), *args], args=args,
            input=input, timeout=timeout, check=check,
        )  # fmt: skip

    def _docker(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.engine.docker(), *args],
            env=self.engine.client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # -- facts -------------------------------------------------------------------------
    def containers(self) -> list[str]:
        """Names of every container of this cluster (running or not)."""
        if not self.engine.running():
            return []
        listed = self._docker(
            "ps", "--all", "--filter", f"label={CLUSTER_LABEL}={self.name}",
            "--format", "{{.Names}}",
        )  # fmt: skip
        return listed.stdout.split()

    def _node_facts(self) -> tuple[str, str] | None:
        """(state, image id) of the node container, or None when there is none."""
        done = self._docker("inspect", "--format", "{{.State.Status}} {{.Image}}", self.node)
        if done.returncode != 0:
            return None
        state, _, image = done.stdout.strip().partition(" ")
        return state, image

    def _image_id(self) -> str | None:
        done = self._docker("image", "inspect", "--format", "{{.Id}}", self.image)
        return done.stdout.strip() if done.returncode == 0 else None

    def server(self) -> str | None:
        """The API server URL in the kubeconfig, when there is one."""
        try:
            text = self.kubeconfig.read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.strip().startswith("server:"):
                return line.split(":", 1)[1].strip()
        return None

    def api_ready(self) -> bool:
        if not self.kubeconfig.is_file():
            return False
        done = self.kubectl("get", "--raw", "/readyz", timeout=20, check=False)
        return done.returncode == 0 and done.stdout.strip() == "ok"

    def status(self) -> KindStatus:
        facts = self._node_facts() if self.engine.running() else None
        if facts is None:
            return KindStatus(self.name, self.node, "absent")
        state, image = facts
        if state != "running":
            return KindStatus(self.name, self.node, "stopped", image=image[:19])
        ready = "running" if self.api_ready() else "not ready"
        return KindStatus(self.name, self.node, ready, self.server(), image[:19])

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig), "BIN_DIR": str(gobuild.bin_dir())}

    # -- commands ----------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One ``up``/``down`` of a cluster at a time (a test session and a shell may race)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "lock").open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.echo(f"kind: waiting for another up/down of cluster {self.name}")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def up(self, *, build: bool = True) -> str:
        """The cluster running from the current node image, its kubeconfig written; a no-op
        when it runs already. Builds what is missing first (``build``)."""
        started = time.monotonic()
        if not self.engine.running():
            self.echo(self.engine.up())
        with self._lock():
            gobuild.build(["kind", "kubectl"], echo=self.echo)
            if build:
                node_image = build_node_image(self.engine, echo=self.echo)
                self.echo(node_image.line())
            image_id = self._image_id()
            if image_id is None:
                raise DevServiceError(f"no image {self.image}: run `killkrill dev kind image`")
            self._write_shim()
            facts = self._node_facts()
            if facts is not None:
                state, running_image = facts
                if state == "running" and running_image == image_id:
                    self.kind("export", "kubeconfig", "--name", self.name,
                              "--kubeconfig", str(self.kubeconfig))  # fmt: skip
                    if self.api_ready():
                        self._addons()
                        return f"kind: cluster {self.name} already running ({self.server()})"
                why = (
                    "runs an older node image"
                    if running_image != image_id
                    else f"is {state}, its API not answering"
                )
                self.echo(f"kind: cluster {self.name} {why}: creating it again")
                self._delete()
            elif self.containers():
                self._delete()
            self._create()
            self._addons()
        return (
            f"kind: cluster {self.name} up in {time.monotonic() - started:.0f}s "
            f"({self.server()}, KUBECONFIG={self.kubeconfig})"
        )

    def _create(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(kind_cluster_config(self.name, self.image))
        self.kubeconfig.unlink(missing_ok=True)
        started = time.monotonic()
        self.echo(f"kind: creating cluster {self.name} from {self.image} ...")
        done = self.kind(
            "create", "cluster", "--name", self.name, "--image", self.image,
            "--config", str(self.config_file), "--kubeconfig", str(self.kubeconfig),
            "--retain", "--wait", "0s",
            timeout=_CREATE_TIMEOUT, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            logs = self.home / f"logs-{time.strftime('%Y%m%dT%H%M%S')}"
            self.kind("export", "logs", str(logs), "--name", self.name, check=False, timeout=300)
            self._delete()
            raise DevServiceError(
                f"`kind create cluster` failed (exit {done.returncode}):\n"
                f"{(done.stderr or done.stdout).strip()[-3000:]}\nnode logs: {logs}"
            )
        self.kubeconfig.chmod(0o600)
        self.echo(f"kind: cluster created in {time.monotonic() - started:.0f}s")
        prune_old_node_images(self.engine)  # the one the cluster ran before, if any

    def _addons(self) -> None:
        """CoreDNS (our Corefile, then kubeadm's phase), and wait for the node, CoreDNS and
        kube-proxy. Quick when they are there already."""
        started = time.monotonic()
        if self.kubectl("-n", "kube-system", "get", "deployment", "coredns",
                        check=False).returncode != 0:  # fmt: skip
            configmap = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "coredns", "namespace": "kube-system"},
                "data": {"Corefile": corefile()},
            }
            self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(configmap))
            done = self._docker(
                "exec", self.node, "kubeadm", "init", "phase", "addon", "coredns",
                "--config", "/kind/kubeadm.conf", "--kubeconfig", "/etc/kubernetes/admin.conf",
                timeout=300,
            )  # fmt: skip
            if done.returncode != 0:
                raise DevServiceError(
                    f"kubeadm's CoreDNS phase failed in {self.node}:\n{done.stderr or done.stdout}"
                )
        waits = (
            ("wait", "--for=condition=Ready", "node", "--all"),
            ("-n", "kube-system", "rollout", "status", "daemonset/kube-proxy"),
            ("-n", "kube-system", "rollout", "status", "deployment/coredns"),
            ("-n", "local-path-storage", "rollout", "status", "deployment/local-path-provisioner"),
        )
        for args in waits:
            self.kubectl(*args, f"--timeout={_READY_TIMEOUT}s", timeout=_READY_TIMEOUT + 30)
        elapsed = time.monotonic() - started
        self.echo(
            f"kind: node Ready, kube-proxy, CoreDNS and local-path storage rolled out "
            f"({elapsed:.0f}s)"
        )

    def _delete(self) -> None:
        self.kind("delete", "cluster", "--name", self.name,
                  "--kubeconfig", str(self.kubeconfig), timeout=300)  # fmt: skip
        left = self.containers()
        if left:
            self._docker("rm", "--force", "--volumes", *left, timeout=120)
        left = self.containers()
        if left:
            raise DevServiceError(f"containers of cluster {self.name} left: {', '.join(left)}")

    def down(self) -> str:
        """Delete the cluster; no container of it is left. A no-op when there is none."""
        if not self.engine.running():
            return f"kind: cluster {self.name}: the Docker engine is not running, nothing to delete"
        with self._lock():
            existed = bool(self.containers())
            if existed:
                self._write_shim()
                self._delete()
            self.kubeconfig.unlink(missing_ok=True)
        return f"kind: cluster {self.name} deleted" if existed else f"kind: no cluster {self.name}"

    def load(self, images: Sequence[str]) -> str:
        """``kind load docker-image`` the images (from our engine) into every node."""
        if not images:
            raise DevServiceError("name at least one image to load")
        if self._node_facts() is None:
            raise DevServiceError(f"no kind cluster {self.name}: `killkrill dev kind up` first")
        self._write_shim()
        started = time.monotonic()
        self.kind("load", "docker-image", "--name", self.name, *images, timeout=900)
        return f"kind: loaded {', '.join(images)} in {time.monotonic() - started:.1f}s"

    def export_logs(self, target: Path) -> Path:
        """``kind export logs`` (node journals, pod logs) into ``target``."""
        shutil.rmtree(target, ignore_errors=True)
        self.kind("export", "logs", str(target), "--name", self.name, timeout=300, check=False)
        return target


def _run_tool(
    tool: str,
    argv: list[str],
    *,
    args: tuple[str, ...] | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float,
    check: bool,
) -> subprocess.CompletedProcess[str]:
    """Run the built ``tool`` with ``argv``; with ``check`` a failure raises DevServiceError
    naming the command (``args``, default ``argv``) and the end of its output."""
    done = subprocess.run(
        [str(gobuild.binary_path(tool)), *argv],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        shown = " ".join(args if args is not None else argv)
        raise DevServiceError(
            f"`{tool} {shown}` failed (exit {done.returncode}):\n"
            f"{(done.stderr or done.stdout).strip()[-3000:]}"
        )
    return done
