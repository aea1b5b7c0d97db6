"""A real TLS + authentication front for the dev Elasticsearch: nginx as a reverse proxy.

The dev Elasticsearch runs with security off (the integ-test distribution has no x-pack
security), so the Elasticsearch sink's TLS and credentials are tested against nginx in
front of it, on free loopback ports:

* ``basic_url``: HTTPS, ``auth_basic`` with one user whose password is random per start
  (htpasswd made with ``openssl passwd -apr1``);
* ``api_key_url``: HTTPS, only ``Authorization: ApiKey <key>`` with the random key passes
  (nginx ``map`` on ``$http_authorization``); anything else gets 401 with an
  Elasticsearch-shaped ``security_exception`` body, as Elasticsearch answers. Like an
  Elasticsearch API key, ``api_key`` is the base64 of ``<api_key_id>:<api_key_secret>``
  (the ``encoded`` value ``POST /_security/api_key`` answers).

Both present a server certificate for ``127.0.0.1``/``localhost`` signed by a throwaway CA
(``ca_file``); ``other_ca_file`` is a CA that signed nothing here (a "wrong CA"). The
proxy strips the ``Authorization`` header before Elasticsearch. Every secret is made by the
run's leak guard, so the suite fails if one of them is ever logged.

``tests/integration/conftest.py`` puts this folder on ``sys.path``.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from leak_guard import LeakGuard

__all__ = ["NGINX", "OPENSSL", "TlsFront", "tls_front"]

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
)
OPENSSL = shutil.which("openssl")
USERNAME = "kk-log-writer"


@dataclass(frozen=True)
class TlsFront:
    """Where the proxy listens and what it accepts (see the module doc)."""

    basic_url: str
    api_key_url: str
    ca_file: Path
    other_ca_file: Path
    username: str
    password: str
    api_key: str
    api_key_id: str
    api_key_secret: str
    directory: Path


def _openssl(*args: str, stdin: str | None = None) -> str:
    assert OPENSSL is not None
    done = subprocess.run(
        [OPENSSL, *args], input=stdin, capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "2", "-subj", f"/CN=KillKrill test {name}", "-keyout", str(key),
        "-out", str(cert), "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return key, cert


def _make_server_cert(directory: Path, ca_key: Path, ca_cert: Path) -> tuple[Path, Path]:
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return key, cert


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _config(
    directory: Path, upstream: str, ports: tuple[int, int], cert: Path, key: Path, api_key: str
) -> str:
    basic_port, key_port = ports
    run_as = "user root root;" if os.geteuid() == 0 else ""  # workers read the 0700 tmp dir
    temp = " ".join(
        f"{kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    denied = (
        '{"error":{"type":"security_exception","reason":"missing or wrong API key"},"status":401}'
    )
    proxy = f"""
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_read_timeout 120s;"""
    tls = f"""
        ssl_certificate {cert};
        ssl_certificate_key {key};"""
    return f"""
{run_as}
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {directory / "access.log"};
    {temp}
    uwsgi_temp_path {directory / "uwsgi"};
    scgi_temp_path {directory / "scgi"};
    client_max_body_size 0;
    map_hash_bucket_size 256;
    map $http_authorization $api_key_ok {{
        "ApiKey {api_key}" 1;
        default 0;
    }}
    server {{
        listen 127.0.0.1:{basic_port} ssl;
        {tls}
        location / {{
            auth_basic "elasticsearch";
            auth_basic_user_file {directory / "htpasswd"};
            {proxy}
        }}
    }}
    server {{
        listen 127.0.0.1:{key_port} ssl;
        {tls}
        location / {{
            if ($api_key_ok = 0) {{
                add_header WWW-Authenticate 'ApiKey' always;
                return 401 '{denied}';
            }}
            {proxy}
        }}
    }}
}}
"""


@contextmanager
def tls_front(directory: Path, elasticsearch_url: str, guard: LeakGuard) -> Iterator[TlsFront]:
    """nginx in front of ``elasticsearch_url`` (see the module doc), stopped at the end."""
    assert NGINX is not None and OPENSSL is not None
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _make_ca(directory, "ca")
    _make_ca(directory, "other-ca")
    key, cert = _make_server_cert(directory, ca_key, ca_cert)
    password = guard.secret("Elasticsearch basic-auth password (nginx front)")
    guard.register_basic_auth(USERNAME, password, "Elasticsearch basic-auth password")
    api_key_id = "kk-test-key"
    api_key_secret = guard.secret("Elasticsearch API key secret (nginx front)")
    api_key = base64.b64encode(f"{api_key_id}:{api_key_secret}".encode()).decode()
    guard.register(api_key, "Elasticsearch API key, encoded (nginx front)")
    hashed = _openssl("passwd", "-apr1", "-stdin", stdin=password + "\n").strip()
    (directory / "htpasswd").write_text(f"{USERNAME}:{hashed}\n")
    upstream = urlsplit(elasticsearch_url).netloc.rsplit("@", 1)[-1]
    ports = (_free_port(), _free_port())
    # The config holds the API key: a file holding a secret on purpose, not a log.
    conf = guard.secret_file(
        directory / "nginx.conf", _config(directory, upstream, ports, cert, key, api_key)
    )
    proc = subprocess.Popen(
        [NGINX, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log"),
         "-g", "daemon off; master_process on;"],
        stdout=subprocess.DEVNULL, stderr=(directory / "nginx.stderr").open("wb"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not all(_listening(p) for p in ports):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"nginx exited with {proc.returncode}: "
                    + (directory / "error.log").read_text(errors="replace")[-2000:]
                )
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not listen within 20 s")
            time.sleep(0.05)
        yield TlsFront(
            basic_url=f"https://127.0.0.1:{ports[0]}",
            api_key_url=f"https://127.0.0.1:{ports[1]}",
            ca_file=ca_cert,
            other_ca_file=directory / "other-ca.pem",
            username=USERNAME,
            password=password,
            api_key=api_key,
            api_key_id=api_key_id,
            api_key_secret=api_key_secret,
            directory=directory,
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
