"""Redis, PostgreSQL and Elasticsearch as pods: their images and their manifests.

``killkrill dev kind services-image`` builds three images on the project's Docker engine, on
the same local Debian base as the KillKrill image (``killkrill/debian:bookworm``, built when
missing) and from what the local service manager (:mod:`killkrill.dev.redis_server`,
:mod:`~killkrill.dev.postgres_server`, :mod:`~killkrill.dev.elasticsearch_server`) runs:

* ``killkrill/redis:7``: Debian's ``redis-server``; AOF on, ``noeviction``;
* ``killkrill/postgres:15``: Debian's ``postgresql-15``; a database and its owner made at
  first start from ``POSTGRES_DB``/``POSTGRES_USER`` (password ``POSTGRES_PASSWORD``,
  scram-sha-256; none given: trust), ``fsync=off`` as the dev one;
* ``killkrill/elasticsearch:<version>``: the Maven ``integ-test-zip`` distribution the service
  manager unpacked (fetched through it when missing), single node, security off, heap 512m
  (``ES_JAVA_OPTS``), and the JDK it would run it with (:func:`find_java_home`: Debian 12's
  openjdk-17 is too old for Elasticsearch 9), without its sources and headers.

Each runs as uid 10001 with its data under ``/data`` and temporary files under ``/tmp`` (both
volumes: the root file system can be read-only). An image is also tagged with the hash of
its recipe (``<version>-<hash>``: Dockerfile, entrypoint, base, distribution, JDK): a recipe
whose tag exists is not built again.

:func:`service_manifests` renders Deployments and Services named ``redis``, ``postgres`` and
``elasticsearch`` (what ``examples/pipeline.yaml`` and ``deploy/skaffold-values.yaml`` point
at) for a namespace; ``killkrill dev kind services-manifest`` prints them for ``kubectl apply``.
Throwaway test services: ``emptyDir`` volumes, one replica each.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from killkrill.dev.base_image import BaseRecipe, build_base_images, image_exists
from killkrill.dev.docker_engine import DockerEngine
from killkrill.dev.elasticsearch_server import VERSION as ES_VERSION
from killkrill.dev.elasticsearch_server import ElasticsearchServer, find_java_home
from killkrill.dev.image import buildkit_client
from killkrill.errors import DevServiceError

__all__ = [
    "ELASTICSEARCH_SETTINGS",
    "SERVICE_UID",
    "BuiltService",
    "ServiceImage",
    "build_service_images",
    "service_images",
    "service_manifests",
]

Echo = Callable[[str], None]
SERVICE_UID = 10001
"""The uid (and gid) every service runs as: the KillKrill image's."""

_APT = (
    "apt-get update -q && apt-get install -y -q {packages} "
    "&& rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/* /usr/share/man/*"
)
_USER = (
    f"groupadd --gid {SERVICE_UID} service "
    f"&& useradd --uid {SERVICE_UID} --gid {SERVICE_UID} --no-create-home --home-dir /data "
    "--shell /usr/sbin/nologin service"
)

REDIS_DOCKERFILE = f"""\
FROM {{base}}
RUN {_APT.format(packages="redis-server")} && {_USER}
USER {SERVICE_UID}
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--port", "6379", "--protected-mode", "no", \
"--dir", "/data", "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", \
"--auto-aof-rewrite-min-size", "1gb", "--maxmemory-policy", "noeviction"]
"""

POSTGRES_ENTRYPOINT = """\
#!/bin/sh
# killkrill/postgres: a cluster in $PGDATA made at first start, then the server.
set -eu
bin=/usr/lib/postgresql/15/bin
: "${PGDATA:=/data/pgdata}" "${POSTGRES_USER:=killkrill}" "${POSTGRES_DB:=killkrill}"
export PGDATA
mkdir -p /data/run
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  method=trust
  pwfile=""
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    method=scram-sha-256
    pwfile=/tmp/pwfile
    printf '%s\\n' "$POSTGRES_PASSWORD" > "$pwfile"
  fi
  "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" ${pwfile:+--pwfile="$pwfile"} \\
    --auth-local=trust --auth-host="$method" -E UTF8 --locale=C.UTF-8 >/dev/null
  [ -z "$pwfile" ] || rm -f "$pwfile"
  printf 'host all all 0.0.0.0/0 %s\\nhost all all ::/0 %s\\n' "$method" "$method" \\
    >> "$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    echo "CREATE DATABASE \\"$POSTGRES_DB\\" OWNER \\"$POSTGRES_USER\\"" \\
      | "$bin/postgres" --single -D "$PGDATA" -k /data/run postgres >/dev/null
  fi
fi
exec "$bin/postgres" -D "$PGDATA" -k /data/run -c listen_addresses='*' \\
  -c fsync=off -c full_page_writes=off -c max_connections=200 "$@"
"""

POSTGRES_DOCKERFILE = f"""\
FROM {{base}}
RUN {_APT.format(packages="postgresql-15")} \\
 && rm -rf /var/lib/postgresql/15/main /etc/postgresql/15/main && {_USER}
COPY --chmod=0755 kk-postgres /usr/local/bin/kk-postgres
USER {SERVICE_UID}
WORKDIR /data
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/kk-postgres"]
"""

ELASTICSEARCH_SETTINGS: dict[str, str] = {
    "discovery.type": "single-node",
    "xpack.security.enabled": "false",
    "network.host": "0.0.0.0",
    "http.port": "9200",
    "transport.port": "9300",
    "path.data": "/data/es",
    "path.logs": "/data/logs",
    "cluster.name": "killkrill-dev",
    "cluster.routing.allocation.disk.threshold_enabled": "false",
    "action.destructive_requires_name": "false",
}
"""The dev Elasticsearch's settings (:meth:`ElasticsearchServer.settings`), for a pod:
listening on every address of the pod, on the standard ports, data under ``/data``."""

ELASTICSEARCH_ENTRYPOINT = (
    """\
#!/bin/sh
# killkrill/elasticsearch: the dev settings, a writable copy of the config under /data.
set -eu
[ -d /data/config ] || cp -r /opt/elasticsearch/config /data/config
mkdir -p /data/es /data/logs /tmp/es
export ES_PATH_CONF=/data/config ES_TMPDIR=/tmp/es
export ES_JAVA_OPTS="${ES_JAVA_OPTS:--Xms512m -Xmx512m}"
exec /opt/elasticsearch/bin/elasticsearch \\
"""
    + "".join(f"  -E {key}={value} \\\n" for key, value in ELASTICSEARCH_SETTINGS.items())
    + '  "$@"\n'
)

ELASTICSEARCH_DOCKERFILE = f"""\
FROM {{base}}
COPY jdk /opt/jdk
COPY elasticsearch /opt/elasticsearch
COPY --chmod=0755 kk-elasticsearch /usr/local/bin/kk-elasticsearch
RUN {_USER}
ENV ES_JAVA_HOME=/opt/jdk
USER {SERVICE_UID}
WORKDIR /data
EXPOSE 9200
ENTRYPOINT ["/usr/local/bin/kk-elasticsearch"]
"""

_JDK_SKIPPED = ("lib/src.zip", "include", "man", "demo", "jmods", "sample")
"""Parts of a JDK a server never reads: sources, C headers, man pages, jlink's modules."""


@dataclass(frozen=True)
class ServiceImage:
    """One service image: its Dockerfile, small files, and directories of the host copied in
    (name in the context -> host directory, with paths under it to leave out)."""

    name: str
    repository: str
    version: str
    dockerfile: str
    files: dict[str, str] = field(default_factory=dict)
    trees: dict[str, tuple[Path, tuple[str, ...]]] = field(default_factory=dict)
    identity: tuple[str, ...] = ()
    """What else names the content (distribution version and archive, JDK release)."""

    def digest(self, base: str) -> str:
        """12 hex digits naming the recipe on the base image tagged ``base``."""
        data = {
            "base": base,
            "dockerfile": self.dockerfile,
            "files": self.files,
            "trees": {k: [str(p), list(skip)] for k, (p, skip) in self.trees.items()},
            "identity": list(self.identity),
        }
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def tag(self) -> str:
        """The moving tag manifests use: ``<repository>:<version>``."""
        return f"{self.repository}:{self.version}"

    def exact(self, base: str) -> str:
        return f"{self.repository}:{self.version}-{self.digest(base)}"


