"""A Docker engine of the project's own: Debian's ``dockerd`` on a socket under the state dir.

``killkrill dev docker up|down|status|env`` runs it. Where things live:

* the daemon's config (``--config-file``; ``/etc/docker/daemon.json`` is never read or
  written), unix socket, pid file, exec root (its containerd's socket and state) and log:
  ``<state dir>/docker/`` (:func:`~killkrill.dev.process.state_dir`);
* images, containers and the build cache: ``<cache dir>/docker`` (the data root,
  :func:`~killkrill.dev.process.cache_dir`), so images survive a ``down``, a reboot and the
  next session;
* the default runtime: ``<state dir>/docker/killkrill-runc``, a copy of
  :mod:`killkrill.dev.runc_wrapper` (``runc`` without ``CAP_SYS_RESOURCE``, which this sandbox
  withholds: without it ``--privileged`` containers fail with ``unable to apply caps``).

``up`` is idempotent, ``down`` waits until dockerd, its containerd and every container shim
are gone. Clients find the engine through ``DOCKER_HOST`` (``eval "$(killkrill dev docker
env)"``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from killkrill.dev import runc_wrapper
from killkrill.dev.base import LocalService
from killkrill.dev.process import (
    apt_install,
    cache_dir,
    pid_alive,
    stop_pid,
    wait_until,
    which,
)
from killkrill.errors import DevServiceError

__all__ = ["RUNTIME_NAME", "DockerEngine", "daemon_config", "ping"]

RUNTIME_NAME = "killkrill-runc"
"""The name the wrapper runtime is registered under, and dockerd's default runtime."""

_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
_MAX_SOCKET_PATH = 100
"""A unix socket path must fit ``sun_path`` (108 bytes); containerd's sits deeper than ours."""
_START_TIMEOUT = 90.0
_STOP_TIMEOUT = 60.0
"""dockerd stops its containers first (``shutdown-timeout``, 15 s) and then containerd."""


