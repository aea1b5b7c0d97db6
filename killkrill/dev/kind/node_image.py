"""``killkrill dev kind image``: the kind node image, assembled here without a registry.

:func:`build_node_image` makes ``killkrill/kind-node:<Kubernetes version>`` on the project's
Docker engine (:mod:`killkrill.dev.docker_engine`) from :class:`~.recipe.NodeRecipe`:

1. the binaries (:data:`~killkrill.dev.k8s.versions.KIND_NODE_BINARIES`), built from source
   into the k8s build cache when missing (:mod:`killkrill.dev.k8s.gobuild`);
2. two Debian 12 bases from one ``debootstrap`` (cached as images by their recipe's hash,
   ``killkrill/kind-node:base-<hash>`` and ``:kube-proxy-base-<hash>``): the node's, with
   kind's base packages, and kube-proxy's, with iptables and conntrack;
3. the images ``kubeadm config images list`` names and kind's storage images, each a
   ``tar | docker import`` of a directory holding its static binary (kube-proxy: its Debian
   base + the binary; the storage helper: that base alone), saved into one archive and
   untagged from the engine again; ``pause`` is compiled here (``gcc -static`` of the
   Kubernetes module's ``build/pause/linux/pause.c``);
4. a build container from the node base: kind's node files (read from the
   ``sigs.k8s.io/kind`` module source), the binaries, the containerd and CNI configs, kind's
   post-install steps; containerd started in it to import the archive with kind's own
   command (pinned, not unpacked); ``docker commit``;
5. ``STOPSIGNAL SIGRTMIN+3`` and the recipe label added by a two-line classic build (Docker
   20.10's ``commit --change`` refuses STOPSIGNAL).

The image carries the digest of everything it was made from (:data:`~.recipe.RECIPE_LABEL`):
when the tag exists with the current digest nothing is done. Needs root (debootstrap,
chroot) for a build, not for the check.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from killkrill.dev.base_image import (
    chroot_run,
    clean_rootfs,
    debootstrap_rootfs,
    image_exists,
    import_rootfs,
)
from killkrill.dev.docker_engine import DockerEngine
from killkrill.dev.k8s import gobuild
from killkrill.dev.k8s.versions import KIND, KIND_NODE_BINARIES, KUBERNETES
from killkrill.dev.kind import recipe as recipe_module
from killkrill.dev.kind.recipe import (
    CNI_CONFLIST_PATH,
    NODE_IMAGE_REPOSITORY,
    POD_EGRESS_SCRIPT_PATH,
    POD_EGRESS_UNIT_PATH,
    RECIPE_LABEL,
    STORAGE_MANIFEST_PATH,
    ImageSpec,
    NodeRecipe,
    containerd_config,
    cri_base_spec,
    image_key,
    kind_file_mode,
    kind_storage_manifest,
)
from killkrill.dev.process import apt_install, cache_dir, run, wait_until, which
from killkrill.errors import DevServiceError

__all__ = [
    "NodeImage",
    "build_node_image",
    "node_image_label",
    "prune_old_node_images",
]

Echo = Callable[[str], None]
PLAIN_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PRELOAD = (
    # kind's own import command (pkg/build/nodeimage/imageimporter.go)
    "ctr", "--namespace=k8s.io", "images", "import", "--label=io.cri-containerd.pinned=pinned",
    "--all-platforms", "--no-unpack", "--digests", "-",
)  # fmt: skip
_NODE_BIN = {"kubelet": "usr/bin", "kubeadm": "usr/bin", "kubectl": "usr/bin"}
"""Where kind puts the Kubernetes binaries in a node (its kubelet unit runs /usr/bin/kubelet)."""
_NODE_LOCAL_BIN = ("containerd", "containerd-shim-runc-v2", "ctr", "crictl")


@dataclass(frozen=True)
class NodeImage:
    """What :func:`build_node_image` found or made."""

    tag: str
    digest: str
    size_bytes: int
    seconds: float
    built: bool

    def line(self) -> str:
        what = "built" if self.built else "up to date"
        return (
            f"kind node image {self.tag} {what} (recipe {self.digest}): "
            f"{self.size_bytes / 1e6:.0f} MB, {self.seconds:.0f}s"
        )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _kind_files(kind_files_dir: Path) -> dict[str, tuple[bytes, int]]:
    """kind's node files (``images/base/files`` of the kind module): node path -> (content,
    mode)."""
    found: dict[str, tuple[bytes, int]] = {}
    for path in sorted(kind_files_dir.rglob("*")):
        if path.is_file():
            rel = path.relative_to(kind_files_dir).as_posix()
            found[rel] = (path.read_bytes(), kind_file_mode(rel))
    if "usr/local/bin/entrypoint" not in found or "etc/containerd/config.toml" not in found:
        raise DevServiceError(f"{kind_files_dir} does not hold kind's node files")
    return found


@dataclass(frozen=True)
class _Inputs:
    """What the node image is made of beyond the recipe, read from the module cache."""

    kind_files: dict[str, tuple[bytes, int]]
    pause_c: Path
    storage_go: str
    """kind's ``pkg/build/nodeimage/const_storage.go`` (its storage manifest)."""

    def digest(self, recipe: NodeRecipe) -> str:
        files = _sha(
            json.dumps(
                [[rel, mode, _sha(data)] for rel, (data, mode) in sorted(self.kind_files.items())]
            ).encode()
        )
        # The code that builds is part of the recipe: a change to it builds anew.
        sources = [_sha(Path(f).read_bytes()) for f in (recipe_module.__file__, __file__)]
        binaries = [gobuild.recipe_of(name) for name in KIND_NODE_BINARIES]
        return recipe.digest(
            files,
            _sha(self.pause_c.read_bytes()),
            _sha(self.storage_go.encode()),
            *sources,
            *binaries,
        )


