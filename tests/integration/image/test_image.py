"""The KillKrill image on the project's own Docker engine: what it runs as, what it holds, and a
log carried from a receiver container through Redis to a log worker container and into
Elasticsearch.

``make test`` builds the image first (``make image``); here the engine must be running and
the image of this version present, or the tests fail saying so (they never skip).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
import redis
from elasticsearch import Elasticsearch
from es_queries import count_docs
from polling import wait_for
from run_names import ES_INDEX_PREFIX, RUN_ID

from killkrill import __version__
from killkrill.dev.docker_engine import DockerEngine
from killkrill.dev.image import (
    host_ca_bundle,
    host_pip_settings,
    image_tags,
    pip_conf_text,
)

IMAGE = image_tags()[0]
UID = "10001"

Docker = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def docker() -> Docker:
    """``docker(*args, env=...)``: the docker client against the project's engine (output as
    text, echoed so the leak guard reads it); the engine must run and the image exist."""
    engine = DockerEngine()
    if not engine.running():
        pytest.fail(
            "the project's Docker engine is not running: `make image` (or "
            "`killkrill dev docker up`) starts it"
        )
    client_env = engine.client_env()

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 60, echo: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [engine.docker(), *args],
            capture_output=True,
            text=True,
            env={**client_env, **(env or {})},
            timeout=timeout,
            check=False,
        )
        if echo:
            sys.stdout.write(done.stdout)
            sys.stderr.write(done.stderr)
        return done

    if run("image", "inspect", "--format", "{{.Id}}", IMAGE).returncode != 0:
        pytest.fail(f"no image {IMAGE}: build it with `make image`")
    return run


def test_image_config_runs_killkrill_as_non_root(docker: Docker) -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", IMAGE).stdout)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["/opt/killkrill/bin/killkrill"]
    assert config["Labels"]["org.opencontainers.image.version"] == __version__
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--version"], f"killkrill, version {__version__}"),
        (["receiver", "--help"], "Usage: killkrill receiver"),
        (["worker", "logs", "--help"], "Usage: killkrill worker logs"),
        (["worker", "metrics", "--help"], "Usage: killkrill worker metrics"),
        (["dlq", "--help"], "Usage: killkrill dlq"),
        (["db", "--help"], "Usage: killkrill db"),
        (["--entrypoint", "id", "-u"], UID),
    ],
    ids=["version", "receiver", "worker-logs", "worker-metrics", "dlq", "db", "uid"],
)
def test_commands_run_read_only_as_non_root(docker: Docker, args: list[str], expected: str) -> None:
    """Each component's entry point on a read-only root filesystem, without a network and
    without a /tmp mount: nothing is written at start (no bytecode, no caches)."""
    entrypoint, command = (args[:2], args[2:]) if args[0] == "--entrypoint" else ([], args)
    done = docker("run", "--rm", "--read-only", "--network", "none", *entrypoint, IMAGE, *command)
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_no_build_secret_pip_or_toolchain_in_the_image(docker: Docker) -> None:
    """The build's secrets (the host's pip.conf and CA bundle) are in no layer and no file of
    the image, whose history names neither; the final stage has no pip, compiler or strip."""
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE).stdout
    assert "/run/secrets" not in history
    assert "pipconf" not in history
    assert "index-url" not in history

    settings = host_pip_settings()
    ca = host_ca_bundle(settings, os.environ)
    conf = pip_conf_text(settings, with_ca=ca is not None).encode()
    wanted = {_sha256(conf): (len(conf), "the build's pip.conf")}
    if ca is not None:
        wanted[_sha256(ca.read_bytes())] = (ca.stat().st_size, f"the host's CA bundle {ca}")
    sizes = " -o ".join(f"-size {size}c" for size, _ in wanted.values())
    script = (
        f"find / -xdev -type f \\( {sizes} \\) -exec sha256sum {{}} + ; "
        "{ find / -xdev -name pip.conf; "
        "find / -xdev \\( -path '*/bin/*' -o -path '*/sbin/*' \\) \\( -name 'pip*' "
        "-o -name 'gcc*' -o -name 'cc' -o -name 'g++*' -o -name 'c++' -o -name 'ld' "
        "-o -name 'strip' -o -name 'readelf' \\); } | sed 's/^/found: /'; "
        "ls -A /run/secrets 2>/dev/null | sed 's/^/secret: /'; "
        "python3 -c 'import pip' 2>/dev/null && echo 'found: the pip module'; true"
    )
    # As root, so that no directory (/root, /etc/ssl/private) is left unsearched.
    done = docker(
        "run", "--rm", "--read-only", "--user", "0", "--entrypoint", "/bin/sh", IMAGE, "-c", script
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    leaked = []
    for line in done.stdout.splitlines():
        digest, _, path = line.partition("  ")
        # The base's own CA bundle (Debian's ca-certificates) equals the host's on a host
        # that trusts no CA of its own; a copy of the host's anywhere else is a leak.
        if digest in wanted and path != "/etc/ssl/certs/ca-certificates.crt":
            leaked.append(f"{path}: {wanted[digest][1]}")
    found = [line for line in done.stdout.splitlines() if line.startswith(("found:", "secret:"))]
    assert leaked == []
    assert found == []


# --- a receiver and a log worker from the image, on the host's network -------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def containers(
    docker: Docker, redis_client: redis.Redis, elasticsearch_client: Elasticsearch
) -> Iterator[Callable[..., str]]:
    """``start(role, *args, env=...)``: a detached container of the image on the host's
    network, read-only, named for this run; shown (``docker logs``) and removed at the end,
    whatever happened: before the run's Redis database and indices are emptied (hence the
    fixtures it asks for), so no process sees its stream vanish."""
    started: list[str] = []

    def start(role: str, *args: str, env: dict[str, str]) -> str:
        name = f"kk-test-{RUN_ID}-{role}-{uuid.uuid4().hex[:6]}"
        # -e NAME without a value: the value comes from the client's environment, never
        # from its command line.
        passed = [arg for key in env for arg in ("-e", key)]
        done = docker(
            "run", "-d", "--name", name, "--network", "host", "--read-only",
            *passed, IMAGE, *args, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        started.append(name)
        return name

    yield start
    for name in started:
        logs = docker("logs", name, echo=False)
        print(f"--- docker logs {name} ---\n{logs.stdout}{logs.stderr}")
        docker("rm", "-f", "-v", name)


def test_receiver_and_log_worker_containers_carry_a_log_to_elasticsearch(
    docker: Docker,
    containers: Callable[..., str],
    redis_client: redis.Redis,
    redis_url: str,
    elasticsearch_client: Elasticsearch,
    elasticsearch_url: str,
) -> None:
    http_port, receiver_ops, worker_ops = _free_port(), _free_port(), _free_port()
    containers(
        "receiver", "receiver", "http", "--host", "127.0.0.1", "--port", str(http_port),
        "--ops-port", str(receiver_ops), "--no-auth",
        env={"REDIS_URL": redis_url},
    )  # fmt: skip
    containers(
        "log-worker", "worker", "logs", "--index-prefix", ES_INDEX_PREFIX,
        "--consumer-name", f"image-test-{RUN_ID}", "--ops-port", str(worker_ops),
        env={"REDIS_URL": redis_url, "ELASTICSEARCH_URL": elasticsearch_url},
    )  # fmt: skip
    wait_for(lambda: _ok(f"http://127.0.0.1:{receiver_ops}/readyz"), 30, "the receiver's /readyz")
    wait_for(lambda: _ok(f"http://127.0.0.1:{worker_ops}/readyz"), 30, "the worker's /readyz")

    marker = f"hello from the image {uuid.uuid4().hex}"
    record = {
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "service": "image-test",
        "level": "INFO",
        "message": marker,
    }
    answer = httpx.post(f"http://127.0.0.1:{http_port}/api/v1/logs", json=record, timeout=10)
    assert answer.status_code in (200, 202), answer.text

    query = {"match_phrase": {"message": marker}}
    pattern = f"{ES_INDEX_PREFIX}-*"
    started = time.monotonic()
    wait_for(lambda: count_docs(elasticsearch_client, pattern, query) == 1, 30, "the log in ES")
    print(f"log indexed {time.monotonic() - started:.1f}s after the receiver's answer")
    found = elasticsearch_client.search(index=pattern, query=query)["hits"]["hits"]
    assert [hit["_source"]["service"] for hit in found] == ["image-test"]
    assert re.fullmatch(
        rf"{re.escape(ES_INDEX_PREFIX)}-\d{{4}}\.\d{{2}}\.\d{{2}}", found[0]["_index"]
    )
