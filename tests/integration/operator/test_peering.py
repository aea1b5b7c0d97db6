"""Two operator processes of one peering: one acts, the other stands by, and takes over
when the first stops. Also: the operator says plainly when no cluster is reachable."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from killkrill_command import REPO
from kube_cluster import KubeEnv
from operator_helpers import API, start_operator
from polling import wait_for
from run_names import RUN_ID

from killkrill.operator.kube import KubeClient


def test_of_two_peered_operators_one_acts_and_the_other_takes_over(
    kube_env: KubeEnv, crds: None, kube: KubeClient, tmp_path: Path
) -> None:
    ns = f"kk-peer-{RUN_ID}-{uuid.uuid4().hex[:6]}"  # outside the run operator's namespaces
    kube.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        field_manager="test",
    )
    try:
        peering = f"peer-{uuid.uuid4().hex[:6]}"
        kube.request(
            "POST",
            f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings",
            body={"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                  "metadata": {"name": peering}},
        )  # fmt: skip
        args = ("--namespace", ns, "--peering", peering)
        high, _ = start_operator(kube_env, tmp_path / "high.log", *args, "--priority", "200")
        low, _ = start_operator(kube_env, tmp_path / "low.log", *args, "--priority", "100")
        try:
            wait_for(lambda: "Pausing" in low.output() or "pausing" in low.output(), 30,
                     "the lower-priority operator to pause")  # fmt: skip
            kube.apply(
                {"apiVersion": API, "kind": "Pipeline",
                 "metadata": {"name": "peered", "namespace": ns},
                 "spec": {"receivers": {"syslog": {"enabled": False}}}},
                field_manager="test",
            )  # fmt: skip
            wait_for(
                lambda: kube.get("apps/v1", "Deployment", "peered-log-worker", ns), 60,
                "the acting operator to create the objects",
            )  # fmt: skip
            assert "Pausing" not in high.output()  # the higher priority acts
            assert high.stop(40) == 0
            wait_for(lambda: "Resuming" in low.output(), 60, "the standby to resume")
            kube.apply(
                {"apiVersion": API, "kind": "Pipeline",
                 "metadata": {"name": "second", "namespace": ns}, "spec": {}},
                field_manager="test",
            )  # fmt: skip
            wait_for(
                lambda: kube.get("apps/v1", "Deployment", "second-log-worker", ns), 90,
                "the standby operator to take over",
            )  # fmt: skip
        finally:
            for proc in (high, low):
                proc.close()
    finally:
        kube.delete("v1", "Namespace", ns)


def test_without_a_cluster_the_operator_says_so_in_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: x, user: u}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "killkrill", "operator", "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no Kubernetes API server answers at https://127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr
