"""What the kind node image is made of, as data and pure functions (no I/O).

``killkrill dev kind image`` (:mod:`killkrill.dev.kind.node_image`) assembles
``killkrill/kind-node:<Kubernetes version>`` from this recipe: no registry is reachable here,
and ``kind build node-image`` always pulls. The recipe's digest, stamped on the image as the
label :data:`RECIPE_LABEL`, decides whether a build is needed.

Where kind's own node files come from: the ``sigs.k8s.io/kind`` module source of the pinned
version (``images/base/files``: entrypoint, systemd units, containerd config, kubelet
drop-ins, ``mount-product-files.sh``...), read at build time, never copied into this
repository. What this recipe changes in them, and why:

* containerd's ``restrict_oom_score_adj = true``: this sandbox withholds ``CAP_SYS_RESOURCE``,
  so runc cannot lower a pod's OOM score; without it every pod sandbox fails with ``can't get
  final child's PID from pipe: EOF``;
* containerd's sandbox image is the ``pause`` tag kubeadm names (kind v0.33.0 says 3.10,
  kubeadm 1.34 uses 3.10.1), and it is preloaded;
* no kindnetd (its image cannot be pulled): a static ``ptp`` + ``host-local`` + ``portmap``
  CNI config, one node, the cluster created with ``networking.disableDefaultCNI: true``;
* CoreDNS without ``forward`` and ``loop``: nothing leaves the cluster, and kubeadm's
  ``addon/coredns`` phase runs after the Corefile is in place (:func:`corefile`);
* pods reach pods, Services and the node's own docker network, nothing beyond
  (:func:`pod_egress_script`): a connection to a Service IP that kube-proxy has not
  programmed yet would otherwise follow the node's default route out of the machine (seen:
  the storage provisioner's first call to 10.96.0.1, answered by something outside);
* kind's default storage (local-path-provisioner, the ``standard`` StorageClass: volumes
  any user may write) with images made here (:func:`kind_storage_manifest`): without it
  kind falls back to ``kubernetes.io/host-path``, whose root-owned directories a non-root
  pod cannot write.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from killkrill.dev.base_image import BaseRecipe
from killkrill.dev.k8s.versions import (
    CNI_PLUGINS,
    KIND_VERSION,
    KUBERNETES_VERSION,
    LOCAL_PATH_PROVISIONER_VERSION,
)

__all__ = [
    "CNI_CONFLIST_PATH",
    "NODE_IMAGE_REPOSITORY",
    "POD_SUBNET",
    "RECIPE_LABEL",
    "STORAGE_HELPER_IMAGE",
    "STORAGE_PROVISIONER_IMAGE",
    "ImageSpec",
    "NodeRecipe",
    "cni_conflist",
    "containerd_config",
    "corefile",
    "cri_base_spec",
    "image_key",
    "image_specs",
    "kind_cluster_config",
    "kind_file_mode",
    "kind_storage_manifest",
    "node_image_tag",
    "pod_egress_script",
]

NODE_IMAGE_REPOSITORY = "killkrill/kind-node"
RECIPE_LABEL = "io.killkrill.kind-node.recipe"
"""The label holding the digest of the recipe an image was built from."""
POD_SUBNET = "10.244.0.0/16"
"""kind's default pod subnet; the first (only) node gets its first /24."""
SERVICE_SUBNET = "10.96.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
CNI_CONFLIST_PATH = "/etc/cni/net.d/10-killkrill.conflist"
STORAGE_MANIFEST_PATH = "/kind/manifests/default-storage.yaml"
"""Where kind's ``create cluster`` looks for the storage manifest it applies."""
STORAGE_PROVISIONER_IMAGE = (
    f"docker.io/killkrill/local-path-provisioner:{LOCAL_PATH_PROVISIONER_VERSION}"
)
STORAGE_HELPER_IMAGE = f"docker.io/killkrill/local-path-helper:{LOCAL_PATH_PROVISIONER_VERSION}"
"""The helper pod runs ``sh`` to make (``mkdir -m 0777``) and remove volume directories."""

