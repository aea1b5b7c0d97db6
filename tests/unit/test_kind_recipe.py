"""The kind node image recipe and the kind cluster's pure parts: kind's containerd config as
this sandbox needs it, the CRI base spec, the static CNI config, the Corefile, the cluster
config, the image specs, the recipe digest, the docker shim, and the node binaries' pins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from killkrill.cli.main import cli
from killkrill.dev.k8s import gobuild
from killkrill.dev.k8s.versions import (
    BINARIES,
    CNI_PLUGINS,
    KIND_NODE_BINARIES,
    NODE_TOOLS,
    UP_TOOLS,
)
from killkrill.dev.kind.cluster import DOCKER_SHIM, KindCluster
from killkrill.dev.kind.recipe import (
    NodeRecipe,
    cni_conflist,
    containerd_config,
    corefile,
    cri_base_spec,
    image_key,
    image_specs,
    kind_cluster_config,
    kind_file_mode,
    kind_storage_manifest,
    node_image_tag,
    pod_egress_script,
)

KIND_CONTAINERD = """\
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  tolerate_missing_hugepages_controller = true
  restrict_oom_score_adj = false
"""

KUBEADM_1_34_IMAGES = [
    "registry.k8s.io/kube-apiserver:v1.34.4",
    "registry.k8s.io/kube-controller-manager:v1.34.4",
    "registry.k8s.io/kube-scheduler:v1.34.4",
    "registry.k8s.io/kube-proxy:v1.34.4",
    "registry.k8s.io/coredns/coredns:v1.12.1",
    "registry.k8s.io/pause:3.10.1",
    "registry.k8s.io/etcd:3.6.5-0",
]
"""What `kubeadm config images list --kubernetes-version v1.34.4` prints."""


# --- containerd, CRI spec, CNI, CoreDNS ---------------------------------------------------------


def test_containerd_config_restricts_oom_score_adj_and_names_kubeadms_pause() -> None:
    config = containerd_config(KIND_CONTAINERD, "registry.k8s.io/pause:3.10.1")
    assert "restrict_oom_score_adj = true" in config
    assert 'sandbox_image = "registry.k8s.io/pause:3.10.1"' in config
    assert "restrict_oom_score_adj = false" not in config
    assert 'snapshotter = "overlayfs"' in config  # kind's entrypoint seds this line


@pytest.mark.parametrize(
    "missing", ["restrict_oom_score_adj = false", 'sandbox_image = "registry.k8s.io/pause:3.10"']
)
def test_containerd_config_refuses_a_kind_config_that_moved_on(missing: str) -> None:
    with pytest.raises(ValueError, match="no single line"):
        containerd_config(KIND_CONTAINERD.replace(missing, ""), "pause:x")


def test_cri_base_spec_adds_kinds_hook_and_drops_rlimits_without_touching_the_input() -> None:
    spec = {"ociVersion": "1.3.0", "process": {"cwd": "/", "rlimits": [{"type": "x"}]}}
    result = cri_base_spec(spec)
    assert result["hooks"] == {"createContainer": [{"path": "/kind/bin/mount-product-files.sh"}]}
    assert result["process"] == {"cwd": "/"}
    assert spec["process"] == {"cwd": "/", "rlimits": [{"type": "x"}]}
    with_hooks = cri_base_spec({"hooks": {"createContainer": [{"path": "/a"}]}})
    assert [h["path"] for h in with_hooks["hooks"]["createContainer"]] == [  # type: ignore[index]
        "/a",
        "/kind/bin/mount-product-files.sh",
    ]


def test_cni_conflist_gives_the_node_the_first_24_of_the_pod_subnet() -> None:
    conf = json.loads(cni_conflist("10.244.0.0/16"))
    ptp, portmap = conf["plugins"]
    assert ptp["type"] == "ptp" and ptp["ipMasq"] is True
    assert ptp["ipam"]["type"] == "host-local"
    assert ptp["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24"}]]
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}}
    assert {p["type"] for p in conf["plugins"]} | {"host-local"} <= set(CNI_PLUGINS)


def test_corefile_serves_the_cluster_and_forwards_nothing() -> None:
    text = corefile("cluster.local")
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in text
    assert "forward" not in text
    assert "loop" not in text
    assert text.count("{") == text.count("}")


# --- the cluster config -------------------------------------------------------------------------


def test_kind_cluster_config_one_node_loopback_api_no_cni_coredns_phase_skipped() -> None:
    doc = yaml.safe_load(kind_cluster_config("kk", "killkrill/kind-node:v1.34.4"))
    assert doc["kind"] == "Cluster" and doc["name"] == "kk"
    assert doc["networking"]["apiServerAddress"] == "127.0.0.1"
    assert doc["networking"]["disableDefaultCNI"] is True
    assert doc["nodes"] == [{"role": "control-plane", "image": "killkrill/kind-node:v1.34.4"}]
    (patch,) = [yaml.safe_load(p) for p in doc["kubeadmConfigPatches"]]
    assert patch == {"kind": "InitConfiguration", "skipPhases": ["preflight", "addon/coredns"]}


STORAGE_GO = """package nodeimage

