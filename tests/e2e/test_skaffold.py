"""skaffold against the kind cluster, as a developer runs it (``skaffold.yaml``, profile
``kind``): ``skaffold run`` builds the image with the project's builder, loads it into the
node, applies the CRDs and deploys the chart with the example Pipeline of
``deploy/skaffold-values.yaml``, which becomes Ready on the backing services of its
namespace; ``skaffold dev`` in a copy of the repository rebuilds and redeploys after a
receiver source file is edited, and the receiver's new pods answer with the change.

The release, its namespace (``killkrill``) and its ClusterKopfPeering are skaffold's own, as
in the dev loop: the module removes them afterwards (``skaffold delete``). Its operator
watches every namespace, so this module runs alone (pytest runs modules one after another).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from kind_cluster import KindEnv, run_kind
from kind_stack import REPO, make_namespace, wait_for

NAMESPACE = "killkrill"
PIPELINE = "example"
HEALTHZ_LINE = '        return _json(200, {"status": "ok"})\n'
RECEIVER_SOURCE = Path("killkrill/receivers/http_app.py")


def _skaffold_env(kind_env: KindEnv) -> dict[str, str]:
    """The kind cluster's KUBECONFIG and tools, the project's Docker engine (skaffold and
    ``kind load`` talk to it), nothing interactive."""
    from killkrill.dev.docker_engine import DockerEngine

    return {
        **kind_env.env,
        "DOCKER_HOST": DockerEngine().local_url(),
        "SKAFFOLD_UPDATE_CHECK": "false",
        "SKAFFOLD_INTERACTIVE": "false",
    }


def _context(kind_env: KindEnv) -> str:
    return f"kind-{kind_env.name}"


@pytest.fixture(scope="module")
def skaffold_namespace(kind_env: KindEnv) -> Iterator[str]:
    """Namespace ``killkrill`` with the backing services the example Pipeline names
    (``redis``, ``elasticsearch``, ``postgres`` without a password); afterwards the release
    (``skaffold delete``) and the namespace go."""

    def phase() -> str | None:
        found = kind_env.run("kubectl", "get", "namespace", NAMESPACE, "-o", "json")
        return json.loads(found.stdout)["status"]["phase"] if found.returncode == 0 else None

    if phase() == "Active":
        pytest.fail(f"namespace {NAMESPACE} exists: a skaffold release of someone's runs there")
    wait_for(lambda: phase() is None, 300, f"namespace {NAMESPACE} deleted (by an earlier run)")
    built = run_kind("services-image", timeout=3600)
    assert built.returncode == 0, built.stderr
    kind_env.load(*built.stdout.split())
    make_namespace(kind_env, NAMESPACE)
    manifest = run_kind("services-manifest")
    assert manifest.returncode == 0, manifest.stderr
    kind_env.kubectl("apply", "-n", NAMESPACE, "--server-side", "--field-manager=kk-e2e",
                     "-f", "-", input=manifest.stdout)  # fmt: skip
    try:
        for name in ("redis", "postgres", "elasticsearch"):
            kind_env.wait(NAMESPACE, f"deployment/{name}", "condition=Available", timeout=300)
        yield NAMESPACE
    finally:
        subprocess.run(
            [str(kind_env.bin_dir / "skaffold"), "delete", "-p", "kind",
             "--kube-context", _context(kind_env)],
            cwd=REPO, env=_skaffold_env(kind_env), capture_output=True, timeout=600,
            check=False,
        )  # fmt: skip
        kind_env.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _pipeline_ready(kind_env: KindEnv) -> bool:
    found = kind_env.run("kubectl", "get", "pipeline", "-n", NAMESPACE, PIPELINE, "-o", "json")
    if found.returncode != 0:
        return False
    pipeline = json.loads(found.stdout)
    status = pipeline.get("status") or {}
    return status.get("observedGeneration") == pipeline["metadata"]["generation"] and any(
        c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
    )


def _receiver_images(kind_env: KindEnv) -> set[str]:
    """Images of the example's receiver pods that are Ready."""
    pods = kind_env.get(
        "pods", "-n", NAMESPACE,
        "-l", f"app.kubernetes.io/instance={PIPELINE},app.kubernetes.io/component=receiver",
    )["items"]  # fmt: skip
    return {
        p["spec"]["containers"][0]["image"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    }


def _healthz(kind_env: KindEnv) -> dict[str, str]:
    """The example receiver's ``/healthz`` answer, through a port-forward."""
    with kind_env.port_forward(NAMESPACE, f"service/{PIPELINE}-receiver", 8081) as port:
        answer = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
        with answer:
            body: dict[str, str] = json.load(answer)
            return body


def test_skaffold_run_builds_loads_and_deploys_the_chart(
    kind_env: KindEnv, skaffold_namespace: str
) -> None:
    done = subprocess.run(
        [str(kind_env.bin_dir / "skaffold"), "run", "-p", "kind",
         "--kube-context", _context(kind_env), "--status-check=true"],
        cwd=REPO, env=_skaffold_env(kind_env), capture_output=True, text=True, timeout=1800,
        check=False,
    )  # fmt: skip
    sys.stdout.write(done.stdout[-5000:])
    sys.stderr.write(done.stderr[-5000:])
    assert done.returncode == 0, done.stderr[-3000:]
    operator = kind_env.get("deployment", "-n", NAMESPACE, "killkrill-operator")
    assert operator["status"].get("readyReplicas") == 1
    image = operator["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("killkrill/killkrill:")
    assert image != "killkrill/killkrill:dev"  # skaffold's own tag
    wait_for(lambda: _pipeline_ready(kind_env), 300, "the example Pipeline Ready", interval=2)
    assert _healthz(kind_env) == {"status": "ok"}


def _drain(stream: IO[str], sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


def test_skaffold_dev_redeploys_an_edited_receiver(
    kind_env: KindEnv, skaffold_namespace: str
) -> None:
    token = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="kk-skaffold-dev-") as tmp:
        copy = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(copy)],
                       check=True, timeout=300)  # fmt: skip
        (copy / ".venv").symlink_to(REPO / ".venv")
        with (copy / ".git" / "info" / "exclude").open("a") as exclude:
            exclude.write("/.venv\n")  # untracked, it would mark the first tag -dirty
        source = copy / RECEIVER_SOURCE
        assert HEALTHZ_LINE in source.read_text()
        output: list[str] = []
        proc = subprocess.Popen(
            [str(kind_env.bin_dir / "skaffold"), "dev", "-p", "kind",
             "--kube-context", _context(kind_env), "--port-forward=off", "--cleanup=true",
             "--status-check=true"],
            cwd=copy, env=_skaffold_env(kind_env), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        reader = threading.Thread(target=_drain, args=(proc.stdout, output), daemon=True)
        reader.start()

        def running() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"skaffold dev exited ({proc.returncode}):\n{''.join(output)[-4000:]}")
            return True

        try:
            # Edits count once skaffold watches (after its first deploy), never before.
            wait_for(
                lambda: running() and any("Watching for changes" in line for line in output),
                900,
                "skaffold dev's first deploy, then its watch",
                interval=2,
            )
            wait_for(
                lambda: running() and _pipeline_ready(kind_env) and _receiver_images(kind_env),
                600,
                "the example Pipeline Ready",
                interval=3,
            )
            before = _receiver_images(kind_env)
            assert _healthz(kind_env) == {"status": "ok"}
            edited = HEALTHZ_LINE.replace(
                '{"status": "ok"}', f'{{"status": "ok", "e2e": "{token}"}}'
            )
            source.write_text(source.read_text().replace(HEALTHZ_LINE, edited))
            wait_for(
                lambda: (
                    running()
                    and (images := _receiver_images(kind_env))
                    and not images & before
                    and _pipeline_ready(kind_env)
                ),
                900,
                "new receiver pods of the rebuilt image",
                interval=3,
            )
            assert _healthz(kind_env) == {"status": "ok", "e2e": token}
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # skaffold cleans up: helm uninstall
                try:
                    proc.wait(timeout=300)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
            reader.join(timeout=30)
            sys.stdout.write("".join(output)[-8000:])
            shutil.rmtree(copy, ignore_errors=True)
