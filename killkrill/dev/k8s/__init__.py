"""A real Kubernetes control plane on loopback, and the tool chain around it, built from source.

``killkrill dev k8s up|down|status|env|build``: :mod:`.versions` pins what is built,
:mod:`.gobuild` builds it through the Go module proxy into the cache, :mod:`.pki` makes a
throwaway PKI, :mod:`.cluster` runs etcd, kube-apiserver and kube-controller-manager.
Submodules are imported where they are used: the ``killkrill`` command stays cheap to start.
"""