NODE_PACKAGES = (
    # kind v0.33.0's base image packages (images/base/Dockerfile), less what needs a network
    # or storage backend a test never uses (nfs-common, open-iscsi, fuse-overlayfs)...
    "systemd",
    "systemd-sysv",
    "dbus",
    "conntrack",
    "iptables",
    "nftables",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "libseccomp2",
    "pigz",
    "e2fsprogs",
    "bash",
    "ca-certificates",
    "curl",
    "jq",
    "procps",
    # ...plus runc (kind builds its own; Debian 12's 1.1.5 runs the pods) and socat
    # (`kubectl port-forward` needs it on the node).
    "runc",
    "socat",
)

KIND_POST_INSTALL = """\
set -eu
# kind v0.33.0's images/base/Dockerfile, after its package installation: no services but
# its own, no kernel messages in the journal, systemd as init.
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/*
rm -f /etc/systemd/system/*.wants/*
rm -f /lib/systemd/system/local-fs.target.wants/*
rm -f /lib/systemd/system/sockets.target.wants/*udev*
rm -f /lib/systemd/system/sockets.target.wants/*initctl*
rm -f /lib/systemd/system/basic.target.wants/*
echo ReadKMsg=no >> /etc/systemd/journald.conf
test -e /sbin/init || ln -s /usr/lib/systemd/systemd /sbin/init
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl enable killkrill-pod-egress.service  # killkrill's: pods stay on this machine
systemctl mask systemd-binfmt.service
mkdir -p /etc/kubernetes/manifests /opt/cni/bin /etc/cni/net.d
"""

POD_EGRESS_SCRIPT_PATH = "/kind/bin/killkrill-pod-egress.sh"
POD_EGRESS_UNIT_PATH = "/etc/systemd/system/killkrill-pod-egress.service"
POD_EGRESS_UNIT = f"""\
[Unit]
Description=killkrill: pods reach pods, Services and this node's network, nothing beyond
Before=containerd.service kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={POD_EGRESS_SCRIPT_PATH}

[Install]
WantedBy=multi-user.target
"""


def pod_egress_script(pod_subnet: str = POD_SUBNET) -> str:
    """The node's guard against pod traffic leaving the machine (pure): what pods forward
    through the node must go to the pod subnet or to the node's own (docker) network;
    everything else is rejected. Service IPs are translated before this check (PREROUTING),
    so Services work; the API server is the node itself (INPUT), unaffected. Runs with the
    iptables mode kind's entrypoint selected, before containerd and the kubelet start."""
    return f"""\
#!/bin/sh
# Written by killkrill's kind node recipe (killkrill/dev/kind/recipe.py).
set -eu
node_net=$(ip -4 route show dev eth0 proto kernel scope link | awk 'NR == 1 {{print $1}}')
test -n "$node_net"
chain=KILLKRILL-POD-EGRESS
iptables -w -N "$chain" 2>/dev/null || iptables -w -F "$chain"
iptables -w -A "$chain" -d {pod_subnet} -j RETURN
iptables -w -A "$chain" -d "$node_net" -j RETURN
iptables -w -A "$chain" -j REJECT --reject-with icmp-net-prohibited
iptables -w -C FORWARD -s {pod_subnet} -j "$chain" 2>/dev/null \\
  || iptables -w -I FORWARD 1 -s {pod_subnet} -j "$chain"
"""


KUBE_PROXY_PACKAGES = ("iptables", "conntrack")
"""kube-proxy runs ``iptables-restore`` and ``conntrack``: its image is a Debian rootfs."""

KUBE_PROXY_LAUNCHER = """\
#!/bin/sh
# killkrill's kind node image: kube-proxy writes its rules with the iptables mode the node
# uses (what kind's entrypoint and the upstream image's iptables-wrapper detect the same way).
legacy=$( (iptables-legacy-save; ip6tables-legacy-save) 2>/dev/null | grep -c '^-')
nft=$( (timeout 5 sh -c 'iptables-nft-save; ip6tables-nft-save') 2>/dev/null | grep -c '^-')
mode=nft
if [ "${legacy:-0}" -gt "${nft:-0}" ]; then mode=legacy; fi
update-alternatives --set iptables "/usr/sbin/iptables-$mode" >/dev/null
update-alternatives --set ip6tables "/usr/sbin/ip6tables-$mode" >/dev/null
exec /usr/local/bin/kube-proxy.bin "$@"
"""

PAUSE_CFLAGS = ("-Os", "-Wall", "-Werror", "-static")
"""k8s.io/kubernetes build/pause/Makefile's, with ``-DVERSION=v<tag>`` added."""


