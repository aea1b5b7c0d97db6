"""Bring the local services up and down together, idempotently."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from killkrill.config.secrets import redact_url
from killkrill.dev.base import LocalService, ServiceStatus
from killkrill.dev.elasticsearch_server import ElasticsearchServer
from killkrill.dev.postgres_server import PostgresServer
from killkrill.dev.redis_server import RedisServer
from killkrill.errors import DevServiceError

__all__ = ["SERVICES", "ServiceManager", "ServiceStatus"]

SERVICES: dict[str, type[LocalService]] = {
    "redis": RedisServer,
    "postgres": PostgresServer,
    "elasticsearch": ElasticsearchServer,
}


class ServiceManager:
    """The local Redis, PostgreSQL and Elasticsearch, or a subset of them by name."""

    def __init__(
        self, names: Iterable[str] | None = None, *, echo: Callable[[str], None] = print
    ) -> None:
        chosen = list(names) if names else list(SERVICES)
        unknown = [n for n in chosen if n not in SERVICES]
        if unknown:
            raise DevServiceError(
                f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}"
            )
        self.services = [SERVICES[n]() for n in chosen]
        self.echo = echo

    def _up_one(self, service: LocalService) -> str:
        started = time.monotonic()
        given = service.given_url()
        if given:
            if not service.reachable(given):
                raise DevServiceError(
                    f"{service.name}: {redact_url(given)} (from {'/'.join(service.env_vars)}) "
                    "is not reachable; start it, or unset the variable to let the manager run one"
                )
            return f"{service.name}: using {redact_url(given)} (given in the environment)"
        where = redact_url(service.url())
        if service.running():
            service.provision()
            return f"{service.name}: already running at {where}"
        service.install()
        service.start()
        return f"{service.name}: started at {where} in {time.monotonic() - started:.1f}s"

    def up(self) -> float:
        """Start every service that is not running yet; return the wall time in seconds."""
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(self.services)) as pool:
            futures = [pool.submit(self._up_one, s) for s in self.services]
            errors: list[str] = []
            for future in futures:
                try:
                    self.echo(future.result())
                except DevServiceError as exc:
                    errors.append(str(exc))
        if errors:
            raise DevServiceError("\n".join(errors))
        elapsed = time.monotonic() - started
        self.echo(f"services up in {elapsed:.1f}s wall time")
        return elapsed

    def down(self) -> None:
        """Stop every service this manager runs (given ones are left alone)."""
        for service in self.services:
            if service.given_url():
                self.echo(f"{service.name}: given in the environment, left running")
                continue
            was = service.pid()
            service.stop()
            self.echo(f"{service.name}: stopped" if was else f"{service.name}: was not running")

    def status(self) -> list[ServiceStatus]:
        return [s.status() for s in self.services]

    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for service in self.services:
            merged.update(service.env())
        return merged
