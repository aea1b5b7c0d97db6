"""The KillKrill container image, built on the local engine from the local Debian bases.

``killkrill dev docker image`` (``make image``) builds the repository's ``Dockerfile`` with
BuildKit and tags ``killkrill/killkrill:<version>`` and ``killkrill/killkrill:dev`` (or the
tags given, e.g. the one skaffold chose, and pushes them with ``--push``).

pip in the build reaches its index the way pip on this host does: the host's pip settings
(index URLs, trusted hosts, proxy, timeout; ``pip config list``, ``PIP_*`` included) are
written to a pip.conf passed as the BuildKit secret ``pipconf``, and the CA bundle the host
trusts (pip's ``cert``, else ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``, else OpenSSL's
default) as the secret ``ca``. A secret is mounted for the one RUN step that uses it and is
in no layer and no image (the image test checks the final image for both files).

Why BuildKit, not the classic builder: only BuildKit has build secrets; with the classic
builder the settings would have to be a file in the build stage, which stays in the local
build cache with its index credentials. Debian's docker.io 20.10 has no ``buildx``; its own
client builds with the engine's BuildKit (``DOCKER_BUILDKIT=1``), while Docker >= 23 clients
need the buildx plugin for that. :func:`buildkit_client` picks one that works.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from killkrill import __version__
from killkrill.dev.base_image import BaseRecipe, build_base_images
from killkrill.dev.docker_engine import DockerEngine
from killkrill.errors import DevServiceError

__all__ = [
    "CA_SECRET_PATH",
    "IMAGE_LABEL",
    "IMAGE_REPOSITORY",
    "BuiltImage",
    "build_image",
    "buildkit_client",
    "host_ca_bundle",
    "host_pip_settings",
    "image_tags",
    "pip_conf_text",
    "pip_settings",
]

IMAGE_REPOSITORY = "killkrill/killkrill"
IMAGE_LABEL = "org.opencontainers.image.title=killkrill"
"""A label of the Dockerfile's final stage: what ``image prune`` may remove when untagged."""
CA_SECRET_PATH = "/run/secrets/ca"
"""Where the build's RUN steps see the CA bundle (BuildKit's default for secret ``ca``)."""

_PIP_KEYS = {
    "index-url": "index-url",
    "extra-index-url": "extra-index-url",
    "trusted-host": "trusted-host",
    "cert": "cert",
    "proxy": "proxy",
    "timeout": "timeout",
    "default-timeout": "timeout",
    "retries": "retries",
}
"""pip settings that say how to reach the index (``pip config`` name -> pip.conf name).
Others (``find-links`` to a host directory, ``disable-pip-version-check``...) mean nothing
inside the build, or are set by the Dockerfile."""

_SECTION_RANK = {"global": 0, "install": 1, "wheel": 1, ":env:": 2}
"""Which of ``pip config list``'s sections wins: ``PIP_*`` variables over ``[install]``
over ``[global]``."""

_LISTED = re.compile(r"^(?P<section>[^.\s]+)\.(?P<key>[\w-]+)=(?P<value>.*)$")


def image_tags(version: str = __version__) -> tuple[str, str]:
    """The tags ``make image`` gives the image: its version's, and ``dev``."""
    return f"{IMAGE_REPOSITORY}:{version}", f"{IMAGE_REPOSITORY}:dev"