@dataclass(frozen=True)
class ImageSpec:
    """How one preloaded image is made: a directory with one static binary, imported
    (``tar | docker import``); ``debian`` ones start from a Debian rootfs (kube-proxy's)."""

    binary: str | None
    """The built binary (a name of :data:`~killkrill.dev.k8s.versions.BINARIES`), ``pause``
    (compiled here), or None (the Debian rootfs alone)."""
    path: str = ""
    """Where the binary goes in the image."""
    entrypoint: tuple[str, ...] = ()
    debian: bool = False


def image_specs() -> dict[str, ImageSpec]:
    """By the last path element of the image name kubeadm prints (``registry.k8s.io/
    coredns/coredns:v1.12.1`` is ``coredns``). Commands are the ones kubeadm's manifests
    run: ``kube-apiserver`` and the like are looked up on PATH; CoreDNS's Deployment and the
    sandbox give only arguments."""
    return {
        "kube-apiserver": ImageSpec("kube-apiserver", "/usr/local/bin/kube-apiserver"),
        "kube-controller-manager": ImageSpec(
            "kube-controller-manager", "/usr/local/bin/kube-controller-manager"
        ),
        "kube-scheduler": ImageSpec("kube-scheduler", "/usr/local/bin/kube-scheduler"),
        "kube-proxy": ImageSpec("kube-proxy", "/usr/local/bin/kube-proxy.bin", debian=True),
        "etcd": ImageSpec("etcd", "/usr/local/bin/etcd"),
        "coredns": ImageSpec("coredns", "/coredns", ("/coredns",)),
        "pause": ImageSpec("pause", "/pause", ("/pause",)),
        "local-path-provisioner": ImageSpec(
            "local-path-provisioner", "/usr/local/bin/local-path-provisioner"
        ),
        "local-path-helper": ImageSpec(None, debian=True),
    }


def kind_storage_manifest(go_source: str, provisioner: str, helper: str) -> str:
    """kind's default storage manifest, from the Go source that holds it (kind's
    ``pkg/build/nodeimage/const_storage.go``), with our images (pure). Raises ValueError
    when the source no longer has the shape of kind v0.33.0's."""
    start = go_source.find("const defaultStorageManifest = `")
    if start < 0 or not go_source.rstrip().endswith("`"):
        raise ValueError("kind's const_storage.go holds no defaultStorageManifest")
    body = go_source[start:].split("`", 1)[1].rstrip()[:-1]
    for name, image in (
        ("storageProvisionerImage", provisioner),
        ("storageHelperImage", helper),
    ):
        if f"` + {name} + `" not in body:
            raise ValueError(f"kind's storage manifest no longer names {name}")
        body = body.replace(f"` + {name} + `", image)
    if "`" in body:
        raise ValueError("kind's storage manifest names more than the two images")
    return body


def image_key(image: str) -> str:
    """``registry.k8s.io/coredns/coredns:v1.12.1`` -> ``coredns`` (pure)."""
    return image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]


def kind_file_mode(rel: str) -> int:
    """The mode kind's base Dockerfile gives one of its node files (``rel``: its path under
    ``images/base/files``, the same in the node): scripts 0755, everything else 0644."""
    return 0o755 if rel.startswith(("usr/local/bin/", "kind/bin/")) else 0o644


def containerd_config(kind_config: str, pause_image: str) -> str:
    """kind's ``/etc/containerd/config.toml`` with the changes this sandbox needs (pure).
    Raises ValueError when a setting to change is not where kind v0.33.0 has it."""
    changes = (
        ("restrict_oom_score_adj = false", "restrict_oom_score_adj = true"),
        ('sandbox_image = "registry.k8s.io/pause:3.10"', f'sandbox_image = "{pause_image}"'),
    )
    text = kind_config
    for old, new in changes:
        if text.count(old) != 1:
            raise ValueError(f"kind's containerd config has no single line {old!r}")
        text = text.replace(old, new)
    return text


