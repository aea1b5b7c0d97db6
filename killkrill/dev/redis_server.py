"""Redis 7 from Debian's ``redis-server``, with AOF on and ``noeviction``."""

from __future__ import annotations

import socket
import subprocess

from killkrill.dev.base import LocalService
from killkrill.dev.process import apt_install, port_offset, run, wait_until, which
from killkrill.errors import DevServiceError

__all__ = ["RedisServer"]


class RedisServer(LocalService):
    name = "redis"
    env_vars = ("REDIS_URL",)
    default_port = 6379
    db = 1  # the seed's tests use db 1; the pipeline's own processes take the URL as given

    @property
    def port(self) -> int:
        return 6379 + port_offset()

    def local_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def install(self) -> None:
        if which("redis-server") is None:
            apt_install("redis-server")

    def start(self) -> None:
        binary = which("redis-server")
        if binary is None:
            raise DevServiceError("redis-server is not installed")
        data = self.home / "data"
        data.mkdir(exist_ok=True)
        conf = self.home / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    "protected-mode yes",
                    "daemonize yes",
                    f"pidfile {self.pidfile}",
                    f"logfile {self.home / 'redis.log'}",
                    f"dir {data}",
                    "appendonly yes",
                    "appendfsync everysec",
                    # A stream buffer writes far more than it holds: rewrite the AOF per
                    # GiB written, not per 64 MiB (each rewrite copies the whole backlog).
                    "auto-aof-rewrite-min-size 1gb",
                    'save ""',
                    "maxmemory-policy noeviction",
                    "databases 16",
                ]
            )
            + "\n"
        )
        run([binary, str(conf)])
        try:
            wait_until(self.ready, 30, f"Redis on port {self.port}")
        except DevServiceError as exc:
            raise DevServiceError(f"{exc}; see {self.home / 'redis.log'}") from exc

    def stop(self) -> None:
        if self.pid() is not None and which("redis-cli"):
            # SHUTDOWN flushes the AOF; the base class then waits for the pid to go away.
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "shutdown"],
                capture_output=True,
                check=False,
                timeout=30,
            )
        super().stop()
