"""The local control plane: etcd, kube-apiserver and kube-controller-manager on loopback.

Each runs detached, as its own session, with its pid file and log under
``state_dir()/k8s`` (``KILLKRILL_DEV_HOME`` moves it), and every one of its arguments that
names a file names one under that directory, so ``pgrep -f <state dir>`` finds them all. Ports
(loopback only) shift with ``KILLKRILL_DEV_PORT_OFFSET``: etcd 2379 (client) and 2380 (peer),
kube-apiserver 6443, kube-controller-manager 10257 (its health port).

There is no scheduler and no kubelet: objects are stored and the controllers act on them
(Deployments get ReplicaSets and Pods, garbage collection, service-account tokens, CSR
signing), but Pods stay Pending. ``KUBECONFIG`` set in the environment means "use that cluster":
nothing is started, stopped or written for it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from killkrill.dev.base import ServiceStatus
from killkrill.dev.k8s.gobuild import bin_dir, build
from killkrill.dev.k8s.kubeconfig import write_kubeconfig
from killkrill.dev.k8s.pki import SERVICE_CIDR, Pki, ensure_pki
from killkrill.dev.k8s.versions import CLIENT_TOOLS, EXTRA_TOOLS, UP_TOOLS
from killkrill.dev.process import (
    pid_alive,
    port_offset,
    port_open,
    read_pid,
    state_dir,
    stop_pid,
)
from killkrill.errors import DevServiceError

__all__ = ["ControlPlane", "Ports"]

Echo = Callable[[str], None]
_START_TIMEOUT = 120.0
"""Seconds a component may take to become ready (a loaded 2-core machine: ~2.5 s idle)."""
_LOG_TAIL_LINES = 25


@dataclass(frozen=True)
class Ports:
    """Loopback ports of one control plane."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int

    @classmethod
    def from_offset(cls, offset: int) -> Ports:
        return cls(2379 + offset, 2380 + offset, 6443 + offset, 10257 + offset)


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> str | None:
    """The body of a 200 answer to GET ``url``, else None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            body: bytes = resp.read()
            return body.decode(errors="replace") if resp.status == 200 else None
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return None


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-_LOG_TAIL_LINES:])


class _Component:
    """One process of the control plane."""

    def __init__(
        self,
        name: str,
        home: Path,
        url: str,
        ports: tuple[int, ...],
        argv: Callable[[], list[str]],
        probe: Callable[[], bool],
    ) -> None:
        self.name = name
        self.home = home
        self.url = url
        self.ports = ports
        self.argv = argv
        self.probe = probe
        self.pidfile = home / f"{name}.pid"
        self.log = home / f"{name}.log"

    def pid(self) -> int | None:
        """Our process's pid: alive, and started with this state directory in its arguments
        (a reused pid of some other process is not ours)."""
        pid = read_pid(self.pidfile)
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        return pid if str(self.home) in cmdline else None

    def ready(self) -> bool:
        return self.probe()

    def status(self) -> ServiceStatus:
        pid = self.pid()
        state = "running" if pid and self.ready() else "stopped"
        return ServiceStatus(self.name, self.url, state, pid)

    def start(self) -> float:
        """Start the process and wait until it is ready; the seconds that took."""
        for port in self.ports:
            if port_open(port):
                raise DevServiceError(
                    f"{self.name}: port {port} on 127.0.0.1 is in use by another process; "
                    "stop it, or run this control plane on other ports with "
                    "KILLKRILL_DEV_PORT_OFFSET=N (and its own KILLKRILL_DEV_HOME)"
                )
        argv = self.argv()
        started = time.monotonic()
        with self.log.open("a") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(argv)}\n")
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,
            )
        self.pidfile.write_text(f"{proc.pid}\n")
        self._wait_ready(started, lambda: proc.poll() is None)
        return time.monotonic() - started

    def wait(self) -> float:
        """Wait until an already started process is ready; the seconds that took."""
        started = time.monotonic()
        self._wait_ready(started, lambda: self.pid() is not None)
        return time.monotonic() - started

    def _wait_ready(self, started: float, alive: Callable[[], bool]) -> None:
        while not self.ready():
            if not alive():
                self.pidfile.unlink(missing_ok=True)
                raise DevServiceError(
                    f"{self.name} exited while starting; last lines of {self.log}:\n"
                    f"{_tail(self.log)}"
                )
            if time.monotonic() - started > _START_TIMEOUT:
                raise DevServiceError(
                    f"{self.name} was not ready after {_START_TIMEOUT:.0f}s ({self.url}); "
                    f"last lines of {self.log}:\n{_tail(self.log)}\n"
                    "stop it with `killkrill dev k8s down`"
                )
            time.sleep(0.1)

    def stop(self) -> bool:
        """Stop the process (SIGTERM, then SIGKILL) and wait until it is gone; whether it
        was running."""
        pid = self.pid()
        if pid is not None:
            stop_pid(pid, timeout=20)
        self.pidfile.unlink(missing_ok=True)
        return pid is not None


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager of this state directory."""

    def __init__(self, *, echo: Echo = print) -> None:
        self.echo = echo
        self.home = state_dir() / "k8s"
        self.home.mkdir(exist_ok=True)
        self.home.chmod(0o700)
        self.ports = Ports.from_offset(port_offset())
        self.pki = Pki(self.home / "pki")
        self.kubeconfig = self.home / "kubeconfig"
        self.server = f"https://127.0.0.1:{self.ports.apiserver}"
        self.components = [self._etcd(), self._apiserver(), self._controller_manager()]

    # --- the three processes -------------------------------------------------------------

    def _etcd(self) -> _Component:
        p = self.ports
        client, peer = f"http://127.0.0.1:{p.etcd_client}", f"http://127.0.0.1:{p.etcd_peer}"
        data = self.home / "etcd-data"

        def argv() -> list[str]:
            data.mkdir(mode=0o700, exist_ok=True)
            return [
                str(bin_dir() / "etcd"),
                "--name=killkrill-dev",
                f"--data-dir={data}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=killkrill-dev={peer}",
                "--log-level=warn",
                # A throwaway development store: no fsync keeps writes fast on a busy disk.
                "--unsafe-no-fsync",
            ]

        def probe() -> bool:
            body = _get(f"{client}/health")
            return body is not None and '"health":"true"' in body.replace(" ", "")

        return _Component("etcd", self.home, client, (p.etcd_client, p.etcd_peer), argv, probe)

    def _apiserver(self) -> _Component:
        pki = self.pki

        def argv() -> list[str]:
            return [
                str(bin_dir() / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports.apiserver}",
                f"--cert-dir={self.home / 'apiserver-certs'}",
                f"--tls-cert-file={pki.cert('apiserver')}",
                f"--tls-private-key-file={pki.key('apiserver')}",
                f"--client-ca-file={pki.ca}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                # The `kubernetes` Service would get the loopback address, which the
                # reconciler refuses to publish (and logs about, forever).
                "--endpoint-reconciler-type=none",
                f"--requestheader-client-ca-file={pki.cert('front-proxy-ca')}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.cert('front-proxy-client')}",
                f"--proxy-client-key-file={pki.key('front-proxy-client')}",
                "--profiling=false",
            ]

        def probe() -> bool:
            return _get(f"{self.server}/readyz", self._admin_tls()) == "ok"

        return _Component(
            "kube-apiserver", self.home, self.server, (self.ports.apiserver,), argv, probe
        )

    def _controller_manager(self) -> _Component:
        pki = self.pki
        port = self.ports.controller_manager
        kubeconfig = self.home / "controller-manager.kubeconfig"
        url = f"https://127.0.0.1:{port}"

        def argv() -> list[str]:
            write_kubeconfig(
                kubeconfig,
                server=self.server,
                ca=pki.ca,
                client_cert=pki.cert("controller-manager"),
                client_key=pki.key("controller-manager"),
                user="system:kube-controller-manager",
            )
            return [
                str(bin_dir() / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.home / 'controller-manager-certs'}",
                # Else it creates /usr/libexec/kubernetes/kubelet-plugins/... on the host.
                f"--flex-volume-plugin-dir={self.home / 'flexvolume'}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_private}",
                f"--root-ca-file={pki.ca}",
                f"--cluster-signing-cert-file={pki.ca}",
                f"--cluster-signing-key-file={pki.key('ca')}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*",
                "--leader-elect=false",
                "--cluster-name=killkrill-dev",
                "--profiling=false",
            ]

        def probe() -> bool:
            # Its serving certificate is self-signed (in --cert-dir): a loopback health probe.
            insecure = ssl.create_default_context()
            insecure.check_hostname = False
            insecure.verify_mode = ssl.CERT_NONE
            return _get(f"{url}/healthz", insecure) == "ok"

        return _Component("kube-controller-manager", self.home, url, (port,), argv, probe)

    def _admin_tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(str(self.pki.cert("admin")), str(self.pki.key("admin")))
        return context

    # --- verbs ---------------------------------------------------------------------------

    @staticmethod
    def given() -> str | None:
        """``KUBECONFIG`` from the environment: a cluster to use instead of ours."""
        return os.environ.get("KUBECONFIG") or None

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One ``up`` or ``down`` at a time per state directory."""
        with (self.home / "up.lock").open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def up(self, *, all_tools: bool = False) -> None:
        """Build what is missing, then start what is not running; a no-op when all is up."""
        started = time.monotonic()
        extra = EXTRA_TOOLS if all_tools else ()
        given = self.given()
        if given:
            build([*CLIENT_TOOLS, *extra], echo=self.echo)
            version = self._server_version(given)
            self.echo(
                f"kubernetes: using KUBECONFIG={given} (server {version}, given in the "
                "environment); nothing started"
            )
            return
        build([*UP_TOOLS, *extra], echo=self.echo)
        with self._lock():
            if all(c.pid() and c.ready() for c in self.components):
                pids = ", ".join(f"{c.name} {c.pid()}" for c in self.components)
                self.echo(f"kubernetes: already running at {self.server} ({pids})")
                self._write_admin_kubeconfig()
                return
            pki, made = ensure_pki(self.pki.root)
            if made:
                self.echo(f"kubernetes: made a throwaway PKI in {pki.root}")
            self._write_admin_kubeconfig()
            ready_from = time.monotonic()
            for component in self.components:
                if component.pid() is not None:
                    waited = component.wait()
                    self.echo(f"{component.name}: already running (ready after {waited:.1f}s)")
                    continue
                seconds = component.start()
                self.echo(
                    f"{component.name}: started at {component.url} (pid {component.pid()}),"
                    f" ready in {seconds:.1f}s"
                )
        self.echo(
            f"kubernetes: control plane ready at {self.server} in "
            f"{time.monotonic() - ready_from:.1f}s ({time.monotonic() - started:.1f}s with "
            f"the build check); KUBECONFIG={self.kubeconfig}"
        )

    def _write_admin_kubeconfig(self) -> None:
        write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca=self.pki.ca,
            client_cert=self.pki.cert("admin"),
            client_key=self.pki.key("admin"),
            user="admin",
        )

    def _server_version(self, kubeconfig: str) -> str:
        """The given cluster's version, through kubectl (any auth its kubeconfig uses)."""
        proc = subprocess.run(
            [str(bin_dir() / "kubectl"), "version", "-o", "json", "--request-timeout=10s"],
            env={**os.environ, "KUBECONFIG": kubeconfig},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        try:
            version = json.loads(proc.stdout)["serverVersion"]["gitVersion"]
        except (ValueError, KeyError, TypeError):
            raise DevServiceError(
                f"the cluster of KUBECONFIG={kubeconfig} (given in the environment) is not "
                f"reachable: {proc.stderr.strip()[-500:]}\nstart it, or unset KUBECONFIG to "
                "let `killkrill dev k8s up` run a local control plane"
            ) from None
        return str(version)

    def down(self) -> None:
        """Stop every component (controller-manager first) and wait until each is gone."""
        if self.given():
            self.echo(f"kubernetes: KUBECONFIG={self.given()} given in the environment, left alone")
            return
        with self._lock():
            for component in reversed(self.components):
                was = component.stop()
                self.echo(f"{component.name}: {'stopped' if was else 'was not running'}")

    def status(self) -> list[ServiceStatus]:
        given = self.given()
        if given:
            return [ServiceStatus("kubernetes", given, "given")]
        return [c.status() for c in self.components]

    def env(self) -> dict[str, str]:
        """``KUBECONFIG`` (ours unless given) and the directory of the built tools."""
        return {"KUBECONFIG": self.given() or str(self.kubeconfig), "BIN_DIR": str(bin_dir())}

    def pids(self) -> list[int]:
        return [pid for c in self.components if (pid := c.pid()) is not None and pid_alive(pid)]