const storageProvisionerImage = "docker.io/kindest/local-path-provisioner:v1"
const storageHelperImage = "docker.io/kindest/local-path-helper:v1"

const defaultStorageManifest = `
kind: Deployment
spec:
  containers:
    - image: ` + storageProvisionerImage + `
      command: [--helper-image, ` + storageHelperImage + `]
---
helperPod.yaml: |-
  image: ` + storageHelperImage + `
`
"""


def test_kind_storage_manifest_names_our_images() -> None:
    text = kind_storage_manifest(STORAGE_GO, "kk/provisioner:1", "kk/helper:1")
    assert text.startswith("\nkind: Deployment")
    assert "- image: kk/provisioner:1\n" in text
    assert "command: [--helper-image, kk/helper:1]" in text
    assert "  image: kk/helper:1\n" in text
    assert "kindest" not in text and "`" not in text
    assert len(list(yaml.safe_load_all(text))) == 2


@pytest.mark.parametrize(
    "source",
    [
        "package nodeimage\n",
        STORAGE_GO.replace("` + storageHelperImage + `", "x"),
        STORAGE_GO.replace("command:", "` + somethingElse + `"),
    ],
)
def test_kind_storage_manifest_refuses_another_shape(source: str) -> None:
    with pytest.raises(ValueError, match="kind's"):
        kind_storage_manifest(source, "a", "b")


# --- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "key"),
    [
        ("registry.k8s.io/kube-apiserver:v1.34.4", "kube-apiserver"),
        ("registry.k8s.io/coredns/coredns:v1.12.1", "coredns"),
        ("registry.k8s.io/etcd:3.6.5-0", "etcd"),
        ("localhost:5000/pause@sha256:abc", "pause"),
        ("pause", "pause"),
    ],
)
def test_image_key(image: str, key: str) -> None:
    assert image_key(image) == key


def test_every_image_the_node_preloads_has_a_recipe_from_a_built_binary() -> None:
    specs = image_specs()
    wanted = [*KUBEADM_1_34_IMAGES, *NodeRecipe().storage_images]
    assert {image_key(i) for i in wanted} == set(specs)
    for name, spec in specs.items():
        if spec.binary is None:  # the Debian base alone (the storage helper runs sh)
            assert spec.debian, name
            continue
        assert spec.binary == "pause" or spec.binary in KIND_NODE_BINARIES, name
        assert spec.path.startswith("/")
    assert specs["kube-proxy"].debian  # iptables-restore and conntrack inside
    assert specs["coredns"].entrypoint == ("/coredns",)  # kubeadm's Deployment gives args only


@pytest.mark.parametrize(
    ("rel", "mode"),
    [
        ("usr/local/bin/entrypoint", 0o755),
        ("kind/bin/mount-product-files.sh", 0o755),
        ("kind/README.txt", 0o644),
        ("etc/containerd/config.toml", 0o644),
        ("etc/systemd/system/kubelet.service.d/10-kubeadm.conf", 0o644),
        ("LICENSES/README.txt", 0o644),
    ],
)
def test_kind_file_mode_as_kinds_dockerfile(rel: str, mode: int) -> None:
    assert kind_file_mode(rel) == mode


# --- the recipe digest --------------------------------------------------------------------------


def test_recipe_digest_is_stable_and_follows_recipe_and_build_inputs() -> None:
    recipe = NodeRecipe()
    assert recipe.digest("a", "b") == NodeRecipe().digest("a", "b")
    assert len(recipe.digest()) == 16
    assert recipe.digest("a", "b") != recipe.digest("a", "c")
    assert recipe.digest() != NodeRecipe(stop_signal="SIGTERM").digest()
    assert recipe.digest() != NodeRecipe(cni_conflist=cni_conflist("10.9.0.0/16")).digest()
    assert recipe.tag == node_image_tag() == "killkrill/kind-node:v1.34.4"


# --- node binaries ------------------------------------------------------------------------------


def test_node_binaries_are_pinned_and_the_node_only_ones_stay_off_the_path() -> None:
    assert set(KIND_NODE_BINARIES) <= set(BINARIES)
    on_path = {*UP_TOOLS, *NODE_TOOLS, "kind", "skaffold", "etcdctl"}
    for name in KIND_NODE_BINARIES:
        relative = BINARIES[name].relative_path
        if name in on_path:
            assert relative == name
        else:  # e.g. containerd: dockerd would start the one first on PATH
            assert relative.startswith("node/"), name
    assert gobuild.binary_path("cni-ptp") == gobuild.bin_dir() / "node/cni/ptp"


def test_build_recipes_of_the_first_binaries_did_not_change() -> None:
    """Binaries built before node binaries existed keep a valid stamp (no 17-minute rebuild)."""
    kubectl = json.loads(gobuild.recipe_of("kubectl"))
    assert set(kubectl) == {
        "module", "pin_local_replaces", "inherit_replaces", "package", "wrapper", "version_vars",
    }  # fmt: skip
    containerd = json.loads(gobuild.recipe_of("containerd"))
    assert containerd["tags"] == ["no_aufs", "no_zfs", "no_btrfs", "no_devmapper"]
    assert containerd["install_as"] == "node/containerd"


# --- the docker shim kind runs ------------------------------------------------------------------


def test_docker_shim_points_lib_modules_at_the_projects_dir_and_passes_the_rest(
    tmp_path: Path,
) -> None:
    shim = tmp_path / "docker"
    shim.write_text(DOCKER_SHIM)
    shim.chmod(0o755)
    echo = tmp_path / "real-docker"
    echo.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    echo.chmod(0o755)
    argv = ["run", "--volume", "/var", "--volume", "/lib/modules:/lib/modules:ro",
            "--name", "a b", "-e", "X=$HOME", "img"]  # fmt: skip
    env = {**os.environ, "KILLKRILL_KIND_DOCKER": str(echo), "KILLKRILL_KIND_MODULES": "/e m"}
    done = subprocess.run([str(shim), *argv], env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [
        "run", "--volume", "/var", "--volume", "/e m:/lib/modules:ro",
        "--name", "a b", "-e", "X=$HOME", "img",
    ]  # fmt: skip


def test_the_cluster_keeps_its_kubeconfig_in_the_dev_state_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = Path(tempfile.mkdtemp(prefix="kk-kind-unit-", dir="/tmp"))  # others may enter /tmp
    monkeypatch.setenv("KILLKRILL_DEV_HOME", str(home))
    cluster = KindCluster("kk-unit")
    assert cluster.kubeconfig == home / "kind" / "kk-unit" / "kubeconfig"
    assert cluster.node == "kk-unit-control-plane"
    result = CliRunner().invoke(cli, ["dev", "kind", "env", "--name", "kk-unit"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"export KUBECONFIG={cluster.kubeconfig}"
    assert lines[1].startswith(f"export PATH={gobuild.bin_dir()}:")
    shutil.rmtree(home)


def test_pod_egress_script_is_valid_sh_and_guards_the_pod_subnet(tmp_path: Path) -> None:
    script = tmp_path / "egress.sh"
    script.write_text(pod_egress_script("10.9.0.0/16"))
    subprocess.run(["sh", "-n", str(script)], check=True)
    text = script.read_text()
    assert "-I FORWARD 1 -s 10.9.0.0/16 -j" in text
    assert "-d 10.9.0.0/16 -j RETURN" in text
    assert text.rstrip().splitlines()[-2].endswith("\\")  # -C ... || -I: idempotent
    assert "NodeRecipe" not in text
    assert NodeRecipe().pod_egress_script == pod_egress_script()
