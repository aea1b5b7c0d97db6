"""The local Docker engine's pure parts: the runc wrapper's argument and spec handling (it
removes CAP_SYS_RESOURCE, which this sandbox withholds), and the daemon config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from killkrill.dev import docker_engine, runc_wrapper
from killkrill.dev.docker_engine import RUNTIME_NAME, DockerEngine, daemon_config
from killkrill.dev.runc_wrapper import spec_files, strip_capabilities
from killkrill.errors import DevServiceError

# --- runc wrapper -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "files"),
    [
        # what containerd-shim-runc-v2 runs, global options first
        (
            ["--root", "/r", "--log", "/l.json", "--log-format", "json", "create",
             "--bundle", "/b", "--pid-file", "/p", "cid"],
            ["/b/config.json"],
        ),
        (["create", "-b", "/b", "cid"], ["/b/config.json"]),
        (["create", "--bundle=/b", "cid"], ["/b/config.json"]),
        (["--systemd-cgroup", "run", "-b=/b", "cid"], ["/b/config.json"]),
        (["run", "cid"], ["/cwd/config.json"]),  # no flag: the current directory
        (["restore", "--bundle", "/b", "cid"], ["/b/config.json"]),
        (["--root", "/r", "exec", "--process", "/tmp/proc.json", "--detach", "cid"],
         ["/tmp/proc.json"]),
        (["exec", "-p", "/tmp/proc.json", "cid"], ["/tmp/proc.json"]),
        (["exec", "--process=/tmp/proc.json", "cid"], ["/tmp/proc.json"]),
        (["exec", "cid", "sh"], []),  # a command line instead of a process file
        (["--root", "/r", "state", "cid"], []),
        (["--root", "/r", "delete", "--force", "cid"], []),
        (["--version"], []),
        ([], []),
    ],
)  # fmt: skip
def test_spec_files_of_each_runc_command(argv: list[str], files: list[str]) -> None:
    assert spec_files(argv, "/cwd") == files


def test_strip_capabilities_from_every_set() -> None:
    caps = {
        name: ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN"]
        for name in ("bounding", "effective", "inheritable", "permitted", "ambient")
    }
    assert strip_capabilities(caps) is True
    assert all(v == ["CAP_CHOWN", "CAP_SYS_ADMIN"] for v in caps.values())
    assert strip_capabilities(caps) is False  # nothing left to remove
    assert strip_capabilities(None) is False
    assert strip_capabilities({"bounding": None}) is False


def _caps(doc: dict[str, object]) -> object:
    process = doc.get("process", doc)
    assert isinstance(process, dict)
    return process["capabilities"]


@pytest.mark.parametrize("shape", ["bundle", "process"])
def test_wrapper_trims_the_file_then_execs_real_runc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    caps = {"bounding": ["CAP_KILL", "CAP_SYS_RESOURCE"], "effective": ["CAP_SYS_RESOURCE"]}
    if shape == "bundle":
        path = tmp_path / "config.json"
        doc: dict[str, object] = {"ociVersion": "1.0.2", "process": {"capabilities": caps}}
        argv = ["--root", "/r", "create", "--bundle", str(tmp_path), "cid"]
    else:
        path = tmp_path / "process.json"
        doc = {"args": ["sh"], "capabilities": caps}
        argv = ["exec", "--process", str(path), "--detach", "cid"]
    path.write_text(json.dumps(doc))
    execs: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(os, "execv", lambda binary, args: execs.append((binary, list(args))))

    runc_wrapper.main(argv, "/usr/sbin/runc")

    assert _caps(json.loads(path.read_text())) == {"bounding": ["CAP_KILL"], "effective": []}
    assert execs == [("/usr/sbin/runc", ["/usr/sbin/runc", *argv])]


def test_wrapper_leaves_other_commands_and_missing_files_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    execs: list[str] = []
    monkeypatch.setattr(os, "execv", lambda binary, args: execs.append(binary))
    runc_wrapper.main(["create", "--bundle", str(tmp_path / "gone"), "cid"], "/x/runc")
    runc_wrapper.main(["kill", "cid", "KILL"], "/x/runc")
    assert execs == ["/x/runc", "/x/runc"]
    assert list(tmp_path.iterdir()) == []


# --- daemon config -----------------------------------------------------------------------------


def test_daemon_config_names_its_own_paths_and_the_wrapper_as_default_runtime() -> None:
    config = daemon_config(
        data_root=Path("/c/docker"),
        exec_root=Path("/s/exec"),
        pidfile=Path("/s/dockerd.pid"),
        sock=Path("/s/docker.sock"),
        runtime=Path("/s/killkrill-runc"),
    )
    assert config["data-root"] == "/c/docker"
    assert config["exec-root"] == "/s/exec"
    assert config["pidfile"] == "/s/dockerd.pid"
    assert config["hosts"] == ["unix:///s/docker.sock"]
    assert config["default-runtime"] == RUNTIME_NAME
    assert config["runtimes"] == {RUNTIME_NAME: {"path": "/s/killkrill-runc"}}


# --- not root ----------------------------------------------------------------------------------


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setenv("KILLKRILL_DEV_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("KILLKRILL_DEV_CACHE", str(tmp_path / "cache"))


@pytest.mark.usefixtures("not_root")
def test_not_root_is_told_what_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = DockerEngine()
    with pytest.raises(DevServiceError, match=r"run `sudo \.venv/bin/killkrill dev docker up`"):
        engine.start()
    monkeypatch.setattr(docker_engine, "which", lambda *_: None)
    with pytest.raises(DevServiceError, match=r"sudo apt-get install -y docker\.io"):
        engine.install()
    assert not engine.socket_path.exists()
