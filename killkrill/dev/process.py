"""Process plumbing for the local services: paths, users, pid files, ports, installs."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from killkrill.errors import DevServiceError

__all__ = [
    "SERVICE_USER",
    "apt_install",
    "as_service_user",
    "cache_dir",
    "chown_to_service_user",
    "free_port",
    "pid_alive",
    "port_offset",
    "port_open",
    "read_pid",
    "run",
    "service_user",
    "state_dir",
    "stop_pid",
    "wait_until",
    "which",
]

SERVICE_USER = "killkrill"
"""Unprivileged user that runs PostgreSQL and Elasticsearch when we are root (both refuse
to run as root)."""


def state_dir() -> Path:
    """Where running services keep their data, logs and pid files.

    ``KILLKRILL_DEV_HOME`` overrides; the default is a per-user directory under the system
    temp dir, so data never outlives a reboot and never mixes with a real installation.
    """
    env = os.environ.get("KILLKRILL_DEV_HOME")
    path = Path(env) if env else Path("/tmp") / f"killkrill-dev-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)  # the service user must traverse it
    if os.getuid() == 0:
        for parent in path.resolve().parents:
            if not parent.stat().st_mode & 0o001:
                raise DevServiceError(
                    f"{path} is below {parent}, which other users cannot enter, so the "
                    f"service user {SERVICE_USER!r} could not reach its data; set "
                    "KILLKRILL_DEV_HOME to a directory under /tmp"
                )
    return path


def cache_dir() -> Path:
    """Where downloads and unpacked distributions are cached across runs.

    ``KILLKRILL_DEV_CACHE`` overrides. As root the cache is ``/var/cache/killkrill`` (the
    service user cannot traverse ``/root``); otherwise ``$XDG_CACHE_HOME/killkrill``.
    """
    env = os.environ.get("KILLKRILL_DEV_CACHE")
    if env:
        path = Path(env)
    elif os.getuid() == 0:
        path = Path("/var/cache/killkrill")
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "killkrill"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def port_offset() -> int:
    """``KILLKRILL_DEV_PORT_OFFSET`` shifts every default port, to run a second set beside."""
    try:
        return int(os.environ.get("KILLKRILL_DEV_PORT_OFFSET", "0"))
    except ValueError as exc:
        raise DevServiceError("KILLKRILL_DEV_PORT_OFFSET must be an integer") from exc


def service_user() -> str | None:
    """The user to run root-refusing services as: None when we are not root."""
    if os.getuid() != 0:
        return None
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ]
        )
    return SERVICE_USER


def chown_to_service_user(*paths: Path) -> None:
    """Give ``paths`` (recursively) to the service user, when there is one."""
    user = service_user()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for top in paths:
        for root, dirs, files in os.walk(top):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def as_service_user(argv: Sequence[str]) -> list[str]:
    """Prefix ``argv`` so it runs as the service user (no-op when we are not root)."""
    user = service_user()
    return [*argv] if user is None else ["runuser", "-u", user, "--", *argv]


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    cwd: Path | None = None,
) -> str:
    """Run a command to completion; raise DevServiceError with its output if it fails."""
    try:
        proc = subprocess.run(
            list(argv),
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise DevServiceError(f"command not found: {argv[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DevServiceError(f"`{' '.join(argv)}` did not finish in {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise DevServiceError(
            f"`{' '.join(argv)}` failed with exit code {proc.returncode}:\n{tail}"
        )
    return proc.stdout


_apt_updated = False


def apt_install(*packages: str) -> None:
    """Install Debian packages (as root), running ``apt-get update`` once if needed."""
    global _apt_updated
    if os.getuid() != 0:
        names = " ".join(packages)
        raise DevServiceError(f"{names} missing; install with: sudo apt-get install -y {names}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    try:
        run(argv, env=env)
    except DevServiceError:
        if _apt_updated:
            raise
        run(["apt-get", "update", "-q"], env=env)
        _apt_updated = True
        run(argv, env=env)


def which(name: str, *extra_dirs: str) -> str | None:
    """``shutil.which`` that also looks in ``extra_dirs``."""
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        candidate = Path(d) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def read_pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` if that process is alive, else None."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    check: Callable[[], object], timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll ``check()`` until it returns true; raise DevServiceError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise DevServiceError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop_pid(pid: int, *, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to ``pid`` and wait for it to exit; SIGKILL it after ``timeout``."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_until(lambda: not pid_alive(pid), 10, f"pid {pid} to exit after SIGKILL")