def cri_base_spec(spec: dict[str, object]) -> dict[str, object]:
    """``/etc/containerd/cri-base.json`` from ``ctr oci spec``'s output (pure), as kind's
    Dockerfile makes it: ``mount-product-files.sh`` as a createContainer hook, no rlimits."""
    result = json.loads(json.dumps(spec))
    hooks = result.setdefault("hooks", {})
    hooks.setdefault("createContainer", []).append({"path": "/kind/bin/mount-product-files.sh"})
    process = result.get("process")
    if isinstance(process, dict):
        process.pop("rlimits", None)
    return dict(result)


def cni_conflist(pod_subnet: str = POD_SUBNET) -> str:
    """A static CNI config for one node (pure): ``ptp`` veths, addresses from the node's
    /24 of the pod subnet, masquerade out of it (as kindnetd does), host ports."""
    network, _, _ = pod_subnet.partition("/")
    node_subnet = f"{network}/24"
    conf = {
        "cniVersion": "1.0.0",
        "name": "killkrill",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": True,
                "mtu": 1500,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node_subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def corefile(domain: str = CLUSTER_DOMAIN) -> str:
    """kubeadm 1.34's Corefile without ``forward`` (no name outside the cluster is
    resolved: nothing is sent out) and without ``loop`` (which only guards forwarding)."""
    return f"""\
.:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    cache 30 {{
       disable success {domain}
       disable denial {domain}
    }}
    reload
    loadbalance
}}
"""


def kind_cluster_config(name: str, image: str) -> str:
    """The ``kind create cluster --config`` document (pure; JSON is YAML): one control-plane
    node from our image, the API server on a free port of 127.0.0.1, no default CNI,
    kubeadm's CoreDNS phase skipped (it runs once the Corefile is in place) and kind's own
    preflight skip kept (a patch replaces the whole list)."""
    doc = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": name,
        "networking": {
            "apiServerAddress": "127.0.0.1",
            "apiServerPort": 0,
            "disableDefaultCNI": True,
            "podSubnet": POD_SUBNET,
            "serviceSubnet": SERVICE_SUBNET,
        },
        "nodes": [{"role": "control-plane", "image": image}],
        "kubeadmConfigPatches": [
            "kind: InitConfiguration\nskipPhases:\n  - preflight\n  - addon/coredns\n"
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def node_image_tag(version: str = KUBERNETES_VERSION) -> str:
    return f"{NODE_IMAGE_REPOSITORY}:{version}"


@dataclass(frozen=True)
class NodeRecipe:
    """Everything the node image is made of that this repository states. Its digest adds
    what is read at build time: kind's node files, pause.c, the binaries' build recipes and
    the source of the build code (:func:`NodeRecipe.digest`)."""

    kubernetes_version: str = KUBERNETES_VERSION
    kind_version: str = KIND_VERSION
    debian: BaseRecipe = field(
        default_factory=lambda: BaseRecipe(
            runtime_packages=NODE_PACKAGES,
            build_packages=KUBE_PROXY_PACKAGES,
            import_changes=(
                "ENV container=docker",
                'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
            ),
            repository=NODE_IMAGE_REPOSITORY,
        )
    )
    """The node's Debian (``runtime_packages``) and kube-proxy's (``build_packages``)."""
    post_install: str = KIND_POST_INSTALL
    kube_proxy_launcher: str = KUBE_PROXY_LAUNCHER
    cni_plugins: tuple[str, ...] = tuple(CNI_PLUGINS)
    cni_conflist: str = field(default_factory=cni_conflist)
    pod_egress_script: str = field(default_factory=pod_egress_script)
    pod_egress_unit: str = POD_EGRESS_UNIT
    storage_images: tuple[str, str] = (STORAGE_PROVISIONER_IMAGE, STORAGE_HELPER_IMAGE)
    pause_cflags: tuple[str, ...] = PAUSE_CFLAGS
    images: tuple[tuple[str, ImageSpec], ...] = field(
        default_factory=lambda: tuple(sorted(image_specs().items()))
    )
    stop_signal: str = "SIGRTMIN+3"
    """systemd exits on SIGRTMIN+3 (SIGTERM makes it re-execute)."""

    @property
    def tag(self) -> str:
        return node_image_tag(self.kubernetes_version)

    def digest(self, *build_inputs: str) -> str:
        """16 hex digits of the SHA-256 of the recipe and ``build_inputs`` (texts read at
        build time), pure."""
        data = asdict(self)
        data["debian"] = self.debian.digest()
        text = json.dumps([data, list(build_inputs)], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
