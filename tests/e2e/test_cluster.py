"""The kind cluster itself, and the KillKrill image running in it: the node is Ready,
CoreDNS runs (and resolves nothing outside the cluster), the image runs as a restricted pod
(not root, read-only root file system), answers through ``kubectl port-forward`` on
127.0.0.1, a pod reaches another through a Service by its cluster DNS name, and a volume of
the default StorageClass is writable by a non-root pod."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from kind_cluster import KindEnv, restricted_security_context

from killkrill import __version__
from killkrill.dev.k8s.versions import KUBERNETES_VERSION

_SERVE_PORT = 8080
_SERVER = (
    # The image's own Python serves a fixed answer: no file is written, nothing else is needed.
    "import http.server, socket\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = ('killkrill pod ' + socket.gethostname()).encode()\n"
    "        self.send_response(200); self.send_header('content-length', str(len(body)))\n"
    "        self.end_headers(); self.wfile.write(body)\n"
    f"http.server.HTTPServer(('0.0.0.0', {_SERVE_PORT}), H).serve_forever()\n"
)


def _container(image: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "securityContext": restricted_security_context(),
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        **extra,
    }


def _pod(name: str, *containers: dict[str, Any], restart: str = "Never") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"kk-e2e": name}},
        "spec": {
            "restartPolicy": restart,
            "automountServiceAccountToken": False,
            "containers": list(containers),
        },
    }


def _server(kind_env: KindEnv, namespace: str, image: str) -> None:
    """A pod serving HTTP from the KillKrill image, and a Service ``web`` in front of it."""
    pod = _pod(
        "web",
        _container(
            image,
            "web",
            command=["python3", "-c", _SERVER],
            ports=[{"containerPort": _SERVE_PORT, "name": "http"}],
            readinessProbe={"tcpSocket": {"port": _SERVE_PORT}, "periodSeconds": 1},
        ),
        restart="Always",
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"kk-e2e": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    kind_env.apply(namespace, pod, service)
    kind_env.wait(namespace, "pod/web", "condition=Ready")


def test_the_node_is_ready_and_runs_the_pinned_kubernetes(kind_env: KindEnv) -> None:
    (node,) = kind_env.get("nodes")["items"]
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == KUBERNETES_VERSION
    assert info["containerRuntimeVersion"].startswith("containerd://")
    server = kind_env.kubectl("version", "-o", "json").stdout
    assert json.loads(server)["serverVersion"]["gitVersion"] == KUBERNETES_VERSION


def test_coredns_runs_with_a_corefile_that_forwards_nothing(kind_env: KindEnv) -> None:
    pods = kind_env.get("pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]
    assert pods, "no CoreDNS pod"
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert all(c["ready"] for c in pod["status"]["containerStatuses"])
    corefile = kind_env.get("configmap", "-n", "kube-system", "coredns")["data"]["Corefile"]
    assert "kubernetes cluster.local" in corefile
    assert "forward" not in corefile


def test_the_image_runs_as_a_restricted_pod_to_completion(
    kind_env: KindEnv, kind_image: str, kind_namespace: str
) -> None:
    script = (
        "import os, pathlib, sys\n"
        "print('uid', os.getuid())\n"
        "try:\n"
        "    pathlib.Path('/opt/killkrill/x').write_text('x')\n"
        "except OSError as exc:\n"
        "    print('read-only', exc.errno)\n"
    )
    kind_env.apply(
        kind_namespace,
        _pod("version", _container(kind_image, "version", args=["--version"])),
        _pod("probe", _container(kind_image, "probe", command=["python3", "-c", script])),
    )
    for name in ("version", "probe"):
        kind_env.wait(kind_namespace, f"pod/{name}", "jsonpath={.status.phase}=Succeeded")
    version = kind_env.kubectl("logs", "-n", kind_namespace, "pod/version").stdout
    assert __version__ in version
    probe = kind_env.kubectl("logs", "-n", kind_namespace, "pod/probe").stdout.split("\n")
    assert "uid 10001" in probe
    assert "read-only 30" in probe  # EROFS


def test_a_pod_of_the_image_answers_through_port_forward(
    kind_env: KindEnv, kind_image: str, kind_namespace: str
) -> None:
    _server(kind_env, kind_namespace, kind_image)
    with kind_env.port_forward(kind_namespace, "service/web", 80) as port:
        answer = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
        with answer:
            assert answer.status == 200
            assert answer.read() == b"killkrill pod web"


def test_a_pod_reaches_a_service_by_its_cluster_dns_name(
    kind_env: KindEnv, kind_image: str, kind_namespace: str
) -> None:
    _server(kind_env, kind_namespace, kind_image)
    client = (
        "import socket, time, urllib.request\n"
        f"name = 'web.{kind_namespace}.svc.cluster.local'\n"
        "print('resolved', socket.gethostbyname(name))\n"
        "def get(url):\n"
        "    # kube-proxy programs a new Service's endpoints within moments; until then the\n"
        "    # Service refuses connections\n"
        "    for _ in range(60):\n"
        "        try:\n"
        "            return urllib.request.urlopen(url, timeout=10).read().decode()\n"
        "        except OSError:\n"
        "            time.sleep(0.5)\n"
        "    return urllib.request.urlopen(url, timeout=10).read().decode()\n"
        "print(get('http://' + name + '/'))\n"
        "print(get('http://web/'))\n"
    )
    kind_env.apply(
        kind_namespace,
        _pod("client", _container(kind_image, "client", command=["python3", "-c", client])),
    )
    kind_env.wait(kind_namespace, "pod/client", "jsonpath={.status.phase}=Succeeded")
    lines = kind_env.kubectl("logs", "-n", kind_namespace, "pod/client").stdout.splitlines()
    service_ip = kind_env.get("service", "-n", kind_namespace, "web")["spec"]["clusterIP"]
    assert lines == [f"resolved {service_ip}", "killkrill pod web", "killkrill pod web"]


def test_names_outside_the_cluster_are_not_resolved(
    kind_env: KindEnv, kind_image: str, kind_namespace: str
) -> None:
    client = (
        "import socket\n"
        "try:\n"
        "    print('resolved', socket.gethostbyname('registry.k8s.io'))\n"
        "except OSError as exc:\n"
        "    print('unresolved', type(exc).__name__)\n"
    )
    kind_env.apply(
        kind_namespace,
        _pod("outside", _container(kind_image, "outside", command=["python3", "-c", client])),
    )
    kind_env.wait(kind_namespace, "pod/outside", "jsonpath={.status.phase}=Succeeded")
    logs = kind_env.kubectl("logs", "-n", kind_namespace, "pod/outside").stdout
    assert logs.startswith("unresolved")


def test_a_volume_of_the_default_storage_class_is_writable_by_a_restricted_pod(
    kind_env: KindEnv, kind_image: str, kind_namespace: str
) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}},
    }
    script = (
        "import os, pathlib\n"
        "path = pathlib.Path('/data/written')\n"
        "path.write_text(str(os.getuid()))\n"
        "print('wrote', path.read_text())\n"
    )
    writer = _pod(
        "writer",
        _container(
            kind_image,
            "writer",
            command=["python3", "-c", script],
            volumeMounts=[{"name": "data", "mountPath": "/data"}],
        ),
    )
    writer["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    kind_env.apply(kind_namespace, claim, writer)
    kind_env.wait(kind_namespace, "pod/writer", "jsonpath={.status.phase}=Succeeded")
    logs = kind_env.kubectl("logs", "-n", kind_namespace, "pod/writer").stdout
    assert logs.strip() == "wrote 10001"
    bound = kind_env.get("pvc", "-n", kind_namespace, "data")
    assert bound["status"]["phase"] == "Bound"
    assert bound["spec"]["storageClassName"] == "standard"


def test_pods_reach_nothing_beyond_the_cluster_and_the_nodes_network(kind_env: KindEnv) -> None:
    """Checked in the node (a probe from a pod would send a packet out were the guard
    missing): what pods forward goes to the pod subnet or the node's network, or is
    rejected. Only kube-proxy's chains come first (it prepends them), and they accept no new
    connection of a pod's to an address outside."""
    routes = kind_env.node_exec("ip", "-4", "route", "show", "dev", "eth0", "scope", "link")
    node_net = routes.stdout.split()[0]
    forward = kind_env.node_exec("iptables", "-S", "FORWARD").stdout.splitlines()
    guard = forward.index("-A FORWARD -s 10.244.0.0/16 -j KILLKRILL-POD-EGRESS")
    assert all(" -j KUBE-" in rule for rule in forward[1:guard])
    chain = kind_env.node_exec("iptables", "-S", "KILLKRILL-POD-EGRESS").stdout.splitlines()
    assert chain[1:] == [
        "-A KILLKRILL-POD-EGRESS -d 10.244.0.0/16 -j RETURN",
        f"-A KILLKRILL-POD-EGRESS -d {node_net} -j RETURN",
        "-A KILLKRILL-POD-EGRESS -j REJECT --reject-with icmp-net-prohibited",
    ]
