"""skaffold.yaml with the skaffold that `killkrill dev k8s` built: `skaffold diagnose` reads
it, `skaffold render --offline` renders the chart with the image skaffold would deploy (the
tag given, nothing built, pulled or pushed), in each profile. skaffold runs from the
repository (it reads skaffold.env there: no update check, no prompts) with a HOME of the
test's, whose global config must not opt in to usage metrics afterwards."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from chart_helpers import Helm, documents, find
from killkrill_command import REPO
from kube_cluster import KubeEnv
from run_names import RUN_ID

TAG = f"skaffold-{RUN_ID}"


@pytest.fixture
def skaffold(helm: Helm, tmp_path: Path) -> Any:
    home = tmp_path / "home"
    home.mkdir()
    env = {**helm.env, "HOME": str(home)}
    for inherited in ("SKAFFOLD_UPDATE_CHECK", "SKAFFOLD_INTERACTIVE", "SKAFFOLD_PROFILE"):
        env.pop(inherited, None)  # skaffold.env must be what sets them

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(helm.kube_env.bin_dir / "skaffold"), *args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        print(f"$ skaffold {' '.join(args)}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        assert done.returncode == 0, done.stderr[-3000:]
        config = home / ".skaffold" / "config"
        assert "collect-metrics: true" not in (config.read_text() if config.exists() else "")
        return done

    return run


@pytest.mark.parametrize("profile", [None, "kind", "registry"])
def test_diagnose(skaffold: Any, kube_env: KubeEnv, profile: str | None) -> None:
    done = skaffold("diagnose", *(["-p", profile] if profile else []))
    out = done.stdout
    assert "Configuration version: skaffold/v4beta13" in out
    assert "Custom artifact: killkrill/killkrill" in out
    assert "- Dependencies: 0 files" not in out and "- Dependencies:" in out
    assert f"chartPath: {REPO / 'charts' / 'killkrill'}" in out
    if profile == "kind":
        assert "image.pullPolicy: Never" in out
    assert "update check" not in done.stderr.lower()


def _operator_image(docs: list[dict[str, Any]]) -> tuple[str, str]:
    deployment = find(docs, "Deployment", "killkrill-operator")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container["image"], container["imagePullPolicy"]


def test_render_offline_puts_the_tag_in_the_charts_objects(skaffold: Any) -> None:
    docs = documents(skaffold("render", "--offline", "--digest-source=tag", "-t", TAG).stdout)
    assert _operator_image(docs) == (f"killkrill/killkrill:{TAG}", "IfNotPresent")
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"):
            assert doc["metadata"]["namespace"] == "killkrill", doc["kind"]
    # skaffold applies crds/ itself (a deploy hook): the chart renders no CRD, and so the
    # example Pipeline, running the image skaffold built.
    assert not [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    pipeline = find(docs, "Pipeline", "example")
    assert pipeline["spec"]["image"] == {
        "repository": "killkrill/killkrill", "tag": TAG, "pullPolicy": "IfNotPresent",
    }  # fmt: skip
    assert pipeline["spec"]["receivers"]["http"]["port"] == 8081  # what portForward names
    assert find(docs, "Service", "killkrill-operator")["spec"]["ports"][0]["port"] == 8081


def test_render_for_kind_and_for_a_registry(skaffold: Any) -> None:
    docs = documents(
        skaffold("render", "--offline", "--digest-source=tag", "-t", TAG, "-p", "kind").stdout
    )
    assert _operator_image(docs) == (f"killkrill/killkrill:{TAG}", "Never")
    assert find(docs, "Pipeline")["spec"]["image"]["pullPolicy"] == "Never"
    docs = documents(
        skaffold(
            "render", "--offline", "--digest-source=tag", "-t", TAG, "-p", "registry",
            "--default-repo", "registry.example.com/team",
        ).stdout
    )  # fmt: skip
    image = f"registry.example.com/team/killkrill_killkrill:{TAG}"
    assert _operator_image(docs) == (image, "IfNotPresent")
    assert find(docs, "Pipeline")["spec"]["image"]["repository"] == image.rsplit(":", 1)[0]
