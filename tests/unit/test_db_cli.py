"""``killkrill db upgrade --config``: the database of a config file's metrics worker, its
password read from the password file (what the operator's metrics-worker init container
runs; the migration itself is covered against a real PostgreSQL in the integration and e2e
tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from killkrill.cli.main import cli
from killkrill.db import migrate


def test_upgrade_reads_the_metrics_workers_database_from_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "metrics_worker": {
                    "database": {
                        "url": "postgresql://killkrill@postgres:5432/killkrill",
                        "password_file": str(password),
                    }
                },
                "log_worker": {"redis": {"url": "redis://elsewhere:6379/0"}},
            }
        )
    )
    for var in ("DATABASE_URL", "TEST_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    seen: list[str] = []
    monkeypatch.setattr(migrate, "upgrade", lambda url, revision="head": seen.append(str(url)))
    monkeypatch.setattr(migrate, "current", lambda url: "0004")
    done = CliRunner().invoke(cli, ["db", "upgrade", "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert seen == ["postgresql://killkrill:s3cret@postgres:5432/killkrill"]
    assert "s3cret" not in done.output