@dataclass(frozen=True)
class BuiltService:
    """What :func:`build_service_images` did for one image."""

    tag: str
    exact: str
    size_bytes: int
    seconds: float
    built: bool

    def line(self) -> str:
        what = f"built in {self.seconds:.0f}s" if self.built else "up to date"
        return f"{self.tag} ({self.exact}): {self.size_bytes / 1e6:.0f} MB, {what}"


def _release(java_home: Path) -> str:
    try:
        return (java_home / "release").read_text()
    except OSError:
        return str(java_home)


def service_images(
    *, es_distribution: Path | None = None, es_archive: Path | None = None, java_home: Path | None
) -> list[ServiceImage]:
    """The three images' recipes (pure but for reading the JDK's ``release`` file). Without
    ``es_distribution``/``java_home`` the Elasticsearch one is left out."""
    images = [
        ServiceImage("redis", "killkrill/redis", "7", REDIS_DOCKERFILE),
        ServiceImage(
            "postgres",
            "killkrill/postgres",
            "15",
            POSTGRES_DOCKERFILE,
            files={"kk-postgres": POSTGRES_ENTRYPOINT},
        ),
    ]
    if es_distribution is not None and java_home is not None:
        archive = es_archive.stat() if es_archive is not None and es_archive.exists() else None
        images.append(
            ServiceImage(
                "elasticsearch",
                "killkrill/elasticsearch",
                ES_VERSION,
                ELASTICSEARCH_DOCKERFILE,
                files={"kk-elasticsearch": ELASTICSEARCH_ENTRYPOINT},
                trees={
                    "elasticsearch": (es_distribution, ()),
                    "jdk": (java_home, _JDK_SKIPPED),
                },
                identity=(
                    ES_VERSION,
                    f"archive {archive.st_size}" if archive else "no archive",
                    _release(java_home),
                ),
            )
        )
    return images


def _members(root: Path, arcname: str, skipped: tuple[str, ...]) -> Iterator[tuple[Path, str]]:
    """``(path, name in the context)`` of every file under ``root`` but ``skipped``."""
    yield root, arcname
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skipped):
            continue
        yield path, f"{arcname}/{rel}"


def _context(image: ServiceImage, base: str, out: io.BufferedIOBase) -> None:
    """The build context as a tar stream: Dockerfile, files, trees (owned by root, modes
    kept, readable by all)."""
    with tarfile.open(fileobj=out, mode="w|") as tar:

        def add_text(name: str, text: str, mode: int = 0o644) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))

        add_text("Dockerfile", image.dockerfile.format(base=base))
        for name, text in image.files.items():
            add_text(name, text, 0o755)
        for arcname, (root, skipped) in image.trees.items():
            for path, name in _members(root, arcname, skipped):
                info = tar.gettarinfo(str(path), name)
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode |= 0o444 | (0o111 if info.isdir() or info.mode & 0o100 else 0)
                if info.isreg():
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)


def _build(engine: DockerEngine, image: ServiceImage, base: str, exact: str) -> None:
    """``docker build -`` of the context streamed in (nothing copied on disk); the build's
    output goes to a temporary file (read only when it failed), so that it never blocks."""
    docker, env = buildkit_client(engine)
    argv = [docker, "build", "--network", "host", "-t", exact, "-t", image.tag, "-"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log, stderr=log, env=env)
        assert proc.stdin is not None
        try:
            _context(image, base, proc.stdin)  # type: ignore[arg-type]
        except BrokenPipeError:
            pass  # docker stopped reading: its exit code and output say why
        finally:
            proc.stdin.close()
        if proc.wait(timeout=3600) != 0:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise DevServiceError(f"building {image.tag} failed:\n{output[-4000:]}")


def _size(engine: DockerEngine, tag: str) -> int:
    done = subprocess.run(
        [engine.docker(), "image", "inspect", "--format", "{{.Size}}", tag],
        capture_output=True,
        text=True,
        env=engine.client_env(),
        check=True,
        timeout=60,
    )
    return int(done.stdout.strip())


