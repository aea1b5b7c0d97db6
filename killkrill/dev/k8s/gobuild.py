"""Build Go binaries from source through the Go module proxy, cached by version.

``build(names)`` makes sure ``bin_dir()/<name>`` exists for each name of
:data:`~killkrill.dev.k8s.versions.BINARIES` and was built from the pinned version; a binary
already there is never rebuilt. Builds are static (``CGO_ENABLED=0``), reproducible
(``-trimpath``, ``-buildvcs=false``) and stripped, with the toolchain that is installed
(``GOTOOLCHAIN=local``).

A module whose go.mod cannot be used as a dependency as it is (k8s.io/kubernetes replaces its
staging modules with local directories; skaffold needs its own excludes and replaces) is built
through a *wrapper module*, generated here under ``<root>/work/<wrapper>`` from what the
module's downloaded go.mod says, with a ``tools.go`` (build tag ``tools``) that imports every
main package built from it so that ``go mod tidy`` keeps exactly what they need. Nothing of it
is ever part of the repository.

Every write is atomic: a binary is linked under a temporary name and renamed into place, and
its stamp (the recipe it was built from) is written after it, so an interrupted build leaves
either nothing or a binary that is rebuilt. One build runs at a time per cache (a lock file).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from killkrill.dev.k8s.versions import BINARIES, KUBERNETES_VERSION, GoBinary, GoModule
from killkrill.dev.process import cache_dir, which
from killkrill.errors import DevServiceError

__all__ = [
    "BuildResult",
    "bin_dir",
    "binary_path",
    "build",
    "build_root",
    "go_env",
    "is_built",
    "module_source",
    "recipe_of",
]

Echo = Callable[[str], None]
_GO_HINT = (
    "install Go >= {need} (https://go.dev/dl) and put `go` on PATH, or name it with "
    "KILLKRILL_DEV_GO: the Kubernetes tool chain is built from source with it"
)
_LOG_TAIL_LINES = 30


def build_root() -> Path:
    """``cache_dir()/k8s/<k8s version>``: binaries, wrapper modules, build logs."""
    path = cache_dir() / "k8s" / KUBERNETES_VERSION
    path.mkdir(parents=True, exist_ok=True)
    return path


def bin_dir() -> Path:
    """Where the built binaries are (put it first on PATH)."""
    path = build_root() / "bin"
    path.mkdir(exist_ok=True)
    return path


def binary_path(name: str) -> Path:
    """Where binary ``name`` is (or will be) once built: ``bin_dir()/<name>``, or
    ``bin_dir()/node/...`` for a binary only a kind node uses."""
    return bin_dir() / BINARIES[name].relative_path


def _stamp_path(name: str) -> Path:
    return bin_dir() / ".stamps" / name


def _recipe(binary: GoBinary) -> str:
    """What a binary is built from: its stamp. A different recipe means a rebuild."""
    module = binary.module
    recipe: dict[str, object] = {
        "module": f"{module.path}@{module.version}",
        "pin_local_replaces": module.pin_local_replaces,
        "inherit_replaces": module.inherit_replaces,
        "package": binary.package,
        "wrapper": binary.wrapper,
        "version_vars": list(binary.version_vars),
    }
    # Only when set: the stamps of binaries built before these existed stay valid.
    if binary.tags:
        recipe["tags"] = list(binary.tags)
    if binary.install_as:
        recipe["install_as"] = binary.install_as
    return json.dumps(recipe, sort_keys=True)


def recipe_of(name: str) -> str:
    """The build recipe of binary ``name`` (what its stamp holds once built)."""
    return _recipe(BINARIES[name])


def is_built(name: str) -> bool:
    """True when ``bin_dir()/name`` is there and was built from the pinned recipe."""
    binary = BINARIES[name]
    path = binary_path(name)
    try:
        stamp = _stamp_path(name).read_text()
    except OSError:
        return False
    return path.is_file() and os.access(path, os.X_OK) and stamp == _recipe(binary)


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build` did for one binary."""

    name: str
    path: Path
    built: bool
    """False when the binary was already in the cache."""
    seconds: float = 0.0


def go_env() -> dict[str, str]:
    """The environment every ``go`` command runs in."""
    env = dict(os.environ)
    env.update(
        GOTOOLCHAIN="local",
        GOFLAGS="-buildvcs=false",
        CGO_ENABLED="0",
        GOWORK="off",
        GO111MODULE="on",
    )
    return env


