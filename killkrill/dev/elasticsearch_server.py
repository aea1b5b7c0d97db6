"""Elasticsearch from Maven Central's ``integ-test-zip`` distribution: single node, security
off, small heap, run by the service user with a JDK that fits its major version."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from killkrill.dev.base import LocalService
from killkrill.dev.process import (
    apt_install,
    as_service_user,
    cache_dir,
    chown_to_service_user,
    port_offset,
    run,
    wait_until,
    which,
)
from killkrill.errors import DevServiceError

TRANSPORT_PORT = 19300
"""Transport (node-to-node) port of the default set; unused by clients, shifted like the rest."""

__all__ = ["ElasticsearchServer", "find_java_home"]

VERSION = os.environ.get("KILLKRILL_DEV_ES_VERSION", "9.2.0")
"""Server version; the Python client pinned in pyproject.toml has the same major."""

GROUP_PATH = "org/elasticsearch/distribution/integ-test-zip/elasticsearch"
ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{VERSION}:zip"


def _java_major(java_home: Path) -> int:
    """The feature version of the JDK in ``java_home`` from its ``release`` file."""
    try:
        for line in (java_home / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                version = line.split("=", 1)[1].strip('"')
                return int(version.split(".")[0])
    except (OSError, ValueError):
        pass
    return 0


def find_java_home(minimum: int) -> Path:
    """The newest JDK under /usr/lib/jvm (or $ES_JAVA_HOME) with feature version >= minimum."""
    env = os.environ.get("ES_JAVA_HOME")
    candidates = [Path(env)] if env else sorted(Path("/usr/lib/jvm").glob("*"))
    usable = [
        (m, p) for p in candidates if (p / "bin/java").exists() and (m := _java_major(p)) >= minimum
    ]
    if not usable:
        raise DevServiceError(
            f"Elasticsearch {VERSION} needs Java {minimum}+; none found under /usr/lib/jvm. "
            "Install a JDK (e.g. Temurin 25) or set ES_JAVA_HOME."
        )
    return max(usable)[1]


class ElasticsearchServer(LocalService):
    name = "elasticsearch"
    env_vars = ("ELASTICSEARCH_URL",)
    default_port = 9200
    heap = os.environ.get("KILLKRILL_DEV_ES_HEAP", "512m")

    @property
    def port(self) -> int:
        return 9200 + port_offset()

    def local_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def distribution(self) -> Path:
        return cache_dir() / f"elasticsearch-{VERSION}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.local_url()}/_cluster/health", timeout=2) as resp:
                health = json.load(resp)
        except (OSError, ValueError, urllib.error.URLError):
            return False
        return health.get("status") in ("green", "yellow")

    def archive_path(self) -> Path:
        """Where the distribution zip is (or goes) in the local Maven repository."""
        repo = Path(os.environ.get("MAVEN_REPO", Path.home() / ".m2/repository"))
        return repo / GROUP_PATH / VERSION / f"elasticsearch-{VERSION}.zip"

    def _zip(self) -> Path:
        """The distribution zip, fetched into the local Maven repository if missing."""
        path = self.archive_path()
        repo = path.parents[len(GROUP_PATH.split("/")) + 1]
        if path.exists():
            return path
        if which("mvn") is None:
            apt_install("maven")
        run(
            [
                "mvn",
                "-q",
                "-B",
                "dependency:get",
                f"-Dartifact={ARTIFACT}",
                "-Dtransitive=false",
                f"-Dmaven.repo.local={repo}",
            ]
        )
        if not path.exists():
            raise DevServiceError(f"Maven reported success but {path} is missing")
        return path

    def install(self) -> None:
        if (self.distribution / "bin/elasticsearch").exists():
            return
        archive = self._zip()
        staging = self.distribution.with_name(self.distribution.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
        inner = staging / f"elasticsearch-{VERSION}"
        for path in inner.rglob("*"):  # zipfile drops the exec bits
            if path.parent.name == "bin" or path.suffix == ".sh":
                path.chmod(0o755)
        for path in (inner / "bin").iterdir():
            path.chmod(0o755)
        os.chmod(inner, 0o755)
        inner.rename(self.distribution)
        shutil.rmtree(staging, ignore_errors=True)

    def settings(self) -> dict[str, str]:
        """The ``-E`` settings the node starts with (ports shifted by the port offset)."""
        return {
            "discovery.type": "single-node",
            "xpack.security.enabled": "false",
            "network.host": "127.0.0.1",
            "http.port": str(self.port),
            # Far from every HTTP port: `http + 100` was the HTTP port of the set 100 ports up.
            "transport.port": str(TRANSPORT_PORT + port_offset()),
            "path.data": str(self.home / "data"),
            "path.logs": str(self.home / "logs"),
            "cluster.name": "killkrill-dev",
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            # Tests clean up with wildcards (`logs-test-*`); never on a real cluster.
            "action.destructive_requires_name": "false",
        }

    def start(self) -> None:
        java_home = find_java_home(21 if int(VERSION.split(".")[0]) >= 9 else 17)
        conf = self.home / "config"
        shutil.rmtree(conf, ignore_errors=True)
        shutil.copytree(self.distribution / "config", conf)
        for sub in ("data", "logs", "tmp"):
            (self.home / sub).mkdir(exist_ok=True)
        chown_to_service_user(self.home)
        self.distribution.chmod(0o755)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ES_JAVA_HOME": str(java_home),
            "ES_PATH_CONF": str(conf),
            "ES_TMPDIR": str(self.home / "tmp"),
            "ES_JAVA_OPTS": f"-Xms{self.heap} -Xmx{self.heap}",
        }
        settings = self.settings()
        argv = [str(self.distribution / "bin/elasticsearch"), "-d", "-p", str(self.pidfile)]
        for key, value in settings.items():
            argv += ["-E", f"{key}={value}"]
        proc = subprocess.run(
            as_service_user(["env", *(f"{k}={v}" for k, v in env.items()), *argv]),
            capture_output=True,
            text=True,
            cwd=self.home,
            timeout=180,
            check=False,
        )
        if proc.returncode != 0:
            raise DevServiceError(
                f"Elasticsearch failed to start (exit {proc.returncode}):\n"
                f"{(proc.stderr or proc.stdout)[-3000:]}\nLogs: {self.home / 'logs'}"
            )
        wait_until(self.ready, 180, f"Elasticsearch on port {self.port}", interval=0.5)
