"""The base image recipe, pure parts: the apt mirrors read from the host's sources, the
recipe hash in the tags, the rootfs cleanup."""

from __future__ import annotations

from pathlib import Path

import pytest

from killkrill.dev.base_image import (
    DEFAULT_MIRROR,
    DEFAULT_SECURITY_MIRROR,
    BaseRecipe,
    apt_mirrors,
    clean_rootfs,
)

# --- base image recipe -------------------------------------------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.mark.parametrize(
    ("sources", "mirrors"),
    [
        ([("debian.sources", DEB822)],
         ("http://mirror.example/debian", "http://mirror.example/debian-security")),
        ([("sources.list",
           "# comment\ndeb-src http://src.example/debian bookworm main\n"
           "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian/ bookworm main\n"
           "deb http://s.example/debian-security bookworm-security main\n")],
         ("http://m.example/debian", "http://s.example/debian-security")),
        # a third-party repository is not Debian's mirror
        ([("nodesource.sources",
           "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n"),
          ("debian.sources", DEB822)],
         ("http://mirror.example/debian", "http://mirror.example/debian-security")),
        ([("debian.sources", DEB822.replace("Types: deb\n", "Types: deb\nEnabled: no\n", 1))],
         (DEFAULT_MIRROR, "http://mirror.example/debian-security")),
        ([], (DEFAULT_MIRROR, DEFAULT_SECURITY_MIRROR)),
    ],
)  # fmt: skip
def test_apt_mirrors(sources: list[tuple[str, str]], mirrors: tuple[str, str]) -> None:
    assert apt_mirrors(sources) == mirrors


def test_recipe_hash_names_the_tags_and_changes_with_the_recipe() -> None:
    recipe = BaseRecipe()
    digest = recipe.digest()
    assert len(digest) == 12
    assert recipe.runtime.exact == f"killkrill/debian:bookworm-{digest}"
    assert recipe.runtime.moving == "killkrill/debian:bookworm"
    assert recipe.build.exact == f"killkrill/debian:bookworm-build-{digest}"
    assert recipe.build.moving == "killkrill/debian:bookworm-build"
    assert BaseRecipe().digest() == digest  # stable
    assert BaseRecipe(runtime_packages=("python3",)).digest() != digest
    assert BaseRecipe(clean_globs=("tmp/*",)).digest() != digest
    assert BaseRecipe(repository="me/debian").digest() == digest  # the name is not the recipe


def test_clean_rootfs_keeps_copyrights_and_nothing_else_of_docs(tmp_path: Path) -> None:
    files = {
        "usr/share/doc/python3/copyright": "GPL",
        "usr/share/doc/python3/changelog.Debian.gz": "x",
        "usr/share/doc/python3/examples/copyright": "not a package's licence",
        "usr/share/man/man1/python3.1.gz": "x",
        "usr/share/locale/de/LC_MESSAGES/apt.mo": "x",
        "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease": "x",
        "var/cache/apt/pkgcache.bin": "x",
        "var/log/apt/history.log": "x",
        "var/lib/dpkg/status-old": "x",
        "var/lib/dpkg/status": "kept",
        "etc/resolv.conf": "nameserver 10.0.0.1",
        "usr/sbin/policy-rc.d": "exit 101",
        "usr/bin/python3.11": "kept",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    clean_rootfs(tmp_path, BaseRecipe())

    left = {str(p.relative_to(tmp_path)): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    assert left == {
        "usr/share/doc/python3/copyright": "GPL",
        "var/lib/dpkg/status": "kept",
        "etc/resolv.conf": "",
        "usr/bin/python3.11": "kept",
    }
    assert (tmp_path / "var/log").is_dir()
    assert not any((tmp_path / "var/lib/apt/lists").iterdir())
