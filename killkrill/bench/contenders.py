"""The syslog -> Elasticsearch contenders: KillKrill, rsyslog and syslog-ng.

Each is started fresh for a round (its own index prefix, its own processes), fed the same
octet-counted RFC 5424 stream on TCP, and stopped. :meth:`Contender.pids` are the roots of
the process trees whose CPU time and memory count as the contender's:

- KillKrill: the syslog receiver(s) and log worker(s) (``killkrill receiver syslog``,
  ``killkrill worker logs``, defaults but for ports and the index prefix) **and the Redis
  server** they buffer in (the bench's own, used by nothing else while they run);
- rsyslog: ``rsyslogd`` (configuration ``bench/peers/rsyslog.conf``);
- syslog-ng: ``syslog-ng`` (``bench/peers/syslog-ng.conf``).

Elasticsearch is excluded from every contender's figures (metered apart).
"""

from __future__ import annotations

import os
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import IO

from killkrill.bench.context import KILLKRILL, BenchContext, stop_process
from killkrill.bench.peers import render, rsyslogd, syslog_ng
from killkrill.dev.pipeline import Component
from killkrill.dev.process import free_port, port_open
from killkrill.errors import KillKrillError
from killkrill.streams.names import StreamNames

__all__ = ["CONTENDERS", "Contender", "KillKrill", "Rsyslog", "SyslogNg", "make_contender"]


class Contender(ABC):
    """One syslog pipeline under test (see the module doc)."""

    name: str
    seq_field: str
    """Field holding the MSGID (``S<seq>``) as a keyword, for exact distinct counts."""

    def __init__(self, ctx: BenchContext, label: str = "") -> None:
        self.ctx = ctx
        self.label = label or self.name
        self.prefix = ""
        self.ports: list[int] = []
        self._logs: list[IO[bytes]] = []

    @property
    def index_pattern(self) -> str:
        return f"{self.prefix}-*"

    @abstractmethod
    def start(self, prefix: str) -> None:
        """Start the processes, writing to indices ``<prefix>-*``; return once they listen."""

    @abstractmethod
    def pids(self) -> dict[int, str]:
        """Roots of the process trees metered as this contender's, with their roles."""

    @abstractmethod
    def stop(self) -> dict[str, int]:
        """Stop the processes (SIGTERM); their exit codes by name."""

    def held(self) -> int | None:
        """Messages it is known to hold, still to be delivered; None when it cannot say (the
        peers' queues are inside them). A round does not end for a stall while this is above
        0: a sink slower than the stall is not a loss."""
        return None

    def _log(self, name: str) -> IO[bytes]:
        handle = self.ctx.log(f"{self.label}-{name}").open("ab")
        self._logs.append(handle)
        return handle

    def _close_logs(self) -> None:
        for handle in self._logs:
            handle.close()
        self._logs.clear()


