"""PostgreSQL 15 from Debian's ``postgresql``: a ``killkrill_test`` database, role ``test``.

``test`` may create roles (``CREATEROLE``): the test suite logs in as a role of its own per
run, with a random password, so that a password leaked into a log line is recognisable
(see ``tests/integration/conftest.py``). A throwaway loopback-only instance.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import psycopg2
from psycopg2 import sql

from killkrill.dev.base import LocalService
from killkrill.dev.process import (
    apt_install,
    as_service_user,
    chown_to_service_user,
    port_offset,
    port_open,
    run,
)
from killkrill.errors import DevServiceError

__all__ = ["PostgresServer"]

USER = "test"
PASSWORD = "test"  # a throwaway loopback-only test instance
DATABASE = "killkrill_test"


def _bindir() -> Path | None:
    """The newest installed PostgreSQL >= 15 server binaries."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3])
    )
    for pg_ctl in reversed(found):
        if int(Path(pg_ctl).parts[-3]) >= 15:
            return Path(pg_ctl).parent
    return None


class PostgresServer(LocalService):
    name = "postgres"
    env_vars = ("TEST_DATABASE_URL", "DATABASE_URL")
    default_port = 5432

    @property
    def port(self) -> int:
        return 5432 + port_offset()

    @property
    def datadir(self) -> Path:
        return self.home / "data"

    @property
    def pidfile(self) -> Path:
        return self.datadir / "postmaster.pid"

    def local_url(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def ready(self) -> bool:
        return port_open(self.port)

    def install(self) -> None:
        if _bindir() is None:
            apt_install("postgresql")

    def _bin(self, name: str) -> str:
        bindir = _bindir()
        if bindir is None:
            raise DevServiceError("PostgreSQL >= 15 is not installed (apt-get install postgresql)")
        return str(bindir / name)

    def start(self) -> None:
        sockets = self.home / "run"
        sockets.mkdir(exist_ok=True)
        if not (self.datadir / "PG_VERSION").exists():
            self.datadir.mkdir(exist_ok=True)
            chown_to_service_user(self.home)
            run(
                as_service_user(
                    [
                        self._bin("initdb"),
                        "-D",
                        str(self.datadir),
                        "-U",
                        "postgres",
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                cwd=self.home,
            )
        chown_to_service_user(self.home)
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {sockets}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        log = self.home / "postgres.log"
        run(
            as_service_user(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(log),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            cwd=self.home,
        )
        self._ensure_database(sockets)

    def provision(self) -> None:
        self._ensure_database(self.home / "run")

    def _ensure_database(self, sockets: Path) -> None:
        conn = psycopg2.connect(
            host=str(sockets), port=self.port, user="postgres", dbname="postgres"
        )
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (USER,))
                if cur.fetchone() is None:
                    cur.execute(
                        sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(USER)),
                        (PASSWORD,),
                    )
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s AND rolcreaterole", (USER,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(USER)))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cur.fetchone() is None:
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(DATABASE), sql.Identifier(USER)
                        )
                    )
        finally:
            conn.close()

    def stop(self) -> None:
        if self.pid() is not None:
            run(
                as_service_user(
                    [
                        self._bin("pg_ctl"),
                        "-D",
                        str(self.datadir),
                        "-m",
                        "fast",
                        "-w",
                        "stop",
                    ]
                ),
                cwd=self.home,
            )
        super().stop()

    def env(self) -> dict[str, str]:
        url = self.url()
        return {"TEST_DATABASE_URL": url, "DATABASE_URL": os.environ.get("DATABASE_URL", url)}
