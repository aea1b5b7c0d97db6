"""What every local service offers the manager."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from killkrill.config.secrets import redact_url
from killkrill.dev.process import port_open, read_pid, state_dir, stop_pid

__all__ = ["LocalService", "ServiceStatus"]


@dataclass(frozen=True)
class ServiceStatus:
    """One line of ``killkrill dev services status``."""

    name: str
    url: str
    state: str  # "running", "stopped", "given" (URL from the environment)
    pid: int | None = None

    def line(self) -> str:
        """The status line; the URL's password is shown as ``***`` (``env`` prints it)."""
        pid = f" pid {self.pid}" if self.pid else ""
        return f"{self.name:<14} {self.state:<8} {redact_url(self.url)}{pid}"


class LocalService(ABC):
    """A server the manager can install, start, probe and stop, on loopback only."""

    name: str
    env_vars: tuple[str, ...]
    """Environment variables that, when set, mean "use this URL, start nothing"."""
    default_port: int

    def reachable(self, url: str) -> bool:
        """True when the server at ``url`` accepts TCP connections."""
        parts = urlsplit(url)
        return port_open(parts.port or self.default_port, parts.hostname or "127.0.0.1", 2.0)

    @property
    def home(self) -> Path:
        """This service's own data directory."""
        path = state_dir() / self.name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o755)
        return path

    @property
    def pidfile(self) -> Path:
        return self.home / f"{self.name}.pid"

    def given_url(self) -> str | None:
        """The URL from the environment, when the user points us at a running service."""
        for var in self.env_vars:
            value = os.environ.get(var)
            if value:
                return value
        return None

    @abstractmethod
    def local_url(self) -> str:
        """URL of the instance this manager runs."""

    def url(self) -> str:
        return self.given_url() or self.local_url()

    def env(self) -> dict[str, str]:
        """Variables to export so clients find this service."""
        return dict.fromkeys(self.env_vars, self.url())

    def pid(self) -> int | None:
        return read_pid(self.pidfile)

    @abstractmethod
    def ready(self) -> bool:
        """True when the service answers requests (cheap, short timeout)."""

    def running(self) -> bool:
        return self.pid() is not None and self.ready()

    @abstractmethod
    def install(self) -> None:
        """Make the binaries available (idempotent; downloads are cached)."""

    @abstractmethod
    def start(self) -> None:
        """Start the server and return once it is ready."""

    def provision(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Bring a running instance's own setup (roles, databases) up to date; idempotent.
        :meth:`start` does it too. Default: nothing."""

    def stop(self) -> None:
        """Stop the server and wait until its process is gone."""
        pid = self.pid()
        if pid is not None:
            stop_pid(pid)
        self.pidfile.unlink(missing_ok=True)

    def status(self) -> ServiceStatus:
        if self.given_url():
            return ServiceStatus(self.name, self.url(), "given")
        pid = self.pid()
        state = "running" if pid and self.ready() else "stopped"
        return ServiceStatus(self.name, self.url(), state, pid)
