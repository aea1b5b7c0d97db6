"""The one place the Kubernetes tool chain is pinned: which binary is built from which Go
module, at which version, with which version stamps.

Nothing here is downloaded: :mod:`killkrill.dev.k8s.gobuild` builds these from source through
the Go module proxy. A version bump is a change to this file alone; the cache is keyed by it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BINARIES",
    "CLIENT_TOOLS",
    "CNI_PLUGINS",
    "CNI_PLUGINS_VERSION",
    "CONTAINERD_VERSION",
    "CONTROL_PLANE",
    "COREDNS_VERSION",
    "CRICTL_VERSION",
    "ETCD_VERSION",
    "EXTRA_TOOLS",
    "HELM_VERSION",
    "KIND",
    "KIND_NODE_BINARIES",
    "KIND_VERSION",
    "KUBERNETES",
    "KUBERNETES_VERSION",
    "LOCAL_PATH_PROVISIONER_VERSION",
    "NODE_TOOLS",
    "SKAFFOLD_VERSION",
    "STAGING_VERSION",
    "UP_TOOLS",
    "GoBinary",
    "GoModule",
]

KUBERNETES_VERSION = "v1.34.4"
STAGING_VERSION = "v0.34.4"
"""The k8s.io staging modules (client-go, apiserver, ...) published with KUBERNETES_VERSION."""
ETCD_VERSION = "v3.6.5"  # the version k8s 1.34.4's build/dependencies.yaml names
HELM_VERSION = "v3.22.0"
KIND_VERSION = "v0.33.0"
SKAFFOLD_VERSION = "v2.16.1"
# What a kind node runs besides Kubernetes (kind v0.33.0's base image builds containerd
# v2.3.4 and CNI plugins v1.9.1; its crictl v1.36.0 is not served by the proxy, v1.34.0
# matches Kubernetes 1.34; CoreDNS v1.12.1 is what kubeadm 1.34 deploys).
CONTAINERD_VERSION = "v2.3.4"
CRICTL_VERSION = "v1.34.0"
CNI_PLUGINS_VERSION = "v1.9.1"
COREDNS_VERSION = "v1.12.1"
# kind's default storage (rancher/local-path-provisioner): kind v0.33.0 ships v0.0.34, which
# the proxy does not serve (nor v0.0.31-v0.0.33); v0.0.30 is served and builds.
LOCAL_PATH_PROVISIONER_VERSION = "v0.0.30"


@dataclass(frozen=True)
class GoModule:
    """A Go module to build binaries from, at one version."""

    path: str
    version: str
    pin_local_replaces: str | None = None
    """Version to require for every module the module's own go.mod requires *and* replaces
    with a local directory (``./staging/...``): such replaces are ignored in a dependency,
    and the module zip lacks the directories anyway (k8s.io/kubernetes)."""
    inherit_replaces: bool = False
    """Repeat the module's own ``exclude`` and non-local ``replace`` directives in the wrapper
    (a dependency's are ignored; skaffold needs its own to resolve)."""


@dataclass(frozen=True)
class GoBinary:
    """One binary: the main package ``package`` of ``module``, built as ``name``."""

    name: str
    module: GoModule
    package: str
    wrapper: str | None
    """Name of the generated wrapper module that requires ``module`` (and every other module
    of the same wrapper); None builds with ``go install package@version`` instead."""
    version_vars: tuple[str, ...] = ()
    """``-X`` linker assignments, formatted with ``version``, ``major``, ``minor``,
    ``build_date`` (the proxy's time of the version), ``commit`` (from its origin, or
    ``unknown``) and ``client_go_minor`` (the minor of the k8s.io/client-go it requires)."""

    tags: tuple[str, ...] = ()
    """Go build tags (``-tags``)."""
    install_as: str | None = None
    """Path of the binary under the bin dir when not ``name`` (node-only binaries go to
    ``node/``, off the PATH ``killkrill dev k8s env`` sets: a ``containerd`` there would be
    the one dockerd starts)."""

    @property
    def version(self) -> str:
        return self.module.version

    @property
    def relative_path(self) -> str:
        """Where the binary is, relative to the bin dir."""
        return self.install_as or self.name


KUBERNETES = GoModule("k8s.io/kubernetes", KUBERNETES_VERSION, pin_local_replaces=STAGING_VERSION)
ETCD_SERVER = GoModule("go.etcd.io/etcd/server/v3", ETCD_VERSION)
ETCDCTL = GoModule("go.etcd.io/etcd/etcdctl/v3", ETCD_VERSION)
HELM = GoModule("helm.sh/helm/v3", HELM_VERSION)
KIND = GoModule("sigs.k8s.io/kind", KIND_VERSION)
SKAFFOLD = GoModule(
    "github.com/GoogleContainerTools/skaffold/v2", SKAFFOLD_VERSION, inherit_replaces=True
)
CONTAINERD = GoModule("github.com/containerd/containerd/v2", CONTAINERD_VERSION)
CRI_TOOLS = GoModule("sigs.k8s.io/cri-tools", CRICTL_VERSION)
CNI = GoModule("github.com/containernetworking/plugins", CNI_PLUGINS_VERSION)
COREDNS = GoModule("github.com/coredns/coredns", COREDNS_VERSION)
LOCAL_PATH = GoModule("github.com/rancher/local-path-provisioner", LOCAL_PATH_PROVISIONER_VERSION)

CNI_PLUGINS = {
    "ptp": "plugins/main/ptp",
    "host-local": "plugins/ipam/host-local",
    "portmap": "plugins/meta/portmap",
    "loopback": "plugins/main/loopback",
    "bridge": "plugins/main/bridge",
}
"""The CNI plugins a kind node gets (``/opt/cni/bin/<name>``), by their package in CNI."""

_K8S_VERSION_VARS = tuple(
    f"{package}.{var}"
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    for var in (
        "gitVersion={version}",
        "gitMajor={major}",
        "gitMinor={minor}",
        "gitTreeState=clean",
        "buildDate={build_date}",
        "gitCommit={commit}",
    )
)


def _k8s(cmd: str) -> GoBinary:
    return GoBinary(
        cmd, KUBERNETES, f"k8s.io/kubernetes/cmd/{cmd}", "kubernetes", _K8S_VERSION_VARS
    )


def _containerd(cmd: str) -> GoBinary:
    return GoBinary(
        cmd,
        CONTAINERD,
        f"{CONTAINERD.path}/cmd/{cmd}",
        None,
        tuple(
            f"{CONTAINERD.path}/version.{var}"
            for var in ("Version={version}", "Revision={commit}", f"Package={CONTAINERD.path}")
        ),
        # as kind's base image: none of the optional snapshotters is ever selected in a node
        tags=("no_aufs", "no_zfs", "no_btrfs", "no_devmapper"),
        install_as=f"node/{cmd}",
    )


def _cni(plugin: str) -> GoBinary:
    return GoBinary(
        f"cni-{plugin}",
        CNI,
        f"{CNI.path}/{CNI_PLUGINS[plugin]}",
        None,
        (f"{CNI.path}/pkg/utils/buildversion.BuildVersion={{version}}",),
        install_as=f"node/cni/{plugin}",
    )


BINARIES: dict[str, GoBinary] = {
    b.name: b
    for b in (
        GoBinary("etcd", ETCD_SERVER, ETCD_SERVER.path, "etcd"),
        _k8s("kube-apiserver"),
        _k8s("kube-controller-manager"),
        _k8s("kubectl"),
        GoBinary(
            "helm",
            HELM,
            "helm.sh/helm/v3/cmd/helm",
            None,
            (
                "helm.sh/helm/v3/internal/version.version={version}",
                "helm.sh/helm/v3/internal/version.gitCommit={commit}",
                "helm.sh/helm/v3/internal/version.gitTreeState=clean",
                # As helm's own Makefile: the Kubernetes version its client-go speaks is the
                # default .Capabilities.KubeVersion and the deprecation checks' reference.
                "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
                "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={client_go_minor}",
                "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
                "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={client_go_minor}",
            ),
        ),
        GoBinary("kind", KIND, KIND.path, None),
        GoBinary(
            "skaffold",
            SKAFFOLD,
            f"{SKAFFOLD.path}/cmd/skaffold",
            "skaffold",
            tuple(
                f"{SKAFFOLD.path}/pkg/skaffold/version.{var}"
                for var in ("version={version}", "buildDate={build_date}", "gitCommit={commit}")
            ),
        ),
        GoBinary("etcdctl", ETCDCTL, ETCDCTL.path, "etcd"),
        _k8s("kubelet"),
        _k8s("kubeadm"),
        _k8s("kube-scheduler"),
        _k8s("kube-proxy"),
        _containerd("containerd"),
        _containerd("containerd-shim-runc-v2"),
        _containerd("ctr"),
        GoBinary(
            "crictl",
            CRI_TOOLS,
            f"{CRI_TOOLS.path}/cmd/crictl",
            None,
            (f"{CRI_TOOLS.path}/pkg/version.Version={{version}}",),
            install_as="node/crictl",
        ),
        *(_cni(plugin) for plugin in CNI_PLUGINS),
        GoBinary(
            "coredns",
            COREDNS,
            COREDNS.path,
            None,
            (f"{COREDNS.path}/coremain.GitCommit={{commit}}",),
            install_as="node/coredns",
        ),
        GoBinary(
            "local-path-provisioner",
            LOCAL_PATH,
            LOCAL_PATH.path,
            None,
            ("main.VERSION={version}",),
            install_as="node/local-path-provisioner",
        ),
    )
}
"""Every binary the builder knows, by name."""

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager")
CLIENT_TOOLS = ("kubectl", "helm")
UP_TOOLS = CONTROL_PLANE + CLIENT_TOOLS
"""What ``killkrill dev k8s up`` builds before it starts the control plane."""
EXTRA_TOOLS = ("kind", "skaffold", "etcdctl")
"""Built by ``killkrill dev k8s build --all`` (and ``up --all``) besides :data:`UP_TOOLS`."""
NODE_TOOLS = ("kubelet", "kubeadm", "kube-scheduler", "kube-proxy")
"""Built on demand by name (``killkrill dev k8s build kubelet ...``), for a kind node image."""
KIND_NODE_BINARIES = (
    *NODE_TOOLS,
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "etcd",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "crictl",
    *(f"cni-{plugin}" for plugin in CNI_PLUGINS),
    "coredns",
    "local-path-provisioner",
)
"""Everything a kind node image is assembled from (``killkrill dev kind image`` builds the
missing ones): the node's own programs and the binaries of the images kubeadm runs."""