def ping(sock: Path, timeout: float = 2.0) -> bool:
    """True when the engine on ``sock`` answers ``GET /_ping`` with ``200 OK``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
    except OSError:
        return False
    status, _, rest = answer.partition(b"\r\n")
    return status.split(b" ")[1:2] == [b"200"] and rest.endswith(b"OK")


def daemon_config(
    *,
    data_root: Path,
    exec_root: Path,
    pidfile: Path,
    sock: Path,
    runtime: Path,
) -> dict[str, object]:
    """dockerd's settings (pure): everything in the file, nothing on the command line
    (dockerd refuses a setting given both ways)."""
    return {
        "data-root": str(data_root),
        "exec-root": str(exec_root),
        "pidfile": str(pidfile),
        "hosts": [f"unix://{sock}"],
        "runtimes": {RUNTIME_NAME: {"path": str(runtime)}},
        "default-runtime": RUNTIME_NAME,
        "features": {"buildkit": True},
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "3"},
    }


class DockerEngine(LocalService):
    """``dockerd`` with its own data root, exec root, socket, config and default runtime.

    ``own_netns=True`` starts dockerd in a network namespace of its own (``unshare --net``):
    its ``docker0``, iptables rules and containers' networks are invisible to the host and to
    the dev engine, and go away with it. That is for a second engine beside the dev one (the
    tests' own); the dev engine shares the host's network, so that ports it publishes and
    ``--network host`` containers are on the host's loopback.
    """

    name = "docker"
    env_vars = ("DOCKER_HOST",)
    default_port = 0

    def __init__(self, *, own_netns: bool = False) -> None:
        self.own_netns = own_netns

    @property
    def socket_path(self) -> Path:
        return self.home / "docker.sock"

    @property
    def exec_root(self) -> Path:
        return self.home / "exec"

    @property
    def data_root(self) -> Path:
        return cache_dir() / "docker"

    @property
    def config_file(self) -> Path:
        return self.home / "daemon.json"

    @property
    def runtime_path(self) -> Path:
        return self.home / RUNTIME_NAME

    @property
    def log_path(self) -> Path:
        return self.home / "dockerd.log"

    @property
    def pidfile(self) -> Path:
        return self.home / "dockerd.pid"

    def given_url(self) -> str | None:
        """Never: ``DOCKER_HOST`` says which engine a client talks to (after ``eval "$(...
        env)"``, this one), not that the user runs an engine of their own here."""
        return None

    def local_url(self) -> str:
        return f"unix://{self.socket_path}"

    def client_env(self) -> dict[str, str]:
        """The environment for a ``docker`` client talking to this engine."""
        return {**os.environ, "DOCKER_HOST": self.local_url()}

    def ready(self) -> bool:
        return ping(self.socket_path)

    def install(self) -> None:
        """Install Debian's ``docker.io`` (dockerd 20.10, containerd, runc, tini) if no dockerd."""
        if self.dockerd() is None:
            apt_install("docker.io")

    def dockerd(self) -> str | None:
        return which("dockerd", *_SBIN)

    def start(self) -> None:
        if os.getuid() != 0:
            raise DevServiceError(
                "dockerd needs root here (it mounts overlay filesystems and sets up networks): "
                "run `sudo .venv/bin/killkrill dev docker up`"
            )
        dockerd = self.dockerd()
        runc = which("runc", *_SBIN)
        if dockerd is None or runc is None:
            raise DevServiceError("dockerd or runc is not installed (apt-get install docker.io)")
        containerd_sock = self.exec_root / "containerd" / "containerd.sock"
        if len(str(containerd_sock)) > _MAX_SOCKET_PATH:
            raise DevServiceError(
                f"{containerd_sock} is too long for a unix socket; set KILLKRILL_DEV_HOME to a "
                "shorter directory"
            )
        self._stop_leftovers()
        self.socket_path.unlink(missing_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.data_root.chmod(0o711)
        self.write_runtime(runc)
        config = daemon_config(
            data_root=self.data_root,
            exec_root=self.exec_root,
            pidfile=self.pidfile,
            sock=self.socket_path,
            runtime=self.runtime_path,
        )
        self.config_file.write_text(json.dumps(config, indent=2) + "\n")
        path = os.pathsep.join([*_SBIN, os.environ.get("PATH", "")])
        # unshare execs dockerd in place: the pid is dockerd's.
        netns = [which("unshare", *_SBIN) or "unshare", "--net", "--"] if self.own_netns else []
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*netns, dockerd, "--config-file", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PATH": path},
                start_new_session=True,  # survives the command that started it
            )

        def started() -> bool:
            if proc.poll() is not None:
                raise DevServiceError(
                    f"dockerd exited with code {proc.returncode}:\n{self.log_tail()}"
                )
            return self.ready()

        try:
            wait_until(started, _START_TIMEOUT, f"dockerd on {self.socket_path}")
        except DevServiceError as exc:
            if proc.poll() is None:
                stop_pid(proc.pid, timeout=_STOP_TIMEOUT)
            self._stop_leftovers()
            raise DevServiceError(f"{exc}\n(see {self.log_path})") from exc

    def write_runtime(self, runc: str) -> None:
        """The runc wrapper, with a ``#!`` line naming a Python and the host's runc."""
        source = Path(runc_wrapper.__file__).read_text()
        default = f"REAL_RUNC = {json.dumps(runc_wrapper.REAL_RUNC)}"
        if default not in source:
            raise DevServiceError(f"{runc_wrapper.__file__} no longer sets {default}")
        # Debian's Python outlives any venv; the one running us is the fallback.
        system = Path("/usr/bin/python3")
        interpreter = str(system) if os.access(system, os.X_OK) else sys.executable
        body = source.replace(default, f"REAL_RUNC = {json.dumps(runc)}", 1)
        text = f"#!{interpreter} -IS\n{body}"
        tmp = self.runtime_path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(self.runtime_path)

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            stop_pid(pid, timeout=_STOP_TIMEOUT)
        self._stop_leftovers()
        self.pidfile.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)

    def leftovers(self) -> list[int]:
        """Processes of this engine other than dockerd: its containerd and container shims
        (each names the exec root, where containerd's socket and config are, on its
        command line)."""
        marker = str(self.exec_root).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline and int(entry.name) != os.getpid():
                found.append(int(entry.name))
        return found

    def _stop_leftovers(self) -> None:
        """Stop what an engine that died without cleaning up left running: its containers
        (through runc's state under the exec root), then containerd and the shims."""
        runc = which("runc", *_SBIN)
        for state in sorted(self.exec_root.glob("runtime-*/*/*/state.json")):
            if runc is not None:
                subprocess.run(
                    [runc, "--root", str(state.parent.parent), "delete", "--force",
                     state.parent.name],
                    capture_output=True,
                    check=False,
                    timeout=30,
                )  # fmt: skip
        for pid in self.leftovers():
            if pid_alive(pid):
                stop_pid(pid, timeout=20)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def up(self) -> str:
        """Install when missing and start, unless running; one line saying what happened."""
        if self.running():
            return f"docker: already running at {self.local_url()} (pid {self.pid()})"
        started = time.monotonic()
        self.install()
        self.start()
        return (
            f"docker: started at {self.local_url()} in {time.monotonic() - started:.1f}s "
            f"(data root {self.data_root})"
        )

    def down(self) -> str:
        was = self.pid()
        self.stop()
        return "docker: stopped" if was else "docker: was not running"

    def docker(self) -> str:
        """The ``docker`` client to run (any version talks to this 20.10 engine)."""
        found = shutil.which("docker") or which("docker", *_SBIN)
        if found is None:
            raise DevServiceError("no docker client (apt-get install docker.io)")
        return found
