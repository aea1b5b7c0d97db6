"""The whole pipeline on this machine, one child process per component.

Runs the database migration, then the receivers (HTTP + syslog), the log worker and the
metrics worker as child processes of this one, waits until each answers ``/healthz``, and
stays in the foreground. SIGINT/SIGTERM is passed to every child, which drains its work in
flight and exits 0; if one child dies, the others are stopped and ``up`` exits non-zero.

:meth:`LocalPipeline.from_pipeline` runs the pipeline a ``Pipeline`` document describes
(``killkrill up -f``): its settings derived as the operator derives them, written to one
config file every process reads, on loopback, with ops ports picked free so several
pipelines run side by side.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from killkrill.config.pipeline import Pipeline, component_settings
from killkrill.dev.process import free_port, state_dir
from killkrill.errors import KillKrillError

__all__ = ["Component", "LocalPipeline", "Ports"]


@dataclass
class Component:
    """One child process and the port where it answers ``/healthz``."""

    name: str
    argv: list[str]
    health_port: int
    env: dict[str, str] = field(default_factory=dict)
    log: IO[bytes] | None = None
    """Where the child's output goes (None: this process's stdout/stderr)."""
    proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> None:
        """Start (or start again) the child process."""
        out = self.log if self.log is not None else None
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None
        )

    def healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False


@dataclass
class Ports:
    """Where the local pipeline listens (all on the host given to the receivers)."""

    http: int = 8080
    syslog: int = 5140
    syslog_ops: int = 9101
    log_worker_ops: int = 9102
    metrics_worker_ops: int = 9103


class LocalPipeline:
    """The child processes of a local pipeline (`killkrill up`; not the `Pipeline` custom
    resource, which describes one)."""

    def __init__(
        self,
        env: Mapping[str, str],
        ports: Ports,
        *,
        auth: bool = False,
        log: IO[bytes] | None = None,
    ) -> None:
        kk = [sys.executable, "-m", "killkrill"]
        base = {**os.environ, **env}
        receiver_env = {
            **base,
            "KILLKRILL_HTTP__PORT": str(ports.http),
            "KILLKRILL_HTTP__HOST": "127.0.0.1",
            "KILLKRILL_SYSLOG__PORT": str(ports.syslog),
            "KILLKRILL_SYSLOG__HOST": "127.0.0.1",
            "KILLKRILL_OPS__PORT": str(ports.syslog_ops),
        }
        self.env = base
        self.config_file: Path | None = None
        """The config file of a pipeline document's processes (:meth:`from_pipeline`)."""
        self.components = [
            Component(
                "receivers",
                [*kk, "receiver", "all", "--auth" if auth else "--no-auth"],
                ports.http,
                receiver_env,
                log,
            ),
            Component(
                "log-worker",
                [*kk, "worker", "logs", "--ops-port", str(ports.log_worker_ops)],
                ports.log_worker_ops,
                base,
                log,
            ),
            Component(
                "metrics-worker",
                [*kk, "worker", "metrics", "--ops-port", str(ports.metrics_worker_ops)],
                ports.metrics_worker_ops,
                base,
                log,
            ),
        ]
        self.kk = kk
        self.log = log

    @classmethod
    def from_pipeline(
        cls, pipeline: Pipeline, *, secrets_dir: Path, log: IO[bytes] | None = None
    ) -> LocalPipeline:
        """The processes of ``pipeline`` (see the module doc). Referenced Secrets are read
        from ``<secrets_dir>/<name>/<key>``; REDIS_URL, ELASTICSEARCH_URL and DATABASE_URL in
        the environment override the document's URLs, as for any process."""
        settings = component_settings(pipeline, secrets_dir=secrets_dir)
        doc = settings.config_document()
        ops = {section: free_port() for section in doc}
        for section, port in ops.items():
            doc[section]["ops"] = {"host": "127.0.0.1", "port": port}
        receivers = doc["receivers"]
        receivers.setdefault("http", {})["host"] = "127.0.0.1"
        receivers.setdefault("syslog", {})["host"] = "127.0.0.1"
        config = state_dir() / "pipelines" / f"{pipeline.name}.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(doc, sort_keys=True), encoding="utf-8")
        spec = pipeline.spec.receivers
        on = [k for k, yes in (("http", spec.http.enabled), ("syslog", spec.syslog.enabled)) if yes]
        local = cls({}, Ports(), log=log)
        kk, env = local.kk, local.env

        def component(name: str, command: list[str], section: str) -> Component:
            return Component(name, [*kk, *command, "--config", str(config)], ops[section], env, log)

        local.components = [
            component("log-worker", ["worker", "logs"], "log_worker"),
            component("metrics-worker", ["worker", "metrics"], "metrics_worker"),
        ]
        if on:
            which = "all" if len(on) == 2 else on[0]
            local.components.insert(0, component("receivers", ["receiver", which], "receivers"))
        database = settings.metrics_worker.with_password_files().database.url
        if not os.environ.get("DATABASE_URL"):
            local.env = {**env, "DATABASE_URL": database.get_secret_value()}
        local.config_file = config
        return local

    def start(self, timeout: float = 60.0) -> None:
        """Migrate the database, start every component and wait until all are healthy."""
        subprocess.run(
            [*self.kk, "db", "upgrade"],
            env=self.env,
            check=True,
            timeout=120,
            stdout=self.log,
            stderr=subprocess.STDOUT if self.log else None,
        )
        for component in self.components:
            component.launch()
        self._wait_healthy(self.components, timeout)

    def component(self, name: str) -> Component:
        """The component called ``name`` (receivers, log-worker, metrics-worker)."""
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to one component and wait for it to end; return its exit code."""
        proc = self.component(name).proc
        assert proc is not None, f"{name} was never started"
        proc.send_signal(sig)
        return proc.wait(timeout=60)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Start one (ended) component again, as a new process, and wait until healthy."""
        component = self.component(name)
        component.launch()
        self._wait_healthy([component], timeout)

    def _wait_healthy(self, components: list[Component], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(components)
        while waiting:
            for component in list(waiting):
                if component.proc is not None and component.proc.poll() is not None:
                    self.stop()
                    raise KillKrillError(
                        f"{component.name} exited with code {component.proc.returncode} while "
                        "starting; its log lines above say why"
                    )
                if component.healthy():
                    waiting.remove(component)
            if waiting and time.monotonic() > deadline:
                self.stop()
                names = ", ".join(c.name for c in waiting)
                raise KillKrillError(f"{names} did not answer /healthz within {timeout:.0f}s")
            time.sleep(0.2)

    def first_exit(self) -> Component | None:
        """A component whose process has ended, if any."""
        for component in self.components:
            if component.proc is not None and component.proc.poll() is not None:
                return component
        return None

    def stop(self, timeout: float = 60.0) -> dict[str, int]:
        """SIGTERM every child (they drain and exit 0); SIGKILL after ``timeout``."""
        for component in self.components:
            if component.proc is not None and component.proc.poll() is None:
                component.proc.send_signal(signal.SIGTERM)
        codes: dict[str, int] = {}
        for component in self.components:
            if component.proc is None:
                continue
            try:
                codes[component.name] = component.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                component.proc.kill()
                codes[component.name] = component.proc.wait()
        return codes
