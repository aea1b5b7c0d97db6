"""`skaffold build` with skaffold.yaml's custom builder (`killkrill dev docker image --tag
"$IMAGE"`) on the project's engine: the image gets skaffold's tag and nothing is pushed.
``make test`` builds the image first, so the layers are cached and this takes seconds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from killkrill_command import REPO
from kube_cluster import KubeEnv
from run_names import RUN_ID

from killkrill.dev.docker_engine import DockerEngine
from killkrill.dev.image import IMAGE_REPOSITORY


def test_skaffold_builds_the_image_with_the_custom_builder(
    kube_env: KubeEnv, tmp_path: Path
) -> None:
    engine = DockerEngine()
    if not engine.running():
        pytest.fail("the project's Docker engine is not running: `make image` starts it")
    home = tmp_path / "home"
    home.mkdir()
    tag = f"skaffold-{RUN_ID}"
    image = f"{IMAGE_REPOSITORY}:{tag}"
    env = {**engine.client_env(), "PATH": kube_env.env["PATH"], "KUBECONFIG": kube_env.kubeconfig}
    env["HOME"] = str(home)
    output = tmp_path / "build.json"
    made = [image]
    try:
        done = subprocess.run(
            [str(kube_env.bin_dir / "skaffold"), "build", "-t", tag, f"--file-output={output}"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False,
        )  # fmt: skip
        print(done.stdout[-4000:], done.stderr[-4000:])
        assert done.returncode == 0, done.stderr[-4000:]
        [build] = json.loads(output.read_text())["builds"]
        assert build["imageName"] == IMAGE_REPOSITORY
        # Not pushed: skaffold deploys the local image by its ID, as a tag of the repository.
        assert build["tag"].startswith(f"{IMAGE_REPOSITORY}:")
        made.append(build["tag"])
        assert f"building {image} on killkrill/debian:bookworm-" in done.stdout + done.stderr
        assert "pushing" not in done.stdout + done.stderr
        for name in made:
            label = subprocess.run(
                [engine.docker(), "image", "inspect", "--format",
                 '{{index .Config.Labels "org.opencontainers.image.title"}}', name],
                env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert label.stdout.strip() == "killkrill", label.stderr
    finally:  # the tags only: the layers are the cached ones of killkrill/killkrill:dev
        subprocess.run(
            [engine.docker(), "image", "rm", *made], env=env, capture_output=True, check=False
        )