def _go() -> str:
    """``KILLKRILL_DEV_GO`` (a path), else ``go`` on PATH or in Go's usual homes."""
    chosen = os.environ.get("KILLKRILL_DEV_GO")
    if chosen:
        if not (Path(chosen).is_file() and os.access(chosen, os.X_OK)):
            raise DevServiceError(
                f"KILLKRILL_DEV_GO={chosen} is not an executable; point it at a `go` command "
                "or unset it to use the `go` on PATH"
            )
        return chosen
    found = which("go", "/usr/local/go/bin", "/usr/lib/go/bin")
    if found is None:
        raise DevServiceError("`go` not found; " + _GO_HINT.format(need="1.24"))
    return found


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


class _Go:
    """Runs ``go`` commands, each logged to a file; a failure shows the log's tail."""

    def __init__(self, logs: Path) -> None:
        self.go = _go()
        self.env = go_env()
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)

    def output(self, *args: str, cwd: Path) -> str:
        """Run a quick ``go`` command and return its stdout."""
        proc = subprocess.run(
            [self.go, *args], cwd=cwd, env=self.env, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise DevServiceError(
                f"`go {' '.join(args)}` failed (exit {proc.returncode}):\n"
                + _tail(proc.stderr or proc.stdout)
            )
        return proc.stdout

    def logged(self, what: str, log_name: str, *args: str, cwd: Path) -> None:
        """Run a long ``go`` command with its output in ``<logs>/<log_name>.log``."""
        log = self.logs / f"{log_name}.log"
        with log.open("w") as out:
            out.write(f"$ cd {cwd} && go {' '.join(args)}\n")
            out.flush()
            proc = subprocess.run(
                [self.go, *args],
                cwd=cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if proc.returncode != 0:
            raise DevServiceError(
                f"{what} failed (go exit code {proc.returncode}); last lines of the log:\n"
                f"{_tail(log.read_text(errors='replace'))}\nfull log: {log}"
            )

    def version(self) -> str:
        return self.output("env", "GOVERSION", cwd=self.logs).strip()

    def download(self, module: GoModule, cwd: Path) -> dict[str, Any]:
        """Fetch ``module`` (zip, go.mod, .info) into the module cache; its paths."""
        wanted = f"{module.path}@{module.version}"
        proc = subprocess.run(
            [self.go, "mod", "download", "-json", wanted],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            info: dict[str, Any] = json.loads(proc.stdout)
        except ValueError:
            info = {"Error": _tail(proc.stderr or proc.stdout)}
        if proc.returncode != 0 or info.get("Error"):
            proxy = self.env.get("GOPROXY")
            through = f"GOPROXY={proxy}" if proxy else "the Go module proxy"
            raise DevServiceError(
                f"could not download {wanted} through {through}: "
                f"{info.get('Error') or _tail(proc.stderr)}\n(check GOPROXY and the network)"
            )
        return info

    def gomod(self, gomod_file: str, cwd: Path) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(
            self.output("mod", "edit", "-json", gomod_file, cwd=cwd)
        )
        return parsed


def module_source(module: GoModule) -> Path:
    """The source of ``module`` in Go's module cache (read-only), downloaded through the
    proxy when it is not there yet."""
    go = _Go(build_root() / "logs")
    return Path(go.download(module, build_root())["Dir"])


def _tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-_LOG_TAIL_LINES:])


@dataclass
class _ModuleFacts:
    """What the proxy says about one module version."""

    module: GoModule
    go: str
    """The ``go`` directive of its go.mod."""
    requires: dict[str, str]
    """Extra requirements the wrapper must state (pinned local replaces)."""
    excludes: list[str]
    replaces: list[str]
    build_date: str
    commit: str
    client_go_minor: str
    """The Kubernetes minor version of the k8s.io/client-go the module requires (v0.37.0:
    37), or "" (helm's default capabilities and deprecation checks follow it)."""


def _facts(go: _Go, module: GoModule, cwd: Path) -> _ModuleFacts:
    downloaded = go.download(module, cwd)
    gomod = go.gomod(downloaded["GoMod"], cwd)
    info = json.loads(Path(downloaded["Info"]).read_text())
    required = {r["Path"]: r["Version"] for r in gomod.get("Require") or []}
    requires: dict[str, str] = {}
    excludes: list[str] = []
    replaces: list[str] = []
    for rep in gomod.get("Replace") or []:
        old, new = rep["Old"], rep["New"]
        local = new["Path"].startswith(("./", "../", "/"))
        if local and module.pin_local_replaces and old["Path"] in required:
            requires[old["Path"]] = module.pin_local_replaces
        elif not local and module.inherit_replaces:
            left = f"{old['Path']} {old['Version']}" if old.get("Version") else old["Path"]
            replaces.append(f"{left} => {new['Path']} {new['Version']}")
    if module.inherit_replaces:
        excludes = [f"{e['Path']} {e['Version']}" for e in gomod.get("Exclude") or []]
    return _ModuleFacts(
        module=module,
        go=gomod.get("Go") or "1.21",
        requires=requires,
        excludes=excludes,
        replaces=replaces,
        build_date=info.get("Time", "1970-01-01T00:00:00Z"),
        commit=(info.get("Origin") or {}).get("Hash", "unknown"),
        client_go_minor="".join(
            str(n) for n in _version_tuple(required.get("k8s.io/client-go", ""))[1:2]
        ),
    )


def _wrapper_files(
    name: str, binaries: list[GoBinary], facts: list[_ModuleFacts]
) -> dict[str, str]:
    """go.mod (before tidy) and tools.go of wrapper ``name``."""
    go_version = max((f.go for f in facts), key=_version_tuple)
    requires: dict[str, str] = {}
    for f in facts:
        requires[f.module.path] = f.module.version
        requires.update(f.requires)
    lines = [
        f"// Generated by killkrill.dev.k8s.gobuild: builds {', '.join(b.name for b in binaries)}.",
        f"module killkrill.local/build/{name}",
        "",
        f"go {go_version}",
        "",
        "require (",
        *(f"\t{path} {version}" for path, version in sorted(requires.items())),
        ")",
    ]
    excludes = sorted({e for f in facts for e in f.excludes})
    replaces = sorted({r for f in facts for r in f.replaces})
    if excludes:
        lines += ["", "exclude (", *(f"\t{e}" for e in excludes), ")"]
    if replaces:
        lines += ["", "replace (", *(f"\t{r}" for r in replaces), ")"]
    tools = [
        "//go:build tools",
        "",
        "// Package tools imports the main packages built from this module, so that",
        "// `go mod tidy` keeps what they need.",
        "package tools",
        "",
        "import (",
        *(f'\t_ "{b.package}"' for b in sorted(binaries, key=lambda b: b.package)),
        ")",
    ]
    return {"go.mod": "\n".join(lines) + "\n", "tools.go": "\n".join(tools) + "\n"}


class _Builder:
    def __init__(self, echo: Echo) -> None:
        self.echo = echo
        self.root = build_root()
        self.go = _Go(self.root / "logs")
        self.facts: dict[GoModule, _ModuleFacts] = {}
        self.ready_wrappers: set[str] = set()
        self.tmp = self.root / "tmp"
        # What an interrupted build linked there is never used: the lock is ours, clear it.
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self._check_go()

    def _check_go(self) -> None:
        have = self.go.version()
        need = "1.24"  # k8s.io/kubernetes v1.34's go.mod; checked again against each module
        if _version_tuple(have.removeprefix("go")) < _version_tuple(need):
            raise DevServiceError(f"{have} is too old; " + _GO_HINT.format(need=need))

    def module_facts(self, module: GoModule) -> _ModuleFacts:
        if module not in self.facts:
            self.facts[module] = _facts(self.go, module, self.root)
            have = self.go.version().removeprefix("go")
            need = self.facts[module].go
            if _version_tuple(have) < _version_tuple(need):
                raise DevServiceError(
                    f"{module.path}@{module.version} needs go >= {need}, have go{have}; "
                    + _GO_HINT.format(need=need)
                )
        return self.facts[module]

    def wrapper_dir(self, name: str) -> Path:
        """The tidied wrapper module ``name``, generated or refreshed when needed."""
        work = self.root / "work" / name
        if name in self.ready_wrappers:
            return work
        members = [b for b in BINARIES.values() if b.wrapper == name]
        modules = list(dict.fromkeys(b.module for b in members))
        files = _wrapper_files(name, members, [self.module_facts(m) for m in modules])
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        stamp = work / ".generated"
        if not (stamp.is_file() and stamp.read_text() == digest and (work / "go.sum").is_file()):
            work.mkdir(parents=True, exist_ok=True)
            stamp.unlink(missing_ok=True)
            (work / "go.sum").unlink(missing_ok=True)
            for file, text in files.items():
                (work / file).write_text(text)
            self.echo(f"k8s build: tidying wrapper module {name} ({work})")
            started = time.monotonic()
            self.go.logged(
                f"go mod tidy of wrapper {name}", f"tidy-{name}", "mod", "tidy", cwd=work
            )
            self.echo(
                f"k8s build: wrapper {name} tidied in {_duration(time.monotonic() - started)}"
            )
            stamp.write_text(digest)
        self.ready_wrappers.add(name)
        return work

    def ldflags(self, binary: GoBinary) -> str:
        facts = self.module_facts(binary.module)
        major, minor, *_ = (*_version_tuple(binary.version), 0, 0)
        values = {
            "version": binary.version,
            "major": str(major),
            "minor": str(minor),
            "build_date": facts.build_date,
            "commit": facts.commit,
            "client_go_minor": facts.client_go_minor,
        }
        xs = [f"-X {var.format(**values)}" for var in binary.version_vars]
        return " ".join(["-s", "-w", *xs])

    def build_one(self, binary: GoBinary) -> BuildResult:
        target = binary_path(binary.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = self.tmp
        tmp = tmp_dir / f"{binary.name}.{os.getpid()}"
        self.echo(f"k8s build: building {binary.name} ({binary.module.path}@{binary.version})")
        started = time.monotonic()
        flags = ["-trimpath", "-ldflags", self.ldflags(binary)]
        if binary.tags:
            flags += ["-tags", ",".join(binary.tags)]
        what = f"building {binary.name}"
        try:
            if binary.wrapper is None:
                gobin = tmp_dir / f"gobin-{binary.name}.{os.getpid()}"
                gobin.mkdir()
                self.go.env["GOBIN"] = str(gobin)
                try:
                    self.go.logged(
                        what,
                        f"build-{binary.name}",
                        "install",
                        *flags,
                        f"{binary.package}@{binary.version}",
                        cwd=tmp_dir,
                    )
                finally:
                    del self.go.env["GOBIN"]
                (built,) = gobin.iterdir()
                built.rename(tmp)
                gobin.rmdir()
            else:
                work = self.wrapper_dir(binary.wrapper)
                self.go.logged(
                    what,
                    f"build-{binary.name}",
                    "build",
                    *flags,
                    "-o",
                    str(tmp),
                    binary.package,
                    cwd=work,
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
            for leftover in tmp_dir.glob(f"gobin-{binary.name}.{os.getpid()}"):
                shutil.rmtree(leftover, ignore_errors=True)
        stamp = _stamp_path(binary.name)
        stamp.parent.mkdir(exist_ok=True)
        stamp_tmp = stamp.with_name(f".{binary.name}.{os.getpid()}")
        stamp_tmp.write_text(_recipe(binary))
        os.replace(stamp_tmp, stamp)
        seconds = time.monotonic() - started
        size = target.stat().st_size / 1e6
        self.echo(f"k8s build: built {binary.name} in {_duration(seconds)} ({size:.0f} MB)")
        return BuildResult(binary.name, target, True, seconds)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


@contextmanager
def _build_lock(echo: Echo) -> Iterator[None]:
    """One build at a time per cache (another ``up`` or a test may be building)."""
    lock = build_root() / "build.lock"
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(f"k8s build: waiting for another build to finish (lock {lock})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(names: Iterable[str], *, echo: Echo = print) -> list[BuildResult]:
    """Build the named binaries (in the order given) that are not in the cache yet."""
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in BINARIES]
    if unknown:
        raise DevServiceError(f"unknown binary {', '.join(unknown)}; known: {', '.join(BINARIES)}")
    results = [BuildResult(n, binary_path(n), False) for n in wanted if is_built(n)]
    missing = [n for n in wanted if not is_built(n)]
    if not missing:
        echo(f"k8s build: nothing to build, {', '.join(wanted)} cached in {bin_dir()}")
        return results
    started = time.monotonic()
    with _build_lock(echo):
        builder: _Builder | None = None
        for name in missing:
            if is_built(name):  # built by whoever held the lock before us
                results.append(BuildResult(name, binary_path(name), False))
                continue
            if builder is None:
                builder = _Builder(echo)
            results.append(builder.build_one(BINARIES[name]))
    built = [r for r in results if r.built]
    cached = [r.name for r in results if not r.built]
    note = f"; cached: {', '.join(cached)}" if cached else ""
    count = f"{len(built)} binar{'y' if len(built) == 1 else 'ies'}"
    elapsed = _duration(time.monotonic() - started)
    echo(f"k8s build: built {count} in {elapsed} into {bin_dir()}{note}")
    return results