def _inputs() -> _Inputs:
    kind = gobuild.module_source(KIND)
    pause_c = gobuild.module_source(KUBERNETES) / "build" / "pause" / "linux" / "pause.c"
    storage_go = kind / "pkg" / "build" / "nodeimage" / "const_storage.go"
    for path in (pause_c, storage_go):
        if not path.is_file():
            raise DevServiceError(f"{path} is missing from its module's source")
    kind_files = _kind_files(kind / "images" / "base" / "files")
    return _Inputs(kind_files, pause_c, storage_go.read_text())


def _docker(
    engine: DockerEngine,
    *args: str,
    stdin: int | None = None,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> str:
    """Run a docker client command against ``engine``; its stdout, or DevServiceError."""
    done = subprocess.run(
        [engine.docker(), *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        env=env or engine.client_env(),
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise DevServiceError(
            f"`docker {' '.join(args[:3])} ...` failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return done.stdout


def node_image_label(engine: DockerEngine, tag: str) -> str | None:
    """The recipe digest stamped on image ``tag``; None when there is no such image."""
    done = subprocess.run(
        [engine.docker(), "image", "inspect", "--format", "{{json .Config.Labels}}", tag],
        capture_output=True,
        text=True,
        env=engine.client_env(),
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return None
    labels = json.loads(done.stdout.strip() or "null") or {}
    value = labels.get(RECIPE_LABEL)
    return str(value) if value else ""


def _image_size(engine: DockerEngine, tag: str) -> int:
    return int(_docker(engine, "image", "inspect", "--format", "{{.Size}}", tag).strip())


def _classic_build(
    engine: DockerEngine, dockerfile: str, context: Path, tag: str, timeout: float = 900
) -> None:
    """``docker build`` with the classic builder (``DOCKER_BUILDKIT=0``): it builds on local
    images with no registry and no buildx plugin, and its Dockerfile may say STOPSIGNAL."""
    (context / "Dockerfile").write_text(dockerfile)
    env = {**engine.client_env(), "DOCKER_BUILDKIT": "0"}
    _docker(engine, "build", "--quiet", "--tag", tag, str(context), env=env, timeout=timeout)


def _remove_tags(engine: DockerEngine, tags: Iterable[str]) -> None:
    wanted = list(tags)
    if wanted:
        subprocess.run(
            [engine.docker(), "image", "rm", *wanted],
            capture_output=True,
            env=engine.client_env(),
            timeout=300,
            check=False,
        )


def _debian_bases(engine: DockerEngine, recipe: NodeRecipe, echo: Echo) -> tuple[str, str]:
    """The node's and kube-proxy's Debian bases, built from one debootstrap unless images of
    this Debian recipe exist. Older recipes' bases are untagged."""
    digest = recipe.debian.digest()
    node_tag = f"{NODE_IMAGE_REPOSITORY}:base-{digest}"
    proxy_tag = f"{NODE_IMAGE_REPOSITORY}:kube-proxy-base-{digest}"
    listed = _docker(engine, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
    pattern = re.compile(rf"{re.escape(NODE_IMAGE_REPOSITORY)}:(kube-proxy-)?base-[0-9a-f]{{12}}")
    _remove_tags(
        engine,
        (t for t in listed.split() if pattern.fullmatch(t) and t not in (node_tag, proxy_tag)),
    )
    if image_exists(engine, node_tag) and image_exists(engine, proxy_tag):
        echo(f"kind image: Debian bases up to date ({node_tag}, {proxy_tag})")
        return node_tag, proxy_tag
    started = time.monotonic()
    work = cache_dir() / "kind-node" / f"base-{digest}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    node, proxy = work / "node", work / "kube-proxy"
    try:
        debootstrap_rootfs(node, recipe.debian, echo=echo)
        run(["cp", "-a", str(node), str(proxy)])
        echo(f"kind image: apt install {' '.join(recipe.debian.runtime_packages)} ...")
        chroot_run(node, "apt-get", "install", "-y", "-q", *recipe.debian.runtime_packages)
        chroot_run(proxy, "apt-get", "install", "-y", "-q", *recipe.debian.build_packages)
        for rootfs, tag, changes in (
            (node, node_tag, recipe.debian.import_changes),
            (proxy, proxy_tag, (f"ENV {PLAIN_PATH}",)),
        ):
            clean_rootfs(rootfs, recipe.debian)
            import_rootfs(engine, rootfs, changes, tag)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    echo(f"kind image: Debian bases built in {time.monotonic() - started:.0f}s")
    return node_tag, proxy_tag


def _kubeadm_images() -> list[str]:
    listed = run(
        [
            str(gobuild.binary_path("kubeadm")),
            "config",
            "images",
            "list",
            "--kubernetes-version",
            KUBERNETES.version,
        ]
    )
    return [line.strip() for line in listed.splitlines() if line.strip()]


def _compile_pause(pause_c: Path, tag: str, out: Path, recipe: NodeRecipe) -> None:
    if which("gcc") is None or not Path("/usr/lib/x86_64-linux-gnu/libc.a").exists():
        apt_install("gcc", "libc6-dev")
    run(["gcc", *recipe.pause_cflags, f"-DVERSION=v{tag}", "-o", str(out), str(pause_c)])


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def _place_binary(source: Path, target: Path) -> None:
    """Link (same file system: no copy) or copy a built binary into a staging tree."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _image_archive(
    engine: DockerEngine,
    images: Sequence[str],
    proxy_base: str,
    inputs: _Inputs,
    recipe: NodeRecipe,
    work: Path,
) -> Path:
    """Every image the node preloads (kubeadm's, the storage's), made, saved to one ``docker
    save`` archive and untagged again."""
    specs = dict(recipe.images)
    unknown = [i for i in images if image_key(i) not in specs]
    if unknown:
        raise DevServiceError(
            f"kubeadm wants images this recipe cannot make: {', '.join(unknown)} "
            "(killkrill/dev/kind/recipe.py image_specs)"
        )
    made: list[str] = []
    try:
        for image in images:
            spec: ImageSpec = specs[image_key(image)]
            tree = work / "images" / image_key(image)
            in_image = PurePosixPath(spec.path)
            # a Debian one is built FROM its base with the binary in the context's top
            target = tree / (in_image.name if spec.debian else spec.path.lstrip("/"))
            made.append(image)
            if spec.binary is None:
                _docker(engine, "tag", proxy_base, image)
                continue
            if spec.binary == "pause":
                target.parent.mkdir(parents=True, exist_ok=True)
                _compile_pause(inputs.pause_c, image.rsplit(":", 1)[1], target, recipe)
            else:
                _place_binary(gobuild.binary_path(spec.binary), target)
            if spec.debian:
                launcher = in_image.name.removesuffix(".bin")
                _write(tree / launcher, recipe.kube_proxy_launcher.encode(), 0o755)
                dockerfile = (
                    f"FROM {proxy_base}\nCOPY {in_image.name} {launcher} {in_image.parent}/\n"
                )
                _classic_build(engine, dockerfile, tree, image)
                continue
            (tree / "tmp").mkdir(mode=0o1777, exist_ok=True)
            (tree / "tmp").chmod(0o1777)
            changes = [f"ENV {PLAIN_PATH}"]
            if spec.entrypoint:
                changes.append(f"ENTRYPOINT {json.dumps(list(spec.entrypoint))}")
            import_rootfs(engine, tree, changes, image)
        archive = work / "images.tar"
        _docker(engine, "save", "--output", str(archive), *images, timeout=900)
        return archive
    finally:
        _remove_tags(engine, made)


def _stage_node_files(stage: Path, inputs: _Inputs, recipe: NodeRecipe, pause_image: str) -> None:
    """The tree copied over the node base: kind's files, binaries, configs."""
    for rel, (data, mode) in inputs.kind_files.items():
        _write(stage / rel, data, mode)
    kind_config = inputs.kind_files["etc/containerd/config.toml"][0].decode()
    config = containerd_config(kind_config, pause_image)
    _write(stage / "etc/containerd/config.toml", config.encode(), 0o644)
    spec = json.loads(run([str(gobuild.binary_path("ctr")), "oci", "spec"]))
    _write(
        stage / "etc/containerd/cri-base.json",
        (json.dumps(cri_base_spec(spec), indent=2) + "\n").encode(),
        0o644,
    )
    _write(stage / CNI_CONFLIST_PATH.lstrip("/"), recipe.cni_conflist.encode(), 0o644)
    _write(stage / POD_EGRESS_SCRIPT_PATH.lstrip("/"), recipe.pod_egress_script.encode(), 0o755)
    _write(stage / POD_EGRESS_UNIT_PATH.lstrip("/"), recipe.pod_egress_unit.encode(), 0o644)
    _write(stage / "kind/version", recipe.kubernetes_version.encode(), 0o644)
    storage = kind_storage_manifest(inputs.storage_go, *recipe.storage_images)
    _write(stage / STORAGE_MANIFEST_PATH.lstrip("/"), storage.encode(), 0o644)
    for name, directory in _NODE_BIN.items():
        _place_binary(gobuild.binary_path(name), stage / directory / name)
    for name in _NODE_LOCAL_BIN:
        _place_binary(gobuild.binary_path(name), stage / "usr/local/bin" / name)
    for plugin in recipe.cni_plugins:
        _place_binary(gobuild.binary_path(f"cni-{plugin}"), stage / "opt/cni/bin" / plugin)
    for tree in sorted({p for p in stage.rglob("*") if p.is_dir()}):
        tree.chmod(0o755)
    stage.chmod(0o755)


def _copy_tree_into(engine: DockerEngine, stage: Path, container: str) -> None:
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "--owner=0", "--group=0", "-C", str(stage), "-c", "."],
        stdout=subprocess.PIPE,
    )
    assert tar.stdout is not None
    try:
        _docker(engine, "cp", "-", f"{container}:/", stdin=tar.stdout.fileno())
    finally:
        if tar.stdout is not None:
            tar.stdout.close()
        tar.wait(timeout=600)
    if tar.returncode != 0:
        raise DevServiceError(f"tar of {stage} failed (exit {tar.returncode})")


def _preload(engine: DockerEngine, container: str, archive: Path, images: Sequence[str]) -> None:
    """containerd in the build container, the archive imported the way kind does, stopped."""
    _docker(engine, "exec", container, "bash", "-c", "nohup containerd >/tmp/containerd.log 2>&1 &")

    def ready() -> bool:
        done = subprocess.run(
            [engine.docker(), "exec", container, "ctr", "version"],
            capture_output=True,
            env=engine.client_env(),
            timeout=30,
            check=False,
        )
        return done.returncode == 0

    wait_until(ready, 60, "containerd in the node image build container", interval=0.5)
    with archive.open("rb") as data:
        _docker(engine, "exec", "-i", container, *_PRELOAD, stdin=data.fileno(), timeout=900)
    listed = _docker(engine, "exec", container, "ctr", "--namespace=k8s.io", "images", "list", "-q")
    missing = sorted(set(images) - set(listed.split()))
    if missing:
        raise DevServiceError(f"images missing from the node's containerd after import: {missing}")
    _docker(engine, "exec", container, "pkill", "containerd")

    def stopped() -> bool:
        done = subprocess.run(
            [engine.docker(), "exec", container, "pgrep", "-x", "containerd"],
            capture_output=True,
            env=engine.client_env(),
            timeout=30,
            check=False,
        )
        return done.returncode == 1

    wait_until(stopped, 60, "containerd in the build container to stop", interval=0.5)
    _docker(engine, "exec", container, "bash", "-c", "rm -rf /tmp/* /var/log/* /run/containerd")


def build_node_image(
    engine: DockerEngine,
    recipe: NodeRecipe | None = None,
    *,
    rebuild: bool = False,
    echo: Echo = print,
) -> NodeImage:
    """Make sure ``killkrill/kind-node:<version>`` of the current recipe is on ``engine``."""
    recipe = recipe or NodeRecipe()
    if not engine.running():
        raise DevServiceError("the Docker engine is not running: `killkrill dev docker up`")
    started = time.monotonic()
    inputs = _inputs()
    digest = inputs.digest(recipe)
    if not rebuild and node_image_label(engine, recipe.tag) == digest:
        return NodeImage(recipe.tag, digest, _image_size(engine, recipe.tag), 0.0, False)
    if os.getuid() != 0:
        raise DevServiceError(
            "building the kind node image needs root (debootstrap, chroot): "
            "run `sudo .venv/bin/killkrill dev kind image`"
        )
    with _build_lock(echo):
        if not rebuild and node_image_label(engine, recipe.tag) == digest:  # built meanwhile
            return NodeImage(recipe.tag, digest, _image_size(engine, recipe.tag), 0.0, False)
        _clear_leftovers(engine)
        echo(f"kind image: building {recipe.tag} (recipe {digest})")
        _build(engine, recipe, inputs, digest, echo)
    prune_old_node_images(engine)
    return NodeImage(
        recipe.tag, digest, _image_size(engine, recipe.tag), time.monotonic() - started, True
    )


_BUILD_CONTAINER_PREFIX = "killkrill-kind-node-build-"


def prune_old_node_images(engine: DockerEngine) -> None:
    """Remove node images a rebuild left untagged (by the recipe label: nothing else). One
    a cluster still runs stays until that cluster is created again."""
    subprocess.run(
        [engine.docker(), "image", "prune", "--force", "--filter", f"label={RECIPE_LABEL}"],
        capture_output=True,
        env=engine.client_env(),
        timeout=300,
        check=False,
    )


@contextmanager
def _build_lock(echo: Echo) -> Iterator[None]:
    """One node image build at a time per cache."""
    with (_work_root() / "build.lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo("kind image: waiting for another build to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _clear_leftovers(engine: DockerEngine) -> None:
    """What an interrupted build left (under the lock, nothing is in use): its work
    directories and build container."""
    for pattern in ("work-*", "base-*"):
        for stale in _work_root().glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    listed = _docker(
        engine, "ps", "--all", "--filter", f"name={_BUILD_CONTAINER_PREFIX}",
        "--format", "{{.Names}}",
    )  # fmt: skip
    for name in listed.split():
        if name.startswith(_BUILD_CONTAINER_PREFIX):
            _docker(engine, "rm", "--force", "--volumes", name, timeout=120)


def _build(
    engine: DockerEngine, recipe: NodeRecipe, inputs: _Inputs, digest: str, echo: Echo
) -> None:
    gobuild.build(KIND_NODE_BINARIES, echo=echo)
    node_base, proxy_base = _debian_bases(engine, recipe, echo)
    phase = time.monotonic()
    images = [*_kubeadm_images(), *recipe.storage_images]
    pause_image = next((i for i in images if image_key(i) == "pause"), None)
    if pause_image is None:
        raise DevServiceError(f"kubeadm names no pause image: {images}")
    work = Path(tempfile.mkdtemp(prefix=f"work-{digest}-", dir=_work_root()))
    container = f"{_BUILD_CONTAINER_PREFIX}{digest}-{os.getpid()}"
    committed = f"{NODE_IMAGE_REPOSITORY}:build-{digest}"
    try:
        archive = _image_archive(engine, images, proxy_base, inputs, recipe, work)
        echo(
            f"kind image: {len(images)} images for kubeadm and storage made in "
            f"{time.monotonic() - phase:.0f}s ({archive.stat().st_size / 1e6:.0f} MB)"
        )
        phase = time.monotonic()
        stage = work / "node"
        _stage_node_files(stage, inputs, recipe, pause_image)
        _docker(
            # --init: containerd, started detached, is reaped once stopped (not a zombie)
            engine, "run", "--detach", "--init", "--name", container, "--entrypoint", "sleep",
            "--security-opt", "seccomp=unconfined", node_base, "infinity",
        )  # fmt: skip
        _copy_tree_into(engine, stage, container)
        _docker(engine, "exec", container, "bash", "-c", recipe.post_install)
        _preload(engine, container, archive, images)
        _docker(
            engine, "commit",
            "--change", 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
            "--change", "CMD []",
            container, committed,
        )  # fmt: skip
        context = work / "final"
        context.mkdir()
        _classic_build(
            engine,
            f'FROM {committed}\nSTOPSIGNAL {recipe.stop_signal}\nLABEL {RECIPE_LABEL}="{digest}"\n',
            context,
            recipe.tag,
        )
        echo(f"kind image: node assembled in {time.monotonic() - phase:.0f}s")
    finally:
        subprocess.run(
            [engine.docker(), "rm", "--force", "--volumes", container],
            capture_output=True,
            env=engine.client_env(),
            timeout=120,
            check=False,
        )
        _remove_tags(engine, [committed])
        shutil.rmtree(work, ignore_errors=True)


def _work_root() -> Path:
    path = cache_dir() / "kind-node"
    path.mkdir(parents=True, exist_ok=True)
    return path
