"""Debian base images built here, for a machine that can pull from no registry.

``killkrill dev docker base`` makes two images from one ``debootstrap --variant=minbase``
of Debian 12 (from the mirror apt uses on this host, read from ``/etc/apt/sources.list*``),
with bookworm-updates and bookworm-security applied:

* ``killkrill/debian:bookworm``: Python 3.11 (Debian's ``python3``) and the CA
  certificates: the runtime base of the KillKrill image;
* ``killkrill/debian:bookworm-build``: the same plus ``python3-venv`` (pip and setuptools
  wheels for a venv) and ``binutils`` (``strip``, for the extension modules of the venv): the
  base of the image's build stage, never of a final image.

Both are cleaned (no apt lists or caches, no docs, man pages or locales; each package's
``copyright`` file stays, it is its licence) and imported with ``tar | docker import``. Each is
also tagged with its recipe's hash (``bookworm-<hash>``, ``bookworm-build-<hash>``): a recipe
whose tags exist is not built again; a change of the recipe (:class:`BaseRecipe`) builds
anew. ``--rebuild`` builds anyway, e.g. to take newer security updates.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from killkrill.dev.docker_engine import DockerEngine
from killkrill.dev.process import apt_install, cache_dir, run, which
from killkrill.errors import DevServiceError

__all__ = [
    "BaseRecipe",
    "BaseTags",
    "apt_mirrors",
    "build_base_images",
    "chroot_run",
    "clean_rootfs",
    "debootstrap_rootfs",
    "image_exists",
    "import_rootfs",
]

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

DPKG_EXCLUDES = """\
# Written by killkrill's base image recipe: packages installed later bring no docs either.
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
"""

APT_CONF = """\
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
"""

CLEAN_GLOBS = (
    "var/lib/apt/lists/*",
    "var/cache/apt/*",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "var/log/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "tmp/*",
    "var/tmp/*",
    "root/.cache",
    "usr/sbin/policy-rc.d",
)
"""What :func:`clean_rootfs` removes (and every file of ``usr/share/doc`` but copyrights)."""

EMPTIED = ("etc/resolv.conf", "etc/hostname", "etc/machine-id")
"""Files emptied: the host's values; Docker mounts the container's own over them."""


@dataclass(frozen=True)
class BaseTags:
    """The tags of one base image: the one naming its recipe, and the moving one."""

    exact: str
    moving: str


@dataclass(frozen=True)
class BaseRecipe:
    """Everything the base images are made of: its hash names them."""

    suite: str = "bookworm"
    variant: str = "minbase"
    runtime_packages: tuple[str, ...] = ("python3", "ca-certificates")
    build_packages: tuple[str, ...] = ("python3-venv", "binutils")
    dpkg_excludes: str = DPKG_EXCLUDES
    apt_conf: str = APT_CONF
    clean_globs: tuple[str, ...] = CLEAN_GLOBS
    emptied: tuple[str, ...] = EMPTIED
    import_changes: tuple[str, ...] = (
        "ENV LANG=C.UTF-8",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'CMD ["/bin/bash"]',
    )
    repository: str = field(default="killkrill/debian", compare=False)

    def digest(self) -> str:
        """12 hex digits of the SHA-256 of the recipe (the repository name aside)."""
        data = asdict(self)
        del data["repository"]
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def runtime(self) -> BaseTags:
        return BaseTags(
            f"{self.repository}:{self.suite}-{self.digest()}", f"{self.repository}:{self.suite}"
        )

    @property
    def build(self) -> BaseTags:
        return BaseTags(
            f"{self.repository}:{self.suite}-build-{self.digest()}",
            f"{self.repository}:{self.suite}-build",
        )


_ONE_LINE = re.compile(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")


def apt_mirrors(sources: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """The Debian mirror and the security mirror apt uses, from ``(file name, text)`` pairs of
    ``/etc/apt/sources.list`` (one-line format) and ``sources.list.d/*.sources`` (deb822);
    Debian's own hosts when a kind is not found. Pure."""
    entries: list[tuple[str, list[str]]] = []
    for name, text in sources:
        if name.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
                if "deb" in fields.get("types", "").split() and fields.get("enabled") != "no":
                    suites = fields.get("suites", "").split()
                    entries += [(uri, suites) for uri in fields.get("uris", "").split()]
        else:
            for line in text.splitlines():
                match = _ONE_LINE.match(line)
                if match:
                    entries.append((match[1], [match[2]]))
    debian = [(u, s) for u, s in entries if "debian" in u]
    security = [u for u, s in debian if any(x.endswith("-security") for x in s)]
    main = [u for u, s in debian if any(not x.endswith("-security") for x in s)]
    return (
        main[0].rstrip("/") if main else DEFAULT_MIRROR,
        security[0].rstrip("/") if security else DEFAULT_SECURITY_MIRROR,
    )


def host_apt_sources(root: Path = Path("/etc/apt")) -> list[tuple[str, str]]:
    """``(name, text)`` of this host's apt source files (disabled ones left out)."""
    files = [root / "sources.list"]
    files += sorted((root / "sources.list.d").glob("*.list"))
    files += sorted((root / "sources.list.d").glob("*.sources"))
    return [(f.name, f.read_text(errors="replace")) for f in files if f.is_file()]


def clean_rootfs(rootfs: Path, recipe: BaseRecipe) -> None:
    """Remove caches, lists, logs, docs (copyright files stay), man pages and locales."""
    for pattern in recipe.clean_globs:
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    doc = rootfs / "usr/share/doc"
    if doc.is_dir():
        for path in sorted(doc.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_symlink() or path.is_file():
                if path.name != "copyright" or path.parent.parent != doc:
                    path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    for name in recipe.emptied:
        path = rootfs / name
        if path.exists() or path.is_symlink():
            path.unlink()
            path.write_text("")


def chroot_run(rootfs: Path, *argv: str, timeout: float = 900) -> None:
    """Run ``argv`` chrooted in ``rootfs`` (apt non-interactive, a plain PATH)."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
    }
    run(["chroot", str(rootfs), *argv], env=env, timeout=timeout)


def debootstrap_rootfs(
    rootfs: Path, recipe: BaseRecipe, *, echo: Callable[[str], None] = print
) -> None:
    """``debootstrap --variant=<variant> <suite>`` into ``rootfs`` from the mirror apt uses
    here, then apt set up (:func:`_prepare`) and bookworm-updates and -security applied.
    Needs root; installs debootstrap when missing. Packages are the caller's to install
    (:func:`chroot_run`), the cleaning too (:func:`clean_rootfs`)."""
    if which("debootstrap", "/usr/sbin") is None:
        apt_install("debootstrap")
    debootstrap = which("debootstrap", "/usr/sbin") or "debootstrap"
    mirror, security = apt_mirrors(host_apt_sources())
    echo(f"debootstrap --variant={recipe.variant} {recipe.suite} from {mirror} ...")
    run(
        [debootstrap, f"--variant={recipe.variant}", recipe.suite, str(rootfs), mirror],
        timeout=1800,
    )
    _prepare(rootfs, recipe, mirror, security)
    echo(f"apt: {recipe.suite}-updates, -security ...")
    chroot_run(rootfs, "apt-get", "update", "-q")
    chroot_run(rootfs, "apt-get", "dist-upgrade", "-y", "-q")


def _prepare(rootfs: Path, recipe: BaseRecipe, mirror: str, security: str) -> None:
    """apt and dpkg settings, sources with updates and security, a ``policy-rc.d`` that keeps
    package scripts from starting services, and the host's DNS for the chroot's apt."""
    (rootfs / "etc/dpkg/dpkg.cfg.d/killkrill-nodoc").write_text(recipe.dpkg_excludes)
    (rootfs / "etc/apt/apt.conf.d/90killkrill").write_text(recipe.apt_conf)
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {mirror} {recipe.suite} main\n"
        f"deb {mirror} {recipe.suite}-updates main\n"
        f"deb {security} {recipe.suite}-security main\n"
    )
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    resolv = rootfs / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)


def _import(engine: DockerEngine, rootfs: Path, recipe: BaseRecipe, tags: BaseTags) -> None:
    """``tar -C rootfs -c . | docker import --change ... - TAG``, then the moving tag."""
    import_rootfs(engine, rootfs, recipe.import_changes, tags.exact)
    run([engine.docker(), "tag", tags.exact, tags.moving], env=engine.client_env())


def import_rootfs(
    engine: DockerEngine, rootfs: Path, import_changes: Iterable[str], tag: str
) -> None:
    """``tar -C rootfs -c . | docker import --change ... - TAG`` (owners kept as numbers)."""
    docker = engine.docker()
    changes = [arg for change in import_changes for arg in ("--change", change)]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
    )
    try:
        done = subprocess.run(
            [docker, "import", *changes, "-", tag],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env=engine.client_env(),
            check=False,
            timeout=600,
        )
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait(timeout=600)
    if tar.returncode != 0 or done.returncode != 0:
        raise DevServiceError(
            f"importing {rootfs} as {tag} failed (tar exit {tar.returncode}): {done.stderr.strip()}"
        )


def image_exists(engine: DockerEngine, tag: str) -> bool:
    done = subprocess.run(
        [engine.docker(), "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        env=engine.client_env(),
        check=False,
        timeout=60,
    )
    return done.returncode == 0


def _remove_other_recipes(
    engine: DockerEngine, recipe: BaseRecipe, echo: Callable[[str], None]
) -> None:
    """Untag the bases of earlier recipes (``<suite>[-build]-<hash>`` of this repository):
    their layers go once no image is built on them."""
    listed = subprocess.run(
        [engine.docker(), "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", recipe.repository],
        capture_output=True,
        text=True,
        env=engine.client_env(),
        check=False,
        timeout=60,
    )
    pattern = re.compile(rf"{re.escape(recipe.repository)}:{recipe.suite}(-build)?-[0-9a-f]{{12}}")
    current = {recipe.runtime.exact, recipe.build.exact}
    old = [t for t in listed.stdout.split() if pattern.fullmatch(t) and t not in current]
    if old:
        done = subprocess.run(
            [engine.docker(), "image", "rm", *old],
            capture_output=True,
            text=True,
            env=engine.client_env(),
            check=False,
            timeout=300,
        )
        said = "removed" if done.returncode == 0 else f"could not remove ({done.stderr.strip()})"
        echo(f"bases of earlier recipes {said}: {', '.join(old)}")


def build_base_images(
    engine: DockerEngine,
    recipe: BaseRecipe | None = None,
    *,
    rebuild: bool = False,
    echo: Callable[[str], None] = print,
) -> BaseRecipe:
    """Build the runtime and build bases unless images of this recipe exist (or ``rebuild``);
    point the moving tags at them either way. Needs root (debootstrap, chroot)."""
    recipe = recipe or BaseRecipe()
    wanted = (recipe.runtime, recipe.build)
    if not rebuild and all(image_exists(engine, tags.exact) for tags in wanted):
        for tags in wanted:
            run([engine.docker(), "tag", tags.exact, tags.moving], env=engine.client_env())
        _remove_other_recipes(engine, recipe, echo)
        echo(f"base images up to date: {recipe.runtime.exact}, {recipe.build.exact}")
        return recipe
    if os.getuid() != 0:
        raise DevServiceError(
            "building the base images needs root (debootstrap, chroot): "
            "run `sudo .venv/bin/killkrill dev docker base`"
        )
    work = cache_dir() / "base-image" / f"work-{recipe.digest()}"
    if work.exists():
        shutil.rmtree(work)
    rootfs, build_rootfs = work / "rootfs", work / "build"
    work.mkdir(parents=True)
    started = time.monotonic()
    try:
        debootstrap_rootfs(rootfs, recipe, echo=echo)
        echo(f"apt: {' '.join(recipe.runtime_packages)} ...")
        chroot_run(rootfs, "apt-get", "install", "-y", "-q", *recipe.runtime_packages)
        run(["cp", "-a", str(rootfs), str(build_rootfs)])
        chroot_run(build_rootfs, "apt-get", "install", "-y", "-q", *recipe.build_packages)
        for tree, tags in ((rootfs, recipe.runtime), (build_rootfs, recipe.build)):
            clean_rootfs(tree, recipe)
            _import(engine, tree, recipe, tags)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _remove_other_recipes(engine, recipe, echo)
    echo(
        f"base images built in {time.monotonic() - started:.0f}s: "
        f"{recipe.runtime.exact} ({recipe.runtime.moving}), "
        f"{recipe.build.exact} ({recipe.build.moving})"
    )
    return recipe
