"""A small synchronous Kubernetes API client: what the operator needs, nothing more.

Credentials come from the same places kubectl and kopf read them: ``$KUBECONFIG`` (or
``~/.kube/config``; its current context: server, CA, client certificate and key or token,
inline ``*-data`` or files) or, inside a pod, the service account (token re-read on every
request, so a rotated token is used at once). Objects are plain dicts; every kind the
operator touches is known by its ``apiVersion`` and ``kind`` (:data:`KINDS`). Writes are
server-side apply with one field manager (:meth:`KubeClient.apply`).

Errors: an answer other than 2xx raises :class:`~killkrill.errors.KubernetesApiError`
(status, reason, the API's message); an unreachable API server raises
:class:`~killkrill.errors.ServiceUnavailable`.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from killkrill.errors import ConfigError, KubernetesApiError, ServiceUnavailable

__all__ = ["KINDS", "KubeClient", "KubeConfig"]

KINDS: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Event"): ("events", True),
    ("v1", "Namespace"): ("namespaces", False),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "ReplicaSet"): ("replicasets", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("killkrill.io/v1alpha1", "Pipeline"): ("pipelines", True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("coordination.k8s.io/v1", "Lease"): ("leases", True),
}
"""``(apiVersion, kind)`` -> (plural, namespaced)."""

_IN_CLUSTER = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class KubeConfig:
    """Where the API server is and how to log in to it."""

    server: str
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    token: str | None = None
    token_file: str | None = None
    verify: bool = True
    source: str = ""
    """Where these came from, for messages (a path; never a credential)."""

    @classmethod
    def load(cls, kubeconfig: str | None = None) -> KubeConfig:
        """From ``kubeconfig`` (or ``$KUBECONFIG``, or ``~/.kube/config``), else in-cluster."""
        path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        default = Path.home() / ".kube" / "config"
        if path or default.is_file():
            return cls.from_file(Path(path) if path else default)
        if (_IN_CLUSTER / "token").is_file() and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster()
        raise ConfigError(
            "no Kubernetes cluster is configured: set KUBECONFIG (for a local control plane: "
            'eval "$(killkrill dev k8s env)"), or run inside a pod with a service account'
        )

    @classmethod
    def in_cluster(cls) -> KubeConfig:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        host = f"[{host}]" if ":" in host else host
        return cls(
            server=f"https://{host}:{port}",
            ca_file=str(_IN_CLUSTER / "ca.crt"),
            token_file=str(_IN_CLUSTER / "token"),
            source="the pod's service account",
        )

    @classmethod
    def from_file(cls, path: Path) -> KubeConfig:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the kubeconfig {path}: {exc}") from None
        try:
            context_name = doc["current-context"]
            context = _named(doc["contexts"], context_name)["context"]
            cluster = _named(doc["clusters"], context["cluster"])["cluster"]
            user = _named(doc.get("users") or [], context.get("user", ""))["user"]
        except (KeyError, TypeError) as exc:
            raise ConfigError(
                f"the kubeconfig {path} has no usable current context ({exc})"
            ) from None
        base = path.parent

        def file(entry: Mapping[str, Any], key: str) -> str | None:
            data = entry.get(f"{key}-data")
            if data:
                return _temp_file(base64.b64decode(data))
            value = entry.get(key)
            return str((base / value).resolve()) if value else None

        return cls(
            server=str(cluster["server"]).rstrip("/"),
            ca_file=file(cluster, "certificate-authority"),
            client_cert=file(user, "client-certificate"),
            client_key=file(user, "client-key"),
            token=user.get("token"),
            token_file=user.get("tokenFile"),
            verify=not cluster.get("insecure-skip-tls-verify", False),
            source=str(path),
        )

    def bearer(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text(encoding="utf-8").strip()
        return self.token


def _named(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for item in items:
        if item.get("name") == name:
            return item
    raise KeyError(name)


_TEMP: list[str] = []


def _temp_file(data: bytes) -> str:
    """A private file holding ``data`` (inline kubeconfig certificates), removed at exit."""
    if not _TEMP:
        _TEMP.append(tempfile.mkdtemp(prefix="killkrill-kube-"))
        atexit.register(shutil.rmtree, _TEMP[0], True)
    fd, name = tempfile.mkstemp(dir=_TEMP[0])
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return name


class KubeClient:
    """Requests to one API server (see the module doc). Thread-safe (httpx's client)."""

    def __init__(self, config: KubeConfig, *, timeout: float = 15.0) -> None:
        self.config = config
        context = ssl.create_default_context(cafile=config.ca_file)
        if not config.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if config.client_cert and config.client_key:
            context.load_cert_chain(config.client_cert, config.client_key)
        self._http = httpx.Client(base_url=config.server, verify=context, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    # --- paths ---------------------------------------------------------------------------

    @staticmethod
    def path(api_version: str, kind: str, namespace: str | None = None, name: str = "") -> str:
        try:
            plural, namespaced = KINDS[api_version, kind]
        except KeyError:
            raise ValueError(f"unknown kind {api_version}/{kind}") from None
        root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        where = f"/namespaces/{namespace}" if namespaced and namespace else ""
        return f"{root}{where}/{plural}" + (f"/{name}" if name else "")

    # --- requests ------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        token = self.config.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        content = None
        if body is not None:
            content = orjson.dumps(body)
            headers["Content-Type"] = content_type
        try:
            answer = self._http.request(
                method, path, content=content, headers=headers, params=params
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the Kubernetes API at {self.config.server} did not answer {method} {path}: "
                f"{exc} (credentials from {self.config.source})"
            ) from exc
        data: dict[str, Any] = answer.json() if answer.content else {}
        if answer.status_code >= 400:
            raise KubernetesApiError(
                answer.status_code,
                str(data.get("reason") or answer.reason_phrase),
                str(data.get("message") or answer.text[:500]),
            )
        return data

    def version(self) -> dict[str, Any]:
        """``GET /version``: checks the server answers and the credentials are accepted."""
        return self.request("GET", "/version")

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The object, or None when there is none."""
        try:
            return self.request("GET", self.path(api_version, kind, namespace, name))
        except KubernetesApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        params = (
            {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else None
        )
        items: list[dict[str, Any]] = self.request(
            "GET", self.path(api_version, kind, namespace), params=params
        ).get("items", [])
        return items

    def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = True
    ) -> dict[str, Any]:
        """Server-side apply of ``obj`` as ``field_manager`` (``force``: take over fields
        another manager set, e.g. ``kubectl edit``)."""
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        params = {"fieldManager": field_manager, "force": "true" if force else "false"}
        return self.request(
            "PATCH", path, body=obj, content_type="application/apply-patch+yaml", params=params
        )

    def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        status: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Replace the fields of ``status`` given (a JSON merge patch of the status
        subresource); a key given as None is removed."""
        path = self.path(api_version, kind, namespace, name) + "/status"
        return self.request(
            "PATCH", path, body={"status": status}, content_type="application/merge-patch+json"
        )

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete the object (its dependents by the garbage collector); False if absent."""
        try:
            self.request(
                "DELETE",
                self.path(api_version, kind, namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except KubernetesApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True