def build_service_images(
    engine: DockerEngine,
    *,
    only: tuple[str, ...] = (),
    rebuild: bool = False,
    echo: Echo = print,
) -> list[BuiltService]:
    """Build the service images (``only`` these names, default all) unless their recipe's tag
    exists (or ``rebuild``); the moving tag points at the recipe's image either way. The
    Elasticsearch distribution is the service manager's (installed through it when missing:
    the Maven artifact, cached)."""
    if not engine.running():
        raise DevServiceError("the Docker engine is not running: `killkrill dev docker up`")
    base = build_base_images(engine, BaseRecipe(), echo=echo).runtime.exact
    wanted = set(only) or {"redis", "postgres", "elasticsearch"}
    es_dist = java_home = archive = None
    if "elasticsearch" in wanted:
        server = ElasticsearchServer()
        server.install()
        es_dist = server.distribution
        archive = server.archive_path()
        java_home = find_java_home(21 if int(ES_VERSION.split(".")[0]) >= 9 else 17)
    results = []
    for image in service_images(es_distribution=es_dist, es_archive=archive, java_home=java_home):
        if image.name not in wanted:
            continue
        exact = image.exact(base)
        started = time.monotonic()
        built = rebuild or not image_exists(engine, exact)
        if built:
            echo(f"building {image.tag} ({exact}) on {base} ...")
            _build(engine, image, base, exact)
        else:
            subprocess.run(
                [engine.docker(), "tag", exact, image.tag],
                env=engine.client_env(),
                check=True,
                capture_output=True,
                timeout=60,
            )
        result = BuiltService(
            image.tag, exact, _size(engine, exact), time.monotonic() - started, built
        )
        echo(result.line())
        results.append(result)
    return results


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "killkrill-dev"}


def _deployment(
    name: str,
    image: str,
    port: int,
    *,
    probe: dict[str, Any],
    memory: str,
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": name, "containerPort": port}],
        "readinessProbe": {"periodSeconds": 2, "failureThreshold": 3, **probe},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": memory}},
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if env:
        container["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _labels(name)},
            "template": {
                "metadata": {"labels": _labels(name)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsUser": SERVICE_UID,
                        "runAsGroup": SERVICE_UID,
                        "fsGroup": SERVICE_UID,
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "data", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def _service(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "selector": _labels(name),
            "ports": [{"name": name, "port": port, "targetPort": name}],
        },
    }


def service_manifests(
    *,
    postgres_user: str = "killkrill",
    postgres_db: str = "killkrill",
    postgres_password_secret: tuple[str, str] | None = None,
    es_heap: str = "512m",
) -> list[dict[str, Any]]:
    """Deployments and Services ``redis`` (6379), ``postgres`` (5432) and ``elasticsearch``
    (9200), for any namespace (none is set). ``postgres_password_secret`` names the
    ``(Secret, key)`` holding the database owner's password; without it, trust (pure)."""
    pg_env: list[dict[str, Any]] = [
        {"name": "POSTGRES_USER", "value": postgres_user},
        {"name": "POSTGRES_DB", "value": postgres_db},
    ]
    if postgres_password_secret is not None:
        secret, key = postgres_password_secret
        pg_env.append(
            {
                "name": "POSTGRES_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
            }
        )
    images = {i.name: i.tag for i in service_images(java_home=None)}
    es_tag = f"killkrill/elasticsearch:{ES_VERSION}"
    return [
        _deployment(
            "redis",
            images["redis"],
            6379,
            probe={"exec": {"command": ["redis-cli", "ping"]}},
            memory="256Mi",
        ),
        _service("redis", 6379),
        _deployment(
            "postgres",
            images["postgres"],
            5432,
            probe={"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-U", postgres_user]}},
            memory="512Mi",
            env=pg_env,
        ),
        _service("postgres", 5432),
        _deployment(
            "elasticsearch",
            es_tag,
            9200,
            probe={
                "httpGet": {
                    "path": "/_cluster/health?wait_for_status=yellow&timeout=1s",
                    "port": 9200,
                }
            },
            memory="1536Mi",
            env=[{"name": "ES_JAVA_OPTS", "value": f"-Xms{es_heap} -Xmx{es_heap}"}],
        ),
        _service("elasticsearch", 9200),
    ]