def pip_settings(listing: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The index settings of ``pip config list`` output, the winning value of each (pure).
    Without a ``proxy`` setting, ``HTTPS_PROXY`` is pip's proxy, as it is on the host."""
    found: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        match = _LISTED.match(line.strip())
        if not match or match["key"] not in _PIP_KEYS:
            continue
        rank = _SECTION_RANK.get(match["section"], -1)
        if rank < 0:
            continue
        try:
            value = str(ast.literal_eval(match["value"]))
        except (ValueError, SyntaxError):
            value = match["value"]
        key = _PIP_KEYS[match["key"]]
        if key not in found or rank >= found[key][0]:
            found[key] = (rank, value)
    settings = {key: value for key, (_, value) in found.items()}
    proxy = environ.get("HTTPS_PROXY") or environ.get("https_proxy")
    if proxy and "proxy" not in settings:
        settings["proxy"] = proxy
    return settings


def host_pip_settings() -> dict[str, str]:
    """:func:`pip_settings` of the pip next to the running Python."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise DevServiceError(f"`pip config list` failed: {done.stderr.strip()}")
    return pip_settings(done.stdout, os.environ)


def host_ca_bundle(settings: Mapping[str, str], environ: Mapping[str, str]) -> Path | None:
    """The CA bundle pip trusts on this host: its ``cert``, else ``REQUESTS_CA_BUNDLE`` or
    ``SSL_CERT_FILE``, else OpenSSL's default file; None when none exists."""
    paths = ssl.get_default_verify_paths()
    for candidate in (
        settings.get("cert"),
        environ.get("REQUESTS_CA_BUNDLE"),
        environ.get("SSL_CERT_FILE"),
        paths.cafile,
        paths.openssl_cafile,
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def pip_conf_text(settings: Mapping[str, str], *, with_ca: bool) -> str:
    """pip.conf for the build (pure): the host's settings, ``cert`` pointing at the ``ca``
    secret when one is passed. Multi-line values keep pip.conf's continuation lines."""
    values = {k: v for k, v in settings.items() if k != "cert"}
    if with_ca:
        values["cert"] = CA_SECRET_PATH
    lines = ["# pip settings of the KillKrill image build (a build secret: in no layer)"]
    lines.append("[global]")
    for key in sorted(values):
        parts = values[key].split()
        if key in ("extra-index-url", "trusted-host") and len(parts) > 1:
            lines.append(f"{key} =")
            lines += [f"    {part}" for part in parts]
        else:
            lines.append(f"{key} = {values[key]}")
    return "\n".join(lines) + "\n"


def _client_major(docker: str) -> int | None:
    done = subprocess.run(
        [docker, "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    match = re.match(r"(\d+)\.", done.stdout.strip())
    return int(match[1]) if match else None


def buildkit_client(engine: DockerEngine) -> tuple[str, dict[str, str]]:
    """A docker client that builds with BuildKit, and its environment: one with the buildx
    plugin, or a client older than 23 (Debian's 20.10), which talks to the engine's own
    BuildKit under ``DOCKER_BUILDKIT=1``."""
    env = {**engine.client_env(), "DOCKER_BUILDKIT": "1"}
    candidates = dict.fromkeys(
        p for p in (shutil.which("docker"), "/usr/bin/docker") if p and os.access(p, os.X_OK)
    )
    for docker in candidates:
        buildx = subprocess.run(
            [docker, "buildx", "version"], capture_output=True, check=False, timeout=30, env=env
        )
        if buildx.returncode == 0:
            return docker, env
        major = _client_major(docker)
        if major is not None and major < 23:
            return docker, env
    raise DevServiceError(
        f"no docker client here builds with BuildKit ({', '.join(candidates) or 'none found'}): "
        "install the buildx plugin, or Debian's docker.io (its /usr/bin/docker does)"
    )


@dataclass(frozen=True)
class BuiltImage:
    """What ``killkrill dev docker image`` made."""

    tags: tuple[str, ...]
    size_bytes: int
    seconds: float

    def line(self) -> str:
        return (
            f"{', '.join(self.tags)}: {self.size_bytes / 1e6:.0f} MB, built in {self.seconds:.0f}s"
        )


def build_image(
    engine: DockerEngine,
    context: Path,
    *,
    base_image: str | None = None,
    build_image: str | None = None,
    tags: Sequence[str] = (),
    push: bool = False,
    echo: Callable[[str], None] = print,
) -> BuiltImage:
    """Build ``context``'s Dockerfile on ``engine``: on the local Debian bases (built first
    when missing, cached by recipe) unless ``base_image`` names another, e.g. an official
    ``python:3.11-slim-bookworm`` a registry serves. Tagged with ``tags`` (default:
    :func:`image_tags`); ``push`` pushes each tag to its registry afterwards."""
    if not (context / "Dockerfile").is_file():
        raise DevServiceError(f"{context} has no Dockerfile: run this from the repository")
    if not engine.running():
        raise DevServiceError("the Docker engine is not running: `killkrill dev docker up`")
    if base_image is None:
        recipe = build_base_images(engine, BaseRecipe(), echo=echo)
        base_image, build_image = recipe.runtime.exact, build_image or recipe.build.exact
    docker, env = buildkit_client(engine)
    settings = host_pip_settings()
    ca = host_ca_bundle(settings, os.environ)
    tags = tuple(tags) or image_tags()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="killkrill-build-") as secrets:
        pipconf = Path(secrets) / "pip.conf"
        pipconf.write_text(pip_conf_text(settings, with_ca=ca is not None))
        pipconf.chmod(0o600)
        argv = [
            docker, "build", "--progress", "plain", "--network", "host",
            "--secret", f"id=pipconf,src={pipconf}",
            *(["--secret", f"id=ca,src={ca}"] if ca else []),
            "--build-arg", f"BASE_IMAGE={base_image}",
            *(["--build-arg", f"BUILD_IMAGE={build_image}"] if build_image else []),
            "--build-arg", f"VERSION={__version__}",
            *(arg for tag in tags for arg in ("-t", tag)),
            str(context),
        ]  # fmt: skip
        echo(f"building {', '.join(tags)} on {base_image} ({docker}, BuildKit) ...")
        done = subprocess.run(argv, env=env, check=False, timeout=3600)
    if done.returncode != 0:
        raise DevServiceError(f"docker build failed with exit code {done.returncode}")
    seconds = time.monotonic() - started
    size = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Size}}", tags[0]],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    # The images these tags named before are left untagged: remove them (only KillKrill's).
    subprocess.run(
        [docker, "image", "prune", "--force", "--filter", f"label={IMAGE_LABEL}"],
        capture_output=True,
        env=env,
        check=False,
        timeout=300,
    )
    built = BuiltImage(tags, int(size.stdout.strip()), seconds)
    echo(built.line())
    for tag in tags if push else ():
        echo(f"pushing {tag} ...")
        pushed = subprocess.run([docker, "push", tag], env=env, check=False, timeout=3600)
        if pushed.returncode != 0:
            raise DevServiceError(f"docker push {tag} failed with exit code {pushed.returncode}")
    return built
