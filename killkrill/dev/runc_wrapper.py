"""The OCI runtime the local Docker engine runs containers with: ``runc`` minus one capability.

This sandbox withholds ``CAP_SYS_RESOURCE`` from every process, so runc cannot hand it to a
container, and a ``--privileged`` container (whose spec asks for every capability) fails
with ``unable to apply caps: operation not permitted``. This wrapper removes
``CAP_SYS_RESOURCE`` from every capability set of

* the bundle's ``config.json`` (``runc create|run|restore --bundle DIR``, ``-b DIR``; the
  bundle is the current directory when the flag is absent), and
* the process file of ``runc exec --process FILE`` (``-p FILE``),

then replaces itself with the real runc, arguments unchanged. Every other command passes
straight through. A container without the capability behaves as one on a host that lacks
it: what needs it (raising ``RLIMIT_NOFILE`` past the hard limit, negative OOM score
adjustments) fails inside the container, and nothing else changes.

The file is standalone (standard library only): :mod:`killkrill.dev.docker_engine` writes a
copy of it, with a ``#!`` line naming a Python interpreter and :data:`REAL_RUNC` set to the
host's runc, into the engine's state directory and registers that copy as dockerd's default
runtime.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["REAL_RUNC", "WITHHELD", "main", "spec_files", "strip_capabilities"]

REAL_RUNC = "/usr/sbin/runc"
"""The runc this wrapper execs (the generated copy names the one found on the host)."""

WITHHELD = ("CAP_SYS_RESOURCE",)
"""Capabilities the sandbox does not grant, removed from every set."""

_GLOBAL_WITH_VALUE = frozenset({"--root", "--log", "--log-format", "--criu", "--rootless"})
"""runc's global options that take a separate value (``--root DIR``)."""
_BUNDLE_COMMANDS = frozenset({"create", "run", "restore"})


def _option(args: Sequence[str], long: str, short: str) -> str | None:
    """The value of ``--long VALUE``, ``--long=VALUE``, ``-s VALUE`` or ``-s=VALUE``."""
    for i, arg in enumerate(args):
        for name in (long, short):
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(f"{name}="):
                return arg[len(name) + 1 :]
    return None


def spec_files(argv: Sequence[str], cwd: str = ".") -> list[str]:
    """The JSON files of ``runc ARGV`` whose capabilities must be trimmed: the bundle's
    ``config.json`` for create/run/restore, the ``--process`` file for exec, else none."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in _GLOBAL_WITH_VALUE else 1
    if i >= len(argv):
        return []
    command, rest = argv[i], argv[i + 1 :]
    if command in _BUNDLE_COMMANDS:
        bundle = _option(rest, "--bundle", "-b") or cwd
        return [os.path.join(bundle, "config.json")]
    if command == "exec":
        process = _option(rest, "--process", "-p")
        return [process] if process else []
    return []


def strip_capabilities(caps: Any, withheld: Sequence[str] = WITHHELD) -> bool:
    """Remove ``withheld`` from every list of ``caps`` (an OCI ``capabilities`` object);
    True when something was removed."""
    if not isinstance(caps, dict):
        return False
    changed = False
    for name, values in caps.items():
        if isinstance(values, list):
            kept = [v for v in values if v not in withheld]
            if len(kept) != len(values):
                caps[name] = kept
                changed = True
    return changed


def _trim(path: str) -> None:
    """Rewrite the spec or process file at ``path`` without the withheld capabilities."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return  # runc itself reports a missing bundle or process file
    process = doc.get("process", doc) if isinstance(doc, dict) else None
    if not isinstance(process, dict) or not strip_capabilities(process.get("capabilities")):
        return
    tmp = f"{path}.killkrill-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def main(argv: Sequence[str], real_runc: str = REAL_RUNC) -> None:
    """Trim the capabilities of the files ``runc argv`` reads, then exec the real runc."""
    for path in spec_files(argv, os.getcwd()):
        _trim(path)
    os.execv(real_runc, [real_runc, *argv])


if __name__ == "__main__":  # pragma: no cover - runs as dockerd's runtime
    main(sys.argv[1:])
