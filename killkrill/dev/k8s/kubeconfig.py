"""Kubeconfig files for the local control plane: one cluster, one user, one context."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

__all__ = ["write_kubeconfig"]

CONTEXT = "killkrill-dev"


def write_kubeconfig(
    path: Path, *, server: str, ca: Path, client_cert: Path, client_key: Path, user: str
) -> Path:
    """Write (atomically, mode 0600) a kubeconfig that reaches ``server`` with a client
    certificate; the certificate files are referenced by path, not copied in."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CONTEXT, "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(client_cert), "client-key": str(client_key)},
            }
        ],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    text = yaml.safe_dump(config, sort_keys=False)
    if path.is_file() and path.read_text() == text:
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)
    return path
