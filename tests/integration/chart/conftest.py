"""Fixtures of the Helm chart's tests, against the real control plane (``kube_env``) with
the helm and skaffold built by ``killkrill dev k8s``.

Cluster-scoped names are shared by every test run of the machine (and by the operator's
tests, which install ``crds/`` with ``kubectl apply --server-side``), so:

* releases are installed with ``crds.install=false``: the Pipeline CRD is there already
  (the ``crds`` fixture applies ``crds/`` as the operator's tests do), and a release that
  templates it would fail on helm's ownership check ("exists and cannot be imported into
  the current release"). One test (``test_crd_lifecycle``) takes the CRD into a release of
  its own with ``--take-ownership``, under a machine-wide lock, and gives it back;
* every release has a name of its own (``kkc-<run>-<n>``: its ClusterRole and binding are
  named after it) and a peering name of its own (``operator.peering.name``: the
  ClusterKopfPeering is cluster-scoped too);
* kopf's peering CRDs in the chart's ``crds/`` are created by helm only when absent, never
  changed: installing over them is always fine.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from killkrill_command import REPO
from kube_cluster import KubeEnv
from run_names import RUN_ID

sys.path.insert(0, str(Path(__file__).parent))

from chart_helpers import Helm

from killkrill.operator.kube import KubeClient, KubeConfig

_releases = itertools.count(1)


@pytest.fixture(scope="session")
def helm(kube_env: KubeEnv, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(kube_env, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def kube(kube_env: KubeEnv) -> Iterator[KubeClient]:
    client = KubeClient(KubeConfig.load(kube_env.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="session")
def crds(kube_env: KubeEnv) -> None:
    """The CRDs of ``crds/`` installed (server-side apply) and established."""
    done = kube_env.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    assert done.returncode == 0, done.stderr
    done = kube_env.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/pipelines.killkrill.io", "crd/kopfpeerings.kopf.dev",
        "crd/clusterkopfpeerings.kopf.dev",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture
def release(helm: Helm, kube_namespace: str, crds: None) -> Iterator[str]:
    """A release name of this test alone, in ``kube_namespace``; uninstalled at the end
    (its cluster-scoped objects with it) if the test left it installed."""
    name = f"kkc-{RUN_ID}-{next(_releases)}"
    yield name
    helm.run("uninstall", name, "-n", kube_namespace, "--ignore-not-found", "--wait")
