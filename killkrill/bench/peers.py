"""The peers the bench measures KillKrill against, and the tools it drives them with.

All come from Debian 12, installed when missing (as root; ``make peers`` installs them too):

- ``rsyslog`` + ``rsyslog-elasticsearch`` (``rsyslogd``, ``omelasticsearch``);
- syslog-ng 3.38 from its ``.deb`` files, **unpacked, not installed**: Debian's
  ``syslog-ng-core`` conflicts with ``rsyslog`` (installing one removes the other, and the
  test suite needs rsyslog). ``apt-get download syslog-ng-core syslog-ng-mod-http`` and
  ``dpkg -x`` into ``<cache>/bench/syslog-ng-<version>``; its libraries' dependencies are
  installed as packages (they conflict with nothing);
- ``wrk`` (HTTP load), ``redis-benchmark`` (``redis-tools``), ``prometheus``, ``nginx`` (the
  null remote_write receiver).

The peers' configurations are files in the repository's ``bench/peers/`` with ``@NAME@``
placeholders filled by :func:`render`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from killkrill.dev.process import apt_install, cache_dir, run, which
from killkrill.errors import DevServiceError

__all__ = [
    "SYSLOG_NG_LIBS",
    "SyslogNg",
    "ensure_tools",
    "peers_dir",
    "render",
    "repo_root",
    "rsyslogd",
    "syslog_ng",
    "tool_versions",
]

SYSLOG_NG_PACKAGES = ("syslog-ng-core", "syslog-ng-mod-http")
SYSLOG_NG_LIBS = ("libivykis0", "libnet1", "libjson-c5", "libcurl4", "libpcre3", "libwrap0")
"""Libraries the unpacked syslog-ng needs that a minimal Debian lacks."""

_TOOLS = {
    # binary: (Debian package, extra directories to look in)
    "rsyslogd": ("rsyslog", ("/usr/sbin",)),
    "wrk": ("wrk", ()),
    "redis-benchmark": ("redis-tools", ()),
    "prometheus": ("prometheus", ()),
    "nginx": ("nginx", ("/usr/sbin",)),
}


def repo_root() -> Path:
    """The checkout holding ``bench/peers`` (the package's own, else the working dir)."""
    for candidate in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (candidate / "bench" / "peers").is_dir():
            return candidate
    raise DevServiceError("bench/peers/ not found: run `killkrill bench` from a KillKrill checkout")


def peers_dir() -> Path:
    return repo_root() / "bench" / "peers"


def render(template: str, out: Path, **values: object) -> Path:
    """Write ``bench/peers/<template>`` to ``out`` with every ``@NAME@`` replaced."""
    text = (peers_dir() / template).read_text(encoding="utf-8")

    def sub(match: re.Match[str]) -> str:
        key = match.group(1).lower()
        if key not in values:
            raise DevServiceError(f"{template}: no value for @{match.group(1)}@")
        return str(values[key])

    out.write_text(re.sub(r"@([A-Z_]+)@", sub, text), encoding="utf-8")
    return out


def _find(binary: str) -> str | None:
    _, extra = _TOOLS[binary]
    return which(binary, *extra)


def ensure_tools(*binaries: str) -> dict[str, str]:
    """Paths of ``binaries`` (keys of the table above), installing their packages first."""
    missing = [_TOOLS[b][0] for b in binaries if _find(b) is None]
    if "rsyslogd" in binaries and not _rsyslog_es_module():
        missing.append("rsyslog-elasticsearch")
    if missing:
        apt_install(*sorted(set(missing)))
    found: dict[str, str] = {}
    for binary in binaries:
        path = _find(binary)
        if path is None:
            raise DevServiceError(f"{binary} is still missing after installing its package")
        found[binary] = path
    return found


def _rsyslog_es_module() -> bool:
    return any(Path("/usr/lib").glob("*/rsyslog/omelasticsearch.so"))


def rsyslogd() -> str:
    return ensure_tools("rsyslogd")["rsyslogd"]


@dataclass(frozen=True)
class SyslogNg:
    """An unpacked syslog-ng: the daemon and how to run it."""

    root: Path
    version: str

    @property
    def binary(self) -> Path:
        return self.root / "usr/sbin/syslog-ng"

    @property
    def module_path(self) -> Path:
        return self.root / "usr/lib/syslog-ng" / ".".join(self.version.split(".")[:2])

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SYSLOGNG_PREFIX": str(self.root / "usr"),
            "LD_LIBRARY_PATH": str(self.root / "usr/lib/syslog-ng"),
        }


def _candidate_version(package: str) -> str:
    out = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"Candidate:\s*(\S+)", out)
    if match is None or match.group(1) == "(none)":
        run(["apt-get", "update", "-q"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        out = subprocess.run(
            ["apt-cache", "policy", package], capture_output=True, text=True, check=False
        ).stdout
        match = re.search(r"Candidate:\s*(\S+)", out)
    if match is None or match.group(1) == "(none)":
        raise DevServiceError(f"apt knows no {package}")
    return match.group(1)


def syslog_ng() -> SyslogNg:
    """syslog-ng unpacked from its Debian packages (cached; see the module doc)."""
    base = cache_dir() / "bench"
    existing = sorted(base.glob("syslog-ng-*/usr/sbin/syslog-ng"))
    if existing:
        root = existing[-1].parents[2]
        return SyslogNg(root, root.name.removeprefix("syslog-ng-"))
    missing = [lib for lib in SYSLOG_NG_LIBS if not _dpkg_installed(lib)]
    if missing:
        apt_install(*missing)
    debian_version = _candidate_version("syslog-ng-core")
    version = debian_version.split(":")[-1].split("-")[0]
    root = base / f"syslog-ng-{version}"
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=base))
    try:
        run(["apt-get", "download", *SYSLOG_NG_PACKAGES], cwd=staging)
        tree = staging / "root"
        for deb in sorted(staging.glob("*.deb")):
            run(["dpkg", "-x", str(deb), str(tree)])
        tree.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    root.chmod(0o755)
    return SyslogNg(root, version)


def _dpkg_installed(package: str) -> bool:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    ).stdout
    return out.strip().endswith("installed") and "not-installed" not in out


def tool_versions() -> dict[str, str]:
    """Versions of the peers and tools that are installed (for ``results.json``)."""
    versions: dict[str, str] = {}
    for package in (*(p for p, _ in _TOOLS.values()), "rsyslog-elasticsearch"):
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if out:
            versions[package] = out
    unpacked = sorted((cache_dir() / "bench").glob("syslog-ng-*/usr/sbin/syslog-ng"))
    if unpacked:
        versions["syslog-ng"] = unpacked[-1].parents[2].name.removeprefix("syslog-ng-")
    return versions