def _wait_listening(ports: list[int], proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while not all(port_open(p) for p in ports):
        if proc.poll() is not None:
            raise KillKrillError(f"{what} exited with {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise KillKrillError(f"{what} did not listen on {ports} within 60s; see {log}")
        time.sleep(0.1)


class KillKrill(Contender):
    """``receivers`` syslog receiver processes and ``workers`` log worker processes."""

    name = "killkrill"
    seq_field = "msgid.keyword"

    def __init__(
        self, ctx: BenchContext, label: str = "", *, receivers: int = 1, workers: int = 1
    ) -> None:
        super().__init__(ctx, label)
        self.receivers = receivers
        self.workers = workers
        self.components: list[Component] = []
        self.redis_pid = 0

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "REDIS_URL": self.ctx.redis_url,
            "ELASTICSEARCH_URL": self.ctx.es_url,
            "KILLKRILL_ELASTICSEARCH__INDEX_PREFIX": self.prefix,
            # One node: replicas could never be allocated (the peers' indices have none).
            "KILLKRILL_NUMBER_OF_REPLICAS": "0",
            "KILLKRILL_LOG_LEVEL": "warning",
        }

    def start(self, prefix: str) -> None:
        self.prefix = prefix
        self.ctx.flush_redis()
        self.redis_pid = self.ctx.services.redis_pid()
        env = self.env()
        self.ports = []
        self.components = []
        for n in range(self.receivers):
            port, ops = free_port(), free_port()
            self.ports.append(port)
            argv = [*KILLKRILL, "receiver", "syslog", "--host", "127.0.0.1", "--port", str(port),
                    "--no-udp", "--ops-port", str(ops)]  # fmt: skip
            self.components.append(Component(f"receiver-{n}", argv, ops, env, self._log(f"r{n}")))
        for n in range(self.workers):
            ops = free_port()
            argv = [*KILLKRILL, "worker", "logs", "--ops-port", str(ops)]
            self.components.append(Component(f"worker-{n}", argv, ops, env, self._log(f"w{n}")))
        for component in self.components:
            component.launch()
        deadline = time.monotonic() + 90
        waiting = list(self.components)
        while waiting:
            for component in list(waiting):
                assert component.proc is not None
                if component.proc.poll() is not None:
                    self.stop()
                    raise KillKrillError(
                        f"killkrill {component.name} exited with {component.proc.returncode}; "
                        f"see {self.ctx.workdir / 'logs'}"
                    )
                if component.healthy():
                    waiting.remove(component)
            if waiting and time.monotonic() > deadline:
                self.stop()
                raise KillKrillError(f"killkrill {waiting[0].name} not healthy within 90s")
            time.sleep(0.1)

    def held(self) -> int | None:
        """Entries in its stream: the workers delete each one once Elasticsearch has it."""
        client = self.ctx.redis()
        try:
            return int(client.xlen(StreamNames().logs))
        finally:
            client.close()

    def pids(self) -> dict[int, str]:
        roles = {c.proc.pid: c.name.split("-")[0] for c in self.components if c.proc is not None}
        return {**roles, self.redis_pid: "redis"}

    def stop(self) -> dict[str, int]:
        for component in self.components:  # all at once: they drain in parallel
            if component.proc is not None and component.proc.poll() is None:
                component.proc.terminate()
        codes = {c.name: stop_process(c.proc) for c in self.components if c.proc is not None}
        self._close_logs()
        return codes


class _Daemon(Contender):
    """A peer that is one daemon process (``process`` names it in logs and exit codes),
    listening on one port, with a work directory per round."""

    process: str

    def __init__(self, ctx: BenchContext, label: str = "") -> None:
        super().__init__(ctx, label)
        self.proc: subprocess.Popen[bytes] | None = None

    def _prepare(self, prefix: str) -> tuple[Path, int]:
        """The round's work directory and listening port (``ports`` set)."""
        self.prefix = prefix
        work = self.ctx.workdir / f"{self.label}-{prefix}"
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.ports = [port]
        return work, port

    def _launch(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self._log(self.process)
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        _wait_listening(self.ports, self.proc, self.process, Path(log.name))

    def pids(self) -> dict[int, str]:
        return {self.proc.pid: self.name} if self.proc is not None else {}

    def stop(self) -> dict[str, int]:
        codes = {self.process: stop_process(self.proc)} if self.proc is not None else {}
        self._close_logs()
        return codes


class Rsyslog(_Daemon):
    name = "rsyslog"
    process = "rsyslogd"
    seq_field = "msgid"

    def start(self, prefix: str) -> None:
        binary = rsyslogd()
        work, port = self._prepare(prefix)
        conf = render(
            "rsyslog.conf",
            work / "rsyslog.conf",
            workdir=work,
            port=port,
            es_port=self.ctx.es_url.rsplit(":", 1)[1],
            index=f"{prefix}-000001",
        )
        self._launch([str(binary), "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")])


class SyslogNg(_Daemon):
    name = "syslog-ng"
    process = "syslog-ng"
    seq_field = "msgid"

    def start(self, prefix: str) -> None:
        daemon = syslog_ng()
        work, port = self._prepare(prefix)
        conf = render(
            "syslog-ng.conf",
            work / "syslog-ng.conf",
            port=port,
            es_port=self.ctx.es_url.rsplit(":", 1)[1],
            index=f"{prefix}-000001",
        )
        self._launch(
            [str(daemon.binary), "-F", "--no-caps", "-f", str(conf),
             "--module-path", str(daemon.module_path),
             "--persist-file", str(work / "syslog-ng.persist"),
             "--pidfile", str(work / "syslog-ng.pid"),
             "--control", str(work / "syslog-ng.ctl")],
            env=daemon.env,
        )  # fmt: skip


CONTENDERS: dict[str, type[Contender]] = {
    "killkrill": KillKrill,
    "rsyslog": Rsyslog,
    "syslog-ng": SyslogNg,
}


def make_contender(name: str, ctx: BenchContext) -> Contender:
    return CONTENDERS[name](ctx)
