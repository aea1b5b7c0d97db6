"""The peers' configurations in bench/peers/ as rendered by the bench, checked by the
daemons themselves (rsyslogd -N1, syslog-ng --syntax-only, nginx -t, promtool)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from killkrill.bench.peers import ensure_tools, render, rsyslogd, syslog_ng


def _ok(argv: list[str], env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rsyslog_config_validates(tmp_path: Path) -> None:
    conf = render("rsyslog.conf", tmp_path / "rsyslog.conf", workdir=tmp_path, port=15514,
                  es_port=9700, index="kkbench-x-000001")  # fmt: skip
    _ok([rsyslogd(), "-N1", "-f", str(conf)])


def test_syslog_ng_config_validates(tmp_path: Path) -> None:
    daemon = syslog_ng()
    conf = render("syslog-ng.conf", tmp_path / "syslog-ng.conf", port=15515, es_port=9700,
                  index="kkbench-x-000001")  # fmt: skip
    _ok([str(daemon.binary), "--syntax-only", "-f", str(conf),
         "--module-path", str(daemon.module_path)], env=daemon.env)  # fmt: skip


def test_nginx_null_receiver_config_validates(tmp_path: Path) -> None:
    nginx = ensure_tools("nginx")["nginx"]
    conf = render("nginx-null.conf", tmp_path / "nginx.conf", workdir=tmp_path, port=15516)
    _ok([nginx, "-t", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "e.log")])


def test_prometheus_config_validates(tmp_path: Path) -> None:
    ensure_tools("prometheus")
    conf = render("prometheus.yml", tmp_path / "prometheus.yml", scrape_interval="1s",
                  scrape_timeout="1s", exporter_port=15517,
                  remote_url="http://127.0.0.1:15518/api/v1/write")  # fmt: skip
    _ok(["promtool", "check", "config", str(conf)])
