"""A throwaway PKI for the local control plane, made with the ``openssl`` command.

One CA signs the API server's serving certificate and the client certificates (admin in
``system:masters``, the controller-manager as ``system:kube-controller-manager``); a second CA
(front proxy) signs the API server's aggregation client, so that components delegating
authentication find a request-header CA; an RSA key pair signs service-account tokens.
Keys are ECDSA P-256 (fast to make), except the service-account key (RSA, what every client of
the token API expects). Made once per state directory and kept while valid, so a kubeconfig
written for it stays good across ``down``/``up``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from killkrill.dev.process import apt_install, run, which
from killkrill.errors import DevServiceError

__all__ = ["SERVICE_CIDR", "SERVICE_IP", "Pki", "ensure_pki"]

SERVICE_CIDR = "10.96.0.0/12"
SERVICE_IP = "10.96.0.1"
"""The ``kubernetes`` Service's cluster IP: the first address of :data:`SERVICE_CIDR`."""
_DAYS = 365
_RENEW_BEFORE_SECONDS = 24 * 3600
_API_SERVER_NAMES = (
    "IP:127.0.0.1",
    f"IP:{SERVICE_IP}",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    """Paths of the files under ``root`` (all PEM)."""

    root: Path

    def cert(self, name: str) -> Path:
        return self.root / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.root / f"{name}.key"

    @property
    def ca(self) -> Path:
        return self.cert("ca")

    @property
    def sa_public(self) -> Path:
        return self.root / "sa.pub"

    @property
    def sa_private(self) -> Path:
        return self.root / "sa.key"

    @property
    def _valid_until(self) -> Path:
        """When the first certificate expires (epoch seconds), written last when made."""
        return self.root / "valid-until"

    def complete(self) -> bool:
        """Every file there, and no certificate expiring within a day."""
        certs = [self.cert(n) for n in _LEAVES] + [self.ca, self.cert("front-proxy-ca")]
        keys = [self.key(n) for n in (*_LEAVES, "ca", "front-proxy-ca")]
        if not all(p.is_file() for p in [*certs, *keys, self.sa_public, self.sa_private]):
            return False
        try:
            valid_until = float(self._valid_until.read_text())
        except (OSError, ValueError):
            return False
        return time.time() < valid_until - _RENEW_BEFORE_SECONDS


_LEAVES: dict[str, tuple[str, str, str]] = {
    # name: (issuer, subject, extensions)
    "apiserver": (
        "ca",
        "/CN=kube-apiserver",
        "extendedKeyUsage=serverAuth\nsubjectAltName=" + ",".join(_API_SERVER_NAMES),
    ),
    "admin": ("ca", "/O=system:masters/CN=admin", "extendedKeyUsage=clientAuth"),
    "controller-manager": (
        "ca",
        "/CN=system:kube-controller-manager",
        "extendedKeyUsage=clientAuth",
    ),
    "front-proxy-client": (
        "front-proxy-ca",
        "/CN=front-proxy-client",
        "extendedKeyUsage=clientAuth",
    ),
}


def _openssl() -> str:
    found = which("openssl")
    if found is None:
        apt_install("openssl")
        found = which("openssl")
    if found is None:
        raise DevServiceError("openssl is not installed (apt-get install openssl)")
    return found


def _ec_key(openssl: str, path: Path) -> None:
    run([openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(path)])  # fmt: skip
    path.chmod(0o600)


def _ca(openssl: str, pki: Pki, name: str, subject: str) -> None:
    _ec_key(openssl, pki.key(name))
    run(
        [
            openssl, "req", "-x509", "-new", "-key", str(pki.key(name)), "-sha256",
            "-days", str(10 * _DAYS), "-subj", subject, "-out", str(pki.cert(name)),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ]
    )  # fmt: skip


def _leaf(openssl: str, pki: Pki, name: str) -> None:
    issuer, subject, extensions = _LEAVES[name]
    _ec_key(openssl, pki.key(name))
    csr = pki.root / f"{name}.csr"
    ext = pki.root / f"{name}.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n" + extensions + "\n"
    )
    try:
        run([openssl, "req", "-new", "-key", str(pki.key(name)), "-subj", subject,
             "-out", str(csr)])  # fmt: skip
        run(
            [
                openssl, "x509", "-req", "-in", str(csr), "-sha256", "-days", str(_DAYS),
                "-CA", str(pki.cert(issuer)), "-CAkey", str(pki.key(issuer)),
                "-CAcreateserial", "-CAserial", str(pki.root / f"{issuer}.srl"),
                "-extfile", str(ext), "-out", str(pki.cert(name)),
            ]
        )  # fmt: skip
    finally:
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)


def ensure_pki(root: Path) -> tuple[Pki, bool]:
    """The PKI under ``root``, made (all of it, afresh) when incomplete or expiring.
    Returns it and whether it was made now."""
    pki = Pki(root)
    if pki.complete():
        return pki, False
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    openssl = _openssl()
    made = time.time()
    _ca(openssl, pki, "ca", "/CN=killkrill-dev-ca")
    _ca(openssl, pki, "front-proxy-ca", "/CN=killkrill-dev-front-proxy-ca")
    for name in _LEAVES:
        _leaf(openssl, pki, name)
    run([openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
         "-out", str(pki.sa_private)])  # fmt: skip
    pki.sa_private.chmod(0o600)
    run([openssl, "pkey", "-in", str(pki.sa_private), "-pubout", "-out", str(pki.sa_public)])
    pki._valid_until.write_text(f"{made + _DAYS * 86400:.0f}\n")
    return pki, True
